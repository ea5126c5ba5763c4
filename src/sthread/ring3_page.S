// The only code of libsthread.so that ring 3 may run: one page, alone
// (aligned and padded to 4 KiB), opened to every sthread. The numbers are
// internal.h's kCallReturn, kCallGate and kCallGateReturn; the supervisor
// answers them in ring 0, none reaches the host.

  .section .text.sthread_ring3, "ax", @progbits
  .p2align 12
  .globl sthread_ring3_page
  .hidden sthread_ring3_page
sthread_ring3_page:

// An sthread's function returns here (the supervisor put this address on
// top of its stack): the value ends the sthread.
  .globl sthread_ring3_return
  .hidden sthread_ring3_return
  .type sthread_ring3_return, @function
sthread_ring3_return:
  movq %rax, %rdi
  movabsq $0x7374687201, %rax
  syscall
  ud2
  .size sthread_ring3_return, . - sthread_ring3_return

// A callgate's function returns here. Its vector registers must not reach
// the caller (the supervisor gives the caller its general registers back,
// but ring 3's FPU/SSE/AVX state is ring 3's): XRSTOR from an image whose
// XSTATE_BV is 0 puts every enabled component in its initial state. XRSTOR
// is not privileged.
  .globl sthread_ring3_cgate_return
  .hidden sthread_ring3_cgate_return
  .type sthread_ring3_cgate_return, @function
sthread_ring3_cgate_return:
  movq %rax, %rdi
  movl $-1, %eax
  movl $-1, %edx
  xrstor64 sthread_ring3_fpu_init(%rip)
  movabsq $0x7374687203, %rax
  syscall
  ud2
  .size sthread_ring3_cgate_return, . - sthread_ring3_cgate_return

// void *cgate(cg_t cb, sc_t *perms, void *arg): the arguments stay in RDI,
// RSI, RDX; the supervisor answers in RAX (and sets errno itself on a
// refusal: ring 3 cannot read this library's GOT).
  .globl cgate
  .type cgate, @function
cgate:
  movabsq $0x7374687202, %rax
  syscall
  ret
  .size cgate, . - cgate

// The initial FPU state (standard form): MXCSR 0x1f80 (its power-on
// value), XSTATE_BV 0. In this page, which ring 3 may read.
  .p2align 6
sthread_ring3_fpu_init:
  .fill 24, 1, 0
  .long 0x1f80
  .long 0xffff
  .fill 512 + 64 - 32, 1, 0

  .balign 4096, 0xcc
  .section .note.GNU-stack, "", @progbits
