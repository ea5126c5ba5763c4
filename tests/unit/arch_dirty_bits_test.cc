// Dirty tracking on the page tables themselves (arch::PageTable::mark_written,
// scan_dirty, EditOptions::new_leaves_dirty): what a store would set, what a
// scan reports and cleans, which subtrees a pruned scan skips, and that
// memory appearing in a range starts dirty. On table memory of the test's
// own (fake_table_memory.h), with the CPU's part played by the test.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "arch/x86_64/page_table.h"
#include "fake_table_memory.h"

namespace dunk::arch {
namespace {

constexpr std::uint64_t K4 = kPageSize4K;
constexpr std::uint64_t M2 = kPageSize2M;
constexpr std::uint64_t G1 = kPageSize1G;
constexpr PagingFeatures kFull{.gib_pages = true, .nx = true, .phys_bits = 46};
constexpr PageAttributes kRw{.writable = true};

// A tree mapping [base, base + size) to itself with 4 KiB pages, every
// accessed/dirty bit clear.
struct Tree {
  FakeTableMemory mem;
  std::optional<PageTable> pt;
  Tree(std::uint64_t base, std::uint64_t size, PageSize largest = PageSize::k4K) {
    auto t = PageTable::create(mem, kFull);
    EXPECT_TRUE(t);
    pt.emplace(std::move(*t));
    EXPECT_TRUE(pt->map(Gva(base), Gpa(base), size, kRw, largest));
  }
  PageTableEntry leaf(std::uint64_t va) { return load_entry(pt->lookup(Gva(va))->leaf); }
  // The entries a walk of `va` uses, top level first.
  std::vector<PageTableEntry> path(std::uint64_t va) {
    PageTableEntry* out[kPagingLevels];
    const unsigned n = pt->path(Gva(va), out);
    std::vector<PageTableEntry> v;
    for (unsigned i = 0; i < n; ++i) v.push_back(load_entry(out[i]));
    return v;
  }
  // What the CPU does for a store through a fresh walk.
  void cpu_writes(std::uint64_t va) {
    PageTableEntry* out[kPagingLevels];
    const unsigned n = pt->path(Gva(va), out);
    for (unsigned i = 0; i < n; ++i) {
      PageTableEntry v = load_entry(out[i]);
      v.set_accessed(true);
      if (i == n - 1) v.set_dirty(true);
      store_entry(out[i], v);
    }
  }
  std::set<std::uint64_t> scan(std::uint64_t va, std::uint64_t size, DirtyScanOptions o,
                               DirtyScanCounts* counts = nullptr) {
    std::set<std::uint64_t> pages;
    pt->scan_dirty(Gva(va), size, o, [&](Gva page, PageSize s, PageTableEntry&) {
      for (std::uint64_t p = page.value(); p < page.value() + page_bytes(s); p += K4) pages.insert(p);
    }, counts);
    return pages;
  }
};

TEST(DirtyBits, MarkWrittenSetsWhatAStoreSetsOnEveryLevel) {
  Tree t(G1, 4 * M2);
  EXPECT_EQ(t.pt->mark_written(Gva(G1 + 3 * K4 + 100), 2 * K4), 3u);  // bytes spill into a third page
  for (std::uint64_t p : {G1 + 3 * K4, G1 + 4 * K4, G1 + 5 * K4}) {
    EXPECT_TRUE(t.leaf(p).dirty()) << std::hex << p;
    EXPECT_TRUE(t.leaf(p).accessed());
  }
  EXPECT_FALSE(t.leaf(G1 + 2 * K4).dirty());
  EXPECT_FALSE(t.leaf(G1 + 6 * K4).dirty());
  for (const PageTableEntry& e : t.path(G1 + 3 * K4)) EXPECT_TRUE(e.accessed());
  // Another 2 MiB region's table stays unaccessed.
  EXPECT_FALSE(t.path(G1 + 2 * M2)[2].accessed());
}

TEST(DirtyBits, MarkWrittenSkipsHolesAndMarksHiddenLeavesAndLargePages) {
  Tree t(G1, 2 * M2);
  ASSERT_TRUE(t.pt->map(Gva(2 * G1), Gpa(2 * G1), M2, kRw, PageSize::k2M));
  ASSERT_TRUE(t.pt->hide(Gva(G1 + K4), K4, 2));
  // Two pages below G1 are a hole; the hidden page keeps its frame.
  EXPECT_EQ(t.pt->mark_written(Gva(G1 - 2 * K4), 4 * K4), 2u);
  EXPECT_TRUE(t.leaf(G1).dirty());
  EXPECT_FALSE(t.pt->lookup(Gva(G1 + K4)));  // still hidden
  ASSERT_TRUE(t.pt->protect(Gva(G1 + K4), K4, kRw));
  EXPECT_TRUE(t.leaf(G1 + K4).dirty()) << "the mark travelled with the hidden frame";
  // A write into a 2 MiB page dirties the page (its granularity).
  EXPECT_EQ(t.pt->mark_written(Gva(2 * G1 + 5 * K4), 1), 1u);
  EXPECT_TRUE(t.leaf(2 * G1).dirty());
  // Nothing mapped: nothing marked, nothing created.
  const std::size_t tables = t.mem.live();
  EXPECT_EQ(t.pt->mark_written(Gva(7 * G1), M2), 0u);
  EXPECT_EQ(t.mem.live(), tables);
}

TEST(DirtyBits, ACleanScanReportsDirtyLeavesOnceAndCleansThem) {
  Tree t(G1, 4 * M2);
  t.cpu_writes(G1 + 7 * K4);
  t.cpu_writes(G1 + 3 * M2);
  // A read sets only accessed: not reported.
  PageTableEntry* read = t.pt->lookup(Gva(G1))->leaf;
  store_entry(read, PageTableEntry(load_entry(read)).set_accessed(true));
  EXPECT_EQ(t.scan(G1, 4 * M2, {.clean = false}), (std::set<std::uint64_t>{G1 + 7 * K4, G1 + 3 * M2}));
  EXPECT_EQ(t.scan(G1, 4 * M2, {.clean = true}), (std::set<std::uint64_t>{G1 + 7 * K4, G1 + 3 * M2}));
  EXPECT_FALSE(t.leaf(G1 + 7 * K4).dirty());
  EXPECT_FALSE(t.leaf(G1 + 7 * K4).accessed());
  EXPECT_TRUE(t.scan(G1, 4 * M2, {.clean = true}).empty());
  t.cpu_writes(G1 + 7 * K4);
  EXPECT_EQ(t.scan(G1, 4 * M2, {.clean = true}), (std::set<std::uint64_t>{G1 + 7 * K4}));
}

TEST(DirtyBits, AnyRangeOfALeafTableReportsExactlyItsDirtyPages) {
  // The last level is scanned eight entries at a time: ranges that start
  // and end anywhere in a group, dirty pages at a group's edges, hidden and
  // absent entries among them, against the page-by-page rule.
  Tree t(G1, 2 * M2);
  ASSERT_TRUE(t.pt->unmap(Gva(G1 + 40 * K4), 3 * K4));
  ASSERT_TRUE(t.pt->hide(Gva(G1 + 17 * K4), 2 * K4, 2));
  std::mt19937_64 rng(7);
  for (int round = 0; round < 200; ++round) {
    std::set<std::uint64_t> written;
    const int writes = static_cast<int>(rng() % 24);
    for (int w = 0; w < writes; ++w) {
      const std::uint64_t page = G1 + (rng() % 1024) * K4;
      if (t.pt->mark_written(Gva(page), 1) == 1) written.insert(page);
    }
    for (std::uint64_t edge : {G1 + 7 * K4, G1 + 8 * K4, G1 + 511 * K4, G1 + 512 * K4}) {
      if (round % 3 == 0 && t.pt->mark_written(Gva(edge), 1) == 1) written.insert(edge);
    }
    const std::uint64_t first = rng() % 1024, count = 1 + rng() % (1024 - first);
    const std::uint64_t start = G1 + first * K4 + rng() % K4;  // not page-aligned either
    const std::uint64_t size = count * K4 - (start - G1 - first * K4);
    std::set<std::uint64_t> want;
    for (std::uint64_t p : written) {
      if (p + K4 > start && p < start + size) want.insert(p);
    }
    DirtyScanCounts counts;
    EXPECT_EQ(t.scan(start, size, {.clean = true}, &counts), want) << "round " << round;
    EXPECT_EQ(counts.dirty_leaves, want.size());
    EXPECT_EQ(counts.entries_read, count + (first / 512 != (first + count - 1) / 512 ? 1 : 0) + 3)
        << "every entry of the range once, plus the upper levels' ";
    (void)t.scan(G1, 2 * M2, {.clean = true});  // clean the rest for the next round
  }
}

TEST(DirtyBits, ScanOfPartOfALargePageReportsTheWholePage) {
  Tree t(G1, M2, PageSize::k2M);
  t.cpu_writes(G1 + 9 * K4);
  auto got = t.scan(G1 + 10 * K4, K4, {.clean = false});
  EXPECT_EQ(got.size(), 512u);  // the leaf's granularity: its caller clips
  EXPECT_TRUE(got.count(G1 + 10 * K4));
}

TEST(DirtyBits, APrunedScanSkipsWhatNoWriteReachedAndCountsIt) {
  constexpr std::uint64_t kRegion = 64 * M2;  // 64 page tables
  Tree t(G1, kRegion);
  // Start from a clean tree: upper levels accessed (the map made them), one
  // clean scan clears what lies inside the range.
  for (std::uint64_t p = G1; p < G1 + kRegion; p += M2) t.cpu_writes(p);
  DirtyScanCounts first;
  EXPECT_EQ(t.scan(G1, kRegion, {.clean = true, .prune = true}, &first).size(), 64u);
  EXPECT_EQ(first.dirty_leaves, 64u);
  // Writes into three tables only.
  t.cpu_writes(G1 + 5 * K4);
  t.cpu_writes(G1 + 7 * M2 + 11 * K4);
  t.cpu_writes(G1 + 63 * M2 + 511 * K4);
  DirtyScanCounts pruned, full;
  EXPECT_EQ(t.scan(G1, kRegion, {.clean = false, .prune = true}, &pruned),
            (std::set<std::uint64_t>{G1 + 5 * K4, G1 + 7 * M2 + 11 * K4, G1 + 63 * M2 + 511 * K4}));
  EXPECT_EQ(t.scan(G1, kRegion, {.clean = false, .prune = false}, &full).size(), 3u);
  // The pruned scan read the PML4 and PDPT entries (1 each), the 64 PDEs and
  // three whole page tables; the full one all 64 tables.
  EXPECT_EQ(pruned.entries_read, 1u + 1u + 64u + 3u * 512u);
  EXPECT_EQ(pruned.tables_skipped, 61u);
  EXPECT_EQ(full.entries_read, 1u + 1u + 64u + 64u * 512u);
  EXPECT_EQ(full.tables_skipped, 0u);
}

TEST(DirtyBits, AScanOfPartOfATableLeavesItsAccessedBit) {
  Tree t(G1, 2 * M2);
  t.cpu_writes(G1 + 100 * K4);
  t.cpu_writes(G1 + 300 * K4);
  // Clean only the first half of the first table: the PDE still covers the
  // other half's dirty page, so it must stay accessed.
  EXPECT_EQ(t.scan(G1, 256 * K4, {.clean = true, .prune = true}), (std::set<std::uint64_t>{G1 + 100 * K4}));
  EXPECT_TRUE(t.path(G1)[2].accessed());
  EXPECT_EQ(t.scan(G1, 2 * M2, {.clean = false, .prune = true}), (std::set<std::uint64_t>{G1 + 300 * K4}));
}

TEST(DirtyBits, MarkedPagesAreFoundByAPrunedScan) {
  Tree t(G1, 8 * M2);
  for (std::uint64_t p = G1; p < G1 + 8 * M2; p += M2) t.cpu_writes(p);
  (void)t.scan(G1, 8 * M2, {.clean = true, .prune = true});
  ASSERT_FALSE(t.path(G1 + 5 * M2)[2].accessed());
  EXPECT_EQ(t.pt->mark_written(Gva(G1 + 5 * M2 + 40 * K4), 10), 1u);
  EXPECT_EQ(t.scan(G1, 8 * M2, {.clean = true, .prune = true}), (std::set<std::uint64_t>{G1 + 5 * M2 + 40 * K4}));
}

TEST(DirtyBits, NewLeavesStartDirtyWhereTheEditSaysSo) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  const EditOptions dirty{.new_leaves_dirty = true};
  ASSERT_TRUE(pt->map(Gva(G1), Gpa(G1), 4 * K4, kRw, PageSize::k4K, dirty));
  ASSERT_TRUE(pt->map(Gva(2 * G1), Gpa(2 * G1), 4 * K4, kRw, PageSize::k4K));  // the default: clean
  auto dirty_pages = [&](std::uint64_t va, std::uint64_t size, bool prune) {
    std::set<std::uint64_t> pages;
    pt->scan_dirty(Gva(va), size, {.clean = true, .prune = prune},
                   [&](Gva p, PageSize, PageTableEntry&) { pages.insert(p.value()); });
    return pages;
  };
  EXPECT_EQ(dirty_pages(G1, 4 * K4, true).size(), 4u);
  EXPECT_TRUE(dirty_pages(2 * G1, 4 * K4, true).empty());
  // A mapping re-made over the same frames keeps their (now clean) bits...
  ASSERT_TRUE(pt->map(Gva(G1), Gpa(G1), 4 * K4, PageAttributes{}, PageSize::k4K, dirty));
  EXPECT_TRUE(dirty_pages(G1, 4 * K4, true).empty());
  // ...another frame, or a page where none was, is new memory: dirty, and
  // reachable by a pruned scan although the scan above cleared the PDE.
  ASSERT_TRUE(pt->map(Gva(G1 + K4), Gpa(7 * G1), K4, kRw, PageSize::k4K, dirty));
  ASSERT_TRUE(pt->map(Gva(G1 + 9 * K4), Gpa(G1 + 9 * K4), K4, kRw, PageSize::k4K, dirty));
  EXPECT_EQ(dirty_pages(G1, M2, true), (std::set<std::uint64_t>{G1 + K4, G1 + 9 * K4}));
}

TEST(DirtyBits, SplittingAUsedLargePageKeepsItsPiecesReachable) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  ASSERT_TRUE(pt->map(Gva(G1), Gpa(G1), M2, kRw, PageSize::k2M));
  // A store through the large page, as the CPU makes it: accessed all the
  // way down, dirty on the leaf.
  PageTableEntry* path[kPagingLevels];
  const unsigned n_path = pt->path(Gva(G1), path);
  ASSERT_EQ(n_path, 3u);
  for (unsigned i = 0; i < n_path; ++i) store_entry(path[i], PageTableEntry(load_entry(path[i])).set_accessed(true));
  PageTableEntry* big = pt->lookup(Gva(G1))->leaf;
  store_entry(big, PageTableEntry(load_entry(big)).set_dirty(true));
  // Remapped with 4 KiB pages, same frames (what DirtyTracker::create does).
  ASSERT_TRUE(pt->map(Gva(G1), Gpa(G1), M2, kRw, PageSize::k4K));
  EXPECT_EQ(pt->lookup(Gva(G1))->size, PageSize::k4K);
  std::size_t n = 0;
  pt->scan_dirty(Gva(G1), M2, {.clean = false, .prune = true}, [&](Gva, PageSize, PageTableEntry&) { ++n; });
  EXPECT_EQ(n, 512u) << "every piece of a written large page is dirty, and the new table is reached";
}

TEST(DirtyBits, RightsChangeKeepsTheBitsACpuSetsMeanwhile) {
  // map() over the same frame moves accessed/dirty along by
  // compare-and-exchange; a bit set before the edit is never lost.
  Tree t(G1, K4);
  t.pt->mark_written(Gva(G1), 1);
  ASSERT_TRUE(t.pt->map(Gva(G1), Gpa(G1), K4, PageAttributes{}, PageSize::k4K));
  EXPECT_TRUE(t.leaf(G1).dirty());
  EXPECT_FALSE(t.leaf(G1).writable());
}

TEST(DirtyBits, MarksFromManyThreadsDuringCleansAreNeverLost) {
  // What the monitor's threads do (note_kernel_write) while a collector
  // cleans: every page marked is reported by the clean that follows its
  // mark, or by one during it.
  constexpr std::uint64_t kPages = 4096;
  Tree t(G1, kPages * K4);
  std::atomic<bool> stop{false};
  std::mutex lock;
  std::set<std::uint64_t> marked, reported;
  std::vector<std::thread> writers;
  for (int w = 0; w < 3; ++w) {
    writers.emplace_back([&, w] {
      std::mt19937_64 rng(w);
      std::set<std::uint64_t> mine;
      for (int i = 0; i < 20000; ++i) {
        const std::uint64_t page = G1 + (rng() % kPages) * K4;
        EXPECT_EQ(t.pt->mark_written(Gva(page), 1), 1u);
        mine.insert(page);
      }
      std::lock_guard<std::mutex> hold(lock);
      marked.insert(mine.begin(), mine.end());
    });
  }
  std::thread collector([&] {
    while (!stop.load()) {
      auto got = t.scan(G1, kPages * K4, {.clean = true, .prune = true});
      std::lock_guard<std::mutex> hold(lock);
      reported.insert(got.begin(), got.end());
    }
  });
  for (auto& w : writers) w.join();
  stop = true;
  collector.join();
  auto last = t.scan(G1, kPages * K4, {.clean = true, .prune = true});
  reported.insert(last.begin(), last.end());
  for (std::uint64_t page : marked) EXPECT_TRUE(reported.count(page)) << std::hex << page;
  EXPECT_EQ(reported, marked);  // and nothing that was not marked
}

TEST(DirtyBits, AMarkThroughOneTreeShowsInAClonesSharedLeafTable) {
  Tree t(G1, 2 * M2);
  auto clone = t.pt->clone(/*share_leaf_tables=*/true);
  ASSERT_TRUE(clone);
  EXPECT_EQ(t.pt->mark_written(Gva(G1 + 3 * K4), K4), 1u);
  // (Not pruned: the clone's own upper entries were not on the mark's path;
  // dunk marks every tree, core/dirty.h.)
  std::set<std::uint64_t> in_clone;
  clone->scan_dirty(Gva(G1), 2 * M2, {.clean = false, .prune = false},
                    [&](Gva p, PageSize, PageTableEntry&) { in_clone.insert(p.value()); });
  EXPECT_EQ(in_clone, (std::set<std::uint64_t>{G1 + 3 * K4}));
  clone->destroy();
}

}  // namespace
}  // namespace dunk::arch
