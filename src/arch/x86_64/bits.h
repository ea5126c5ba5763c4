// Bit-field arithmetic for the typed hardware structures of this directory.
// Each structure wraps a raw integer and names its fields with these helpers,
// so one field's layout is written once, next to the manual section it comes
// from, and every getter and setter of that field agrees with it.
#pragma once

#include <cstdint>

namespace dunk::arch {

constexpr std::uint64_t bit(unsigned n) noexcept { return std::uint64_t{1} << n; }

// Bits hi..lo inclusive, in place.
constexpr std::uint64_t bit_mask(unsigned hi, unsigned lo) noexcept {
  const unsigned width = hi - lo + 1;
  const std::uint64_t ones = width >= 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << width) - 1;
  return ones << lo;
}

constexpr bool get_bit(std::uint64_t raw, unsigned n) noexcept { return (raw & bit(n)) != 0; }

constexpr std::uint64_t with_bit(std::uint64_t raw, unsigned n, bool value) noexcept {
  return value ? (raw | bit(n)) : (raw & ~bit(n));
}

// Field hi..lo shifted down to bit 0.
constexpr std::uint64_t get_field(std::uint64_t raw, unsigned hi, unsigned lo) noexcept {
  return (raw & bit_mask(hi, lo)) >> lo;
}

// Replaces field hi..lo with `value`; bits of `value` that do not fit the
// field are dropped, so an encoder never corrupts a neighbouring field.
constexpr std::uint64_t with_field(std::uint64_t raw, unsigned hi, unsigned lo,
                                   std::uint64_t value) noexcept {
  const std::uint64_t mask = bit_mask(hi, lo);
  return (raw & ~mask) | ((value << lo) & mask);
}

// True when `value` fits an unsigned field `width` bits wide.
constexpr bool fits_bits(std::uint64_t value, unsigned width) noexcept {
  return width >= 64 || (value >> width) == 0;
}

}  // namespace dunk::arch
