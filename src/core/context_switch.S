// Moving a host thread's execution between its two faces.
//
// dunk_capture_and_switch captures the calling thread's state as a TrapFrame
// (and its XSAVE image) such that resuming it looks like the call returned,
// then runs the monitor on the monitor's own stack. The guest face resumes
// from the captured frame inside the VM; the host face never returns here.
//
// dunk_restore_frame is the way back: it loads a TrapFrame and an XSAVE image
// into the host thread, in user mode, and continues there, without touching
// the red zone below the target RSP (the code it resumes may be using it).

#include <asm/unistd_64.h>

#include "core/asm_offsets.h"
#include "guest/abi.h"

  .text

// long dunk_capture_and_switch(TrapFrame* frame /*rdi*/, void* xsave /*rsi*/,
//                              void* stack_top /*rdx*/, void (*run)(void*) /*rcx*/,
//                              void* arg /*r8*/);
// Returns (in whichever face resumes the frame) the frame's RAX.
  .globl dunk_capture_and_switch
  .type dunk_capture_and_switch, @function
  .p2align 4
dunk_capture_and_switch:
  movq (%rsp), %rax
  movq %rax, FRAME_RIP(%rdi)
  leaq 8(%rsp), %rax
  movq %rax, FRAME_RSP(%rdi)
  // Only the registers a call preserves matter (SysV ABI §3.2.1).
  movq %rbx, FRAME_RBX(%rdi)
  movq %rbp, FRAME_RBP(%rdi)
  movq %r12, FRAME_R12(%rdi)
  movq %r13, FRAME_R13(%rdi)
  movq %r14, FRAME_R14(%rdi)
  movq %r15, FRAME_R15(%rdi)
  pushfq
  popq %rax
  movq %rax, FRAME_RFLAGS(%rdi)
  // Every state component XCR0 enables (MXCSR, x87 control word, AVX, ...).
  movq %rdx, %r11
  movl $-1, %eax
  movl $-1, %edx
  xsave64 (%rsi)
  movq %r11, %rsp
  movq %r8, %rdi
  call *%rcx
  ud2
  .size dunk_capture_and_switch, . - dunk_capture_and_switch

// [[noreturn]] void dunk_restore_frame(const TrapFrame* frame /*rdi*/,
//                                      const void* xsave /*rsi, may be null*/);
//
// User mode has no instruction that loads RSP, RIP and RFLAGS at once
// without touching the target stack. IRETQ does (SDM vol. 2A, IRET, "return
// to same privilege level"), but QEMU's software emulation performs its
// stack reads with supervisor rights, which SMAP turns into a kernel oops in
// the nested test VM. So: RFLAGS first, through POPFQ on the current stack;
// then only flag-neutral MOV and LEA; the target RIP is stored 136 bytes
// below the target RSP, under the 128-byte red zone the resumed code may be
// using (SysV ABI §3.2.2; the kernel puts signal frames below it as well),
// and `ret $128` pops it and lands RSP exactly on the target.
#define RED_ZONE 128
#define RFLAGS_TF 0x100
#define RFLAGS_NT 0x4000

  .globl dunk_restore_frame
  .type dunk_restore_frame, @function
  .p2align 4
dunk_restore_frame:
  testq %rsi, %rsi
  jz 1f
  movl $-1, %eax
  movl $-1, %edx
  xrstor64 (%rsi)
1:
  movq FRAME_RSP(%rdi), %rax
  movq FRAME_RIP(%rdi), %rcx
  movq %rcx, -(RED_ZONE + 8)(%rax)
  pushq FRAME_RFLAGS(%rdi)
  andq $~(RFLAGS_TF | RFLAGS_NT), (%rsp)  // TF would trap in here, not in the program
  popfq
  // From here on nothing may change the flags.
  movq FRAME_RAX(%rdi), %rax
  movq FRAME_RBX(%rdi), %rbx
  movq FRAME_RCX(%rdi), %rcx
  movq FRAME_RDX(%rdi), %rdx
  movq FRAME_RSI(%rdi), %rsi
  movq FRAME_RBP(%rdi), %rbp
  movq FRAME_R8(%rdi), %r8
  movq FRAME_R9(%rdi), %r9
  movq FRAME_R10(%rdi), %r10
  movq FRAME_R11(%rdi), %r11
  movq FRAME_R12(%rdi), %r12
  movq FRAME_R13(%rdi), %r13
  movq FRAME_R14(%rdi), %r14
  movq FRAME_R15(%rdi), %r15
  movq FRAME_RSP(%rdi), %rsp
  leaq -(RED_ZONE + 8)(%rsp), %rsp
  movq FRAME_RDI(%rdi), %rdi
  ret $RED_ZONE
  .size dunk_restore_frame, . - dunk_restore_frame

// long dunk_clone_native(const CloneCall* call /*rdi*/);
//
// Performs a clone-family system call (fork, vfork, clone, clone3) for the
// guest and resumes the child, on the host, in the state the guest would see
// natively: `call->frame` (RAX = 0, RSP = the child's stack) and the XSAVE
// image `call->xsave`. The child may share the parent's memory (threads,
// vfork, posix_spawn) and starts on a stack the parent is still using or that
// belongs to the guest, so it runs no compiled code there: it copies the
// frame and XSAVE image below its stack pointer, tells the parent through
// `call->ready` that `call` may go away, optionally calls
// `call->child_fixup(frame, xsave, call->clone_flags)` (only for children with memory of their
// own; it does not return if it resumes the child elsewhere), and restores
// the copy. Returns the system call's result in the parent — or
// kRestartGuestSyscall without making the call when `*call->signal_arrived`
// (CpuSignals::arrived) is set, like dunk_forward_syscall, whose named check,
// instruction and return the host handler treats alike (`_check`, `_insn`,
// `_done` here): the child must not copy the mask of a handler that has not
// run.
#define FRAME_COPY_SIZE ((FRAME_SIZE + 63) & ~63)
// FUTEX_WAKE | FUTEX_PRIVATE_FLAG (linux/futex.h, which is not assembler-safe).
#define FUTEX_WAKE_PRIVATE 129

  .globl dunk_clone_native
  .globl dunk_clone_native_check
  .globl dunk_clone_native_insn
  .globl dunk_clone_native_done
  .type dunk_clone_native, @function
  .p2align 4
dunk_clone_native:
  pushq %rbx
  movq %rdi, %rbx
  movq CALL_NR(%rbx), %rax
  movq CALL_ARGS + 0(%rbx), %rdi
  movq CALL_ARGS + 8(%rbx), %rsi
  movq CALL_ARGS + 16(%rbx), %rdx
  movq CALL_ARGS + 24(%rbx), %r10
  movq CALL_ARGS + 32(%rbx), %r8
  movq CALL_SIGNAL_ARRIVED(%rbx), %r11
dunk_clone_native_check:
  cmpl $0, (%r11)
  jne 4f
dunk_clone_native_insn:
  syscall
dunk_clone_native_done:
  testq %rax, %rax
  jz 1f
  popq %rbx
  ret
4:
  movq $RESTART_GUEST_SYSCALL, %rax
  jmp dunk_clone_native_done
1:
  // The child: every register is the parent's but RAX and RSP.
  andq $-64, %rsp
  subq CALL_XSAVE_SIZE(%rbx), %rsp
  movq %rsp, %r12                  // the XSAVE copy (64-byte aligned)
  subq $FRAME_COPY_SIZE, %rsp
  movq %rsp, %r13                  // the frame copy
  movq %r12, %rdi
  movq CALL_XSAVE(%rbx), %rsi
  movq CALL_XSAVE_SIZE(%rbx), %rcx
  rep movsb
  movq %r13, %rdi
  movq CALL_FRAME(%rbx), %rsi
  movl $FRAME_SIZE, %ecx
  rep movsb
  movq CALL_READY(%rbx), %rdi
  testq %rdi, %rdi
  jz 2f
  movl $1, (%rdi)
  movl $__NR_futex, %eax
  movl $FUTEX_WAKE_PRIVATE, %esi
  movl $1, %edx
  syscall
2:
  movq CALL_CHILD_FIXUP(%rbx), %rax
  testq %rax, %rax
  jz 3f
  movq %r13, %rdi                  // child_fixup(frame copy, XSAVE copy, flags); RSP is 64-byte aligned
  movq %r12, %rsi
  movq CALL_CLONE_FLAGS(%rbx), %rdx
  call *%rax
3:
  movq %r13, %rdi
  movq %r12, %rsi
  jmp dunk_restore_frame
  .size dunk_clone_native, . - dunk_clone_native

// long dunk_clone_thread(const CloneCall* call /*rdi*/, void* cpu /*rsi*/,
//                        void (*start)(void*) /*rdx*/);
//
// Performs a clone-family system call whose child is a thread that gets a
// vCPU of its own: `call`'s arguments already name the child's monitor stack
// as its stack, so the child starts there and calls start(cpu), which never
// returns. Returns the system call's result in the parent, or
// kRestartGuestSyscall as dunk_clone_native does.
  .globl dunk_clone_thread
  .globl dunk_clone_thread_check
  .globl dunk_clone_thread_insn
  .globl dunk_clone_thread_done
  .type dunk_clone_thread, @function
  .p2align 4
dunk_clone_thread:
  pushq %rbx
  pushq %r12
  movq %rsi, %rbx                  // callee-saved: the child has them too
  movq %rdx, %r12
  movq CALL_NR(%rdi), %rax
  movq CALL_SIGNAL_ARRIVED(%rdi), %r11
  movq CALL_ARGS + 8(%rdi), %rsi
  movq CALL_ARGS + 16(%rdi), %rdx
  movq CALL_ARGS + 24(%rdi), %r10
  movq CALL_ARGS + 32(%rdi), %r8
  movq CALL_ARGS + 0(%rdi), %rdi
dunk_clone_thread_check:
  cmpl $0, (%r11)
  jne 4f
dunk_clone_thread_insn:
  syscall
dunk_clone_thread_done:
  testq %rax, %rax
  jz 1f
  popq %r12
  popq %rbx
  ret
4:
  movq $RESTART_GUEST_SYSCALL, %rax
  jmp dunk_clone_thread_done
1:
  xorl %ebp, %ebp                  // the outermost frame of this thread
  andq $-16, %rsp
  movq %rbx, %rdi
  call *%r12
  ud2
  .size dunk_clone_thread, . - dunk_clone_thread

// [[noreturn]] void dunk_run_on_stack(void* stack_top /*rdi*/, void (*run)(void*) /*rsi*/,
//                                     void* arg /*rdx*/);
// Calls run(arg) on another stack, never to come back.
  .globl dunk_run_on_stack
  .type dunk_run_on_stack, @function
  .p2align 4
dunk_run_on_stack:
  movq %rdi, %rsp
  movq %rdx, %rdi
  xorl %ebp, %ebp
  call *%rsi
  ud2
  .size dunk_run_on_stack, . - dunk_run_on_stack

// long dunk_forward_syscall(const Syscall* call /*rdi*/,
//                           const uint32_t* signal_arrived /*rsi*/);
//
// The system call the guest asked for, made on the host: RAX and the six
// arguments of a struct Syscall (core/syscall.h) — unless a signal for the
// guest has arrived since the monitor last delivered (*signal_arrived,
// CpuSignals::arrived): then it returns kRestartGuestSyscall without making
// the call, so that the guest's handler runs first and the call is made
// after it, with the mask the handler's return restores. The check and the
// SYSCALL have names of their own: when a host signal interrupts the stub
// between them, or the call itself and the kernel rewinds it for a
// restart, the host handler finds RIP in [check, insn] (see
// dunk_host_signal_handler) and makes the stub return kRestartGuestSyscall.
  .globl dunk_forward_syscall
  .globl dunk_forward_syscall_check
  .globl dunk_forward_syscall_insn
  .globl dunk_forward_syscall_done
  .type dunk_forward_syscall, @function
  .p2align 4
dunk_forward_syscall:
  movq %rsi, %r11
  movq SYSCALL_NR(%rdi), %rax
  movq SYSCALL_ARGS + 8(%rdi), %rsi
  movq SYSCALL_ARGS + 16(%rdi), %rdx
  movq SYSCALL_ARGS + 24(%rdi), %r10
  movq SYSCALL_ARGS + 32(%rdi), %r8
  movq SYSCALL_ARGS + 40(%rdi), %r9
  movq SYSCALL_ARGS + 0(%rdi), %rdi
dunk_forward_syscall_check:
  cmpl $0, (%r11)
  jne 1f
dunk_forward_syscall_insn:
  syscall
dunk_forward_syscall_done:
  ret
1:
  movq $RESTART_GUEST_SYSCALL, %rax
  ret
  .size dunk_forward_syscall, . - dunk_forward_syscall

// long dunk_int80(const Syscall* call /*rdi*/,
//                 const uint32_t* signal_arrived /*rsi*/);
//
// A 32-bit system call (`int $0x80`) the guest made, made on the host the
// same way: number in EAX, arguments in EBX, ECX, EDX, ESI, EDI, EBP. Its
// check and its INT instruction are named for the host signal handler,
// like those of dunk_forward_syscall.
  .globl dunk_int80
  .globl dunk_int80_check
  .globl dunk_int80_insn
  .globl dunk_int80_done
  .type dunk_int80, @function
  .p2align 4
dunk_int80:
  pushq %rbx
  pushq %rbp
  movq %rsi, %r11
  movq SYSCALL_NR(%rdi), %rax
  movq SYSCALL_ARGS + 0(%rdi), %rbx
  movq SYSCALL_ARGS + 8(%rdi), %rcx
  movq SYSCALL_ARGS + 16(%rdi), %rdx
  movq SYSCALL_ARGS + 24(%rdi), %rsi
  movq SYSCALL_ARGS + 40(%rdi), %rbp
  movq SYSCALL_ARGS + 32(%rdi), %rdi
dunk_int80_check:
  cmpl $0, (%r11)
  jne 1f
dunk_int80_insn:
  int $0x80
dunk_int80_done:
  popq %rbp
  popq %rbx
  ret
1:
  movq $RESTART_GUEST_SYSCALL, %rax
  jmp dunk_int80_done
  .size dunk_int80, . - dunk_int80

// bool dunk_port_io(PortAccess* access /*rdi*/);
//
// One port access of the guest's, made on the host with the host thread's
// I/O permission (ioperm, iopl). A denied access raises #GP, which the
// kernel turns into SIGSEGV at one of the IN/OUT instructions between
// dunk_port_io and dunk_port_io_denied; dunk's probe handler
// (core/port_io.cc) resumes at dunk_port_io_denied instead. Returns 1 when
// the access was made (an IN's value in access->value), 0 when denied.
  .globl dunk_port_io
  .globl dunk_port_io_denied
  .type dunk_port_io, @function
  .p2align 4
dunk_port_io:
  movzwl PORT_ACCESS_PORT(%rdi), %edx
  movl PORT_ACCESS_VALUE(%rdi), %eax
  movzbl PORT_ACCESS_SIZE(%rdi), %ecx
  cmpb $0, PORT_ACCESS_OUT(%rdi)
  je 5f
  cmpl $1, %ecx
  jne 1f
  outb %al, %dx
  jmp 9f
1:
  cmpl $2, %ecx
  jne 2f
  outw %ax, %dx
  jmp 9f
2:
  outl %eax, %dx
  jmp 9f
5:
  cmpl $1, %ecx
  jne 6f
  inb %dx, %al
  jmp 8f
6:
  cmpl $2, %ecx
  jne 7f
  inw %dx, %ax
  jmp 8f
7:
  inl %dx, %eax
8:
  movl %eax, PORT_ACCESS_VALUE(%rdi)
9:
  movl $1, %eax
  ret
dunk_port_io_denied:
  xorl %eax, %eax
  ret
  .size dunk_port_io, . - dunk_port_io

// The sa_restorer of dunk's host signal handler: rt_sigreturn.
  .globl dunk_host_signal_restorer
  .type dunk_host_signal_restorer, @function
  .p2align 4
dunk_host_signal_restorer:
  movl $__NR_rt_sigreturn, %eax
  syscall
  ud2
  .size dunk_host_signal_restorer, . - dunk_host_signal_restorer
  .section .note.GNU-stack, "", @progbits
