// The address-space mirror on the host, with fake memory slots and a made-up
// guest-physical width: mappings need no GPA space, the first touch of a
// chunk assigns it, and a full GPA space is reclaimed so that any number of
// chunks works on a 36-bit CPU.
#include "core/mirror.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstdint>
#include <map>
#include <set>
#include <vector>

namespace dunk::core {
namespace {

constexpr std::uint64_t kGiB = std::uint64_t{1} << 30;
constexpr std::uint64_t kPage = 4096;

// KVM_SET_USER_MEMORY_REGION's rules, as far as the mirror meets them: a
// slot's GPA range may not overlap another's, and an existing slot may not
// change its host range (it must be deleted first).
class FakeSlots final : public MemorySlots {
 public:
  struct Slot {
    Gpa gpa;
    std::uint64_t size;
    Hva hva;
  };

  Status set_memory_region(std::uint32_t slot, Gpa gpa, std::uint64_t size, Hva hva) noexcept override {
    ++calls;
    if (size == 0) {
      if (slots.erase(slot) == 0) return Error{"fake: deleting a slot that does not exist", EINVAL};
      ++deletions;
      return {};
    }
    if (auto it = slots.find(slot); it != slots.end()) {
      if (it->second.hva != hva) return Error{"fake: changing a slot's host range", EINVAL};
    }
    for (const auto& [id, s] : slots) {
      if (id != slot && gpa.value() < s.gpa.value() + s.size && s.gpa.value() < gpa.value() + size) {
        return Error{"fake: overlapping slots", EEXIST};
      }
    }
    slots[slot] = Slot{gpa, size, hva};
    return {};
  }

  // The host address KVM would reach for `gpa`, if a slot covers it.
  std::optional<Hva> host_of(Gpa gpa) const {
    for (const auto& [id, s] : slots) {
      if (gpa.value() >= s.gpa.value() && gpa.value() < s.gpa.value() + s.size) {
        return s.hva + (gpa.value() - s.gpa.value());
      }
    }
    return std::nullopt;
  }

  std::map<std::uint32_t, Slot> slots;
  int calls = 0;
  int deletions = 0;
};

constexpr int kRw = PROT_READ | PROT_WRITE;
// A sparse range the tests mirror (no host memory is needed until the host
// is asked: the mirror knows these pages from set()).
constexpr std::uint64_t kBase = 0x2000'0000'0000;

class MirrorTest : public ::testing::Test {
 protected:
  void init(unsigned phys_bits) {
    ASSERT_TRUE(arena.reserve());
    const MirrorConfig config{
        .gpa = {.phys_bits = phys_bits, .chunk_shift = 30, .reserved = default_reserved_gpa_ranges()},
        .paging = {.gib_pages = true, .nx = true, .phys_bits = phys_bits},
    };
    Status s = mirror.init(slots, arena, config);
    ASSERT_TRUE(s) << s.error().what;
    pinned = mirror.chunks_assigned();
  }

  // Every present leaf of the process's tree reaches, through the slots,
  // exactly the host address it mirrors; returns how many there are.
  std::size_t check_translations(Hva start, std::uint64_t size) {
    std::size_t n = 0;
    mirror.page_table().for_each_leaf(identity_gva(start), size, [&](Gva va, arch::PageSize s, arch::PageTableEntry& e) {
      const auto host = slots.host_of(arch::load_entry(&e).page_address(s));
      EXPECT_TRUE(host.has_value()) << std::hex << va.value() << " maps a GPA no slot covers";
      if (host) {
        EXPECT_EQ(host->value(), va.value()) << "a leaf reaches another chunk's memory";
      }
      ++n;
    });
    return n;
  }

  Arena arena;
  FakeSlots slots;
  Mirror mirror;
  std::uint32_t pinned = 0;
};

TEST_F(MirrorTest, ThirtySixBitsLeaveRoomAfterTheArenaAndDunksImage) {
  init(36);
  EXPECT_EQ(mirror.chunk_capacity(), 63u);
  // The arena and the chunks of this binary's image (one or two).
  EXPECT_GE(pinned, 2u);
  EXPECT_LE(pinned, 4u);
  EXPECT_TRUE(mirror.resident(arena.base()));
  EXPECT_EQ(slots.slots.size(), pinned);
}

TEST_F(MirrorTest, MappingsNeedNoGuestPhysicalSpace) {
  init(36);
  // 1024 pages, one every 2 GiB, and a 16 TiB range: far more chunks than
  // a 36-bit space has. Nothing is assigned, nothing fails.
  for (std::uint64_t i = 0; i < 1024; ++i) ASSERT_TRUE(mirror.set(Hva(kBase + i * 2 * kGiB), Hva(kBase + i * 2 * kGiB + kPage), kRw));
  ASSERT_TRUE(mirror.set(Hva(0x4000'0000'0000), Hva(0x4000'0000'0000 + 16 * 1024 * kGiB), PROT_READ));
  EXPECT_EQ(mirror.chunks_assigned(), pinned);
  EXPECT_EQ(mirror.protection(Hva(kBase + 6 * kGiB + 100)), kRw);
  EXPECT_EQ(mirror.protection(Hva(0x4000'0000'0000 + 9000 * kGiB)), PROT_READ);
  EXPECT_FALSE(mirror.protection(Hva(kBase + 3 * kGiB)).has_value());
  EXPECT_FALSE(mirror.translate(Hva(kBase)).has_value());
  EXPECT_EQ(check_translations(Hva(kBase), 2048 * kGiB), 0u) << "nothing is present before it is touched";
}

TEST_F(MirrorTest, FirstTouchAssignsAndAFullSpaceIsReclaimed) {
  init(36);
  for (std::uint64_t i = 0; i < 1024; ++i) ASSERT_TRUE(mirror.set(Hva(kBase + i * 2 * kGiB), Hva(kBase + i * 2 * kGiB + kPage), kRw));
  std::uint64_t assigned = 0, reclaimed = 0;
  for (int pass = 0; pass < 2; ++pass) {
    for (std::uint64_t i = 0; i < 1024; ++i) {
      const Hva page(kBase + i * 2 * kGiB + 8);
      const FaultResolution r = mirror.resolve_fault(page, /*write=*/true, /*fetch=*/false);
      ASSERT_TRUE(r.resolved) << pass << " " << i;
      EXPECT_EQ(r.chunks_assigned, 1u);
      assigned += r.chunks_assigned;
      reclaimed += r.chunks_reclaimed;
      auto gpa = mirror.translate(page);
      ASSERT_TRUE(gpa.has_value());
      EXPECT_LT(gpa->value(), std::uint64_t{1} << 36);
      EXPECT_EQ(slots.host_of(*gpa), page);
      // Retried, the access finds the page present.
      EXPECT_TRUE(mirror.resolve_fault(page, true, false).resolved);
    }
  }
  EXPECT_EQ(assigned, 2048u);
  EXPECT_EQ(reclaimed, 2048u - (63u - pinned));
  EXPECT_EQ(mirror.chunks_reclaimed(), reclaimed);
  EXPECT_EQ(mirror.chunks_assigned(), 63u);
  EXPECT_EQ(slots.deletions, static_cast<int>(reclaimed));
  // Only resident chunks have present leaves, and each reaches its own memory.
  EXPECT_EQ(check_translations(Hva(kBase), 2048 * kGiB), 63u - pinned);
  // Protections survived eviction: the pages are still known, read/write.
  EXPECT_EQ(mirror.protection(Hva(kBase + 2 * kGiB)), kRw);
  // The arena and dunk's image were never taken.
  EXPECT_TRUE(mirror.resident(arena.base()));
}

TEST_F(MirrorTest, ChunksInUseStayWhileOthersComeAndGo) {
  init(36);
  const std::uint64_t hot = 8, cold = 500;
  ASSERT_TRUE(mirror.set(Hva(kBase), Hva(kBase + (hot + cold) * kGiB), kRw));
  for (std::uint64_t i = 0; i < hot; ++i) ASSERT_TRUE(mirror.resolve_fault(Hva(kBase + i * kGiB), true, false).resolved);
  // The CPU marks the entries it walks; here the test does, for the hot
  // chunks, between every two cold touches. A hot chunk taken while the
  // space first fills up (every chunk looks used then) faults back in; once
  // the clock has gone round, none is taken again.
  unsigned hot_refaults = 0;
  auto use_hot = [&](bool warm) {
    for (std::uint64_t i = 0; i < hot; ++i) {
      if (!mirror.resident(Hva(kBase + i * kGiB))) {
        EXPECT_FALSE(warm) << "hot chunk " << i << " was taken";
        ++hot_refaults;
        ASSERT_TRUE(mirror.resolve_fault(Hva(kBase + i * kGiB), true, false).resolved);
      }
      arch::PageTableEntry* path[arch::kPagingLevels];
      ASSERT_GE(mirror.page_table().path(Gva(kBase + i * kGiB), path), 2u);
      arch::store_entry(path[1], arch::PageTableEntry(arch::load_entry(path[1])).set_accessed(true));
    }
  };
  for (std::uint64_t i = hot; i < hot + cold; ++i) {
    use_hot(/*warm=*/i > hot + 2 * 63);
    ASSERT_TRUE(mirror.resolve_fault(Hva(kBase + i * kGiB + kPage), false, false).resolved);
  }
  EXPECT_GT(mirror.chunks_reclaimed(), cold - 63);
  EXPECT_LE(hot_refaults, hot);
  for (std::uint64_t i = 0; i < hot; ++i) EXPECT_TRUE(mirror.resident(Hva(kBase + i * kGiB))) << i;
}

TEST_F(MirrorTest, FaultsTheHostWouldNotAllowStayUnresolved) {
  init(36);
  ASSERT_TRUE(mirror.set(Hva(kBase), Hva(kBase + kPage), PROT_READ));
  EXPECT_FALSE(mirror.resolve_fault(Hva(kBase), /*write=*/true, false).resolved);
  EXPECT_FALSE(mirror.resolve_fault(Hva(kBase), false, /*fetch=*/true).resolved);
  EXPECT_TRUE(mirror.resolve_fault(Hva(kBase), false, false).resolved);
  // Nothing mapped here, on the host either.
  EXPECT_FALSE(mirror.resolve_fault(Hva(0x6d75'6e6b'0000), false, false).resolved);
  EXPECT_FALSE(mirror.resolve_fault(arena.base() + 5 * kPage, false, false).resolved);
}

TEST_F(MirrorTest, MemoryMappedBehindTheMirrorsBackIsFoundOnTheHost) {
  init(36);
  // A real mapping the mirror never saw (as if mapped outside VM mode).
  const std::size_t size = 64 * kPage;
  auto* p = static_cast<char*>(mmap(nullptr, size, kRw, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(p, MAP_FAILED);
  const Hva page(reinterpret_cast<std::uint64_t>(p) + 5 * kPage);
  const FaultResolution r = mirror.resolve_fault(page, true, false);
  EXPECT_TRUE(r.resolved);
  // The whole mapping, not just the page.
  EXPECT_EQ(mirror.protection(Hva(reinterpret_cast<std::uint64_t>(p))), kRw);
  EXPECT_EQ(mirror.protection(Hva(reinterpret_cast<std::uint64_t>(p) + size - kPage)), kRw);
  munmap(p, size);
}

TEST_F(MirrorTest, ThePrivilegedApiSeesEveryMappedPagePresent) {
  init(36);
  // Host memory the mirror knows (hidden: its chunks never touched), and a
  // range the host unmapped behind the mirror's back.
  auto* rw = static_cast<char*>(mmap(reinterpret_cast<void*>(kBase), kPage, kRw,
                                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0));
  auto* ro = static_cast<char*>(mmap(reinterpret_cast<void*>(kBase + 7 * kGiB), 2 * kPage, PROT_READ,
                                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0));
  ASSERT_EQ(rw, reinterpret_cast<char*>(kBase));
  ASSERT_EQ(ro, reinterpret_cast<char*>(kBase + 7 * kGiB));
  ASSERT_TRUE(mirror.set(Hva(kBase), Hva(kBase + kPage), kRw));
  ASSERT_TRUE(mirror.set(Hva(kBase + 7 * kGiB), Hva(kBase + 7 * kGiB + 2 * kPage), PROT_READ));
  ASSERT_TRUE(mirror.set(Hva(kBase + 20 * kGiB), Hva(kBase + 20 * kGiB + kPage), kRw));
  EXPECT_FALSE(mirror.assigns_eagerly());
  arch::PageTable* tree = mirror.tree(0);  // what the privileged API does first
  ASSERT_NE(tree, nullptr);
  EXPECT_TRUE(mirror.assigns_eagerly());
  EXPECT_TRUE(tree->lookup(Gva(kBase)).has_value());
  EXPECT_TRUE(tree->lookup(Gva(kBase + 7 * kGiB + kPage)).has_value());
  EXPECT_EQ(check_translations(Hva(kBase), 8 * kGiB), 3u);
  // The range the host no longer has takes no GPA space.
  EXPECT_FALSE(tree->lookup(Gva(kBase + 20 * kGiB)).has_value());
  EXPECT_FALSE(mirror.resident(Hva(kBase + 20 * kGiB)));
  // From now on mappings are resident at once, and nothing is reclaimed:
  // the distinct chunks must fit, as they had to before reclaiming existed.
  const std::uint32_t resident = mirror.chunks_assigned();
  unsigned mapped = 0;
  Status s;
  for (std::uint64_t i = 0; i < 100; ++i) {
    s = mirror.set(Hva(kBase + (30 + i) * kGiB), Hva(kBase + (30 + i) * kGiB + kPage), kRw);
    if (!s) break;
    ++mapped;
  }
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().err, ENOMEM);
  EXPECT_EQ(mirror.chunks_reclaimed(), 0u);
  EXPECT_EQ(mirror.chunks_assigned(), 63u);
  EXPECT_EQ(mapped, 63u - resident);
  munmap(rw, kPage);
  munmap(ro, 2 * kPage);
}

// ---- Trees that share tables -----------------------------------------------

TEST_F(MirrorTest, CopyOnWriteClonesCostTheTablesTheirEditsChangeAndGiveThemBack) {
  init(39);
  auto* mem = static_cast<char*>(mmap(reinterpret_cast<void*>(kBase), 16 * kPage, kRw,
                                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0));
  ASSERT_EQ(mem, reinterpret_cast<char*>(kBase));
  ASSERT_TRUE(mirror.set(Hva(kBase), Hva(kBase + 16 * kPage), kRw));
  ASSERT_NE(mirror.tree(0), nullptr);  // the privileged API's first step, done once
  const arch::PageAttributes user{.writable = true, .user = true};
  const std::uint64_t in_use = mirror.tables_in_use();
  const std::uint64_t dropped = mirror.tables_dropped();
  std::set<std::uint64_t> roots;
  for (int i = 0; i < 1000; ++i) {
    const Gva page(kBase + (i % 16) * kPage);
    auto id = mirror.clone_tree(0, arch::CloneKind::kCopyOnWrite);
    ASSERT_TRUE(id);
    ASSERT_EQ(mirror.tables_in_use(), in_use + 1) << i;  // its root
    ASSERT_TRUE(mirror.user_map(*id, page, identity_hva(page), kPage, user, arch::PageSize::k4K));
    ASSERT_EQ(mirror.tables_in_use(), in_use + 4) << i;  // and its PDPT, PD and PT on the way
    ASSERT_EQ(mirror.own_tables(*id), 4u);
    ASSERT_TRUE(mirror.tree(*id)->lookup(page)->attrs.user);
    ASSERT_FALSE(mirror.tree(0)->lookup(page)->attrs.user);
    roots.insert(mirror.tree(*id)->root().value());
    ASSERT_TRUE(mirror.destroy_tree(*id));
    ASSERT_EQ(mirror.tables_in_use(), in_use) << i;
  }
  EXPECT_EQ(mirror.tables_dropped(), dropped);
  EXPECT_LE(roots.size(), 8u) << "a destroyed tree's tables are used again";

  // A full copy gives back all it has.
  auto copy = mirror.clone_tree(0, arch::CloneKind::kCopy);
  ASSERT_TRUE(copy);
  const std::uint64_t own = mirror.own_tables(*copy);
  EXPECT_EQ(mirror.tables_in_use(), in_use + own);
  std::uint64_t freed = mirror.tables_freed();
  ASSERT_TRUE(mirror.destroy_tree(*copy));
  EXPECT_EQ(mirror.tables_freed() - freed, own);
  EXPECT_EQ(mirror.tables_in_use(), in_use);

  // Tables a live tree stopped linking are not reused: the process's edit
  // copies the three on its way, and leaves the old ones to the clone.
  auto clone = mirror.clone_tree(0, arch::CloneKind::kCopyOnWrite);
  ASSERT_TRUE(clone);
  ASSERT_TRUE(mirror.user_map(0, Gva(kBase), Hva(kBase), kPage, user, arch::PageSize::k4K));
  EXPECT_TRUE(mirror.tree(0)->lookup(Gva(kBase))->attrs.user);
  EXPECT_FALSE(mirror.tree(*clone)->lookup(Gva(kBase))->attrs.user);
  // The monitor's edits reach both: the host unmaps a page.
  ASSERT_TRUE(mirror.set(Hva(kBase + 5 * kPage), Hva(kBase + 6 * kPage), PROT_NONE));
  EXPECT_FALSE(mirror.tree(0)->lookup(Gva(kBase + 5 * kPage)));
  EXPECT_FALSE(mirror.tree(*clone)->lookup(Gva(kBase + 5 * kPage)));
  freed = mirror.tables_freed();
  ASSERT_TRUE(mirror.destroy_tree(*clone));
  EXPECT_EQ(mirror.tables_dropped() - dropped, 3u);
  EXPECT_EQ(mirror.tables_freed() - freed, 1u);  // its root
  munmap(mem, 16 * kPage);
}

// ---- Reclaim and dirty tracking -------------------------------------------

// The dirty leaves of [start, start + size) in the process's tree, as a pass
// of core/dirty.h reads them (present and hidden leaves alike).
std::vector<std::uint64_t> dirty_pages(Mirror& mirror, Hva start, std::uint64_t size, bool clean, bool prune,
                                       arch::DirtyScanCounts* counts = nullptr) {
  std::vector<std::uint64_t> pages;
  mirror.page_table().scan_dirty(identity_gva(start), size, arch::DirtyScanOptions{.clean = clean, .prune = prune},
                                 [&](Gva va, arch::PageSize, arch::PageTableEntry&) { pages.push_back(va.value()); },
                                 counts);
  return pages;
}

// Makes chunks resident until the GPA space is full: chunk i at
// kBase + (100 + i) GiB, each one page mapped and touched.
void fill_space(Mirror& mirror) {
  for (std::uint64_t i = 0; mirror.chunks_assigned() < mirror.chunk_capacity(); ++i) {
    const Hva page(kBase + (100 + i) * kGiB);
    ASSERT_TRUE(mirror.set(page, page + kPage, kRw));
    ASSERT_TRUE(mirror.resolve_fault(page, true, false).resolved) << i;
  }
}

TEST_F(MirrorTest, APageWrittenBeforeItsChunkIsReclaimedIsReportedDirty) {
  init(36);
  const Hva chunk(kBase);
  const Hva written = chunk + 5 * kPage;
  ASSERT_TRUE(mirror.set(chunk, chunk + 16 * kPage, kRw));
  ASSERT_TRUE(mirror.resolve_fault(chunk, true, false).resolved);
  // A clean pass: from here only what is written is dirty.
  EXPECT_EQ(dirty_pages(mirror, chunk, kGiB, /*clean=*/true, /*prune=*/false).size(), 16u) << "new memory starts dirty";
  EXPECT_TRUE(dirty_pages(mirror, chunk, kGiB, false, true).empty());
  // A store, as the CPU marks it, then so many other chunks touched that
  // this one is taken back.
  mirror.page_table().mark_written(identity_gva(written), 8);
  for (std::uint64_t i = 0; mirror.resident(chunk); ++i) {
    ASSERT_LT(i, 200u) << "the chunk was never reclaimed";
    const Hva other(kBase + (100 + i) * kGiB);
    ASSERT_TRUE(mirror.set(other, other + kPage, kRw));
    ASSERT_TRUE(mirror.resolve_fault(other, true, false).resolved);
  }
  // Evicted: a pruning pass still reports exactly the written page.
  EXPECT_EQ(dirty_pages(mirror, chunk, kGiB, false, true), std::vector<std::uint64_t>{written.value()});
  // Back in service at another GPA: still dirty, then clean after a clean pass.
  ASSERT_TRUE(mirror.resolve_fault(chunk + kPage, false, false).resolved);
  EXPECT_EQ(check_translations(chunk, kGiB), 16u);
  EXPECT_EQ(dirty_pages(mirror, chunk, kGiB, true, true), std::vector<std::uint64_t>{written.value()});
  EXPECT_TRUE(dirty_pages(mirror, chunk, kGiB, false, true).empty());
}

TEST_F(MirrorTest, TheClockLeavesWhatAPruningScanNeeds) {
  init(36);
  fill_space(mirror);
  // The last chunk assigned, so the hand meets it after the others: a
  // reclaim takes its accessed bit (it was used) and moves on.
  const Hva chunk(kBase + 100 * kGiB + (mirror.chunk_capacity() - pinned - 1) * kGiB);
  ASSERT_TRUE(mirror.resident(chunk));
  ASSERT_EQ(dirty_pages(mirror, chunk, kGiB, true, false).size(), 1u);
  mirror.page_table().mark_written(identity_gva(chunk), 8);
  const Hva newcomer(kBase + 10 * kGiB);
  ASSERT_TRUE(mirror.set(newcomer, newcomer + kPage, kRw));
  const FaultResolution r = mirror.resolve_fault(newcomer, true, false);
  ASSERT_TRUE(r.resolved);
  ASSERT_EQ(r.chunks_reclaimed, 1u);
  ASSERT_TRUE(mirror.resident(chunk));
  arch::PageTableEntry* path[arch::kPagingLevels];
  ASSERT_GE(mirror.page_table().path(identity_gva(chunk), path), 2u);
  const arch::PageTableEntry above = arch::load_entry(path[1]);
  EXPECT_FALSE(above.accessed()) << "the clock read and cleared it";
  EXPECT_TRUE(above.accessed_taken());
  // A pruning pass descends all the same and finds the write.
  EXPECT_EQ(dirty_pages(mirror, chunk, kGiB, true, true), std::vector<std::uint64_t>{chunk.value()});
  // The cleaning pass cleared both marks: the next one skips the chunk.
  arch::DirtyScanCounts counts;
  EXPECT_TRUE(dirty_pages(mirror, chunk, kGiB, false, true, &counts).empty());
  EXPECT_FALSE(arch::load_entry(path[1]).accessed_taken());
  EXPECT_GE(counts.tables_skipped, 1u);
}

// Dune's layout: a chunk at its own guest-physical address stays there, and
// so does one whose address the program was told; the rest is reclaimed.
TEST_F(MirrorTest, ChunksWithAFixedGuestPhysicalAddressAreNeverReclaimed) {
  ASSERT_TRUE(arena.reserve());
  const MirrorConfig config{
      .gpa = {.phys_bits = 36, .chunk_shift = 30, .reserved = default_reserved_gpa_ranges(), .identity = true},
      .paging = {.gib_pages = true, .nx = true, .phys_bits = 36},
  };
  ASSERT_TRUE(mirror.init(slots, arena, config));
  // Low memory, at its own address.
  const Hva low(5 * kGiB);
  ASSERT_TRUE(mirror.set(low, low + kPage, kRw));
  ASSERT_TRUE(mirror.resolve_fault(low, true, false).resolved);
  ASSERT_EQ(mirror.translate(low), Gpa(low.value()));
  // Far more high chunks than there is room for, twice over.
  for (int pass = 0; pass < 2; ++pass) {
    for (std::uint64_t i = 0; i < 150; ++i) {
      const Hva page(kBase + i * kGiB);
      ASSERT_TRUE(mirror.set(page, page + kPage, kRw));
      ASSERT_TRUE(mirror.resolve_fault(page, true, false).resolved) << pass << " " << i;
    }
  }
  EXPECT_GT(mirror.chunks_reclaimed(), 150u);
  EXPECT_EQ(mirror.translate(low), Gpa(low.value())) << "the identity chunk moved";
  // A GPA handed to the program (dunk::guest_physical): the chunk keeps it,
  // and the mirror assigns eagerly from then on.
  const Hva told(kBase + 149 * kGiB);
  Result<Gpa> gpa = mirror.assign(told);
  ASSERT_TRUE(gpa.ok());
  EXPECT_TRUE(mirror.assigns_eagerly());
  // The space is full and nothing may be taken back now: a new chunk's
  // mapping fails instead.
  const std::uint64_t reclaimed = mirror.chunks_reclaimed();
  const Hva later(0x6000'0000'0000);
  Status s = mirror.set(later, later + kPage, kRw);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().err, ENOMEM);
  EXPECT_EQ(mirror.translate(told), *gpa);
  EXPECT_EQ(mirror.translate(low), Gpa(low.value()));
  EXPECT_EQ(mirror.chunks_reclaimed(), reclaimed);
}

}  // namespace
}  // namespace dunk::core
