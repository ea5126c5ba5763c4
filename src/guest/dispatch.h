// The ring-0 side of the privileged API: the table of the program's
// exception handlers and the dispatcher the IDT stubs reach without an exit
// (trap_dispatch.S).
#pragma once

#include <cstddef>
#include <cstdint>

#include "dunk/trap_frame.h"
#include "guest/abi.h"

namespace dunk::guest {

// Read by trap_dispatch.S: a vector with a non-null entry is dispatched in
// the guest. Process-wide, like the IDT.
extern "C" TrapHandler dunk_trap_handlers[256] __attribute__((visibility("hidden")));

// The program's interrupt handlers (dunk/interrupts.h), vectors 32-255, and
// which of them end their interrupt themselves (no automatic EOI).
// Process-wide.
extern "C" InterruptHandler dunk_interrupt_handlers[256] __attribute__((visibility("hidden")));
extern "C" bool dunk_interrupt_manual_eoi[256] __attribute__((visibility("hidden")));
// Whether the VM has local APICs (EnterOptions::interrupts): set when the
// machine is created, read by the dispatcher before it touches the APIC.
extern "C" bool dunk_lapic_present __attribute__((visibility("hidden")));

// TLB shootdowns: the generation of the newest request. A vCPU whose
// area's tlb_generation is at least a request's has flushed for it.
extern "C" std::uint64_t dunk_tlb_generation __attribute__((visibility("hidden")));

// The local APIC's end of interrupt for the highest-priority interrupt in
// service on this vCPU; and whether `vector` is in service. Ring 0 only,
// in a VM with local APICs.
void lapic_eoi() noexcept;
bool lapic_in_service(unsigned vector) noexcept;

// The C++ half of dunk_trap_hook: 1 when the frame should be resumed, 0 when
// the monitor should handle the exception.
extern "C" int dunk_guest_trap(TrapFrame* frame) noexcept __attribute__((visibility("hidden")));

// Sets up an area's fields for trap dispatch: the trap stack (`stack_size`
// bytes at `stack`, arena memory, zeroed) with room for an XSAVE image of
// `xsave_size` bytes on top; whether ring 3 can change FS/GS bases; the
// page-table root the vCPU starts on.
void init_trap_area(VcpuArea& area, std::byte* stack, std::size_t stack_size, std::size_t xsave_size,
                    bool fsgsbase, std::uint64_t root) noexcept;

// Clears what a thread may have left in the area when it left VM mode from
// the middle of a handler or a ring-3 run.
void reset_trap_state(VcpuArea& area) noexcept;

}  // namespace dunk::guest
