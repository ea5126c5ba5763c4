// long dunk_sandbox_forward(const dunk::abi::Call* call /*rdi*/,
//                            const uint32_t* head /*rsi*/, const uint32_t* tail /*rdx*/);
// Makes the call as it is (number, then the six argument registers): the
// supervisor's one exit per forwarded call, unless a signal for the program
// is queued (head != tail of the thread's SignalQueue): then it returns
// kRestartForSignal without making the call, so that the program's handler
// runs before a call that could block waiting for it. A signal whose
// handler runs between that look and the SYSCALL, or that interrupts the
// call when the kernel would restart it, finds the guest in
// [dunk_sandbox_forward_check, dunk_sandbox_forward_insn]: the supervisor's
// handler moves it to dunk_sandbox_forward_done with kRestartForSignal
// (signal_calls.cc). Nothing before the SYSCALL has an effect to undo.
  .text
  .globl dunk_sandbox_forward
  .hidden dunk_sandbox_forward
  .type dunk_sandbox_forward, @function
  .p2align 4
dunk_sandbox_forward:
  movq %rdi, %r11
  .globl dunk_sandbox_forward_check
  .hidden dunk_sandbox_forward_check
dunk_sandbox_forward_check:
  movl (%rsi), %eax
  cmpl (%rdx), %eax
  jne 1f
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
  .globl dunk_sandbox_forward_done
  .hidden dunk_sandbox_forward_done
dunk_sandbox_forward_done:
  ret
1:
  movq $-512, %rax                 // kRestartForSignal
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
