// The supervisor's copies to and from the program's memory, without KVM (no
// fault is taken here): every alignment of either side and every length
// around the word size copies exactly the bytes asked for, and nothing
// beside them. The copies go word by word on the program's side (so that a
// pointer another thread stores meanwhile is read whole, as the kernel's
// get_user reads it); the escape suite's toctou_iovec tries that part.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <vector>

#include "sandbox/user_access.h"

namespace dunk::sandbox {
namespace {

constexpr std::size_t kArena = 256;
constexpr std::byte kUntouched{0xa5};

std::vector<std::byte> pattern(std::size_t size) {
  std::vector<std::byte> bytes(size);
  for (std::size_t i = 0; i < size; ++i) bytes[i] = static_cast<std::byte>(i * 7 + 1);
  return bytes;
}

// Copies `length` bytes from offset `from_at` of a source arena to offset
// `to_at` of a destination arena with `copy`, and checks the destination:
// the source's bytes in the range, kUntouched everywhere else.
template <class Copy>
void check_copy(Copy copy, std::size_t from_at, std::size_t to_at, std::size_t length) {
  alignas(64) static std::array<std::byte, kArena> source, destination;
  const std::vector<std::byte> bytes = pattern(kArena);
  std::memcpy(source.data(), bytes.data(), kArena);
  destination.fill(kUntouched);
  ASSERT_TRUE(copy(destination.data() + to_at, source.data() + from_at, length));
  for (std::size_t i = 0; i < kArena; ++i) {
    const bool inside = i >= to_at && i < to_at + length;
    const std::byte expected = inside ? source[from_at + (i - to_at)] : kUntouched;
    ASSERT_EQ(destination[i], expected) << "byte " << i << " of a copy of " << length << " bytes from offset "
                                        << from_at << " to offset " << to_at;
  }
}

bool from_program(void* to, const void* from, std::size_t size) {
  return copy_from_program(to, reinterpret_cast<std::uint64_t>(from), size);
}
bool to_program(void* to, const void* from, std::size_t size) {
  return copy_to_program(reinterpret_cast<std::uint64_t>(to), from, size);
}

TEST(SandboxUserAccess, CopiesFromTheProgramAtEveryAlignmentAndLength) {
  for (std::size_t from_at = 0; from_at < 16; ++from_at) {
    for (std::size_t to_at = 0; to_at < 16; ++to_at) {
      for (std::size_t length = 0; length <= 40; ++length) check_copy(from_program, from_at, to_at, length);
    }
  }
}

TEST(SandboxUserAccess, CopiesIntoTheProgramAtEveryAlignmentAndLength) {
  for (std::size_t from_at = 0; from_at < 16; ++from_at) {
    for (std::size_t to_at = 0; to_at < 16; ++to_at) {
      for (std::size_t length = 0; length <= 40; ++length) check_copy(to_program, from_at, to_at, length);
    }
  }
}

TEST(SandboxUserAccess, LongCopiesAreExactBothWays) {
  constexpr std::size_t kLong = (std::size_t{1} << 20) + 13;
  const std::vector<std::byte> bytes = pattern(kLong + 8);
  for (std::size_t skew : {0u, 3u, 8u}) {
    std::vector<std::byte> out(kLong + 16, kUntouched), back(kLong + 16, kUntouched);
    ASSERT_TRUE(copy_from_program(out.data() + 1, reinterpret_cast<std::uint64_t>(bytes.data() + skew), kLong));
    EXPECT_EQ(std::memcmp(out.data() + 1, bytes.data() + skew, kLong), 0) << "skew " << skew;
    EXPECT_EQ(out[0], kUntouched);
    EXPECT_EQ(out[kLong + 1], kUntouched);
    ASSERT_TRUE(copy_to_program(reinterpret_cast<std::uint64_t>(back.data() + skew), out.data() + 1, kLong));
    EXPECT_EQ(std::memcmp(back.data() + skew, bytes.data() + skew, kLong), 0) << "skew " << skew;
    EXPECT_EQ(back[kLong + skew], kUntouched);
  }
}

}  // namespace
}  // namespace dunk::sandbox
