// The x86-64 registers as the stub shows them to GDB: its target description
// (GDB manual, "Target Descriptions", "i386 Features": the features
// org.gnu.gdb.i386.core, .sse, .linux, .segments and, when the guest has
// AVX, .avx), each register's number and size, and where its value lives in
// the guest's state. Pure: no KVM, unit-tested (tests/unit/debug_*_test.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace dunk::debug {

// The standard-format XSAVE image bytes the registers below come from: the
// legacy FXSAVE region (x87, MXCSR, XMM), the XSAVE header, and the AVX
// component (Intel SDM vol. 1 §13.4; AVX at offset 576, CPUID leaf 0DH
// sub-leaf 2).
inline constexpr std::size_t kXsaveLegacyX87End = 160;  // FCW..FOP, ST0-ST7
inline constexpr std::size_t kXsaveXmmOffset = 160;
inline constexpr std::size_t kXsaveHeaderOffset = 512;  // XSTATE_BV
inline constexpr std::size_t kXsaveAvxOffset = 576;
inline constexpr std::size_t kXsaveBytes = kXsaveAvxOffset + 16 * 16;

// The program's registers in the forms dunk keeps them.
struct X86State {
  std::uint64_t gpr[16] = {};     // rax rbx rcx rdx rsi rdi rbp rsp r8-r15 (GDB's order)
  std::uint64_t rip = 0, rflags = 0;
  std::uint32_t segment[6] = {};  // cs ss ds es fs gs
  std::uint64_t orig_rax = ~std::uint64_t{0};
  std::uint64_t fs_base = 0, gs_base = 0;
  std::byte* xsave = nullptr;     // at least kXsaveBytes of an XSAVE image
};

// GDB's numbers for the registers of the core feature that matter to the stub.
namespace reg {
inline constexpr unsigned kRax = 0, kRbp = 6, kRsp = 7, kRip = 16, kEflags = 17;
inline constexpr unsigned kSt0 = 24, kFctrl = 32, kFstat = 33, kFtag = 34, kFiseg = 35, kFioff = 36, kFoseg = 37,
                          kFooff = 38, kFop = 39;
inline constexpr unsigned kXmm0 = 40, kMxcsr = 56, kOrigRax = 57, kFsBase = 58, kGsBase = 59, kYmm0h = 60;
}  // namespace reg

class RegisterLayout {
 public:
  // With the AVX feature (ymm0h-ymm15h) or without.
  explicit RegisterLayout(bool avx) noexcept : avx_(avx) {}

  unsigned count() const noexcept { return avx_ ? reg::kYmm0h + 16 : reg::kYmm0h; }
  const char* name(unsigned regno) const noexcept;
  unsigned size(unsigned regno) const noexcept;  // bytes on the wire
  std::size_t total_size() const noexcept;       // all of them: the `g` packet
  bool avx() const noexcept { return avx_; }

  // The target description, an XML document, into `out`; its length, or 0
  // if it does not fit.
  std::size_t target_xml(char* out, std::size_t capacity) const noexcept;

 private:
  bool avx_;
};

// One register's value, size(regno) bytes in the target's (little-endian)
// order, from or into `state`. x87 and SSE and AVX registers of a component
// the image holds in its initial state read as that state; writing one
// makes the image hold the component.
void read_register(const X86State& state, unsigned regno, std::byte* out) noexcept;
void write_register(X86State& state, unsigned regno, const std::byte* in) noexcept;

// The x87 tag word GDB shows (two bits per physical register: 0 valid,
// 1 zero, 2 special, 3 empty) from FXSAVE's abridged one (one bit per
// register: not empty) and the registers; and back.
std::uint16_t full_x87_tag(std::uint8_t abridged, std::uint16_t status, const std::byte* st0) noexcept;
std::uint8_t abridged_x87_tag(std::uint16_t full) noexcept;

}  // namespace dunk::debug
