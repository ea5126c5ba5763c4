#include "guest/dispatch.h"

#include "guest/user_mode.h"

namespace dunk::guest {

TrapHandler dunk_trap_handlers[256] = {};

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

extern "C" int dunk_guest_trap(TrapFrame* frame) noexcept {
  if (frame->from_ring3()) {
    // Every event of a ring-3 run belongs to the run's supervisor; the
    // handler resumes ring 3 or ends the run (dunk_user_exit, no return).
    VcpuArea* area = area_of_frame(frame);
    auto* context = reinterpret_cast<UserContext*>(area->user_context);
    if (context->on_event(*context, *frame) == UserVerdict::kStop) {
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
