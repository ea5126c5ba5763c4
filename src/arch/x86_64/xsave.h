// The XSAVE area: the layout of the image XSAVE writes and XRSTOR and
// KVM_SET_XSAVE read (Intel SDM vol. 1 §13.4 "XSAVE Area": the 512-byte
// legacy region laid out as FXSAVE's, Table 10-2, then the 64-byte XSAVE
// header, then the extended components).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "arch/x86_64/registers.h"

namespace dunk::arch::xsave {

inline constexpr std::size_t kFcwOffset = 0;          // x87 control word, 16 bits
inline constexpr std::size_t kMxcsrOffset = 24;       // MXCSR, 32 bits
inline constexpr std::size_t kLegacySize = 512;
inline constexpr std::size_t kXstateBvOffset = 512;   // XSAVE header: which components the image holds
inline constexpr std::size_t kXcompBvOffset = 520;    // bit 63: compacted format (XSAVEC/XSAVES)
inline constexpr std::size_t kHeaderSize = 64;
inline constexpr std::size_t kMinimumSize = kLegacySize + kHeaderSize;
inline constexpr std::size_t kAlignment = 64;

// The FPU's state after FNINIT and reset (SDM vol. 1 §8.1.5 for FCW, §10.2.3
// for MXCSR).
inline constexpr std::uint16_t kInitFcw = 0x37f;
inline constexpr std::uint32_t kInitMxcsr = 0x1f80;

// A view of an XSAVE image in memory (not owned; at least kMinimumSize bytes).
class Image {
 public:
  explicit Image(std::byte* image) noexcept : image_(image) {}

  std::uint64_t xstate_bv() const noexcept { return load<std::uint64_t>(kXstateBvOffset); }
  std::uint64_t xcomp_bv() const noexcept { return load<std::uint64_t>(kXcompBvOffset); }
  std::uint32_t mxcsr() const noexcept { return load<std::uint32_t>(kMxcsrOffset); }
  std::uint16_t fcw() const noexcept { return load<std::uint16_t>(kFcwOffset); }

  // The standard (non-compacted) form KVM_SET_XSAVE expects, holding only
  // the components `xcr0` enables: XSAVE leaves parts of the header alone,
  // and an image from a signal frame says whatever the program wrote.
  void normalize_for(std::uint64_t xcr0) noexcept {
    store<std::uint64_t>(kXstateBvOffset, xstate_bv() & xcr0);
    store<std::uint64_t>(kXcompBvOffset, 0);
  }

  // The FPU's initial state (what a signal handler starts with): FCW and
  // MXCSR at their reset values, every register zero, x87 and SSE marked
  // as loaded from the image. `size` is the whole image's.
  void fill_initial(std::size_t size) noexcept {
    std::memset(image_, 0, size);
    store<std::uint16_t>(kFcwOffset, kInitFcw);
    store<std::uint32_t>(kMxcsrOffset, kInitMxcsr);
    store<std::uint64_t>(kXstateBvOffset, xfeature::kX87 | xfeature::kSSE);
  }

 private:
  template <class T>
  T load(std::size_t offset) const noexcept {
    T value;
    std::memcpy(&value, image_ + offset, sizeof value);
    return value;
  }
  template <class T>
  void store(std::size_t offset, T value) noexcept {
    std::memcpy(image_ + offset, &value, sizeof value);
  }

  std::byte* image_;
};

}  // namespace dunk::arch::xsave
