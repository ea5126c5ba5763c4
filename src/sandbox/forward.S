// long dunk_sandbox_forward(const dunk::abi::Call* call /*rdi*/);
// Makes the call as it is (number, then the six argument registers): the
// supervisor's one exit per forwarded call. The SYSCALL instruction has a
// name: when a signal interrupts the call and the kernel would restart it,
// the supervisor's signal handler finds the guest there and makes the call
// return kRestartForSignal instead, so that the program's handler runs
// before the program's call runs again (signal_calls.cc).
  .text
  .globl dunk_sandbox_forward
  .hidden dunk_sandbox_forward
  .type dunk_sandbox_forward, @function
  .p2align 4
dunk_sandbox_forward:
  movq %rdi, %r11
  movq 0(%r11), %rax
  movq 16(%r11), %rsi
  movq 24(%r11), %rdx
  movq 32(%r11), %r10
  movq 40(%r11), %r8
  movq 48(%r11), %r9
  movq 8(%r11), %rdi
  .globl dunk_sandbox_forward_insn
  .hidden dunk_sandbox_forward_insn
dunk_sandbox_forward_insn:
  syscall
  ret
  .size dunk_sandbox_forward, . - dunk_sandbox_forward

// The return from the supervisor's signal handler (its SA_RESTORER).
  .globl dunk_sandbox_restorer
  .hidden dunk_sandbox_restorer
  .type dunk_sandbox_restorer, @function
  .p2align 4
dunk_sandbox_restorer:
  movl $15, %eax                   // rt_sigreturn
  syscall
  ud2
  .size dunk_sandbox_restorer, . - dunk_sandbox_restorer

  .section .note.GNU-stack, "", @progbits
