// Moving a host thread's execution between its two faces.
//
// dunk_capture_and_switch captures the calling thread's state as a TrapFrame
// (and its XSAVE image) such that resuming it looks like the call returned,
// then runs the monitor on the monitor's own stack. The guest face resumes
// from the captured frame inside the VM; the host face never returns here.
//
// dunk_restore_frame is the way back: it loads a TrapFrame and an XSAVE image
// into the host thread, in user mode, and continues there. It writes nothing
// below the target RSP (the red zone of the code it resumes may be live):
// the IRETQ frame is built on the stack the restore runs on.

#include "guest/abi.h"

// Linux's user-mode selectors for 64-bit code (arch/x86/include/asm/segment.h).
#define HOST_USER_CS 0x33
#define HOST_USER_DS 0x2b

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
  // An IRETQ in user mode to user mode restores RIP, RFLAGS and RSP at once
  // (SDM vol. 2A, IRET: "return to same privilege level" in 64-bit mode).
  pushq $HOST_USER_DS
  pushq FRAME_RSP(%rdi)
  pushq FRAME_RFLAGS(%rdi)
  pushq $HOST_USER_CS
  pushq FRAME_RIP(%rdi)
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
  movq FRAME_RDI(%rdi), %rdi
  iretq
  .size dunk_restore_frame, . - dunk_restore_frame
  .section .note.GNU-stack, "", @progbits
