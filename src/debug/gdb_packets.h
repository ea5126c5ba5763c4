// The GDB remote protocol's framing (GDB manual, "Remote Protocol",
// "Overview"): packets `$payload#cc`, `cc` the payload's byte sum modulo 256
// in two hex digits, acknowledged with `+` (or `-`: send again); a lone 0x03
// byte interrupts the running program; binary data escapes `#`, `$`, `}`
// and `*` as `}` followed by the byte XOR 0x20.
//
// No allocation anywhere: the stub runs while the program may hold its
// allocator's locks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace dunk::debug {

// Hex digits.
int hex_digit_value(char c) noexcept;  // -1 when not a hex digit
// Two lowercase digits per byte into `out` (2*size chars); returns 2*size.
std::size_t encode_hex(const void* data, std::size_t size, char* out) noexcept;
// Reads exactly 2*size digits; false when `text` is not that.
bool decode_hex(std::string_view text, void* out, std::size_t size) noexcept;
// Reads a hex number from the front of `text` (at least one digit, at most
// 16) and drops it from `text`.
bool take_hex(std::string_view& text, std::uint64_t& value) noexcept;
// Drops `prefix` from the front of `text` if it is there.
bool take_prefix(std::string_view& text, std::string_view prefix) noexcept;

// The payload's checksum.
std::uint8_t checksum(std::string_view payload) noexcept;

// Frames `payload` as `$payload#cc` into `out` (room for payload + 4);
// returns the length, 0 when it does not fit.
std::size_t frame_packet(std::string_view payload, char* out, std::size_t capacity) noexcept;

// Binary data escaped for a packet: as much of `data` as fits in `capacity`
// bytes of `out`. Returns the bytes written; `consumed` says how much of
// `data` they hold.
std::size_t escape_binary(const void* data, std::size_t size, char* out, std::size_t capacity,
                          std::size_t& consumed) noexcept;
// The inverse; returns the bytes decoded, or -1 for a dangling escape or
// more than `capacity` bytes.
long unescape_binary(std::string_view text, void* out, std::size_t capacity) noexcept;

// Splits the byte stream from gdb into events.
class PacketReader {
 public:
  static constexpr std::size_t kMaxPayload = 0x4000;  // what qSupported announces

  enum class Event {
    kNone,         // nothing complete yet
    kPacket,       // payload() holds a packet with a good checksum
    kBadChecksum,  // a packet arrived damaged (answer `-`)
    kOverflow,     // a packet larger than kMaxPayload (dropped)
    kAck,
    kNack,
    kInterrupt,    // 0x03 outside a packet
  };

  Event feed(char c) noexcept;
  std::string_view payload() const noexcept { return {buffer_, length_}; }

 private:
  enum class State { kIdle, kPayload, kChecksum1, kChecksum2 };
  State state_ = State::kIdle;
  char buffer_[kMaxPayload];
  std::size_t length_ = 0;
  bool overflow_ = false;
  int received_ = 0;  // the first checksum digit
};

}  // namespace dunk::debug
