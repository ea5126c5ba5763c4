// The GDB remote protocol's framing (debug/gdb_packets.h) and GDB's signal
// numbers (debug/gdb_signals.h).
#include "debug/gdb_packets.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "debug/gdb_signals.h"

namespace dunk::debug {
namespace {

std::string framed(std::string_view payload) {
  char out[256];
  const std::size_t n = frame_packet(payload, out, sizeof out);
  return std::string(out, n);
}

// Feeds `bytes` to a reader; the events that are not kNone.
std::vector<PacketReader::Event> feed(PacketReader& reader, std::string_view bytes) {
  std::vector<PacketReader::Event> events;
  for (char c : bytes) {
    if (const auto e = reader.feed(c); e != PacketReader::Event::kNone) events.push_back(e);
  }
  return events;
}

TEST(GdbPackets, ChecksumIsTheByteSumModulo256) {
  EXPECT_EQ(checksum(""), 0);
  EXPECT_EQ(checksum("g"), 0x67);
  EXPECT_EQ(checksum("OK"), 0x9a);  // 'O' 0x4f + 'K' 0x4b
  EXPECT_EQ(checksum(std::string(3, '\xff')), 0xfd);
}

TEST(GdbPackets, FramesAsDollarPayloadHashChecksum) {
  EXPECT_EQ(framed("OK"), "$OK#9a");
  EXPECT_EQ(framed(""), "$#00");
  EXPECT_EQ(framed("qSupported"), "$qSupported#37");
  char small[5];
  EXPECT_EQ(frame_packet("OK", small, sizeof small), 0u) << "payload + 4 bytes must fit";
}

TEST(GdbPackets, Hex) {
  const unsigned char bytes[] = {0x00, 0x7f, 0xab, 0xff};
  char text[8];
  EXPECT_EQ(encode_hex(bytes, sizeof bytes, text), 8u);
  EXPECT_EQ(std::string(text, 8), "007fabff");
  unsigned char back[4];
  ASSERT_TRUE(decode_hex("007FabfF", back, sizeof back));
  EXPECT_EQ(std::memcmp(back, bytes, sizeof bytes), 0);
  EXPECT_FALSE(decode_hex("007fab", back, sizeof back)) << "too short";
  EXPECT_FALSE(decode_hex("007fabfg", back, sizeof back)) << "not hex";

  std::string_view text_view = "1f,rest";
  std::uint64_t value;
  ASSERT_TRUE(take_hex(text_view, value));
  EXPECT_EQ(value, 0x1fu);
  EXPECT_EQ(text_view, ",rest");
  EXPECT_FALSE(take_hex(text_view, value)) << "no digit";
  std::string_view too_long = "11112222333344445";
  EXPECT_FALSE(take_hex(too_long, value)) << "more than 64 bits";
}

TEST(GdbPackets, BinaryEscapesTheFourSpecialBytes) {
  const char data[] = {'a', '#', '$', '}', '*', 'b'};
  char out[32];
  std::size_t consumed;
  const std::size_t n = escape_binary(data, sizeof data, out, sizeof out, consumed);
  EXPECT_EQ(consumed, sizeof data);
  EXPECT_EQ(std::string(out, n), std::string("a}\x03}\x04}]}\x0a" "b"));
  char back[8];
  EXPECT_EQ(unescape_binary(std::string_view(out, n), back, sizeof back), static_cast<long>(sizeof data));
  EXPECT_EQ(std::memcmp(back, data, sizeof data), 0);
  // An escape is never split: 'a' and the 2-byte escape of '#' need 3 bytes.
  EXPECT_EQ(escape_binary(data, sizeof data, out, 2, consumed), 1u);
  EXPECT_EQ(consumed, 1u);
  EXPECT_EQ(unescape_binary("ab}", back, sizeof back), -1) << "dangling escape";
  EXPECT_EQ(unescape_binary("abc", back, 2), -1) << "more than the capacity";
}

TEST(GdbPackets, ReaderSplitsTheStreamIntoEvents) {
  PacketReader reader;
  using E = PacketReader::Event;
  EXPECT_EQ(feed(reader, "+$g#67"), (std::vector<E>{E::kAck, E::kPacket}));
  EXPECT_EQ(reader.payload(), "g");
  EXPECT_EQ(feed(reader, "-\x03noise$m10,4#"), (std::vector<E>{E::kNack, E::kInterrupt}));
  EXPECT_EQ(feed(reader, "2e"), (std::vector<E>{E::kPacket}));
  EXPECT_EQ(reader.payload(), "m10,4");
  EXPECT_EQ(feed(reader, "$g#68"), (std::vector<E>{E::kBadChecksum}));
  EXPECT_EQ(feed(reader, "$g#zz"), (std::vector<E>{E::kBadChecksum}));
  EXPECT_EQ(feed(reader, "$" + std::string(PacketReader::kMaxPayload + 1, 'a') + "#00"), (std::vector<E>{E::kOverflow}));
  EXPECT_EQ(feed(reader, "$OK#9A"), (std::vector<E>{E::kPacket})) << "either case of hex digits";
}

TEST(GdbSignals, LinuxNumbersConvertToGdbsAndBack) {
  EXPECT_EQ(gdb_signal_from_host(0), 0);
  EXPECT_EQ(gdb_signal_from_host(5), 5);     // SIGTRAP
  EXPECT_EQ(gdb_signal_from_host(7), 10);    // SIGBUS
  EXPECT_EQ(gdb_signal_from_host(10), 30);   // SIGUSR1
  EXPECT_EQ(gdb_signal_from_host(11), 11);   // SIGSEGV
  EXPECT_EQ(gdb_signal_from_host(17), 20);   // SIGCHLD
  EXPECT_EQ(gdb_signal_from_host(19), 17);   // SIGSTOP
  EXPECT_EQ(gdb_signal_from_host(31), 12);   // SIGSYS
  EXPECT_EQ(gdb_signal_from_host(32), 77);
  EXPECT_EQ(gdb_signal_from_host(34), 46);   // SIGRTMIN+2 on glibc: real-time 34
  EXPECT_EQ(gdb_signal_from_host(64), 78);
  EXPECT_EQ(gdb_signal_from_host(16), kGdbSignalUnknown);  // SIGSTKFLT
  for (int sig = 1; sig <= 64; ++sig) {
    if (sig == 16) continue;
    EXPECT_EQ(host_signal_from_gdb(gdb_signal_from_host(sig)), sig) << sig;
  }
  EXPECT_EQ(host_signal_from_gdb(kGdbSignalUnknown), 0);
  EXPECT_EQ(host_signal_from_gdb(0), 0);
}

}  // namespace
}  // namespace dunk::debug
