// The SYSCALL entry point (LSTAR) of every vCPU.
//
// SYSCALL made in guest ring 0 (the program) or ring 3 (code the program runs
// there) lands here with RCX = return RIP, R11 = RFLAGS, IF cleared by
// SFMASK, and the caller's stack untouched: SYSCALL does not switch stacks
// (SDM vol. 2B, SYSCALL). The caller may keep live data in the 128-byte red
// zone below its RSP, so nothing may be pushed there: the first thing this
// code does is move to the vCPU's own stack, found through GS after SWAPGS.
//
// It then builds a TrapFrame describing the caller, tells the monitor with one
// port write, and returns through the (possibly edited) frame with IRETQ,
// because SYSRET can only return to ring 3.

#include "guest/abi.h"
#include "guest/frame_macros.S.inc"

  // dunk's ring-0 entry code, all in one section: Monitor::in_dunk_code
  // knows it by its bounds (__start_/__stop_dunk_guest_text).
  .section dunk_guest_text, "ax", @progbits
  .globl dunk_syscall_entry
  .type dunk_syscall_entry, @function
  .p2align 6
dunk_syscall_entry:
  swapgs
  // Ring 3 runs under a ring-0 supervisor: its calls go to the supervisor's
  // handler (trap_dispatch.S), not to the monitor.
  cmpq $0, %gs:AREA_USER_MODE
  jne dunk_user_syscall
  movq %rsp, %gs:AREA_USER_RSP
  movq %gs:AREA_SYSCALL_STACK_TOP, %rsp
  // The interrupt-frame half of the TrapFrame, as an exception would push it.
  pushq %gs:AREA_ORIGIN_SS
  pushq %gs:AREA_USER_RSP
  pushq %r11                       // RFLAGS at the SYSCALL
  pushq %gs:AREA_ORIGIN_CS
  pushq %rcx                       // return RIP
  pushq $0                         // error code
  pushq $DUNK_VECTOR_SYSCALL
  PUSH_GPRS
  pushq $0                         // CR2
  movq %rsp, %gs:AREA_SYSCALL_FRAME

  // The monitor performs the call and writes the result into the frame's RAX.
  // The call may block for as long as it likes: a TLB shootdown meanwhile
  // does not wait for this vCPU (AREA_IN_HOST), which catches up below,
  // before the caller's next instruction, whatever the caller's IF.
  // The count before the flag: a cleaner that sees the flag set twice with
  // the same count knows this vCPU ran nothing in between (src/core/dirty.h).
  incq %gs:AREA_HOST_ENTRIES
  movq $1, %gs:AREA_IN_HOST
  outb %al, $DUNK_PORT_SYSCALL
  // Where a fork child following the fork resumes, on a vCPU of its own
  // whose state is its parent's at this point (Monitor::load_fork_child_state).
  .globl dunk_syscall_entry_resume
dunk_syscall_entry_resume:
  movq $0, %gs:AREA_IN_HOST
  // Store, then load: pairs with the full barrier of the shootdown's
  // generation increment (flush_tlb_all_cpus), so that either it sees this
  // vCPU back in the guest and waits, or this load sees its generation.
  mfence
  movq dunk_tlb_generation(%rip), %rax
  cmpq %rax, %gs:AREA_TLB_GENERATION
  je 1f
  movq %cr3, %rcx                  // a CR3 reload: what flush_tlb() does
  movq %rcx, %cr3
  movq %rax, %gs:AREA_TLB_GENERATION
1:

  addq $8, %rsp                    // CR2
  POP_GPRS
  addq $16, %rsp                   // vector, error code
  swapgs
  iretq
  .size dunk_syscall_entry, . - dunk_syscall_entry
  .section .note.GNU-stack, "", @progbits
