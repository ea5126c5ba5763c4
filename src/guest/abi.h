// The contract between the ring-0 entry code (src/guest/*.S), the monitor and
// the rest of libdunk: the per-vCPU area's layout, the trap frame, the exit
// ports and dunk's private system-call numbers. Assembly sees the offsets as
// macros; C++ sees the structures, and static_asserts below keep the two equal.
#pragma once

// ---- Shared constants (assembly and C++) ----------------------------------

// Each vCPU owns one area of this size, aligned to it, so that exception
// entry code finds its area by masking %rsp (the IST stacks live inside).
#define DUNK_AREA_SIZE 0x10000
#define DUNK_AREA_MASK (~(DUNK_AREA_SIZE - 1))

// Guest exits to the monitor by `out %al, $port` (KVM_EXIT_IO): unlike
// vmcall/vmmcall, port I/O reaches user space on Intel and AMD alike, with or
// without an in-kernel local APIC. The port says why the guest exited.
#define DUNK_PORT_SYSCALL 0xd0    // frame at area->syscall_frame
#define DUNK_PORT_EXCEPTION 0xd1  // frame at area->exception_frame
#define DUNK_PORT_FATAL 0xd2      // double fault / NMI / machine check; frame at area->exception_frame

// Linux's GDT layout (arch/x86/include/asm/segment.h), so that STAR and
// SYSCALL/SYSRET work as the host's do: SYSCALL loads CS from STAR[47:32]
// and SS from that + 8.
#define DUNK_KERNEL_CS 0x10
#define DUNK_KERNEL_DS 0x18
#define DUNK_USER32_CS 0x23  // compatibility-mode code, ring 3
#define DUNK_USER_DS 0x2b
#define DUNK_USER_CS 0x33
#define DUNK_TSS_SELECTOR 0x40

// The "vector" a system-call frame carries, outside the IDT's 0-255.
#define DUNK_VECTOR_SYSCALL 0x100
// The "vector" of a ring-3 frame interrupted for a signal (the monitor's
// NMI, AREA_INTERRUPT_RING3): the run stops, Ring3Exit::kInterrupted.
#define DUNK_VECTOR_INTERRUPTED 0x101
// Vectors from here to 255 are interrupts (dunk/interrupts.h); below are
// the CPU's exceptions (SDM vol. 3A §6.2, "Exception and Interrupt Vectors").
#define DUNK_FIRST_INTERRUPT_VECTOR 32
// dunk's own interrupt: "flush your TLB" (flush_tlb_all_cpus).
#define DUNK_TLB_SHOOTDOWN_VECTOR 254
// The value #DB's entry writes back into DR6 (arch::dr6::kReset).
#define DUNK_DR6_RESET 0xffff0ff0

// Vectors that can strike while IST1 is unusable, so they run on IST2, and
// that end the program with a report: NMI (2), #DF (8), #MC (18). The IDT
// stubs, the IDT builder and set_trap_handler all ask this one macro.
#define DUNK_VECTOR_IS_FATAL(v) ((v) == 2 || (v) == 8 || (v) == 18)

// Offsets in struct VcpuArea.
#define AREA_SELF 0x00
#define AREA_SYSCALL_STACK_TOP 0x08
#define AREA_USER_RSP 0x10
#define AREA_SYSCALL_FRAME 0x18
#define AREA_EXCEPTION_FRAME 0x20
#define AREA_EXCEPTION_DEPTH 0x28
#define AREA_ORIGIN_CS 0x30
#define AREA_ORIGIN_SS 0x38
// The privileged API's fields (src/guest/trap_dispatch.S, src/priv/).
#define AREA_TRAP_XSAVE 0x40      // XSAVE image of the code a program handler interrupted; the trap stack grows down below it
#define AREA_DISPATCHING 0x48     // nonzero while a program handler runs on this vCPU
#define AREA_USER_MODE 0x50       // nonzero while ring-3 code runs on this vCPU
#define AREA_USER_CONTEXT 0x58    // the UserContext of the ring-3 run in progress (src/guest/user_mode.S)
#define AREA_FSGSBASE 0x60        // nonzero when CR4.FSGSBASE is set: ring 3 can change its FS/GS base
#define AREA_KERNEL_FS 0x68       // FS/GS bases of the ring-0 code that started the ring-3 run
#define AREA_KERNEL_GS 0x70
#define AREA_USER_FS 0x78         // FS/GS bases of ring 3 while a handler runs
#define AREA_USER_GS 0x80
#define AREA_ROOT 0x88            // the page-table root (CR3) this vCPU runs on, as the privileged API set it
// TLB shootdowns (dunk/interrupts.h, flush_tlb_all_cpus).
#define AREA_IN_HOST 0x90         // nonzero while the SYSCALL entry waits for the monitor (the call may block)
#define AREA_TLB_GENERATION 0x98  // the last shootdown generation this vCPU's TLB flush covers
// Dirty tracking (src/core/dirty.h): how many times the SYSCALL entry went to
// the host, so that a cleaner can tell "in the host all along" from "came
// back and went again".
#define AREA_HOST_ENTRIES 0xa0
// Interrupting a ring-3 run for a signal (Ring3Options::interruptible):
// whether the run in progress allows it, and the monitor's request (made
// with an NMI, taken by the IDT's NMI stub; see idt_stubs.S).
#define AREA_RING3_INTERRUPTIBLE 0xa8
#define AREA_INTERRUPT_RING3 0xb0
#define AREA_FIELDS_END 0xb8
#define AREA_TSS 0x1080
#define AREA_TSS_IST1 (AREA_TSS + 0x24)

// Offsets in struct TrapFrame. The layout is what the entry code produces by
// pushing: the CPU's interrupt frame on top (SDM vol. 3A §6.14.2, "64-Bit
// Mode Stack Frame"), then the error code and vector, the general registers,
// and CR2 last (lowest address).
#define FRAME_CR2 0x00
#define FRAME_R15 0x08
#define FRAME_R14 0x10
#define FRAME_R13 0x18
#define FRAME_R12 0x20
#define FRAME_R11 0x28
#define FRAME_R10 0x30
#define FRAME_R9 0x38
#define FRAME_R8 0x40
#define FRAME_RBP 0x48
#define FRAME_RDI 0x50
#define FRAME_RSI 0x58
#define FRAME_RDX 0x60
#define FRAME_RCX 0x68
#define FRAME_RBX 0x70
#define FRAME_RAX 0x78
#define FRAME_VECTOR 0x80
#define FRAME_ERROR_CODE 0x88
#define FRAME_RIP 0x90
#define FRAME_CS 0x98
#define FRAME_RFLAGS 0xa0
#define FRAME_RSP 0xa8
#define FRAME_SS 0xb0
#define FRAME_SIZE 0xb8

// How far each nested exception moves IST1 down, so that a fault inside an
// exception handler does not overwrite the frame of the one it interrupted.
#define DUNK_IST_NEST_SHIFT 0x1000
#define DUNK_MAX_EXCEPTION_DEPTH 3

// dunk's private system calls ("hypercalls"), made with the SYSCALL
// instruction like any other. Far above Linux's numbers: run outside VM mode
// they fail with ENOSYS and do no harm.
#define DUNK_SYSCALL_BASE 0x64756e6b00L  // "dunk" << 8
#define DUNK_SYSCALL_LEAVE (DUNK_SYSCALL_BASE + 0)
#define DUNK_SYSCALL_PING (DUNK_SYSCALL_BASE + 1)
// Made by ring-3 code (the return trampoline) to end its run; never reaches
// the monitor (the ring-0 dispatcher takes it).
#define DUNK_SYSCALL_USER_EXIT (DUNK_SYSCALL_BASE + 2)
// Asks the monitor to resolve a page fault the way an unhandled one would be
// first (the mirror brought up to date): RDI the address, RSI bit 0 a write,
// bit 1 an instruction fetch; RAX 1 when the access should now succeed.
// For handlers that take every page fault (dunk/traps.h, resolve_fault).
#define DUNK_SYSCALL_RESOLVE_FAULT (DUNK_SYSCALL_BASE + 3)
// Asks the monitor for the guest-physical address of host address RDI,
// assigning guest-physical space to its chunk if it has none yet (as Dune's
// layout gave every address one); RAX the address or -errno. For
// dunk::guest_physical (dunk/paging.h).
#define DUNK_SYSCALL_GUEST_PHYSICAL (DUNK_SYSCALL_BASE + 4)
// ioctl(a0, a1, a2) on one of dunk's own descriptors (its VM's), made by
// dunk's code running in the guest (the mirror giving a chunk GPA space for
// the privileged API). The plain ioctl is refused there: every descriptor
// argument of the program's calls that names one of dunk's fails with EBADF.
// Any other descriptor: EBADF.
#define DUNK_SYSCALL_OWN_IOCTL (DUNK_SYSCALL_BASE + 5)
// Switches the mirror to eager assignment (Mirror::assign_eagerly) in the
// monitor, for dunk's code in the guest: done there, under the mirror's
// lock, the switch would touch code and data (libc's) whose chunk may not
// be resident yet, and the fault that makes it resident needs that lock.
#define DUNK_SYSCALL_ASSIGN_EAGERLY (DUNK_SYSCALL_BASE + 6)

// Size of the stack program handlers run on, per vCPU (its XSAVE image on top).
#define DUNK_TRAP_STACK_SIZE 0x10000

#ifndef __ASSEMBLER__

#include <cstddef>
#include <cstdint>

#include "arch/x86_64/descriptors.h"
#include "dunk/trap_frame.h"

namespace dunk::guest {

using arch::Tss64;

// The selectors above are Linux's GDT layout as arch/ encodes it.
static_assert(DUNK_KERNEL_CS == arch::gdt::kKernelCode.raw());
static_assert(DUNK_KERNEL_DS == arch::gdt::kKernelData.raw());
static_assert(DUNK_USER_CS == arch::gdt::kUserCode.raw());
static_assert(DUNK_USER32_CS == arch::gdt::kUser32Code.raw());
static_assert(DUNK_USER_DS == arch::gdt::kUserData.raw());
static_assert(DUNK_TSS_SELECTOR == arch::gdt::kTss.raw());
static_assert(DUNK_DR6_RESET == arch::dr6::kReset);

constexpr bool is_fatal_vector(unsigned vector) noexcept { return DUNK_VECTOR_IS_FATAL(vector); }

// The layout the entry code pushes, which the program's handlers see as it
// is (dunk/trap_frame.h); the offsets are checked below.
using TrapFrame = dunk::TrapFrame;

// One per vCPU, DUNK_AREA_SIZE bytes, aligned to its size. Guest code reaches
// it through GS (the SYSCALL path, after SWAPGS; KERNEL_GS_BASE holds its
// address) or by masking the IST stack pointer (exception paths).
struct alignas(4096) VcpuArea {
  // -- page 0: what the entry code and the monitor exchange --
  std::uint64_t self;
  std::uint64_t syscall_stack_top;
  std::uint64_t user_rsp;           // scratch for the SYSCALL entry
  std::uint64_t syscall_frame;      // TrapFrame* of the system call being served
  std::uint64_t exception_frame;    // TrapFrame* of the newest exception
  std::uint64_t exception_depth;    // nesting of exception entries
  std::uint64_t origin_cs;          // CS/SS a system call returns to
  std::uint64_t origin_ss;
  std::uint64_t trap_xsave;         // see AREA_TRAP_XSAVE
  std::uint64_t dispatching;
  std::uint64_t user_mode;
  std::uint64_t user_context;
  std::uint64_t fsgsbase;
  std::uint64_t kernel_fs, kernel_gs;
  std::uint64_t user_fs, user_gs;
  std::uint64_t root;
  std::uint64_t in_host;
  std::uint64_t tlb_generation;
  std::uint64_t host_entries;
  std::uint64_t ring3_interruptible;
  std::uint64_t interrupt_ring3;
  std::uint8_t page0_rest[0x1000 - AREA_FIELDS_END];
  // -- page 1: descriptor tables --
  arch::SegmentDescriptor gdt[arch::gdt::kEntries];
  Tss64 tss;
  std::uint8_t page1_rest[0x1000 - arch::gdt::kBytes - sizeof(Tss64)];
  // -- the stacks, each growing down from the end of its region --
  std::uint8_t reserved[0x2000];
  std::uint8_t syscall_stack[0x4000];
  std::uint8_t exception_stack[0x4000];  // IST1: exceptions and interrupts
  std::uint8_t fatal_stack[0x4000];      // IST2: #DF, NMI, #MC
};

static_assert(sizeof(VcpuArea) == DUNK_AREA_SIZE);
static_assert(offsetof(VcpuArea, self) == AREA_SELF);
static_assert(offsetof(VcpuArea, syscall_stack_top) == AREA_SYSCALL_STACK_TOP);
static_assert(offsetof(VcpuArea, user_rsp) == AREA_USER_RSP);
static_assert(offsetof(VcpuArea, syscall_frame) == AREA_SYSCALL_FRAME);
static_assert(offsetof(VcpuArea, exception_frame) == AREA_EXCEPTION_FRAME);
static_assert(offsetof(VcpuArea, exception_depth) == AREA_EXCEPTION_DEPTH);
static_assert(offsetof(VcpuArea, origin_cs) == AREA_ORIGIN_CS);
static_assert(offsetof(VcpuArea, origin_ss) == AREA_ORIGIN_SS);
static_assert(offsetof(VcpuArea, trap_xsave) == AREA_TRAP_XSAVE);
static_assert(offsetof(VcpuArea, dispatching) == AREA_DISPATCHING);
static_assert(offsetof(VcpuArea, user_mode) == AREA_USER_MODE);
static_assert(offsetof(VcpuArea, user_context) == AREA_USER_CONTEXT);
static_assert(offsetof(VcpuArea, fsgsbase) == AREA_FSGSBASE);
static_assert(offsetof(VcpuArea, kernel_fs) == AREA_KERNEL_FS);
static_assert(offsetof(VcpuArea, kernel_gs) == AREA_KERNEL_GS);
static_assert(offsetof(VcpuArea, user_fs) == AREA_USER_FS);
static_assert(offsetof(VcpuArea, user_gs) == AREA_USER_GS);
static_assert(offsetof(VcpuArea, root) == AREA_ROOT);
static_assert(offsetof(VcpuArea, in_host) == AREA_IN_HOST);
static_assert(offsetof(VcpuArea, tlb_generation) == AREA_TLB_GENERATION);
static_assert(offsetof(VcpuArea, host_entries) == AREA_HOST_ENTRIES);
static_assert(offsetof(VcpuArea, ring3_interruptible) == AREA_RING3_INTERRUPTIBLE);
static_assert(offsetof(VcpuArea, interrupt_ring3) == AREA_INTERRUPT_RING3);
static_assert(offsetof(VcpuArea, page0_rest) == AREA_FIELDS_END);
static_assert(offsetof(VcpuArea, tss) == AREA_TSS);
static_assert(offsetof(VcpuArea, tss) + offsetof(Tss64, ist) == AREA_TSS_IST1);

static_assert(offsetof(TrapFrame, cr2) == FRAME_CR2);
static_assert(offsetof(TrapFrame, r15) == FRAME_R15);
static_assert(offsetof(TrapFrame, r8) == FRAME_R8);
static_assert(offsetof(TrapFrame, rbp) == FRAME_RBP);
static_assert(offsetof(TrapFrame, rdi) == FRAME_RDI);
static_assert(offsetof(TrapFrame, rcx) == FRAME_RCX);
static_assert(offsetof(TrapFrame, rax) == FRAME_RAX);
static_assert(offsetof(TrapFrame, vector) == FRAME_VECTOR);
static_assert(offsetof(TrapFrame, error_code) == FRAME_ERROR_CODE);
static_assert(offsetof(TrapFrame, rip) == FRAME_RIP);
static_assert(offsetof(TrapFrame, cs) == FRAME_CS);
static_assert(offsetof(TrapFrame, rflags) == FRAME_RFLAGS);
static_assert(offsetof(TrapFrame, rsp) == FRAME_RSP);
static_assert(offsetof(TrapFrame, ss) == FRAME_SS);
static_assert(sizeof(TrapFrame) == FRAME_SIZE);

enum class Port : std::uint16_t {
  kSyscall = DUNK_PORT_SYSCALL,
  kException = DUNK_PORT_EXCEPTION,
  kFatal = DUNK_PORT_FATAL,
};

// Entry points defined in the .S files.
extern "C" {
void dunk_syscall_entry();          // LSTAR
void dunk_syscall_entry_resume();   // the instruction after its exit to the monitor
void dunk_compat_syscall_entry();   // CSTAR
extern const std::uint64_t dunk_idt_stubs[256];  // address of each vector's stub
}

}  // namespace dunk::guest

#endif  // __ASSEMBLER__
