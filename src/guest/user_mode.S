// Entering ring 3 and coming back (see user_mode.h).

#include "guest/abi.h"
#include "guest/frame_macros.S.inc"
#include "guest/fsgs_macros.S.inc"
#include "guest/user_mode.h"

// The standard-form XSAVE image dunk_user_enter loads so that ring 3 starts
// with every FPU/SSE/AVX register in its initial state, none of the
// supervisor's values visible: XSTATE_BV = 0 initialises every component
// RFBM selects; MXCSR is loaded from the legacy area all the same (SDM vol. 1
// §13.8 "Operation of XRSTOR"), hence 0x1f80, its power-on value.
  .section .rodata
  .p2align 6
dunk_user_fpu_init:
  .fill 24, 1, 0
  .long 0x1f80                     // MXCSR
  .long 0xffff                     // MXCSR_MASK (ignored by XRSTOR)
  .fill 512 + 64 - 32, 1, 0        // rest of the legacy area, XSAVE header
  .size dunk_user_fpu_init, . - dunk_user_fpu_init

  // dunk's ring-0 entry code, all in one section: Monitor::in_dunk_code
  // knows it by its bounds (__start_/__stop_dunk_guest_text).
  .section dunk_guest_text, "ax", @progbits

// long dunk_user_enter(UserContext* context /*rdi*/);
  .globl dunk_user_enter
  .hidden dunk_user_enter
  .type dunk_user_enter, @function
  .p2align 4
dunk_user_enter:
  movq %rbx, UCTX_RBX(%rdi)
  movq %rbp, UCTX_RBP(%rdi)
  movq %r12, UCTX_R12(%rdi)
  movq %r13, UCTX_R13(%rdi)
  movq %r14, UCTX_R14(%rdi)
  movq %r15, UCTX_R15(%rdi)
  movq (%rsp), %rax
  movq %rax, UCTX_RIP(%rdi)
  leaq 8(%rsp), %rax
  movq %rax, UCTX_RSP(%rdi)
  pushfq
  popq UCTX_RFLAGS(%rdi)
  // The caller never runs with TF: a TF that PUSHF shows here is KVM's
  // single-step (the monitor steps the guest out of this code to deliver a
  // signal), and dunk_user_exit's POPF would make it a real #DB in dunk's
  // entry code after the step has ended.
  andq $~0x100, UCTX_RFLAGS(%rdi)   // TF (RFLAGS bit 8)
  stmxcsr UCTX_MXCSR(%rdi)
  fnstcw UCTX_FCW(%rdi)
  // No interrupt between here and ring 3: the area says ring 3 from now on.
  cli
  movq UCTX_AREA(%rdi), %rsi
  movq AREA_EXCEPTION_DEPTH(%rsi), %rax
  movq %rax, UCTX_DEPTH(%rdi)
  movq AREA_TSS_IST1(%rsi), %rax
  movq %rax, UCTX_IST1(%rdi)
  movq %rdi, AREA_USER_CONTEXT(%rsi)
  SAVE_FSGS %rsi, AREA_KERNEL_FS, AREA_KERNEL_GS
  // Ring 3's own bases, which run_in_ring3 put in the area (the caller's,
  // unless Ring3Options::fs_base says otherwise).
  LOAD_FSGS %rsi, AREA_USER_FS, AREA_USER_GS
  movq %rdi, %rbx
  // Ring 3's FPU state: the context's image, or the initial state.
  movq UCTX_FPU(%rbx), %rcx
  testq %rcx, %rcx
  jnz 1f
  leaq dunk_user_fpu_init(%rip), %rcx
1:
  movl $-1, %eax
  movl $-1, %edx
  xrstor64 (%rcx)
  movq $1, AREA_USER_MODE(%rsi)
  // Ring 3's registers, then IRETQ through the frame's CPU half (RIP, CS,
  // RFLAGS, RSP, SS), as the common exception path returns.
  leaq UCTX_FRAME + 8(%rbx), %rsp  // past CR2
  POP_GPRS
  addq $16, %rsp                   // vector, error code
  iretq
  .size dunk_user_enter, . - dunk_user_enter

// [[noreturn]] void dunk_user_exit(UserContext* context /*rdi*/, long value /*rsi*/);
// Runs on the trap stack inside the dispatcher, interrupts disabled, with
// the supervisor's FS/GS bases already back (trap_dispatch.S).
  .globl dunk_user_exit
  .hidden dunk_user_exit
  .type dunk_user_exit, @function
  .p2align 4
dunk_user_exit:
  movq %rdi, %rbx
  movq %rsi, %r12
  movq UCTX_AREA(%rbx), %rsi
  // Undo what the ring-3 event's entry did to the area.
  movq UCTX_DEPTH(%rbx), %rax
  movq %rax, AREA_EXCEPTION_DEPTH(%rsi)
  movq UCTX_IST1(%rbx), %rax
  movq %rax, AREA_TSS_IST1(%rsi)
  movq $0, AREA_USER_MODE(%rsi)
  movq $0, AREA_USER_CONTEXT(%rsi)
  movq $0, AREA_DISPATCHING(%rsi)
  // The run is over: so is any request to interrupt it (the signal behind
  // it is delivered in ring 0 from now on, as for any ring-0 code).
  movq $0, AREA_RING3_INTERRUPTIBLE(%rsi)
  movq $0, AREA_INTERRUPT_RING3(%rsi)
  // Whatever ring 3 left in the FPU goes; the caller's control words come back.
  movl $-1, %eax
  movl $-1, %edx
  xrstor64 dunk_user_fpu_init(%rip)
  ldmxcsr UCTX_MXCSR(%rbx)
  fldcw UCTX_FCW(%rbx)
  movq %r12, %rax
  movq UCTX_RBP(%rbx), %rbp
  movq UCTX_R12(%rbx), %r12
  movq UCTX_R13(%rbx), %r13
  movq UCTX_R14(%rbx), %r14
  movq UCTX_R15(%rbx), %r15
  movq UCTX_RSP(%rbx), %rsp
  // The caller's flags (IF among them) last: below its RSP is free, since
  // it is returning from a call.
  pushq UCTX_RFLAGS(%rbx)
  popfq
  movq UCTX_RIP(%rbx), %rcx
  movq UCTX_RBX(%rbx), %rbx
  jmp *%rcx
  .size dunk_user_exit, . - dunk_user_exit

// The page ring 3 returns to when its function finishes. Alone in its page
// (aligned and padded to 4 KiB), so opening it to ring 3 opens nothing else.
  .section .text.dunk_user_return, "ax", @progbits
  .p2align 12
  .globl dunk_user_return_page
  .hidden dunk_user_return_page
  .type dunk_user_return_page, @function
dunk_user_return_page:
  movq %rax, %rdi
  movabsq $DUNK_SYSCALL_USER_EXIT, %rax
  syscall
  ud2
  .p2align 12, 0xcc
  .size dunk_user_return_page, . - dunk_user_return_page
  .section .note.GNU-stack, "", @progbits
