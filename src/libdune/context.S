// Handler contexts for ring 3 (user.cc): a handler of a ring-3 event runs on
// libdune's own stack, so that it can be suspended (a dune_jump_to_user made
// from inside it) while other handlers run, and continued later. A context
// is the stack pointer of a suspended call; the callee-saved registers and
// the FPU control words lie on that stack.

  .text

// long libdune_switch(Context* save /*rdi*/, const Context* load /*rsi*/, long value /*rdx*/);
// Suspends the caller in *save and continues *load, whose own suspended
// call then returns `value`.
  .globl libdune_switch
  .hidden libdune_switch
  .type libdune_switch, @function
  .p2align 4
libdune_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $16, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rdi
  movq %rdx, %rsi
  jmp libdune_resume
  .size libdune_switch, . - libdune_switch

// [[noreturn]] void libdune_resume(const Context* load /*rdi*/, long value /*rsi*/);
// Continues *load (its suspended call returns `value`); the caller's context
// is abandoned.
  .globl libdune_resume
  .hidden libdune_resume
  .type libdune_resume, @function
  .p2align 4
libdune_resume:
  movq (%rdi), %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $16, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  movq %rsi, %rax
  ret
  .size libdune_resume, . - libdune_resume

// long libdune_start(Context* save /*rdi*/, void* stack_top /*rsi*/,
//                    void (*fn)(void*) /*rdx*/, void* arg /*rcx*/);
// Suspends the caller in *save and calls fn(arg) on a new stack that ends
// at stack_top (16-byte aligned). fn never returns: it ends by switching
// to some context (the caller's, say, which then returns the value given).
  .globl libdune_start
  .hidden libdune_start
  .type libdune_start, @function
  .p2align 4
libdune_start:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $16, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  movq %rcx, %rdi
  xorl %ebp, %ebp                  // the end of the frame chain for debuggers
  call *%rdx
  ud2
  .size libdune_start, . - libdune_start

// [[noreturn]] void libdune_pop_ring0(const struct dune_tf* tf /*rdi*/);
// dune_pop_trap_frame for a ring-0 target: every register from the frame
// (struct dune_tf's layout, include/libdune/dune.h), then IRETQ.
#define TF_RDI 0x00
#define TF_RSI 0x08
#define TF_RDX 0x10
#define TF_RCX 0x18
#define TF_R8 0x20
#define TF_R9 0x28
#define TF_R10 0x30
#define TF_R11 0x38
#define TF_RBX 0x40
#define TF_RBP 0x48
#define TF_R12 0x50
#define TF_R13 0x58
#define TF_R14 0x60
#define TF_R15 0x68
#define TF_RAX 0x70
#define TF_RIP 0x80
#define TF_CS 0x88
#define TF_RFLAGS 0x90
#define TF_RSP 0x98
#define TF_SS 0xa0
  .globl libdune_pop_ring0
  .hidden libdune_pop_ring0
  .type libdune_pop_ring0, @function
  .p2align 4
libdune_pop_ring0:
  movzwq TF_SS(%rdi), %rax
  pushq %rax
  pushq TF_RSP(%rdi)
  pushq TF_RFLAGS(%rdi)
  movzwq TF_CS(%rdi), %rax
  pushq %rax
  pushq TF_RIP(%rdi)
  movq TF_RSI(%rdi), %rsi
  movq TF_RDX(%rdi), %rdx
  movq TF_RCX(%rdi), %rcx
  movq TF_R8(%rdi), %r8
  movq TF_R9(%rdi), %r9
  movq TF_R10(%rdi), %r10
  movq TF_R11(%rdi), %r11
  movq TF_RBX(%rdi), %rbx
  movq TF_RBP(%rdi), %rbp
  movq TF_R12(%rdi), %r12
  movq TF_R13(%rdi), %r13
  movq TF_R14(%rdi), %r14
  movq TF_R15(%rdi), %r15
  movq TF_RAX(%rdi), %rax
  movq TF_RDI(%rdi), %rdi
  iretq
  .size libdune_pop_ring0, . - libdune_pop_ring0

  .section .note.GNU-stack, "", @progbits
