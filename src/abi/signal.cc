#include "abi/signal.h"

namespace dunk::abi {
namespace {

constexpr long kEperm = 1, kEinval = 22, kEnomem = 12;

// The modes sigaltstack accepts (the SS_AUTODISARM flag aside).
constexpr bool valid_mode(std::int32_t mode) noexcept { return mode == kSsDisable || mode == kSsOnstack || mode == 0; }

}  // namespace

long change_signal_stack(SignalStack& alt, const SignalStack* want, std::uint64_t sp) noexcept {
  if (want == nullptr) return 0;
  const std::int32_t mode = want->flags & ~kSsAutodisarm;
  if (on_signal_stack(alt, sp)) return -kEperm;
  if (!valid_mode(mode)) return -kEinval;
  if (mode == kSsDisable) {
    alt = SignalStack{0, want->flags, 0, 0};
    return 0;
  }
  if (want->size < kMinSigStackSize) return -kEnomem;
  alt = SignalStack{want->sp, want->flags, 0, want->size};
  return 0;
}

bool restorable_signal_stack(const SignalStack& current, const SignalStack& want, std::uint64_t sp) noexcept {
  if (want.sp == current.sp && want.size == current.size && want.flags == current.flags) return true;
  const std::int32_t mode = want.flags & ~kSsAutodisarm;
  if (on_signal_stack(current, sp) || !valid_mode(mode)) return false;
  return mode == kSsDisable || want.size >= kMinSigStackSize;
}

SigframePlacement place_sigframe(std::uint64_t sp, std::uint64_t action_flags, const SignalStack& alt,
                                 std::size_t xsave_size) noexcept {
  SigframePlacement p;
  const bool nested_on_altstack = on_signal_stack(alt, sp);
  std::uint64_t top = sp - kRedZone;
  if ((action_flags & kSaOnstack) != 0 && signal_stack_state(alt, top) == 0) {
    top = alt.sp + alt.size;
    p.entering_altstack = true;
  }
  p.fpstate = (top - (xsave_size + sizeof kFpXstateMagic2)) & ~std::uint64_t{63};
  p.frame = ((p.fpstate - sizeof(RtSigframe)) & ~std::uint64_t{15}) - 8;
  if (nested_on_altstack || p.entering_altstack) p.fits = p.frame > alt.sp && p.frame - alt.sp <= alt.size;
  return p;
}

}  // namespace dunk::abi
