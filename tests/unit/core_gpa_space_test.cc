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
        reverse(GpaSpace::reverse_entries(config)),
        marks(reverse.size()) {}

  GpaSpace make() {
    auto space = GpaSpace::create(config, {directory, reverse, marks});
    EXPECT_TRUE(space.ok());
    return std::move(space).value();
  }

  GpaSpaceConfig config;
  std::vector<std::uint32_t> directory;
  std::vector<std::uint32_t> reverse;
  std::vector<std::uint8_t> marks;
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

const auto never_accessed = [](Hva) { return false; };

// Fills every GPA chunk, one host chunk each, 3 GiB apart.
std::vector<Hva> fill(GpaSpace& space) {
  std::vector<Hva> hosts;
  for (std::uint32_t i = 0; i < space.capacity(); ++i) {
    hosts.push_back(Hva(0x10'0000'0000 + i * kGiB * 3));
    EXPECT_TRUE(space.assign(hosts.back()).ok()) << i;
  }
  EXPECT_TRUE(space.full());
  return hosts;
}

TEST(GpaSpace, VictimsComeInClockOrderOnceTheirMarksAreCleared) {
  Space s(36);
  GpaSpace space = s.make();
  std::vector<Hva> hosts = fill(space);
  // Every chunk was just assigned: the first turn only clears the marks, the
  // second takes the first chunk the hand meets.
  auto victim = space.choose_victim(never_accessed);
  ASSERT_TRUE(victim.has_value());
  EXPECT_EQ(victim->host, hosts[0]);
  EXPECT_EQ(victim->guest, Gpa(0));
  space.release(victim->host);
  EXPECT_FALSE(space.full());
  auto a = space.assign(Hva(0x7000'0000'0000));
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->guest, Gpa(0)) << "the freed chunk is reused";
  // The hand moved on: the next victim is the next chunk.
  victim = space.choose_victim(never_accessed);
  ASSERT_TRUE(victim.has_value());
  EXPECT_EQ(victim->host, hosts[1]);
}

TEST(GpaSpace, ChunksAccessedSinceTheHandPassedAreSkipped) {
  Space s(36);
  GpaSpace space = s.make();
  std::vector<Hva> hosts = fill(space);
  // Clears every mark, takes the first chunk; the hand stays after it.
  ASSERT_EQ(space.choose_victim(never_accessed)->host, hosts[0]);
  // The next ten are in use: the victim is the one after them. The test
  // clears what it reports, as the hardware's accessed bits are cleared.
  std::set<std::uint64_t> busy;
  for (int i = 1; i <= 10; ++i) busy.insert(hosts[i].value());
  std::vector<Hva> asked;
  auto victim = space.choose_victim([&](Hva host) {
    asked.push_back(host);
    return busy.erase(host.value()) != 0;
  });
  ASSERT_TRUE(victim.has_value());
  EXPECT_EQ(victim->host, hosts[11]);
  EXPECT_EQ(asked.size(), 11u);
}

TEST(GpaSpace, PinnedChunksAreNeverVictims) {
  Space s(36);
  GpaSpace space = s.make();
  std::vector<Hva> hosts = fill(space);
  for (std::size_t i = 0; i < hosts.size(); ++i) {
    if (i != 40) space.pin(hosts[i]);
  }
  EXPECT_TRUE(space.pinned(hosts[0]));
  EXPECT_FALSE(space.pinned(hosts[40]));
  for (int round = 0; round < 3; ++round) {
    auto victim = space.choose_victim([](Hva) { return true; });  // even a busy chunk, when it is the only one
    ASSERT_TRUE(victim.has_value());
    EXPECT_EQ(victim->host, hosts[40]);
  }
  space.pin(hosts[40]);
  EXPECT_FALSE(space.choose_victim(never_accessed).has_value());
  // A released chunk forgets its pin: the next assignment there is unpinned.
  space.release(hosts[3]);
  ASSERT_TRUE(space.assign(Hva(0x7000'0000'0000)).ok());
  EXPECT_FALSE(space.pinned(Hva(0x7000'0000'0000)));
}

// A working set of any shape: the address space is all of 47 bits, only the
// chunks in use at once must fit. Simulates a program on a 36-bit CPU that
// touches host chunks in a pattern, with accessed bits set by every touch.
struct Simulation {
  explicit Simulation(GpaSpace& s) : space(s) {}

  // One access; returns whether it needed a chunk taken from another.
  bool touch(Hva address) {
    accessed.insert(space.chunk_of(address).value());
    if (space.translate(address)) return false;
    bool reclaimed = false;
    if (space.full()) {
      auto victim = space.choose_victim([&](Hva host) { return accessed.erase(host.value()) != 0; });
      EXPECT_TRUE(victim.has_value());
      space.release(victim->host);
      ++reclaims;
      reclaimed = true;
    }
    auto a = space.assign(address);
    EXPECT_TRUE(a.ok());
    EXPECT_LT(a->guest.value(), std::uint64_t{1} << 36);
    EXPECT_FALSE(a->guest.value() >= 3 * kGiB && a->guest.value() < 4 * kGiB);
    return reclaimed;
  }
  // Every assigned chunk translates both ways, and no two share a GPA chunk.
  void check_injective(const std::vector<Hva>& hosts) {
    std::set<std::uint64_t> gpas;
    for (Hva h : hosts) {
      auto g = space.translate(h);
      if (!g) continue;
      EXPECT_TRUE(gpas.insert(g->value() >> 30).second);
      EXPECT_EQ(space.reverse(*g), h);
    }
    EXPECT_EQ(gpas.size(), space.assigned());
  }

  GpaSpace& space;
  std::set<std::uint64_t> accessed;
  unsigned reclaims = 0;
};

TEST(GpaSpace, SparseAccessesOverTheWholeAddressSpaceFitAThirtySixBitCpu) {
  Space s(36);
  GpaSpace space = s.make();
  Simulation sim(space);
  // 1024 pages, one every 2 GiB of a 2 TiB reservation, and 512 more spread
  // over all of the 47-bit space: far more chunks than the 63 there are.
  std::vector<Hva> hosts;
  for (std::uint64_t i = 0; i < 1024; ++i) hosts.push_back(Hva(0x1000'0000'0000 + i * 2 * kGiB + 0x1234));
  for (std::uint64_t i = 0; i < 512; ++i) hosts.push_back(Hva(i * (kUserSpaceEnd / 512) + 0x8000));
  for (int pass = 0; pass < 2; ++pass) {
    for (Hva h : hosts) sim.touch(h);
  }
  sim.check_injective(hosts);
  EXPECT_EQ(space.assigned(), space.capacity());
  EXPECT_GT(sim.reclaims, 2 * hosts.size() - 2 * space.capacity());
}

TEST(GpaSpace, AWorkingSetThatFitsIsNeverReclaimedOnceWarm) {
  Space s(36);
  GpaSpace space = s.make();
  Simulation sim(space);
  // Ten hot chunks used all the time, among a stream of cold ones each used
  // once: once the clock has gone round (while the space first fills up,
  // every chunk looks used and the hand takes whichever it meets), the
  // cold ones evict each other, never a hot one.
  std::vector<Hva> hot;
  for (std::uint64_t i = 0; i < 10; ++i) hot.push_back(Hva(0x7f00'0000'0000 + i * 5 * kGiB));
  for (Hva h : hot) sim.touch(h);
  const std::uint64_t warm = 2 * space.capacity();
  unsigned hot_taken = 0;
  for (std::uint64_t cold = 0; cold < 1000; ++cold) {
    for (Hva h : hot) {
      const bool refaulted = sim.touch(h);
      if (cold >= warm) {
        EXPECT_FALSE(refaulted) << "hot chunk " << std::hex << h.value() << " was taken";
      }
      hot_taken += refaulted ? 1 : 0;
    }
    sim.touch(Hva(0x100'0000'0000 + cold * 7 * kGiB));
  }
  EXPECT_LE(hot_taken, 10u);
  EXPECT_GT(sim.reclaims, 900u);
  std::vector<Hva> all = hot;
  for (std::uint64_t cold = 0; cold < 1000; ++cold) all.push_back(Hva(0x100'0000'0000 + cold * 7 * kGiB));
  sim.check_injective(all);
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
// A chunk at its own address in Dune's layout is pinned: code may have taken
// its guest-physical address to be its host address, so reclaim must never
// move it. The chunks given from the top down may still be reclaimed.
TEST(GpaSpace, IdentityChunksAreNeverVictims) {
  Space s(36);
  s.config.identity = true;
  GpaSpace space = s.make();
  ASSERT_TRUE(space.assign(Hva(5 * kGiB)).ok());
  ASSERT_TRUE(space.assign(Hva(7 * kGiB)).ok());
  EXPECT_TRUE(space.pinned(Hva(5 * kGiB)));
  EXPECT_TRUE(space.pinned(Hva(7 * kGiB)));
  // The rest of the space from the top down, none at its own address.
  std::vector<Hva> others;
  for (std::uint64_t c = 0; !space.full(); ++c) {
    others.push_back(Hva((100 + c) * kGiB));
    ASSERT_TRUE(space.assign(others.back()).ok()) << c;
    EXPECT_FALSE(space.pinned(others.back()));
  }
  std::set<std::uint64_t> victims;
  for (std::size_t i = 0; i < 2 * others.size(); ++i) {
    auto victim = space.choose_victim(never_accessed);
    ASSERT_TRUE(victim.has_value());
    EXPECT_NE(victim->host, Hva(5 * kGiB));
    EXPECT_NE(victim->host, Hva(7 * kGiB));
    victims.insert(victim->host.value());
  }
  EXPECT_EQ(victims.size(), others.size()) << "every other chunk comes round";
  EXPECT_EQ(space.translate(Hva(5 * kGiB + 0x10))->value(), 5 * kGiB + 0x10);
}

}  // namespace dunk::core
