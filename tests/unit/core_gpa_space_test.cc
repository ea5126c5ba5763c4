#include "core/gpa_space.h"

#include <gtest/gtest.h>

#include <set>
#include <vector>

namespace dunk::core {
namespace {

struct Space {
  explicit Space(unsigned phys_bits, unsigned chunk_shift = 30, std::uint32_t max_chunks = 32764)
      : config{.phys_bits = phys_bits,
               .chunk_shift = chunk_shift,
               .max_chunks = max_chunks,
               .reserved = default_reserved_gpa_ranges()},
        directory(GpaSpace::directory_entries(chunk_shift)),
        reverse(GpaSpace::reverse_entries(config)) {}

  GpaSpace make() {
    auto space = GpaSpace::create(config, {directory, reverse});
    EXPECT_TRUE(space.ok());
    return std::move(space).value();
  }

  GpaSpaceConfig config;
  std::vector<std::uint32_t> directory;
  std::vector<std::uint32_t> reverse;
};

constexpr std::uint64_t kGiB = std::uint64_t{1} << 30;

TEST(GpaSpace, ThirtyNineBitMachineHasFiveHundredElevenChunks) {
  Space s(39);
  GpaSpace space = s.make();
  // 512 GiB minus the [3 GiB, 4 GiB) hole; the HyperTransport hole is above 2^39.
  EXPECT_EQ(space.capacity(), 511u);
}

TEST(GpaSpace, ThirtySixBitMachine) {
  Space s(36);
  GpaSpace space = s.make();
  EXPECT_EQ(space.capacity(), 63u);  // 64 GiB minus the 32-bit hole
}

TEST(GpaSpace, TranslatesWithinAnAssignedChunk) {
  Space s(39);
  GpaSpace space = s.make();
  Hva heap(0x5555'5555'8000);
  EXPECT_FALSE(space.translate(heap).has_value());

  bool created = false;
  auto a = space.assign(heap, &created);
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(created);
  EXPECT_EQ(a->host, Hva(0x5555'4000'0000));
  EXPECT_EQ(a->size, kGiB);
  EXPECT_EQ(a->guest.value() % kGiB, 0u);
  EXPECT_LT(a->guest.value(), std::uint64_t{1} << 39);

  auto gpa = space.translate(heap);
  ASSERT_TRUE(gpa.has_value());
  EXPECT_EQ(gpa->value(), a->guest.value() + 0x1555'8000);
  EXPECT_EQ(space.reverse(*gpa), heap);

  // Assigning again returns the same chunk and creates nothing.
  auto again = space.assign(heap + 0x1000, &created);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(created);
  EXPECT_EQ(again->guest, a->guest);
}

TEST(GpaSpace, NeverHandsOutTheThirtyTwoBitHoleAndStaysInjective) {
  Space s(36);
  GpaSpace space = s.make();
  std::set<std::uint64_t> gpas;
  for (std::uint32_t i = 0; i < space.capacity(); ++i) {
    auto a = space.assign(Hva(0x10'0000'0000 + i * kGiB * 3));
    ASSERT_TRUE(a.ok()) << i;
    EXPECT_TRUE(gpas.insert(a->guest.value()).second);
    EXPECT_TRUE(a->guest.value() + kGiB <= 3 * kGiB || a->guest.value() >= 4 * kGiB);
    EXPECT_LT(a->guest.value() + kGiB, (std::uint64_t{1} << 36) + 1);
    EXPECT_EQ(a->slot, a->guest.value() / kGiB);
  }
  // Exhausted: one more distinct chunk fails with ENOMEM, an old one still works.
  auto more = space.assign(Hva(0x7000'0000'0000));
  ASSERT_FALSE(more.ok());
  EXPECT_EQ(more.error().err, ENOMEM);
  EXPECT_TRUE(space.assign(Hva(0x10'0000'0000)).ok());

  // Released space is reused.
  space.release(Hva(0x10'0000'0000));
  EXPECT_FALSE(space.translate(Hva(0x10'0000'0000)).has_value());
  EXPECT_TRUE(space.assign(Hva(0x7000'0000'0000)).ok());
}

TEST(GpaSpace, TopChunkStopsOnePageShortOfUserSpaceEnd) {
  Space s(39);
  GpaSpace space = s.make();
  auto a = space.assign(Hva(0x7fff'ffff'e000));
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, Hva(0x7fff'c000'0000));
  EXPECT_EQ(a->host.value() + a->size, kUserSpaceEnd);
}

TEST(GpaSpace, RejectsAddressesBeyondFourLevelPaging) {
  Space s(39);
  GpaSpace space = s.make();
  auto a = space.assign(Hva(0x8000'0000'0000));
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.error().err, EFAULT);
}

TEST(GpaSpace, SlotLimitBoundsTheChunks) {
  Space s(46, 30, 100);
  GpaSpace space = s.make();
  EXPECT_EQ(space.capacity(), 99u);  // 100 slots, chunk 3 is in the 32-bit hole
  for (std::uint32_t i = 0; i < space.capacity(); ++i) {
    auto a = space.assign(Hva(i * kGiB));
    ASSERT_TRUE(a.ok());
    EXPECT_LT(a->slot, 100u);
  }
}

TEST(GpaSpace, TwoMegabyteChunks) {
  Space s(39, 21);
  GpaSpace space = s.make();
  auto a = space.assign(Hva(0x40'0012'3456));
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, Hva(0x40'0000'0000));
  EXPECT_EQ(a->size, std::uint64_t{2} << 20);
  EXPECT_EQ(space.translate(Hva(0x40'0012'3456))->value(), a->guest.value() + 0x12'3456);
}

// Dune's layout (EnterOptions::identity_physical): low memory at its own
// address, the rest from the top of the guest-physical space down.
TEST(GpaSpace, IdentityModeKeepsLowChunksAtTheirOwnAddress) {
  Space s(39);
  s.config.identity = true;
  GpaSpace space = s.make();
  // A high chunk (a PIE program, libraries) first: it must not take a low
  // GPA that an identity chunk will want later.
  auto high = space.assign(Hva(0x5555'5555'8000));
  ASSERT_TRUE(high.ok());
  EXPECT_EQ(high->guest.value(), 511 * kGiB);
  auto pool = space.assign(Hva(8 * kGiB + 0x1234));
  ASSERT_TRUE(pool.ok());
  EXPECT_EQ(pool->guest.value(), 8 * kGiB);
  EXPECT_EQ(space.translate(Hva(8 * kGiB + 0x1234))->value(), 8 * kGiB + 0x1234);
  EXPECT_EQ(space.reverse(Gpa(8 * kGiB + 0x1234)), Hva(8 * kGiB + 0x1234));
  auto next_high = space.assign(Hva(0x7fff'1234'0000));
  ASSERT_TRUE(next_high.ok());
  EXPECT_EQ(next_high->guest.value(), 510 * kGiB);
}

TEST(GpaSpace, IdentityModeFallsBackWhereTheIdentityChunkIsUnavailable) {
  Space s(36);
  s.config.identity = true;
  GpaSpace space = s.make();
  // [3 GiB, 4 GiB) is reserved: that host chunk goes to the top.
  auto hole = space.assign(Hva(3 * kGiB));
  ASSERT_TRUE(hole.ok());
  EXPECT_EQ(hole->guest.value(), 63 * kGiB);
  // Beyond the physical width: the top too (the next free one down).
  auto beyond = space.assign(Hva(100 * kGiB));
  ASSERT_TRUE(beyond.ok());
  EXPECT_EQ(beyond->guest.value(), 62 * kGiB);
  // A low chunk whose GPA a fallback took: the next free one from the top.
  auto taken = space.assign(Hva(62 * kGiB));
  ASSERT_TRUE(taken.ok());
  EXPECT_EQ(taken->guest.value(), 61 * kGiB);
  // Still injective, to the last chunk.
  std::set<std::uint64_t> gpas{hole->guest.value(), beyond->guest.value(), taken->guest.value()};
  for (std::uint64_t c = 0; gpas.size() < space.capacity(); ++c) {
    auto a = space.assign(Hva((200 + c) * kGiB));
    ASSERT_TRUE(a.ok()) << c;
    EXPECT_TRUE(gpas.insert(a->guest.value()).second);
  }
  EXPECT_FALSE(space.assign(Hva(1 * kGiB)).ok());
}

}  // namespace
}  // namespace dunk::core
