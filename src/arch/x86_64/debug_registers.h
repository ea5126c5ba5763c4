// The debug registers a debugger arms for hardware breakpoints and
// watchpoints: DR0-DR3 hold the addresses, DR7 says which are armed and for
// what (Intel SDM vol. 3B §17.2.4 "Debug Control Register (DR7)", §17.2.5
// "Breakpoint Field Recognition"; AMD APM vol. 2 §13.1.1 "Debug Registers").
// DR6's bits, which say what fired, are in registers.h.
#pragma once

#include <cstdint>
#include <optional>

#include "arch/x86_64/bits.h"

namespace dunk::arch::dr7 {

inline constexpr unsigned kSlots = 4;  // DR0-DR3

// Bit 10 reads as 1 and is written as 1.
inline constexpr std::uint64_t kFixed1 = bit(10);

// The R/W field of a slot: what makes it fire.
enum class Condition : std::uint8_t {
  kExecute = 0b00,    // an instruction fetch at the address (a fault: before it runs)
  kWrite = 0b01,      // a data write (a trap: after the instruction)
  kIo = 0b10,         // port I/O, with CR4.DE; not used here
  kReadWrite = 0b11,  // a data read or write (x86 has no read-only condition)
};

// Field positions for slot `n`: the local enable bit L0-L3 at 2n, R/W at
// 16+4n, LEN at 18+4n.
constexpr unsigned local_enable_bit(unsigned slot) noexcept { return 2 * slot; }
constexpr unsigned condition_lo(unsigned slot) noexcept { return 16 + 4 * slot; }
constexpr unsigned length_lo(unsigned slot) noexcept { return 18 + 4 * slot; }

// The LEN encoding of a watched length: 00 one byte, 01 two, 11 four, 10
// eight (64-bit mode). An instruction breakpoint must use 00.
constexpr std::optional<std::uint64_t> length_code(unsigned bytes) noexcept {
  switch (bytes) {
    case 1: return 0b00;
    case 2: return 0b01;
    case 4: return 0b11;
    case 8: return 0b10;
    default: return std::nullopt;
  }
}

constexpr unsigned length_bytes(std::uint64_t code) noexcept {
  constexpr unsigned kBytes[4] = {1, 2, 8, 4};
  return kBytes[code & 3];
}

// Arms slot `slot` for `condition` over `bytes` bytes (one of 1, 2, 4, 8;
// 1 for kExecute). The address (DR0-DR3) must be aligned to `bytes`.
constexpr std::uint64_t arm(std::uint64_t dr7, unsigned slot, Condition condition, unsigned bytes) noexcept {
  const std::uint64_t len = condition == Condition::kExecute ? 0 : length_code(bytes).value_or(0);
  dr7 = with_bit(dr7, local_enable_bit(slot), true);
  dr7 = with_field(dr7, condition_lo(slot) + 1, condition_lo(slot), static_cast<std::uint64_t>(condition));
  dr7 = with_field(dr7, length_lo(slot) + 1, length_lo(slot), len);
  return dr7 | kFixed1;
}

constexpr std::uint64_t disarm(std::uint64_t dr7, unsigned slot) noexcept {
  dr7 = with_bit(dr7, local_enable_bit(slot), false);
  dr7 = with_field(dr7, condition_lo(slot) + 1, condition_lo(slot), 0);
  return with_field(dr7, length_lo(slot) + 1, length_lo(slot), 0);
}

// Decoders, the encoders' inverses.
constexpr bool armed(std::uint64_t dr7, unsigned slot) noexcept { return get_bit(dr7, local_enable_bit(slot)); }
constexpr Condition condition(std::uint64_t dr7, unsigned slot) noexcept {
  return static_cast<Condition>(get_field(dr7, condition_lo(slot) + 1, condition_lo(slot)));
}
constexpr unsigned length(std::uint64_t dr7, unsigned slot) noexcept {
  return length_bytes(get_field(dr7, length_lo(slot) + 1, length_lo(slot)));
}
// The slots armed at all: bit n for slot n.
constexpr unsigned armed_slots(std::uint64_t dr7) noexcept {
  unsigned slots = 0;
  for (unsigned s = 0; s < kSlots; ++s) slots |= armed(dr7, s) ? 1u << s : 0u;
  return slots;
}

// One aligned piece of a watched range: what one debug register can cover.
struct WatchPiece {
  std::uint64_t address = 0;
  unsigned bytes = 0;
  constexpr bool operator==(const WatchPiece&) const noexcept = default;
};

// Splits [address, address+length) into the fewest naturally aligned pieces
// of 1, 2, 4 or 8 bytes, left to right, into `out` (room for `max`). Returns
// how many, or max+1 when the range needs more than `max` (or is empty).
constexpr unsigned split_watch_range(std::uint64_t address, std::uint64_t length, WatchPiece* out,
                                     unsigned max) noexcept {
  if (length == 0) return max + 1;
  unsigned n = 0;
  while (length > 0) {
    unsigned bytes = 8;
    while (bytes > 1 && ((address % bytes) != 0 || bytes > length)) bytes /= 2;
    if (n == max) return max + 1;
    out[n++] = WatchPiece{address, bytes};
    address += bytes;
    length -= bytes;
  }
  return n;
}

}  // namespace dunk::arch::dr7
