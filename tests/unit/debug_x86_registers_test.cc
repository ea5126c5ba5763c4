// The x86-64 registers as the GDB stub shows them (debug/x86_registers.h):
// sizes, the x87 tag word both ways, components in their initial state.
#include "debug/x86_registers.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace dunk::debug {
namespace {

std::uint64_t xstate_bv(const std::byte* image) {
  std::uint64_t bv;
  std::memcpy(&bv, image + kXsaveHeaderOffset, sizeof bv);
  return bv;
}

TEST(X86Registers, NumbersNamesAndSizesAreGdbs) {
  const RegisterLayout plain(false), avx(true);
  EXPECT_EQ(plain.count(), 60u);
  EXPECT_EQ(avx.count(), 76u);
  EXPECT_STREQ(plain.name(reg::kRip), "rip");
  EXPECT_STREQ(plain.name(reg::kEflags), "eflags");
  EXPECT_STREQ(plain.name(reg::kOrigRax), "orig_rax");
  EXPECT_STREQ(avx.name(reg::kYmm0h + 15), "ymm15h");
  EXPECT_STREQ(plain.name(reg::kYmm0h), "") << "no AVX registers without AVX";
  EXPECT_EQ(plain.size(reg::kSt0), 10u);
  EXPECT_EQ(plain.size(reg::kXmm0), 16u);
  EXPECT_EQ(plain.size(reg::kMxcsr), 4u);
  EXPECT_EQ(plain.size(reg::kGsBase), 8u);
  EXPECT_EQ(plain.total_size(), 560u);
  EXPECT_EQ(avx.total_size(), 816u);
  char xml[0x4000];
  EXPECT_GT(avx.target_xml(xml, sizeof xml), 0u);
  char tiny[64];
  EXPECT_EQ(avx.target_xml(tiny, sizeof tiny), 0u) << "a description that does not fit is none";
}

TEST(X86Registers, X87TagWordBothWays) {
  // ST0 (physical register 7 with TOP 7) holds 1.0; ST1 (physical 0) holds
  // zero; the rest are empty.
  std::byte st[8 * 16] = {};
  const std::uint64_t one_mantissa = 0x8000000000000000;
  const std::uint16_t one_exponent = 0x3fff;
  std::memcpy(st, &one_mantissa, 8);
  std::memcpy(st + 8, &one_exponent, 2);
  const std::uint16_t status = 7 << 11;  // TOP = 7
  const std::uint8_t abridged = 0x81;    // physical 7 and 0 in use
  const std::uint16_t full = full_x87_tag(abridged, status, st);
  // Physical 0: zero (1); 1-6: empty (3); 7: valid (0).
  EXPECT_EQ(full, 0b00'11'11'11'11'11'11'01);
  EXPECT_EQ(abridged_x87_tag(full), abridged);
  EXPECT_EQ(abridged_x87_tag(0xffff), 0);
  // An infinity is special (2).
  const std::uint16_t inf_exponent = 0x7fff;
  std::memcpy(st + 8, &inf_exponent, 2);
  EXPECT_EQ(full_x87_tag(0x80, status, st) >> 14, 2u);
}

TEST(X86Registers, ReadingAComponentInItsInitialStateAndWritingIt) {
  std::vector<std::byte> image(kXsaveBytes + 64, std::byte{0x55});  // garbage where no component is held
  const std::uint64_t none = 0;
  std::memcpy(image.data() + kXsaveHeaderOffset, &none, sizeof none);
  const std::uint32_t mxcsr = 0x1f80;
  std::memcpy(image.data() + 24, &mxcsr, sizeof mxcsr);
  X86State state;
  state.xsave = image.data();
  std::byte out[16];
  read_register(state, reg::kXmm0 + 3, out);
  EXPECT_EQ(std::vector<std::byte>(out, out + 16), std::vector<std::byte>(16)) << "SSE in its initial state";
  read_register(state, reg::kFctrl, out);
  std::uint32_t fcw;
  std::memcpy(&fcw, out, 4);
  EXPECT_EQ(fcw, 0x37fu);
  read_register(state, reg::kFtag, out);
  std::uint32_t ftag;
  std::memcpy(&ftag, out, 4);
  EXPECT_EQ(ftag, 0xffffu);

  std::byte value[16];
  for (int i = 0; i < 16; ++i) value[i] = std::byte(i + 1);
  write_register(state, reg::kXmm0 + 3, value);
  EXPECT_EQ(xstate_bv(image.data()), 2u) << "SSE now held";
  read_register(state, reg::kXmm0 + 3, out);
  EXPECT_EQ(std::memcmp(out, value, 16), 0);
  read_register(state, reg::kXmm0 + 2, out);
  EXPECT_EQ(std::vector<std::byte>(out, out + 16), std::vector<std::byte>(16)) << "the others initial, not garbage";

  write_register(state, reg::kYmm0h, value);
  EXPECT_EQ(xstate_bv(image.data()), 6u) << "AVX now held";
  read_register(state, reg::kYmm0h + 1, out);
  EXPECT_EQ(std::vector<std::byte>(out, out + 16), std::vector<std::byte>(16));

  const std::uint32_t new_fcw = 0x27f;
  write_register(state, reg::kFctrl, reinterpret_cast<const std::byte*>(&new_fcw));
  EXPECT_EQ(xstate_bv(image.data()), 7u) << "x87 now held";
  read_register(state, reg::kSt0 + 4, out);
  EXPECT_EQ(std::vector<std::byte>(out, out + 10), std::vector<std::byte>(10)) << "ST4 initial";
  read_register(state, reg::kFctrl, out);
  std::memcpy(&fcw, out, 4);
  EXPECT_EQ(fcw, 0x27fu);

  // Writing eflags keeps RFLAGS' upper half (reserved, zero) as it was.
  state.rflags = 0x202;
  const std::uint32_t flags = 0x246;
  write_register(state, reg::kEflags, reinterpret_cast<const std::byte*>(&flags));
  EXPECT_EQ(state.rflags, 0x246u);
}

}  // namespace
}  // namespace dunk::debug
