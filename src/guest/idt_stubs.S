// The 256 interrupt-descriptor-table entry stubs and their common paths.
//
// Every vector enters on an IST stack inside the vCPU's area (IST1, or IST2
// for the vectors that can strike while IST1 is unusable), never on the
// interrupted code's stack: ring-0 code keeps data in its red zone, which a
// frame pushed on its own stack would overwrite (SDM vol. 3A §6.14.5,
// "Interrupt Stack Table"). Because the IST stacks live inside the area and
// the area is aligned to its size, masking RSP finds the area; GS is left as
// the interrupted code had it.
//
// Stubs push a zero where the CPU pushes no error code (SDM vol. 3A Table 6-1,
// "Protected-Mode Exceptions and Interrupts"), then the vector.

#include "arch/x86_64/vectors_asm.h"
#include "guest/abi.h"
#include "guest/frame_macros.S.inc"

  // dunk's ring-0 entry code, all in one section: Monitor::in_dunk_code
  // knows it by its bounds (__start_/__stop_dunk_guest_text).
  .section dunk_guest_text, "ax", @progbits


  .p2align 4
dunk_idt_stub_base:
  .set vector, 0
  .rept 256
  // Each stub gets exactly 16 bytes, so the table below can be computed;
  // .org fails to assemble if a stub outgrew its slot.
  .org dunk_idt_stub_base + vector * 16, 0xcc
  .if ARCH_VECTOR_HAS_ERROR_CODE(vector) == 0
  pushq $0
  .endif
  pushq $vector
  .if vector == 2
  jmp dunk_nmi_common
  .elseif DUNK_VECTOR_IS_FATAL(vector) != 0
  jmp dunk_fatal_common
  .else
  jmp dunk_exception_common
  .endif
  .set vector, vector + 1
  .endr

  .p2align 4
  // Also the way in for system calls made in ring 3 (trap_dispatch.S).
  .globl dunk_exception_common
  .hidden dunk_exception_common
  .type dunk_exception_common, @function
dunk_exception_common:
  PUSH_GPRS
  movq %cr2, %rax
  // #DB: the frame's CR2 slot carries DR6 instead (what raised it), and DR6
  // is reset, as its bits are sticky (SDM vol. 3B §17.2.3).
  cmpq $1, 15 * 8(%rsp)            // the vector, above the 15 registers
  jne 2f
  movq %dr6, %rax
  movl $DUNK_DR6_RESET, %ecx       // RCX is saved in the frame already
  movq %rcx, %dr6
2:
  pushq %rax
  movq %rsp, %rbx
  andq $DUNK_AREA_MASK, %rbx       // %rbx = this vCPU's area
  movq %rsp, AREA_EXCEPTION_FRAME(%rbx)
  incq AREA_EXCEPTION_DEPTH(%rbx)
  // A nested exception gets a fresh piece of IST1 below this frame.
  subq $DUNK_IST_NEST_SHIFT, AREA_TSS_IST1(%rbx)

  // A handler the program registered takes it in the guest, without an
  // exit (trap_dispatch.S); what it declines goes to the monitor.
  call dunk_trap_hook
  testl %eax, %eax
  jnz 1f
  outb %al, $DUNK_PORT_EXCEPTION
1:
  addq $DUNK_IST_NEST_SHIFT, AREA_TSS_IST1(%rbx)
  decq AREA_EXCEPTION_DEPTH(%rbx)
  addq $8, %rsp                    // CR2
  POP_GPRS
  addq $16, %rsp                   // vector, error code
  iretq
  .size dunk_exception_common, . - dunk_exception_common

// NMI, on IST2. dunk's guests get none from hardware; the monitor injects
// one to interrupt a ring-3 run that allows it (Ring3Options::interruptible)
// when a signal arrives for the thread: ring 3 runs without exits, and the
// signal's handler runs in ring 0. With the area's request set, an NMI that
// finds ring 3 becomes a ring-3 event of vector DUNK_VECTOR_INTERRUPTED on
// the common path (on this stack: the area is found by masking RSP all the
// same, and nothing else uses IST2 but fatal events), whose dispatcher
// stops the run (dispatch.cc). One that finds ring 0 came after the run's
// end, which has seen to the request: it is dropped. Without a request an
// NMI is fatal, as before. NMIs stay blocked until the next IRET: a run
// resumes with IRETQ, and a stopped one is entered again with IRETQ.
  .p2align 4
  .type dunk_nmi_common, @function
dunk_nmi_common:
  pushq %rax
  movq %rsp, %rax
  andq $DUNK_AREA_MASK, %rax
  cmpq $0, AREA_INTERRUPT_RING3(%rax)
  popq %rax                        // (POP leaves the flags alone)
  je dunk_fatal_common
  testb $3, 24(%rsp)               // CS, above the vector, error code and RIP
  jz 1f
  movq $DUNK_VECTOR_INTERRUPTED, (%rsp)
  jmp dunk_exception_common
1:
  addq $16, %rsp                   // vector, error code
  iretq
  .size dunk_nmi_common, . - dunk_nmi_common

  .p2align 4
  .type dunk_fatal_common, @function
dunk_fatal_common:
  PUSH_GPRS
  movq %cr2, %rax
  pushq %rax
  movq %rsp, %rbx
  andq $DUNK_AREA_MASK, %rbx
  movq %rsp, AREA_EXCEPTION_FRAME(%rbx)
  // The monitor ends the program; there is nothing to return to.
1:
  outb %al, $DUNK_PORT_FATAL
  jmp 1b
  .size dunk_fatal_common, . - dunk_fatal_common

// The address of each vector's stub, for building the IDT.
  .section .data.rel.ro, "aw"
  .p2align 3
  .globl dunk_idt_stubs
  .type dunk_idt_stubs, @object
dunk_idt_stubs:
  .set vector, 0
  .rept 256
  .quad dunk_idt_stub_base + vector * 16
  .set vector, vector + 1
  .endr
  .size dunk_idt_stubs, . - dunk_idt_stubs
  .section .note.GNU-stack, "", @progbits
