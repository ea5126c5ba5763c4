// The supervisor's accesses to the untrusted program's memory, from ring 0:
// copies that may fault, and a fault ends them with -EFAULT instead of
// ending the process (user_access.h). Every instruction that may fault lies
// between dunk_sandbox_access_begin and dunk_sandbox_access_end; the page-
// fault and general-protection handlers send a fault there to the function's
// fixup, whose address the faulting function left in %r11. The callers have
// checked every address against the untrusted region already: a fault means
// memory the program unmapped or protected, never dunk's.

  .text

// long dunk_sandbox_copy(void* to /*rdi*/, const void* from /*rsi*/, size_t n /*rdx*/);
// long dunk_sandbox_copy_out(void* to /*rdi*/, const void* from /*rsi*/, size_t n /*rdx*/);
// 0, or -EFAULT after a fault (the bytes before it are copied).
//
// Another thread of the program may store to the memory while it is copied.
// The kernel reads a pointer or a length in the program's memory with one
// 8-byte load (get_user), so it sees either the old value or the new one;
// a byte copy (REP MOVSB is interruptible between bytes, by a VM exit for
// one) can mix the two into an address the program never wrote. So the
// program's side is accessed in aligned 8-byte words: dunk_sandbox_copy
// aligns the source (copies from the program), dunk_sandbox_copy_out the
// destination (copies into it); the bytes before the first word boundary
// and after the last one go one at a time.
  .globl dunk_sandbox_copy
  .hidden dunk_sandbox_copy
  .type dunk_sandbox_copy, @function
  .p2align 4
dunk_sandbox_copy:
  leaq .Lfault(%rip), %r11
  movq %rdx, %rcx
  movq %rsi, %r8                   // the side to align
  jmp .Lhead
  .size dunk_sandbox_copy, . - dunk_sandbox_copy

  .globl dunk_sandbox_copy_out
  .hidden dunk_sandbox_copy_out
  .type dunk_sandbox_copy_out, @function
  .p2align 4
dunk_sandbox_copy_out:
  leaq .Lfault(%rip), %r11
  movq %rdx, %rcx
  movq %rdi, %r8
  .globl dunk_sandbox_access_begin
  .hidden dunk_sandbox_access_begin
dunk_sandbox_access_begin:
.Lhead:                            // bytes up to the aligned side's word boundary
  testq %rcx, %rcx
  jz .Ldone
  testq $7, %r8
  jz .Lwords
  movsb
  incq %r8
  decq %rcx
  jmp .Lhead
.Lwords:
  cmpq $8, %rcx
  jb .Ltail
  movq (%rsi), %rax
  movq %rax, (%rdi)
  addq $8, %rsi
  addq $8, %rdi
  subq $8, %rcx
  jmp .Lwords
.Ltail:
  rep movsb
.Ldone:
  xorl %eax, %eax
  ret
  .size dunk_sandbox_copy_out, . - dunk_sandbox_copy_out

// long dunk_sandbox_probe_write(void* start /*rdi*/, void* end /*rsi*/);
// Whether every page of [start, end) (start < end) can be written: an atomic
// OR of 0 into one byte of each, which leaves the memory as it is whatever
// another thread does to it. 0, or -EFAULT.
  .globl dunk_sandbox_probe_write
  .hidden dunk_sandbox_probe_write
  .type dunk_sandbox_probe_write, @function
  .p2align 4
dunk_sandbox_probe_write:
  leaq .Lfault(%rip), %r11
1:
  lock orb $0, (%rdi)
  addq $4096, %rdi
  andq $-4096, %rdi
  cmpq %rsi, %rdi
  jb 1b
  lock orb $0, -1(%rsi)
  xorl %eax, %eax
  ret
  .size dunk_sandbox_probe_write, . - dunk_sandbox_probe_write

// long dunk_sandbox_try_xrstor(const void* image /*rdi*/, void* scratch /*rsi*/);
// Whether XRSTOR accepts `image` (a standard-form XSAVE image): the
// caller's FPU state is saved into `scratch` (an image of the same size,
// 64-byte aligned, header zeroed by the caller), the image loaded, and the
// saved state loaded back. 0, or -EINVAL when XRSTOR raised #GP.
  .globl dunk_sandbox_try_xrstor
  .hidden dunk_sandbox_try_xrstor
  .type dunk_sandbox_try_xrstor, @function
  .p2align 4
dunk_sandbox_try_xrstor:
  leaq .Lfault(%rip), %r11
  movl $-1, %eax
  movl $-1, %edx
  xsave64 (%rsi)
  leaq .Lxrstor_fault(%rip), %r11
  xrstor64 (%rdi)
  movl $-1, %eax
  movl $-1, %edx
  xrstor64 (%rsi)
  xorl %eax, %eax
  ret
  .globl dunk_sandbox_xrstor_fixup
  .hidden dunk_sandbox_xrstor_fixup
dunk_sandbox_xrstor_fixup:
.Lxrstor_fault:
  movl $-1, %eax
  movl $-1, %edx
  xrstor64 (%rsi)
  movq $-22, %rax
  ret
  .size dunk_sandbox_try_xrstor, . - dunk_sandbox_try_xrstor

  .globl dunk_sandbox_access_end
  .hidden dunk_sandbox_access_end
dunk_sandbox_access_end:

  .globl dunk_sandbox_access_fixup
  .hidden dunk_sandbox_access_fixup
dunk_sandbox_access_fixup:
.Lfault:
  movq $-14, %rax
  ret

  .section .note.GNU-stack, "", @progbits
