// Delivering exceptions to the program's own handlers inside the guest,
// without an exit: Dune's way. The IDT stubs' common path calls
// dunk_trap_hook once the frame is built; when a handler is registered for
// the vector (or the exception came from ring 3, whose events always belong
// to the ring-0 supervisor, or it is an interrupt) it runs the C++ dispatcher on the vCPU's trap
// stack and returns 1, and the stub resumes through the frame.
//
// Also here: the way into the same path for system calls made in ring 3.

#include "guest/abi.h"
#include "guest/fsgs_macros.S.inc"

  // dunk's ring-0 entry code, all in one section: Monitor::in_dunk_code
  // knows it by its bounds (__start_/__stop_dunk_guest_text).
  .section dunk_guest_text, "ax", @progbits

// int dunk_trap_hook(void);
// In: %rbx = the vCPU area, its exception frame and depth already set, IST1
// already moved down for a nested exception, interrupts disabled.
// Out: %eax = 1 when handled, 0 when the monitor should see the exception.
// Preserves %rbx and %rsp; every other register is the frame's business.
  .globl dunk_trap_hook
  .hidden dunk_trap_hook
  .type dunk_trap_hook, @function
  .p2align 4
dunk_trap_hook:
  movq AREA_EXCEPTION_FRAME(%rbx), %rdi
  // A frame whose CS is neither of the code selectors dunk runs on was
  // not pushed the way its vector says: the program's `int $n` of a vector
  // the CPU pushes an error code for (it pushed none, and every slot is
  // one off). The monitor sorts it out (instructions.cc).
  cmpq $DUNK_KERNEL_CS, FRAME_CS(%rdi)
  je 1f
  cmpq $DUNK_USER_CS, FRAME_CS(%rdi)
  jne .Ldecline
1:
  // A fault inside a handler (or nested deeper) is the monitor's to report.
  cmpq $1, AREA_EXCEPTION_DEPTH(%rbx)
  jne .Ldecline
  cmpq $0, AREA_DISPATCHING(%rbx)
  jne .Ldecline
  testb $3, FRAME_CS(%rdi)
  jnz .Ldispatch
  movq FRAME_VECTOR(%rdi), %rax
  // Interrupts (vectors 32-255) are always the guest's: the dispatcher runs
  // the program's handler, if any, and signals the end of the interrupt to
  // the local APIC (dispatch.cc). The monitor has nothing to add.
  cmpq $DUNK_FIRST_INTERRUPT_VECTOR, %rax
  jae .Ldispatch
  leaq dunk_trap_handlers(%rip), %rcx
  cmpq $0, (%rcx,%rax,8)
  je .Ldecline

.Ldispatch:
  movq %rsp, %r12                  // back to the IST stack afterwards
  movq %rdi, %r13                  // the frame
  movq $1, AREA_DISPATCHING(%rbx)
  // The handler is compiled code: it may use any SSE/AVX register the
  // interrupted code had live. Save them all (every XCR0 component) on top
  // of the trap stack, whose header the arena gave us zeroed (SDM vol. 1
  // §13.7 "Operation of XSAVE" leaves XCOMP_BV alone in the standard form).
  movq AREA_TRAP_XSAVE(%rbx), %rsp
  movl $-1, %eax
  movl $-1, %edx
  xsave64 (%rsp)
  testb $3, FRAME_CS(%r13)
  jz 1f
  // From ring 3: the supervisor's FS/GS bases (its TLS, the stack
  // protector's canary) in case ring 3 changed them with WRFSBASE.
  movq $0, AREA_USER_MODE(%rbx)
  SAVE_FSGS %rbx, AREA_USER_FS, AREA_USER_GS
  LOAD_FSGS %rbx, AREA_KERNEL_FS, AREA_KERNEL_GS
1:
  cld                              // the ABI's requirement at a call; the frame keeps the interrupted DF
  movq %r13, %rdi
  call dunk_guest_trap             // RSP is 64-byte aligned here
  movl %eax, %r14d
  testb $3, FRAME_CS(%r13)
  jz 2f
  // Back to ring 3 (a stopped run never returns here: dunk_user_exit).
  movq $1, AREA_USER_MODE(%rbx)
  LOAD_FSGS %rbx, AREA_USER_FS, AREA_USER_GS
2:
  movl $-1, %eax
  movl $-1, %edx
  xrstor64 (%rsp)
  movq %r12, %rsp
  movq $0, AREA_DISPATCHING(%rbx)
  movl %r14d, %eax
  ret
.Ldecline:
  xorl %eax, %eax
  ret
  .size dunk_trap_hook, . - dunk_trap_hook

// SYSCALL made in ring 3 (dunk_syscall_entry jumps here when the area's
// user_mode is set), GS = the vCPU area after the entry's SWAPGS, RCX =
// return RIP, R11 = RFLAGS, RSP = ring 3's. The frame goes where an
// exception from ring 3 would put it (the top of IST1; a run starts with no
// exception in progress), with vector DUNK_VECTOR_SYSCALL; from there the
// common exception path takes over, and the dispatcher sees a ring-3 system
// call. Building it on the SYSCALL stack instead would let the handler's own
// system calls (passing ring 3's call to the host) overwrite it.
  .globl dunk_user_syscall
  .hidden dunk_user_syscall
  .type dunk_user_syscall, @function
  .p2align 4
dunk_user_syscall:
  movq %rsp, %gs:AREA_USER_RSP
  movq %gs:AREA_TSS_IST1, %rsp
  pushq $DUNK_USER_DS
  pushq %gs:AREA_USER_RSP
  pushq %r11                       // RFLAGS
  pushq $DUNK_USER_CS
  pushq %rcx                       // return RIP
  pushq $0                         // error code
  pushq $DUNK_VECTOR_SYSCALL
  swapgs                           // GS as an exception from ring 3 finds it
  jmp dunk_exception_common
  .size dunk_user_syscall, . - dunk_user_syscall
  .section .note.GNU-stack, "", @progbits
