// Interrupts between the vCPU threads of one process: each vCPU has a local
// APIC (KVM's, in the host kernel, in x2APIC mode); a thread sends another an
// inter-processor interrupt (IPI) with one WRMSR in guest ring 0, and the
// target's handler runs in guest ring 0 through the IDT. Neither side leaves
// the guest: KVM delivers the IPI inside the kernel.
//
//   dunk::enter({.interrupts = true});          // the first enter(): it creates the VM
//   void on_ipi(dunk::TrapFrame& f) noexcept { ++pings; }
//   dunk::set_interrupt_handler(0x40, on_ipi);
//   int peer = dunk::cpu_id();                  // in the target thread
//   dunk::send_ipi(peer, 0x40);                 // in another: on_ipi runs on `peer`
//
// Rules, and why:
// - Opt-in: EnterOptions::interrupts at the first enter(), which creates the
//   process's VM (the local APICs must exist before any vCPU does). A later
//   enter() asking for interrupts in a VM without them fails. Threads
//   created in VM mode and fork children that follow the fork
//   (EnterOptions::follow_fork) get the same.
// - Where interrupts arrive: in the program's code, ring 0 or ring 3,
//   whenever RFLAGS.IF is set, which it is from enter() on (a thread's host
//   flags have it). Never inside dunk's entry code or a handler (trap,
//   interrupt): those run with IF clear, so handlers do not nest. Code that
//   must not be interrupted may use `cli`/`sti` (it is ring 0); a handler
//   must not `sti`.
// - Handlers are process-wide (one IDT) and run on the vCPU that took the
//   interrupt, on its trap stack, with the interrupted code's registers and
//   SSE/AVX state saved; changes to the frame take effect on return. Like
//   signal handlers, they may interrupt code holding any lock: take none the
//   interrupted code could hold (malloc's, stdio's, dunk::AddressSpace
//   edits'). System calls are allowed (each is one exit).
// - End of interrupt: automatic when the handler returns, unless the vector
//   was registered with InterruptOptions::manual_eoi; then the program calls
//   eoi() itself (in the handler or later), and until it does the local APIC
//   holds back this vCPU's interrupts of the same or a lower priority class
//   (vector / 16). An interrupt without a handler is dropped (and ended).
// - A thread blocked in a system call (outside KVM_RUN) is not interrupted:
//   its IPI waits in its local APIC and is delivered as soon as the thread is
//   back in the guest with IF set, before its next instruction after the
//   call. Likewise for a thread outside VM mode (after leave()) until it
//   enters again. Wake a blocked thread the usual way (futex, signal).
// - HLT: in a VM with interrupts, `hlt` in ring 0 waits (in the host
//   kernel, not spinning) for an interrupt or a signal; with IF clear, for
//   a signal only. A signal's handler runs, then execution continues after
//   the HLT. Without interrupts, HLT ends the program with SIGSEGV as
//   natively.
// - `int $n` with n >= 32 runs n's handler too (without an EOI: no
//   interrupt is in service).
#pragma once

#include <sys/types.h>

#include "dunk/result.h"
#include "dunk/traps.h"

namespace dunk {

// Vectors a program may use: 32 (the first after the CPU's exceptions) to
// 253. dunk keeps 254 for its TLB shootdowns and 255 as the local APIC's
// spurious-interrupt vector.
inline constexpr unsigned kFirstInterruptVector = 32;
inline constexpr unsigned kLastInterruptVector = 253;
inline constexpr unsigned kTlbShootdownVector = 254;
inline constexpr unsigned kSpuriousInterruptVector = 255;

// Handlers have the signature InterruptHandler (dunk/trap_frame.h).

struct InterruptOptions {
  // The program ends each interrupt of this vector itself with eoi().
  bool manual_eoi = false;
};

// Installs `handler` for `vector` (kFirstInterruptVector to
// kLastInterruptVector), replacing any earlier one; nullptr removes it.
// Works before and after enter(); takes effect on every vCPU at once.
Status set_interrupt_handler(unsigned vector, InterruptHandler handler, InterruptOptions options = {}) noexcept;
InterruptHandler interrupt_handler(unsigned vector) noexcept;

// Whether this process's VM has local APICs (EnterOptions::interrupts).
bool interrupts_enabled() noexcept;

// The calling thread's vCPU number, which is also its x2APIC ID: what
// send_ipi() takes. -1 when the thread has never entered VM mode.
int cpu_id() noexcept;
// The vCPU number of thread `tid` of this process; -1 when it has none.
int cpu_id_of_thread(pid_t tid) noexcept;

// Sends interrupt `vector` to vCPU `cpu` (a cpu_id()), to the calling vCPU,
// or to every other vCPU of the process. Ring 0, VM mode, a VM with
// interrupts. No exit: one WRMSR to the x2APIC's interrupt command
// register, which KVM serves in the kernel. Returns when the interrupt is
// sent, not when it has been handled. Fails with EPERM outside VM mode,
// ENODEV in a VM without interrupts, EINVAL for a vector outside
// kFirstInterruptVector..kLastInterruptVector, ESRCH for a cpu no live
// thread owns.
Status send_ipi(unsigned cpu, unsigned vector) noexcept;
Status send_ipi_self(unsigned vector) noexcept;
Status send_ipi_others(unsigned vector) noexcept;

// TLB shootdown: flushes the TLB of every vCPU of the process, as
// flush_tlb() flushes the caller's (a CR3 reload: every non-global entry of
// the address space each one runs on). Call it after changing page-table
// entries other vCPUs may have cached (dunk/paging.h, dunk/ptedit.h); when
// it returns, no vCPU uses a translation older than the call.
//
// The calling vCPU flushes at once and sends the others interrupt
// kTlbShootdownVector; each flushes in dunk's handler and acknowledges, and
// the call waits for them. It does not wait for a vCPU that is out of the
// guest in a system call (which may block indefinitely, even on the
// caller): such a vCPU flushes on its way back, in dunk's SYSCALL entry,
// before the program's next instruction; nor for a thread outside VM mode
// (the IPI stays pending and is taken before its first instruction when it
// enters again, a thread's flags having IF set) or a vCPU without a thread.
//
// Interrupts must be enabled (EDEADLK otherwise: two vCPUs flushing at once
// would wait for each other); a target running with interrupts disabled
// (in a handler, or after `cli`) delays the call until it enables them, so
// do not wait for another vCPU with interrupts disabled. Ring 0, VM mode, a
// VM with interrupts (EPERM, ENODEV). No exit: IPIs, flushes and the wait
// stay in the guest.
Status flush_tlb_all_cpus() noexcept;

// Ends the interrupt in service with the highest priority on the calling
// vCPU (x2APIC EOI). For vectors registered with manual_eoi; does nothing
// outside VM mode or without interrupts.
void eoi() noexcept;

}  // namespace dunk
