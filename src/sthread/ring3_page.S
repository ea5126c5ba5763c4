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

// A callgate's function returns here.
  .globl sthread_ring3_cgate_return
  .hidden sthread_ring3_cgate_return
  .type sthread_ring3_cgate_return, @function
sthread_ring3_cgate_return:
  movq %rax, %rdi
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

  .balign 4096, 0xcc
  .section .note.GNU-stack, "", @progbits
