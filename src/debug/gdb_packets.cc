#include "debug/gdb_packets.h"

namespace dunk::debug {
namespace {

constexpr char kDigits[] = "0123456789abcdef";

bool needs_escape(unsigned char c) noexcept { return c == '#' || c == '$' || c == '}' || c == '*'; }

}  // namespace

int hex_digit_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::size_t encode_hex(const void* data, std::size_t size, char* out) noexcept {
  const auto* bytes = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < size; ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 0xf];
  }
  return 2 * size;
}

bool decode_hex(std::string_view text, void* out, std::size_t size) noexcept {
  if (text.size() != 2 * size) return false;
  auto* bytes = static_cast<unsigned char*>(out);
  for (std::size_t i = 0; i < size; ++i) {
    const int hi = hex_digit_value(text[2 * i]), lo = hex_digit_value(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    bytes[i] = static_cast<unsigned char>(hi << 4 | lo);
  }
  return true;
}

bool take_hex(std::string_view& text, std::uint64_t& value) noexcept {
  std::size_t n = 0;
  value = 0;
  while (n < text.size() && hex_digit_value(text[n]) >= 0) {
    if (n == 16) return false;
    value = value << 4 | static_cast<std::uint64_t>(hex_digit_value(text[n]));
    ++n;
  }
  if (n == 0) return false;
  text.remove_prefix(n);
  return true;
}

bool take_prefix(std::string_view& text, std::string_view prefix) noexcept {
  if (!text.starts_with(prefix)) return false;
  text.remove_prefix(prefix.size());
  return true;
}

std::uint8_t checksum(std::string_view payload) noexcept {
  unsigned sum = 0;
  for (char c : payload) sum += static_cast<unsigned char>(c);
  return static_cast<std::uint8_t>(sum);
}

std::size_t frame_packet(std::string_view payload, char* out, std::size_t capacity) noexcept {
  if (payload.size() + 4 > capacity) return 0;
  out[0] = '$';
  for (std::size_t i = 0; i < payload.size(); ++i) out[1 + i] = payload[i];
  const std::uint8_t sum = checksum(payload);
  out[1 + payload.size()] = '#';
  out[2 + payload.size()] = kDigits[sum >> 4];
  out[3 + payload.size()] = kDigits[sum & 0xf];
  return payload.size() + 4;
}

std::size_t escape_binary(const void* data, std::size_t size, char* out, std::size_t capacity,
                          std::size_t& consumed) noexcept {
  const auto* bytes = static_cast<const unsigned char*>(data);
  std::size_t written = 0;
  consumed = 0;
  while (consumed < size) {
    const unsigned char c = bytes[consumed];
    const std::size_t need = needs_escape(c) ? 2 : 1;
    if (written + need > capacity) break;
    if (need == 2) {
      out[written++] = '}';
      out[written++] = static_cast<char>(c ^ 0x20);
    } else {
      out[written++] = static_cast<char>(c);
    }
    ++consumed;
  }
  return written;
}

long unescape_binary(std::string_view text, void* out, std::size_t capacity) noexcept {
  auto* bytes = static_cast<unsigned char*>(out);
  std::size_t n = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == '}') {
      if (++i == text.size()) return -1;
      c = static_cast<unsigned char>(text[i]) ^ 0x20;
    }
    if (n == capacity) return -1;
    bytes[n++] = c;
  }
  return static_cast<long>(n);
}

PacketReader::Event PacketReader::feed(char c) noexcept {
  switch (state_) {
    case State::kIdle:
      if (c == '$') {
        state_ = State::kPayload;
        length_ = 0;
        overflow_ = false;
        return Event::kNone;
      }
      if (c == '+') return Event::kAck;
      if (c == '-') return Event::kNack;
      if (c == '\x03') return Event::kInterrupt;
      return Event::kNone;  // noise between packets
    case State::kPayload:
      if (c == '#') {
        state_ = State::kChecksum1;
      } else if (length_ < kMaxPayload) {
        buffer_[length_++] = c;
      } else {
        overflow_ = true;
      }
      return Event::kNone;
    case State::kChecksum1:
      received_ = hex_digit_value(c);
      state_ = State::kChecksum2;
      return Event::kNone;
    case State::kChecksum2: {
      state_ = State::kIdle;
      const int lo = hex_digit_value(c);
      if (overflow_) return Event::kOverflow;
      if (received_ < 0 || lo < 0 || (received_ << 4 | lo) != checksum(payload())) return Event::kBadChecksum;
      return Event::kPacket;
    }
  }
  return Event::kNone;
}

}  // namespace dunk::debug
