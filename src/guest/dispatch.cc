#include "guest/dispatch.h"

#include <atomic>

#include "arch/x86_64/apic.h"
#include "guest/user_mode.h"

namespace dunk::guest {

TrapHandler dunk_trap_handlers[256] = {};
InterruptHandler dunk_interrupt_handlers[256] = {};
bool dunk_interrupt_manual_eoi[256] = {};
bool dunk_lapic_present = false;
std::uint64_t dunk_tlb_generation = 0;

void lapic_eoi() noexcept {
  // x2APIC EOI: a write of 0 (anything else is #GP in x2APIC mode).
  asm volatile("wrmsr" : : "c"(arch::apic::msr::kEoi), "a"(0), "d"(0) : "memory");
}

bool lapic_in_service(unsigned vector) noexcept {
  std::uint32_t low, high;
  asm volatile("rdmsr" : "=a"(low), "=d"(high) : "c"(arch::apic::isr_msr(vector)));
  return ((low >> arch::apic::vector_bit(vector)) & 1) != 0;
}

namespace {
// The area of the vCPU a dispatch runs on, for handlers that need it (ring
// 3's context). Kept per vCPU through the TLS-free route: the frame of the
// event being dispatched lies at the top of the area's IST1 stack.
VcpuArea* area_of_frame(const TrapFrame* frame) noexcept {
  return reinterpret_cast<VcpuArea*>(reinterpret_cast<std::uint64_t>(frame) & DUNK_AREA_MASK);
}
}  // namespace

void init_trap_area(VcpuArea& area, std::byte* stack, std::size_t stack_size, std::size_t xsave_size,
                    bool fsgsbase, std::uint64_t root) noexcept {
  const std::uint64_t top = reinterpret_cast<std::uint64_t>(stack) + stack_size;
  area.trap_xsave = (top - xsave_size) & ~std::uint64_t{63};
  area.fsgsbase = fsgsbase ? 1 : 0;
  area.root = root;
  reset_trap_state(area);
}

void reset_trap_state(VcpuArea& area) noexcept {
  area.dispatching = 0;
  area.user_mode = 0;
  area.user_context = 0;
}

namespace {
// An interrupt, from ring 0 or ring 3 (it belongs to the process, not to a
// ring-3 run's supervisor). Without a handler it is dropped. The EOI goes
// out after the handler unless the handler's vector asked to end its
// interrupts itself, and only when the vector is in service: an `int $n`
// instruction reaches the same stub without involving the APIC, and an EOI
// for it would end some other interrupt.
// False for a vector nothing handles that the local APIC did not deliver
// either: an `int $n` instruction of the program's, which natively is a
// #GP (or, for 0x80, a 32-bit system call): the monitor's to serve.
bool dispatch_interrupt(TrapFrame& frame) noexcept {
  const unsigned vector = static_cast<unsigned>(frame.vector);
  if (vector == DUNK_TLB_SHOOTDOWN_VECTOR && dunk_lapic_present) {
    // The generation first, then the flush: it covers every edit made
    // before that generation's request was sent.
    VcpuArea* area = area_of_frame(&frame);
    const std::uint64_t generation = std::atomic_ref<std::uint64_t>(dunk_tlb_generation).load(std::memory_order_acquire);
    std::uint64_t cr3;
    asm volatile("movq %%cr3, %0" : "=r"(cr3));
    asm volatile("movq %0, %%cr3" : : "r"(cr3) : "memory");
    std::atomic_ref<std::uint64_t>(area->tlb_generation).store(generation, std::memory_order_release);
    // No read of the ISR first (as below): the local APIC delivers this
    // vector, the highest dunk uses, only above every vector in service, so
    // the EOI ends this one. (A ring-0 program's own `int` to this vector
    // is taken for a shootdown; its EOI ends nothing when nothing else is
    // in service.) One intercepted MSR access per shootdown, not two — and
    // not the ISR read at which the nested test VM's emulated CPU has been
    // seen to spin (docs/ARCHITECTURE.md, "Known problems").
    lapic_eoi();
    return true;
  }
  InterruptHandler handler =
      std::atomic_ref<InterruptHandler>(dunk_interrupt_handlers[vector]).load(std::memory_order_acquire);
  const bool in_service = dunk_lapic_present && lapic_in_service(vector);
  if (handler == nullptr) {
    if (in_service) lapic_eoi();  // an interrupt no one handles is dropped
    return in_service;
  }
  handler(frame);
  if (std::atomic_ref<bool>(dunk_interrupt_manual_eoi[vector]).load(std::memory_order_relaxed)) return true;
  if (in_service) lapic_eoi();
  return true;
}
}  // namespace

extern "C" int dunk_guest_trap(TrapFrame* frame) noexcept {
  if (frame->vector >= DUNK_FIRST_INTERRUPT_VECTOR && frame->vector < 256) {
    // Ring 3 cannot execute `int $n` through dunk's gates (they have DPL 0
    // but for 3 and 4): what arrives from there is a real interrupt.
    return dispatch_interrupt(*frame) || frame->from_ring3() ? 1 : 0;
  }
  if (frame->from_ring3()) {
    // Every event of a ring-3 run belongs to the run's supervisor; the
    // handler resumes ring 3 or ends the run (dunk_user_exit, no return).
    VcpuArea* area = area_of_frame(frame);
    auto* context = reinterpret_cast<UserContext*>(area->user_context);
    UserVerdict verdict = context->on_event(*context, *frame);
    if (verdict == UserVerdict::kResume && area->interrupt_ring3 != 0) {
      // A signal came for this thread while the handler ran: back in ring 3
      // it would wait as long as ring 3 runs without an exit. The run stops
      // instead, interrupted, where the handler would have resumed it (the
      // monitor's NMI stops it the same way when ring 3 is running).
      frame->vector = DUNK_VECTOR_INTERRUPTED;
      verdict = context->on_event(*context, *frame);
    }
    if (verdict == UserVerdict::kStop) {
      context->frame = *frame;
      dunk_user_exit(context, 0);
    }
    return 1;
  }
  TrapHandler handler = dunk_trap_handlers[frame->vector & 0xff];
  if (handler == nullptr) return 0;  // removed meanwhile
  return handler(*frame) == TrapAction::kResume ? 1 : 0;
}

}  // namespace dunk::guest
