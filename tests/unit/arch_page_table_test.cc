#include "arch/x86_64/page_table.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <vector>

#include "fake_table_memory.h"

namespace dunk::arch {
namespace {

constexpr std::uint64_t K4 = kPageSize4K;
constexpr std::uint64_t M2 = kPageSize2M;
constexpr std::uint64_t G1 = kPageSize1G;

constexpr PagingFeatures kFull{.gib_pages = true, .nx = true, .phys_bits = 46};
constexpr PagingFeatures kNoGib{.gib_pages = false, .nx = true, .phys_bits = 39};

constexpr PageAttributes kRw{.writable = true};
constexpr PageAttributes kRx{.executable = true};
constexpr PageAttributes kUserRwx{.writable = true, .user = true, .executable = true};

struct Leaf {
  std::uint64_t va;
  PageSize size;
  std::uint64_t pa;
  bool operator==(const Leaf&) const = default;
};

std::vector<Leaf> leaves(const PageTable& pt, Gva va, std::uint64_t size) {
  std::vector<Leaf> out;
  pt.for_each_leaf(va, size, [&](Gva page, PageSize s, PageTableEntry& e) {
    out.push_back({page.value(), s, e.page_address(s).value()});
  });
  return out;
}

std::map<PageSize, int> count_sizes(const std::vector<Leaf>& ls) {
  std::map<PageSize, int> n;
  for (const Leaf& l : ls) ++n[l.size];
  return n;
}

// Walks the whole tree: every link must lead to a live table of the fake,
// no table may be linked twice, and every live table must be reachable (no
// leak). Returns the number of reachable tables.
std::size_t check_tree(FakeTableMemory& mem, Gpa table_gpa, unsigned level, std::set<std::uint64_t>& seen) {
  EXPECT_TRUE(mem.is_live(table_gpa)) << "dangling link to " << std::hex << table_gpa.value();
  EXPECT_TRUE(seen.insert(table_gpa.value()).second) << "table linked twice";
  PageTableEntry* t = mem.table_at(table_gpa);
  if (t == nullptr) return 0;
  std::size_t n = 1;
  for (unsigned i = 0; i < kEntriesPerTable; ++i) {
    const PageTableEntry e = t[i];
    if (!e.present()) {
      EXPECT_EQ(e.raw(), 0u) << "non-present entry with stale bits";
      continue;
    }
    if (e.is_leaf(level)) continue;
    // Intermediate entries: P|W|U, XD clear, nothing else but the accessed
    // bit (the CPU's, or a split of a page that had been used) and the mark
    // of a table shared for edits (kBorrowedTable).
    EXPECT_EQ(e.raw() & ~PageTableEntry::kAddressMask4K & ~PageTableEntry().set_accessed(true).raw() &
                  ~PageTableEntry().set_software(kBorrowedTable).raw(),
              0x7u);
    n += check_tree(mem, e.table_address(), level - 1, seen);
  }
  return n;
}

void expect_consistent(FakeTableMemory& mem, const PageTable& pt) {
  std::set<std::uint64_t> seen;
  EXPECT_EQ(check_tree(mem, pt.root(), kPagingLevels, seen), mem.live());
  EXPECT_EQ(mem.bad_releases, 0);
}

// --- PageTableEntry ---------------------------------------------------------

TEST(PageTableEntry, LeafBitsMatchTheSdmFormat) {
  // 4 KiB PTE (Table 4-20): P(0) W(1) U(2) G(8) XD(63), address 51:12.
  const PageAttributes a{.writable = true, .user = true, .executable = false, .global = true};
  EXPECT_EQ(PageTableEntry::leaf(Gpa(0x1234'5000), PageSize::k4K, a, true).raw(), 0x8000'0000'1234'5107u);
  // Without NX, bit 63 is reserved: never set.
  EXPECT_EQ(PageTableEntry::leaf(Gpa(0x1234'5000), PageSize::k4K, a, false).raw(), 0x0000'0000'1234'5107u);
  // 2 MiB PDE (Table 4-18): PS(7), address 51:21.
  EXPECT_EQ(PageTableEntry::leaf(Gpa(0x4020'0000), PageSize::k2M, {.writable = true, .executable = true}, true).raw(),
            0x4020'0083u);
  // 1 GiB PDPTE (Table 4-16): PWT(3) PCD(4) software 11:9.
  const PageAttributes b{.write_through = true, .cache_disable = true, .software = 5};
  EXPECT_EQ(PageTableEntry::leaf(Gpa(0x8000'0000), PageSize::k1G, b, true).raw(), 0x8000'0000'8000'0a99u);
  // A table reference (Tables 4-15/4-17/4-19).
  EXPECT_EQ(PageTableEntry::table(Gpa(0x12'3456'7000)).raw(), 0x12'3456'7007u);
}

TEST(PageTableEntry, EachAccessorOwnsItsBits) {
  EXPECT_EQ(PageTableEntry().set_present(true).raw(), 1u << 0);
  EXPECT_EQ(PageTableEntry().set_writable(true).raw(), 1u << 1);
  EXPECT_EQ(PageTableEntry().set_user(true).raw(), 1u << 2);
  EXPECT_EQ(PageTableEntry().set_write_through(true).raw(), 1u << 3);
  EXPECT_EQ(PageTableEntry().set_cache_disable(true).raw(), 1u << 4);
  EXPECT_EQ(PageTableEntry().set_accessed(true).raw(), 1u << 5);
  EXPECT_EQ(PageTableEntry().set_dirty(true).raw(), 1u << 6);
  EXPECT_EQ(PageTableEntry().set_page_size(true).raw(), 1u << 7);
  EXPECT_EQ(PageTableEntry().set_global(true).raw(), 1u << 8);
  EXPECT_EQ(PageTableEntry().set_software(7).raw(), 0xe00u);
  EXPECT_EQ(PageTableEntry().set_pat_large(true).raw(), 1u << 12);
  EXPECT_EQ(PageTableEntry().set_software_high(0x7f).raw(), 0x07f0'0000'0000'0000u);
  EXPECT_EQ(PageTableEntry().set_protection_key(0xf).raw(), 0x7800'0000'0000'0000u);
  EXPECT_EQ(PageTableEntry().set_execute_disable(true).raw(), 0x8000'0000'0000'0000u);
  // Fields do not overflow into neighbours.
  EXPECT_EQ(PageTableEntry().set_software(0xff).raw(), 0xe00u);
  EXPECT_EQ(PageTableEntry().set_protection_key(0xff).raw(), 0x7800'0000'0000'0000u);
  // Address fields by size.
  const PageTableEntry all(~std::uint64_t{0});
  EXPECT_EQ(all.page_address(PageSize::k4K).value(), 0x000f'ffff'ffff'f000u);
  EXPECT_EQ(all.page_address(PageSize::k2M).value(), 0x000f'ffff'ffe0'0000u);
  EXPECT_EQ(all.page_address(PageSize::k1G).value(), 0x000f'ffff'c000'0000u);
  EXPECT_EQ(all.table_address().value(), 0x000f'ffff'ffff'f000u);
}

TEST(PageTableEntry, AttributesRoundTrip) {
  for (unsigned bits = 0; bits < 64; ++bits) {
    for (std::uint8_t sw = 0; sw < 8; ++sw) {
      const PageAttributes a{.writable = (bits & 1) != 0,
                             .user = (bits & 2) != 0,
                             .executable = (bits & 4) != 0,
                             .global = (bits & 8) != 0,
                             .write_through = (bits & 16) != 0,
                             .cache_disable = (bits & 32) != 0,
                             .software = sw};
      for (PageSize s : {PageSize::k4K, PageSize::k2M, PageSize::k1G}) {
        const PageTableEntry e = PageTableEntry::leaf(Gpa(0x4000'0000), s, a, true);
        ASSERT_EQ(e.attributes(), a);
        ASSERT_EQ(e.page_address(s), Gpa(0x4000'0000));
        ASSERT_EQ(e.is_leaf(leaf_level(s)), true);
      }
    }
  }
}

TEST(Paging, IndicesAndCanonicalAddresses) {
  const Gva va(0x0000'7f12'3456'7000);
  // 0x7f12_3456_7000: PML4 254, PDPT 72, PD 418, PT 359.
  EXPECT_EQ(index(4, va), 0xfeu);
  EXPECT_EQ(index(3, va), 0x48u);
  EXPECT_EQ(index(2, va), 0x1a2u);
  EXPECT_EQ(index(1, va), 0x167u);
  EXPECT_EQ(index(4, Gva(0xffff'8000'0000'0000)), 256u);
  EXPECT_EQ(index(4, Gva(0xffff'ffff'ffff'ffff)), 511u);
  EXPECT_TRUE(is_canonical(Gva(0x0000'7fff'ffff'ffff)));
  EXPECT_FALSE(is_canonical(Gva(0x0000'8000'0000'0000)));
  EXPECT_TRUE(is_canonical(Gva(0xffff'8000'0000'0000)));
  EXPECT_FALSE(is_canonical(Gva(0xfffe'ffff'ffff'ffff)));
  EXPECT_TRUE(is_canonical(Gva(0x00ff'ffff'ffff'ffff), 57));
  EXPECT_EQ(page_bytes(PageSize::k2M), 2u << 20);
  EXPECT_EQ(page_bytes(PageSize::k1G), 1u << 30);
  EXPECT_EQ(level_span(4), 512 * G1);
}

// --- page size selection ----------------------------------------------------

TEST(PageTable, PicksTheLargestPageBothAddressesAllow) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  // va and pa both 1 GiB aligned: 1 GiB, then 2 MiB, then 4 KiB for the tail.
  ASSERT_TRUE(pt->map(Gva(G1), Gpa(2 * G1), G1 + M2 + K4, kRw));
  EXPECT_EQ(leaves(*pt, Gva(0), 4 * G1), (std::vector<Leaf>{{G1, PageSize::k1G, 2 * G1},
                                                            {2 * G1, PageSize::k2M, 3 * G1},
                                                            {2 * G1 + M2, PageSize::k4K, 3 * G1 + M2}}));
  expect_consistent(mem, *pt);
}

TEST(PageTable, PhysicalAlignmentLimitsThePageSize) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  // va 1 GiB aligned, pa only 2 MiB aligned: 2 MiB pages.
  ASSERT_TRUE(pt->map(Gva(4 * G1), Gpa(G1 + M2), G1, kRw));
  EXPECT_EQ(count_sizes(leaves(*pt, Gva(4 * G1), G1)), (std::map<PageSize, int>{{PageSize::k2M, 512}}));
  // va 2 MiB aligned, pa only 4 KiB aligned: 4 KiB pages.
  ASSERT_TRUE(pt->map(Gva(8 * G1), Gpa(5 * K4), 2 * M2, kRw));
  EXPECT_EQ(count_sizes(leaves(*pt, Gva(8 * G1), 2 * M2)), (std::map<PageSize, int>{{PageSize::k4K, 1024}}));
  expect_consistent(mem, *pt);
}

TEST(PageTable, UnalignedStartUsesSmallPagesUpToTheBoundary) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  // Starts 4 KiB below a 1 GiB boundary, same offset in pa.
  ASSERT_TRUE(pt->map(Gva(2 * G1 - K4), Gpa(5 * G1 - K4), G1 + K4, kRw));
  EXPECT_EQ(leaves(*pt, Gva(0), 8 * G1),
            (std::vector<Leaf>{{2 * G1 - K4, PageSize::k4K, 5 * G1 - K4}, {2 * G1, PageSize::k1G, 5 * G1}}));
}

TEST(PageTable, LargestCapsThePageSize) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  ASSERT_TRUE(pt->map(Gva(G1), Gpa(G1), G1, kRw, PageSize::k2M));
  EXPECT_EQ(count_sizes(leaves(*pt, Gva(G1), G1)), (std::map<PageSize, int>{{PageSize::k2M, 512}}));
  ASSERT_TRUE(pt->map(Gva(4 * G1), Gpa(G1), M2, kRw, PageSize::k4K));
  EXPECT_EQ(count_sizes(leaves(*pt, Gva(4 * G1), M2)), (std::map<PageSize, int>{{PageSize::k4K, 512}}));
}

TEST(PageTable, MachineWithoutGibPagesGets2MiBPages) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kNoGib);
  ASSERT_TRUE(pt);
  ASSERT_TRUE(pt->map(Gva(G1), Gpa(G1), 2 * G1, kRw));
  const auto ls = leaves(*pt, Gva(0), 4 * G1);
  EXPECT_EQ(count_sizes(ls), (std::map<PageSize, int>{{PageSize::k2M, 1024}}));
  for (const Leaf& l : ls) EXPECT_EQ(l.pa, l.va);
  // No entry at the PDPT level is a leaf.
  pt->for_each_leaf(Gva(0), 4 * G1, [](Gva, PageSize s, PageTableEntry&) { EXPECT_NE(s, PageSize::k1G); });
  expect_consistent(mem, *pt);
}

// --- lookup -----------------------------------------------------------------

TEST(PageTable, LookupOfEveryInterestingAddress) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  const Gva va(0x7f00'0000'0000 - M2 - K4);  // a 4 KiB page, a 2 MiB page, then 1 GiB
  const Gpa pa(0x40'0000'0000 - M2 - K4);
  const std::uint64_t size = K4 + M2 + G1;
  ASSERT_TRUE(pt->map(va, pa, size, kUserRwx));

  for (std::uint64_t off : std::initializer_list<std::uint64_t>{0, 1, K4 - 1, K4, K4 + 0x123, K4 + M2 - 1, K4 + M2, K4 + M2 + 0x12345678,
                            size - K4, size - 1}) {
    const auto t = pt->lookup(va + off);
    ASSERT_TRUE(t) << std::hex << off;
    EXPECT_EQ(t->pa, pa + off) << std::hex << off;
    EXPECT_EQ(t->attrs, kUserRwx);
    const PageSize want = off < K4 ? PageSize::k4K : off < K4 + M2 ? PageSize::k2M : PageSize::k1G;
    EXPECT_EQ(t->size, want) << std::hex << off;
    EXPECT_TRUE(t->leaf->present());
  }
  EXPECT_FALSE(pt->lookup(va - 1));
  EXPECT_FALSE(pt->lookup(va + size));
  EXPECT_FALSE(pt->lookup(Gva(0)));
  EXPECT_FALSE(pt->lookup(Gva(0x0000'8000'0000'0000)));  // non-canonical
}

TEST(PageTable, UpperHalfAddresses) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  const Gva va(0xffff'ffff'ffe0'0000);  // the last 2 MiB of the address space
  ASSERT_TRUE(pt->map(va, Gpa(0x20'0000), M2, kRx));
  const auto t = pt->lookup(Gva(0xffff'ffff'ffff'ffff));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->pa, Gpa(0x3f'ffff));
  EXPECT_EQ(t->size, PageSize::k2M);
  EXPECT_EQ(leaves(*pt, va, M2), (std::vector<Leaf>{{va.value(), PageSize::k2M, 0x20'0000}}));
  ASSERT_TRUE(pt->unmap(va, M2));
  EXPECT_FALSE(pt->lookup(va));
  EXPECT_EQ(mem.live(), 1u);
}

TEST(PageTable, MapReplacesExistingMappings) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  ASSERT_TRUE(pt->map(Gva(G1), Gpa(G1), G1, kRw));
  ASSERT_TRUE(pt->map(Gva(G1 + 3 * K4), Gpa(7 * G1), 2 * K4, kRx));
  EXPECT_EQ(pt->lookup(Gva(G1 + 3 * K4 + 5))->pa, Gpa(7 * G1 + 5));
  EXPECT_EQ(pt->lookup(Gva(G1 + 4 * K4))->attrs, kRx);
  EXPECT_EQ(pt->lookup(Gva(G1 + 2 * K4))->pa, Gpa(G1 + 2 * K4));
  EXPECT_EQ(pt->lookup(Gva(G1 + 2 * K4))->attrs, kRw);
  EXPECT_EQ(pt->lookup(Gva(G1 + 5 * K4))->pa, Gpa(G1 + 5 * K4));
  expect_consistent(mem, *pt);
}

TEST(PageTable, RemapOfALargePageWithSmallerPages) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  ASSERT_TRUE(pt->map(Gva(G1), Gpa(G1), M2, kRw));
  // The same 2 MiB again, but with a pa that allows only 4 KiB pages.
  ASSERT_TRUE(pt->map(Gva(G1), Gpa(7 * G1 + K4), M2, kRx));
  const auto ls = leaves(*pt, Gva(G1), M2);
  ASSERT_EQ(ls.size(), 512u);
  for (std::size_t i = 0; i < ls.size(); ++i) {
    EXPECT_EQ(ls[i], (Leaf{G1 + i * K4, PageSize::k4K, 7 * G1 + (i + 1) * K4}));
  }
  EXPECT_EQ(pt->lookup(Gva(G1 + M2 - 1))->attrs, kRx);
  expect_consistent(mem, *pt);
}

// --- unmap ------------------------------------------------------------------

TEST(PageTable, UnmapMiddlePageOfAGibPageKeepsTheRest) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  const Gva va(G1);
  const Gpa pa(5 * G1);
  const PageAttributes attrs{.writable = true, .global = true, .software = 6};
  ASSERT_TRUE(pt->map(va, pa, G1, attrs));
  const std::uint64_t hole = 0x1234'5000;
  ASSERT_TRUE(pt->unmap(va + hole, K4));

  EXPECT_FALSE(pt->lookup(va + hole));
  EXPECT_FALSE(pt->lookup(va + hole + K4 - 1));
  for (std::uint64_t off : std::initializer_list<std::uint64_t>{0, hole - M2, hole - K4, hole - 1, hole + K4, hole + K4 + 0x10, hole + M2,
                            G1 - K4, G1 - 1}) {
    const auto t = pt->lookup(va + off);
    ASSERT_TRUE(t) << std::hex << off;
    EXPECT_EQ(t->pa, pa + off) << std::hex << off;
    EXPECT_EQ(t->attrs, attrs);
  }
  // 511 2 MiB pages and 511 4 KiB pages remain.
  EXPECT_EQ(count_sizes(leaves(*pt, va, G1)),
            (std::map<PageSize, int>{{PageSize::k4K, 511}, {PageSize::k2M, 511}}));
  expect_consistent(mem, *pt);
}

TEST(PageTable, SplitMovesThePatBit) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  ASSERT_TRUE(pt->map(Gva(G1), Gpa(G1), G1, kRw));
  PageTableEntry* big = pt->lookup(Gva(G1))->leaf;
  store_entry(big, PageTableEntry(*big).set_pat_large(true).set_dirty(true));
  ASSERT_TRUE(pt->unmap(Gva(G1), K4));
  // Bit 12 of a PTE is address: a PAT bit left there would move the page.
  const PageTableEntry small = *pt->lookup(Gva(G1 + 2 * K4))->leaf;
  EXPECT_TRUE(small.pat_4k());  // bit 7 in a PTE
  EXPECT_TRUE(small.dirty());
  EXPECT_EQ(small.page_address(PageSize::k4K), Gpa(G1 + 2 * K4));
  EXPECT_EQ(pt->lookup(Gva(G1 + K4))->leaf->page_address(PageSize::k4K), Gpa(G1 + K4));
  EXPECT_EQ(pt->lookup(Gva(G1 + 2 * K4 + 7))->pa, Gpa(G1 + 2 * K4 + 7));
  const PageTableEntry mid = *pt->lookup(Gva(G1 + M2))->leaf;
  EXPECT_TRUE(mid.page_size());
  EXPECT_TRUE(mid.pat_large());
  EXPECT_EQ(mid.page_address(PageSize::k2M), Gpa(G1 + M2));
}

TEST(PageTable, UnmapAcrossEdgesOfLargePages) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kNoGib);
  ASSERT_TRUE(pt);
  ASSERT_TRUE(pt->map(Gva(G1), Gpa(G1), 4 * M2, kRw));
  // From the middle of the first 2 MiB page to the middle of the third.
  ASSERT_TRUE(pt->unmap(Gva(G1 + M2 / 2), 2 * M2));
  EXPECT_TRUE(pt->lookup(Gva(G1 + M2 / 2 - 1)));
  EXPECT_FALSE(pt->lookup(Gva(G1 + M2 / 2)));
  EXPECT_FALSE(pt->lookup(Gva(G1 + M2)));
  EXPECT_FALSE(pt->lookup(Gva(G1 + 2 * M2 + M2 / 2 - 1)));
  EXPECT_EQ(pt->lookup(Gva(G1 + 2 * M2 + M2 / 2))->pa, Gpa(G1 + 2 * M2 + M2 / 2));
  EXPECT_EQ(pt->lookup(Gva(G1 + 3 * M2))->size, PageSize::k2M);
  expect_consistent(mem, *pt);
}

TEST(PageTable, UnmapOfHolesIsANoOp) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  ASSERT_TRUE(pt->unmap(Gva(0), 512 * G1));
  EXPECT_EQ(mem.allocations, 1);
  EXPECT_EQ(mem.live(), 1u);
}

// --- releases ---------------------------------------------------------------

TEST(PageTable, UnmapReleasesTablesThatBecomeEmpty) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  ASSERT_TRUE(pt->map(Gva(0x7f00'0000'1000), Gpa(0x1000), 2 * K4, kRw));
  EXPECT_EQ(mem.live(), 4u);  // root, PDPT, PD, PT
  ASSERT_TRUE(pt->unmap(Gva(0x7f00'0000'1000), K4));
  EXPECT_EQ(mem.live(), 4u);
  ASSERT_TRUE(pt->unmap(Gva(0x7f00'0000'2000), K4));
  EXPECT_EQ(mem.live(), 1u);
  EXPECT_EQ(mem.releases, 3);
  EXPECT_EQ(pt->root().value(), 0x10'0000u);  // the root stays
  expect_consistent(mem, *pt);
}

TEST(PageTable, KeepEmptyTablesLeavesThemLinkedForReuse) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  pt->set_keep_empty_tables(true);
  ASSERT_TRUE(pt->map(Gva(0x7f00'0000'1000), Gpa(0x1000), K4, kRw));
  ASSERT_TRUE(pt->unmap(Gva(0x7f00'0000'1000), K4));
  EXPECT_FALSE(pt->lookup(Gva(0x7f00'0000'1000)).has_value());
  EXPECT_EQ(mem.live(), 4u);
  EXPECT_EQ(mem.releases, 0);
  // Mapping there again needs no new table.
  ASSERT_TRUE(pt->map(Gva(0x7f00'0000'3000), Gpa(0x3000), K4, kRw));
  EXPECT_EQ(mem.allocations, 4);
  EXPECT_EQ(pt->lookup(Gva(0x7f00'0000'3000))->pa, Gpa(0x3000));
  expect_consistent(mem, *pt);
}

TEST(PageTable, MappingALargePageReleasesTheTablesItReplaces) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  ASSERT_TRUE(pt->map(Gva(G1), Gpa(G1), 2 * K4, kRw));
  ASSERT_TRUE(pt->map(Gva(G1 + M2), Gpa(G1), K4, kRw));
  EXPECT_EQ(mem.live(), 5u);  // root, PDPT, PD, 2 PTs
  ASSERT_TRUE(pt->map(Gva(G1), Gpa(G1), M2, kRw));  // replaces the first PT
  EXPECT_EQ(mem.releases, 1);
  ASSERT_TRUE(pt->map(Gva(G1), Gpa(G1), G1, kRw));  // replaces the PD and the second PT
  EXPECT_EQ(mem.releases, 3);
  EXPECT_EQ(mem.live(), 2u);
  expect_consistent(mem, *pt);
}

TEST(PageTable, DestroyReleasesEverything) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  ASSERT_TRUE(pt->map(Gva(0x1000), Gpa(0x1000), 3 * G1, kRw));
  ASSERT_TRUE(pt->map(Gva(0x7fff'0000'0000), Gpa(0x1000), K4, kRw));
  pt->destroy();
  EXPECT_EQ(mem.live(), 0u);
  EXPECT_EQ(mem.releases, mem.allocations);
  EXPECT_EQ(mem.bad_releases, 0);
  EXPECT_FALSE(pt->map(Gva(0), Gpa(0), K4, kRw));
  EXPECT_FALSE(pt->lookup(Gva(0x1000)));
}

// --- protect ----------------------------------------------------------------

TEST(PageTable, ProtectChangesPresentPagesAndLeavesHoles) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  const Gva va(0x5555'0000'0000);
  ASSERT_TRUE(pt->map(va, Gpa(0x100'0000), 8 * K4, kUserRwx));
  ASSERT_TRUE(pt->unmap(va + 3 * K4, K4));
  // The CPU set accessed/dirty on a page; protect must keep them.
  PageTableEntry* e = pt->lookup(va + 2 * K4)->leaf;
  store_entry(e, PageTableEntry(*e).set_accessed(true).set_dirty(true));

  const PageAttributes ro{.user = true};
  ASSERT_TRUE(pt->protect(va + K4, 4 * K4, ro));
  EXPECT_EQ(pt->lookup(va)->attrs, kUserRwx);
  EXPECT_EQ(pt->lookup(va + K4)->attrs, ro);
  EXPECT_EQ(pt->lookup(va + 2 * K4)->attrs, ro);
  EXPECT_TRUE(pt->lookup(va + 2 * K4)->leaf->accessed());
  EXPECT_TRUE(pt->lookup(va + 2 * K4)->leaf->dirty());
  EXPECT_FALSE(pt->lookup(va + 3 * K4));  // still a hole
  EXPECT_EQ(pt->lookup(va + 4 * K4)->attrs, ro);
  EXPECT_EQ(pt->lookup(va + 4 * K4)->pa, Gpa(0x100'0000 + 4 * K4));
  EXPECT_EQ(pt->lookup(va + 5 * K4)->attrs, kUserRwx);
  // Non-executable is XD in the raw entry.
  EXPECT_TRUE(pt->lookup(va + K4)->leaf->execute_disable());
  expect_consistent(mem, *pt);
}

TEST(PageTable, ProtectSplitsLargePagesAtTheEdges) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  ASSERT_TRUE(pt->map(Gva(G1), Gpa(3 * G1), G1, kRw));
  ASSERT_TRUE(pt->protect(Gva(G1 + M2 - K4), M2 + 2 * K4, kRx));
  EXPECT_EQ(pt->lookup(Gva(G1 + M2 - 2 * K4))->attrs, kRw);
  EXPECT_EQ(pt->lookup(Gva(G1 + M2 - K4))->attrs, kRx);
  EXPECT_EQ(pt->lookup(Gva(G1 + M2 - K4))->size, PageSize::k4K);
  // The 2 MiB page wholly inside the range changes in place.
  EXPECT_EQ(pt->lookup(Gva(G1 + M2))->attrs, kRx);
  EXPECT_EQ(pt->lookup(Gva(G1 + M2))->size, PageSize::k2M);
  EXPECT_EQ(pt->lookup(Gva(G1 + 2 * M2))->attrs, kRx);
  EXPECT_EQ(pt->lookup(Gva(G1 + 2 * M2 + K4))->attrs, kRw);
  EXPECT_EQ(pt->lookup(Gva(G1 + 2 * M2 + K4))->pa, Gpa(3 * G1 + 2 * M2 + K4));
  EXPECT_EQ(pt->lookup(Gva(G1 + 2 * M2 + K4))->size, PageSize::k4K);
  EXPECT_EQ(pt->lookup(Gva(G1 + 4 * M2))->size, PageSize::k2M);
  // A whole large page changes in place.
  ASSERT_TRUE(pt->protect(Gva(G1 + 8 * M2), M2, kRx));
  EXPECT_EQ(pt->lookup(Gva(G1 + 8 * M2))->size, PageSize::k2M);
  EXPECT_EQ(pt->lookup(Gva(G1 + 8 * M2))->attrs, kRx);
  expect_consistent(mem, *pt);
}

TEST(PageTable, WithoutNxEverythingIsExecutable) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, {.gib_pages = true, .nx = false, .phys_bits = 40});
  ASSERT_TRUE(pt);
  ASSERT_TRUE(pt->map(Gva(0x1000), Gpa(0x1000), K4, kRw));
  const auto t = pt->lookup(Gva(0x1000));
  ASSERT_TRUE(t);
  EXPECT_FALSE(t->leaf->execute_disable());
  EXPECT_TRUE(t->attrs.executable);
}

// --- errors -----------------------------------------------------------------

TEST(PageTable, RejectsBadArguments) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  EXPECT_FALSE(pt->map(Gva(0x1001), Gpa(0x1000), K4, kRw));
  EXPECT_FALSE(pt->map(Gva(0x1000), Gpa(0x1800), K4, kRw));
  EXPECT_FALSE(pt->map(Gva(0x1000), Gpa(0x1000), 100, kRw));
  EXPECT_FALSE(pt->map(Gva(0x0000'8000'0000'0000), Gpa(0x1000), K4, kRw));
  EXPECT_FALSE(pt->unmap(Gva(0xfff0'0000'0000'0000), K4));
  EXPECT_FALSE(pt->protect(Gva(0x1000), 5, kRw));
  // Crossing the top of the lower canonical half.
  EXPECT_FALSE(pt->map(Gva(0x7fff'ffff'e000), Gpa(0), 4 * K4, kRw));
  EXPECT_TRUE(pt->map(Gva(0x7fff'ffff'e000), Gpa(0), 2 * K4, kRw));
  const auto bad = pt->map(Gva(0x0000'8000'0000'0000), Gpa(0x1000), K4, kRw);
  EXPECT_STREQ(bad.error().what, "page table: non-canonical virtual address");
  EXPECT_EQ(bad.error().err, EINVAL);
  expect_consistent(mem, *pt);
}

TEST(PageTable, EnforcesPhysBits39) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kNoGib);  // 39 bits
  ASSERT_TRUE(pt);
  const std::uint64_t top = std::uint64_t{1} << 39;
  EXPECT_TRUE(pt->map(Gva(G1), Gpa(top - K4), K4, kRw));
  EXPECT_FALSE(pt->map(Gva(G1), Gpa(top), K4, kRw));
  EXPECT_FALSE(pt->map(Gva(G1), Gpa(top - K4), 2 * K4, kRw));
  EXPECT_FALSE(pt->map(Gva(G1), Gpa(0xffff'ffff'ffff'f000), 2 * K4, kRw));  // pa + size wraps
  EXPECT_EQ(pt->lookup(Gva(G1))->pa, Gpa(top - K4));
}

TEST(PageTable, EnforcesPhysBits36) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, {.gib_pages = false, .nx = true, .phys_bits = 36});
  ASSERT_TRUE(pt);
  EXPECT_TRUE(pt->map(Gva(G1), Gpa(0xf'ffe0'0000), M2, kRw));
  EXPECT_FALSE(pt->map(Gva(G1), Gpa(0x10'0000'0000), M2, kRw));
  const auto err = pt->map(Gva(G1), Gpa(0xf'ffe0'0000), 2 * M2, kRw);
  ASSERT_FALSE(err);
  EXPECT_STREQ(err.error().what, "page table: physical address beyond MAXPHYADDR");
}

TEST(PageTable, RejectsTableMemoryBeyondPhysBits) {
  FakeTableMemory mem(std::uint64_t{1} << 39);
  EXPECT_FALSE(PageTable::create(mem, kNoGib));
  EXPECT_EQ(mem.live(), 0u);
}

TEST(PageTable, AllocationFailureWhileSplittingChangesNothing) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  ASSERT_TRUE(pt->map(Gva(G1), Gpa(G1), G1, kRw));
  const auto before = leaves(*pt, Gva(0), 4 * G1);
  const std::size_t live = mem.live();
  // Splitting down to a 4 KiB page needs two tables; only one is available.
  mem.fail_after(1);
  const Status s = pt->unmap(Gva(G1 + 0x1000), K4);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().err, ENOMEM);
  EXPECT_EQ(leaves(*pt, Gva(0), 4 * G1), before);  // still one 1 GiB page
  EXPECT_EQ(mem.live(), live);                     // the detached PD went back
  EXPECT_EQ(mem.releases, 1);
  expect_consistent(mem, *pt);
  mem.fail_after(-1);
  EXPECT_TRUE(pt->unmap(Gva(G1 + 0x1000), K4));
  EXPECT_FALSE(pt->lookup(Gva(G1 + 0x1000)));
}

TEST(PageTable, AllocationFailureMidwayLeavesAValidPrefix) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  const Gva va(G1);
  // The PDPT and PD exist already (linked), so each new PT is linked as
  // soon as it is filled. 4 KiB pages over 8 MiB need four PTs; allow two.
  ASSERT_TRUE(pt->map(va + 100 * M2, Gpa(0), K4, kRw));
  mem.fail_after(2);
  const Status s = pt->map(va, Gpa(G1 + K4), 4 * M2, kRw);
  ASSERT_FALSE(s);
  expect_consistent(mem, *pt);
  std::uint64_t mapped = 0;
  pt->for_each_leaf(va, 4 * M2, [&](Gva page, PageSize size, PageTableEntry& e) {
    EXPECT_EQ(size, PageSize::k4K);
    EXPECT_EQ(page.value(), va.value() + mapped);  // a contiguous prefix
    EXPECT_EQ(e.page_address(size).value(), page.value() + K4);
    mapped += K4;
  });
  EXPECT_EQ(mapped, 2 * M2);
  mem.fail_after(-1);
  ASSERT_TRUE(pt->map(va, Gpa(G1 + K4), 4 * M2, kRw));
  EXPECT_EQ(leaves(*pt, va, 4 * M2).size(), 4u * 512);
  expect_consistent(mem, *pt);
}

// --- adopt / walk -----------------------------------------------------------

TEST(PageTable, AllocationFailureInsideANewSubtreeLinksNothing) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  // A new PDPT, PD and four PTs are built detached; the third PT fails.
  mem.fail_after(4);
  ASSERT_FALSE(pt->map(Gva(G1), Gpa(G1 + K4), 4 * M2, kRw));
  EXPECT_TRUE(leaves(*pt, Gva(0), 512 * G1).empty());
  EXPECT_EQ(mem.live(), 1u);
  EXPECT_EQ(mem.releases, 4);
  EXPECT_EQ(pt->root().value(), 0x10'0000u);
  EXPECT_EQ(mem.table_at(pt->root())[0].raw(), 0u);
  expect_consistent(mem, *pt);
}

TEST(PageTable, AdoptSeesTheSameTree) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  ASSERT_TRUE(pt->map(Gva(0x40'0000), Gpa(0x80'0000), M2, kRx));
  auto other = PageTable::adopt(mem, kFull, pt->root());
  ASSERT_TRUE(other);
  EXPECT_EQ(other->lookup(Gva(0x40'0123))->pa, Gpa(0x80'0123));
  ASSERT_TRUE(other->unmap(Gva(0x40'0000), M2));
  EXPECT_FALSE(pt->lookup(Gva(0x40'0000)));
  EXPECT_FALSE(PageTable::adopt(mem, kFull, Gpa(0x1234'0000)));
  EXPECT_FALSE(PageTable::adopt(mem, kFull, Gpa(pt->root().value() + 8)));
}

TEST(PageTable, MoveTransfersTheTree) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  const Gpa root = pt->root();
  PageTable moved = std::move(*pt);
  EXPECT_EQ(moved.root(), root);
  EXPECT_EQ(pt->root(), Gpa(0));
  pt->destroy();  // nothing to release
  EXPECT_EQ(mem.live(), 1u);
  moved.destroy();
  EXPECT_EQ(mem.live(), 0u);
}

TEST(PageTable, WalkReportsPartiallyCoveredLeavesAndSkipsHoles) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  ASSERT_TRUE(pt->map(Gva(M2), Gpa(M2), M2, kRw));
  ASSERT_TRUE(pt->map(Gva(3 * M2), Gpa(0), K4, kRw));
  EXPECT_EQ(leaves(*pt, Gva(M2 + 5 * K4), 2 * M2 + K4),
            (std::vector<Leaf>{{M2, PageSize::k2M, M2}, {3 * M2, PageSize::k4K, 0}}));
  EXPECT_TRUE(leaves(*pt, Gva(0), M2).empty());
}

// --- markers, hidden leaves, kept entries, clones -----------------------------

constexpr std::uint8_t kOwn = 2;
constexpr PageAttributes kOwnRw{.writable = true, .software = kOwn};

TEST(PageTable, UnmapLeavesAMarkerThatSplitsWithItsEntry) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  ASSERT_TRUE(pt->unmap(Gva(G1), G1, PageTableEntry::marker(kOwn)));
  auto whole = pt->find(Gva(G1 + 5 * K4));
  ASSERT_TRUE(whole);
  EXPECT_EQ(whole->level, 3u);  // one PDPT entry marks the whole GiB
  EXPECT_EQ(load_entry(whole->entry), PageTableEntry::marker(kOwn));
  // Mapping one page inside splits the marker: the rest stays marked.
  ASSERT_TRUE(pt->map(Gva(G1 + M2), Gpa(0x4000'0000), K4, kRw));
  auto rest = pt->find(Gva(G1 + M2 + K4));
  ASSERT_TRUE(rest);
  EXPECT_EQ(rest->level, 1u);
  EXPECT_EQ(load_entry(rest->entry), PageTableEntry::marker(kOwn));
  auto far = pt->find(Gva(G1 + 7 * M2));
  ASSERT_TRUE(far);
  EXPECT_EQ(load_entry(far->entry), PageTableEntry::marker(kOwn));
  EXPECT_TRUE(pt->lookup(Gva(G1 + M2)));
  EXPECT_FALSE(pt->lookup(Gva(G1 + M2 + K4)));
}

TEST(PageTable, HideKeepsTheFrameAndProtectBringsItBack) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  ASSERT_TRUE(pt->map(Gva(M2), Gpa(4 * M2), M2, kRw));
  ASSERT_TRUE(pt->hide(Gva(M2 + K4), K4, kOwn));  // splits the 2 MiB page
  EXPECT_FALSE(pt->lookup(Gva(M2 + K4)));
  EXPECT_TRUE(pt->lookup(Gva(M2)));
  auto hidden = pt->find(Gva(M2 + K4));
  ASSERT_TRUE(hidden);
  const PageTableEntry h = load_entry(hidden->entry);
  EXPECT_TRUE(h.hidden());
  EXPECT_FALSE(h.present());
  EXPECT_EQ(h.software(), kOwn);
  EXPECT_EQ(h.page_address(PageSize::k4K), Gpa(4 * M2 + K4));
  ASSERT_TRUE(pt->protect(Gva(M2 + K4), K4, kRx));
  auto back = pt->lookup(Gva(M2 + K4 + 9));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->pa, Gpa(4 * M2 + K4 + 9));
  EXPECT_TRUE(back->attrs.executable);
  EXPECT_FALSE(back->attrs.writable);
  EXPECT_FALSE(load_entry(back->leaf).hidden());
}

TEST(PageTable, HiddenMappingIsKnownButNotPresentUntilRevealedElsewhere) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  // A mapping known before its memory may be used: written hidden, with
  // the alignment its frame will have (here: the offset in a 1 GiB chunk).
  const EditOptions hidden{.hidden = true};
  ASSERT_TRUE(pt->map(Gva(5 * G1 + M2 - 2 * K4), Gpa(M2 - 2 * K4), 2 * M2, kRw, PageSize::k1G, hidden));
  EXPECT_FALSE(pt->lookup(Gva(5 * G1 + M2)));
  EXPECT_TRUE(leaves(*pt, Gva(5 * G1), G1).empty());
  std::vector<Leaf> known;
  pt->for_each_hidden_leaf(Gva(5 * G1), G1, [&](Gva page, PageSize s, PageTableEntry& e) {
    EXPECT_TRUE(load_entry(&e).hidden());
    EXPECT_TRUE(load_entry(&e).writable());
    known.push_back({page.value(), s, e.page_address(s).value()});
  });
  // Two 4 KiB pages, a 2 MiB page, 510 4 KiB pages: the shapes a present
  // mapping would have had.
  ASSERT_EQ(known.size(), 2u + 1u + 510u);
  EXPECT_EQ(count_sizes(known)[PageSize::k2M], 1);
  // Into service mapping another frame: chunk 9.
  EXPECT_EQ(pt->reveal(Gva(5 * G1), G1, Gpa(9 * G1), /*software=*/0), known.size());
  auto t = pt->lookup(Gva(5 * G1 + M2 + 0x123));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->pa, Gpa(9 * G1 + M2 + 0x123));
  EXPECT_EQ(t->size, PageSize::k2M);
  EXPECT_TRUE(t->attrs.writable);
  EXPECT_FALSE(load_entry(t->leaf).hidden());
  EXPECT_EQ(pt->lookup(Gva(5 * G1 + M2 - K4))->pa, Gpa(9 * G1 + M2 - K4));
  EXPECT_EQ(leaves(*pt, Gva(5 * G1), G1).size(), known.size());
}

TEST(PageTable, HideAndRevealMoveAMappingToAnotherFrameKeepingItsBits) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  ASSERT_TRUE(pt->map(Gva(G1), Gpa(3 * G1), 8 * K4, kRw));
  ASSERT_TRUE(pt->map(Gva(G1 + 5 * K4), Gpa(0x7000'0000), K4, kOwnRw));  // another owner's page
  PageTableEntry* e = pt->lookup(Gva(G1 + K4))->leaf;
  store_entry(e, PageTableEntry(load_entry(e)).set_accessed(true).set_dirty(true));
  ASSERT_TRUE(pt->hide(Gva(G1), G1, 0, EditOptions{.keep_software = kOwn}));
  EXPECT_FALSE(pt->lookup(Gva(G1)));
  EXPECT_TRUE(pt->lookup(Gva(G1 + 5 * K4))) << "the kept owner's page stays in service";
  // Revealing another owner's bits finds nothing; the right ones come back
  // at the new frame, accessed and dirty kept.
  EXPECT_EQ(pt->reveal(Gva(G1), G1, Gpa(7 * G1), kOwn), 0u);
  EXPECT_EQ(pt->reveal(Gva(G1), G1, Gpa(7 * G1), 0), 7u);
  auto t = pt->lookup(Gva(G1 + K4));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->pa, Gpa(7 * G1 + K4));
  EXPECT_TRUE(load_entry(t->leaf).accessed());
  EXPECT_TRUE(load_entry(t->leaf).dirty());
  EXPECT_EQ(pt->lookup(Gva(G1 + 5 * K4))->pa, Gpa(0x7000'0000));
  // A range that covers a leaf only in part leaves it hidden.
  ASSERT_TRUE(pt->map(Gva(4 * G1), Gpa(0), M2, kRw, PageSize::k2M, EditOptions{.hidden = true}));
  EXPECT_EQ(pt->reveal(Gva(4 * G1), K4, Gpa(0), 0), 0u);
  EXPECT_FALSE(pt->lookup(Gva(4 * G1)));
}

TEST(PageTable, KeptEntriesSurviveEditsOfTheRangeAroundThem) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  const EditOptions keep{.keep_software = kOwn};
  ASSERT_TRUE(pt->map(Gva(0), Gpa(0), G1, kRw));
  ASSERT_TRUE(pt->map(Gva(5 * K4), Gpa(0x7000'0000), K4, kOwnRw));  // the program's page
  ASSERT_TRUE(pt->unmap(Gva(7 * K4), K4, PageTableEntry::marker(kOwn)));  // and its hole
  // The owner's edits over the whole GiB leave both alone...
  ASSERT_TRUE(pt->map(Gva(0), Gpa(0), G1, kRx, PageSize::k1G, keep));
  auto own = pt->lookup(Gva(5 * K4));
  ASSERT_TRUE(own);
  EXPECT_EQ(own->pa, Gpa(0x7000'0000));
  EXPECT_TRUE(own->attrs.writable);
  EXPECT_FALSE(pt->lookup(Gva(7 * K4)));
  auto other = pt->lookup(Gva(6 * K4));
  ASSERT_TRUE(other);
  EXPECT_TRUE(other->attrs.executable);
  EXPECT_EQ(other->pa, Gpa(6 * K4));
  ASSERT_TRUE(pt->unmap(Gva(0), G1, PageTableEntry(), keep));
  EXPECT_TRUE(pt->lookup(Gva(5 * K4)));
  EXPECT_FALSE(pt->lookup(Gva(6 * K4)));
  // ...and without the option they go like anything else.
  ASSERT_TRUE(pt->unmap(Gva(0), G1));
  EXPECT_FALSE(pt->lookup(Gva(5 * K4)));
  EXPECT_EQ(load_entry(pt->find(Gva(7 * K4))->entry), PageTableEntry());
}

TEST(PageTable, RemapOfTheSameFrameKeepsAccessedAndDirty) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  ASSERT_TRUE(pt->map(Gva(K4), Gpa(K4), 2 * K4, kRw));
  for (std::uint64_t va : {K4, 2 * K4}) {
    PageTableEntry* e = pt->lookup(Gva(va))->leaf;
    store_entry(e, PageTableEntry(load_entry(e)).set_accessed(true).set_dirty(true));
  }
  ASSERT_TRUE(pt->map(Gva(K4), Gpa(K4), K4, kRx));           // same frame: kept
  ASSERT_TRUE(pt->map(Gva(2 * K4), Gpa(9 * K4), K4, kRw));   // another frame: clean
  EXPECT_TRUE(load_entry(pt->lookup(Gva(K4))->leaf).dirty());
  EXPECT_TRUE(load_entry(pt->lookup(Gva(K4))->leaf).accessed());
  EXPECT_FALSE(load_entry(pt->lookup(Gva(2 * K4))->leaf).dirty());
}

TEST(PageTable, CloneCopiesTablesAndEditsStayApart) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  ASSERT_TRUE(pt->map(Gva(0), Gpa(0), 4 * M2 + 3 * K4, kRw));
  const std::size_t before = mem.live();
  auto copy = pt->clone(false);
  ASSERT_TRUE(copy);
  EXPECT_EQ(mem.live(), 2 * before);
  EXPECT_EQ(leaves(*copy, Gva(0), G1), leaves(*pt, Gva(0), G1));
  ASSERT_TRUE(copy->unmap(Gva(4 * M2), K4));
  EXPECT_FALSE(copy->lookup(Gva(4 * M2)));
  EXPECT_TRUE(pt->lookup(Gva(4 * M2)));
  copy->destroy();
  EXPECT_EQ(mem.live(), before);
  expect_consistent(mem, *pt);
}

TEST(PageTable, CloneSharingLeafTablesSeesLeafEditsAndFreesOnlyItsOwn) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  ASSERT_TRUE(pt->map(Gva(0), Gpa(0), M2 + 3 * K4, kRw));  // one 2 MiB page, one page table
  const std::size_t before = mem.live();  // PML4, PDPT, PD, PT
  auto shared = pt->clone(true);
  ASSERT_TRUE(shared);
  EXPECT_EQ(mem.live(), before + 3);  // the page table is not copied
  ASSERT_TRUE(shared->protect(Gva(M2 + K4), K4, kRx));
  EXPECT_TRUE(pt->lookup(Gva(M2 + K4))->attrs.executable);  // one leaf, two trees
  // Replacing the shared table in the clone leaves the source's in place.
  ASSERT_TRUE(shared->map(Gva(M2), Gpa(M2), M2, kRw));
  EXPECT_EQ(pt->lookup(Gva(M2 + K4))->size, PageSize::k4K);
  shared->destroy();
  EXPECT_EQ(mem.live(), before);
  EXPECT_EQ(mem.bad_releases, 0);
  expect_consistent(mem, *pt);
}

// --- copy-on-write clones ------------------------------------------------------

// Walks every tree given and checks the link counts: each live table is
// linked exactly as often as the memory says (roots once), every link leads
// to a live table, and every live table is reachable.
void expect_links_consistent(FakeTableMemory& mem, const std::vector<const PageTable*>& trees) {
  std::map<std::uint64_t, std::uint32_t> seen;
  std::vector<std::pair<std::uint64_t, unsigned>> todo;
  for (const PageTable* t : trees) {
    ++seen[t->root().value()];
    todo.push_back({t->root().value(), kPagingLevels});
  }
  std::set<std::uint64_t> walked;
  while (!todo.empty()) {
    auto [gpa, level] = todo.back();
    todo.pop_back();
    ASSERT_TRUE(mem.is_live(Gpa(gpa))) << "dangling link to " << std::hex << gpa;
    if (!walked.insert(gpa).second || level == 1) continue;
    const PageTableEntry* t = mem.table_at(Gpa(gpa));
    for (unsigned i = 0; i < kEntriesPerTable; ++i) {
      const PageTableEntry e = t[i];
      if (!e.present() || e.is_leaf(level)) continue;
      ++seen[e.table_address().value()];
      todo.push_back({e.table_address().value(), level - 1});
    }
  }
  EXPECT_EQ(walked.size(), mem.live()) << "unreachable tables";
  for (const auto& [gpa, n] : seen) EXPECT_EQ(*mem.links(Gpa(gpa)), n) << std::hex << gpa;
  EXPECT_EQ(mem.bad_releases, 0);
}

constexpr EditOptions kUnshare{.unshare = true};

TEST(PageTable, CopyOnWriteCloneCostsOneTableAndSeesTheSameLeaves) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  ASSERT_TRUE(pt->map(Gva(0), Gpa(0), 4 * M2 + 3 * K4, kRw, PageSize::k4K));
  ASSERT_TRUE(pt->map(Gva(7 * G1), Gpa(G1), 2 * M2, kRx, PageSize::k4K));
  const std::size_t before = mem.live();
  auto copy = pt->clone(CloneKind::kCopyOnWrite);
  ASSERT_TRUE(copy);
  EXPECT_EQ(mem.live(), before + 1);
  EXPECT_EQ(copy->own_tables(), 1u);
  EXPECT_EQ(pt->own_tables(), 1u);  // its root: everything else is shared now
  EXPECT_EQ(leaves(*copy, Gva(0), 8 * G1), leaves(*pt, Gva(0), 8 * G1));
  expect_links_consistent(mem, {&*pt, &*copy});
}

TEST(PageTable, AnUnsharingEditCopiesOnlyTheTablesOnItsWayAndStaysInItsTree) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  ASSERT_TRUE(pt->map(Gva(0), Gpa(0), 4 * M2, kRw, PageSize::k4K));  // PML4, PDPT, PD, 2 PTs... 4 PTs
  const std::size_t before = mem.live();
  auto copy = pt->clone(CloneKind::kCopyOnWrite);
  ASSERT_TRUE(copy);
  // One page of the copy: its PDPT, PD and the one PT on the way are copied.
  ASSERT_TRUE(copy->protect(Gva(M2 + 5 * K4), K4, kRx, kUnshare));
  EXPECT_EQ(mem.live(), before + 1 + 3);
  EXPECT_EQ(copy->own_tables(), 4u);
  EXPECT_TRUE(copy->lookup(Gva(M2 + 5 * K4))->attrs.executable);
  EXPECT_FALSE(pt->lookup(Gva(M2 + 5 * K4))->attrs.executable);
  EXPECT_FALSE(copy->lookup(Gva(M2 + 6 * K4))->attrs.executable);
  // Again in the same table: nothing more to copy.
  ASSERT_TRUE(copy->unmap(Gva(M2 + 6 * K4), K4, PageTableEntry(), kUnshare));
  EXPECT_EQ(mem.live(), before + 4);
  EXPECT_FALSE(copy->lookup(Gva(M2 + 6 * K4)));
  EXPECT_TRUE(pt->lookup(Gva(M2 + 6 * K4)));
  // The source's own edit of a page table both still link copies that one;
  // its PDPT and PD are its own again (the copy has its own).
  ASSERT_TRUE(pt->unmap(Gva(3 * M2), K4, PageTableEntry(), kUnshare));
  EXPECT_EQ(mem.live(), before + 5);
  EXPECT_FALSE(pt->lookup(Gva(3 * M2)));
  EXPECT_TRUE(copy->lookup(Gva(3 * M2)));
  // A new mapping in the copy, where nothing was: its own tables only.
  ASSERT_TRUE(copy->map(Gva(5 * G1), Gpa(0), K4, kRw, PageSize::k4K, kUnshare));
  EXPECT_FALSE(pt->lookup(Gva(5 * G1)));
  expect_links_consistent(mem, {&*pt, &*copy});
  copy->destroy();
  expect_links_consistent(mem, {&*pt});
  pt->destroy();
  EXPECT_EQ(mem.live(), 0u);
  EXPECT_EQ(mem.bad_releases, 0);
}

TEST(PageTable, AnEditWithoutUnshareReachesEveryTreeThatSharesTheTable) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  ASSERT_TRUE(pt->map(Gva(0), Gpa(0), 2 * M2, kRw, PageSize::k4K));
  auto copy = pt->clone(CloneKind::kCopyOnWrite);
  ASSERT_TRUE(copy);
  // The monitor's kind of edit: through the shared tables, seen by both.
  ASSERT_TRUE(pt->protect(Gva(K4), K4, kRx));
  EXPECT_TRUE(copy->lookup(Gva(K4))->attrs.executable);
  // A split of a large page in a shared table (a new table linked there)
  // shows in both, and both trees' walks find the same table.
  ASSERT_TRUE(pt->map(Gva(G1), Gpa(G1), M2, kRw, PageSize::k2M));
  ASSERT_TRUE(copy->protect(Gva(G1 + 8 * K4), K4, kRx));
  EXPECT_EQ(pt->lookup(Gva(G1 + 8 * K4))->size, PageSize::k4K);
  EXPECT_TRUE(pt->lookup(Gva(G1 + 8 * K4))->attrs.executable);
  expect_links_consistent(mem, {&*pt, &*copy});
  // Either tree may go first.
  pt->destroy();
  expect_links_consistent(mem, {&*copy});
  EXPECT_TRUE(copy->lookup(Gva(G1 + 8 * K4)));
  copy->destroy();
  EXPECT_EQ(mem.live(), 0u);
  EXPECT_EQ(mem.bad_releases, 0);
}

TEST(PageTable, ManyCopyOnWriteClonesGiveEveryTableBack) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  ASSERT_TRUE(pt->map(Gva(0), Gpa(0), 8 * M2, kRw, PageSize::k4K));
  const std::size_t before = mem.live();
  std::vector<PageTable> clones;
  for (int i = 0; i < 200; ++i) {
    auto c = (i % 2 == 0 ? *pt : clones.back()).clone(CloneKind::kCopyOnWrite);  // clones of clones too
    ASSERT_TRUE(c);
    ASSERT_TRUE(c->map(Gva((i % 8) * M2 + (i % 512) * K4), Gpa(G1), K4, kRx, PageSize::k4K, kUnshare));
    clones.push_back(std::move(*c));
  }
  // Per clone: a root, a PDPT, a PD, a PT at most.
  EXPECT_LE(mem.live(), before + 200 * 4);
  for (int i = 0; i < 200; ++i) {
    const std::uint64_t va = (i % 8) * M2 + (i % 512) * K4;
    EXPECT_TRUE(clones[i].lookup(Gva(va))->attrs.executable) << i;
    EXPECT_FALSE(pt->lookup(Gva(va))->attrs.executable) << i;
  }
  std::vector<const PageTable*> all{&*pt};
  for (const PageTable& c : clones) all.push_back(&c);
  expect_links_consistent(mem, all);
  for (int i = 199; i >= 0; i -= 2) clones[i].destroy();
  for (int i = 0; i < 200; i += 2) clones[i].destroy();
  EXPECT_EQ(mem.live(), before);
  expect_links_consistent(mem, {&*pt});
}

TEST(PageTable, OneEditAppliedTreeAfterTreeLinksTheTablesItMadeWhereTheTreesAgree) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  ASSERT_TRUE(pt->map(Gva(0), Gpa(0), M2, kRw, PageSize::k4K));
  auto a = pt->clone(CloneKind::kCopyOnWrite);
  auto b = pt->clone(CloneKind::kCopyOnWrite);
  ASSERT_TRUE(a && b);
  // Each clone's own page directory (an edit of its own in the first 2 MiB).
  ASSERT_TRUE(a->protect(Gva(K4), K4, kRx, kUnshare));
  ASSERT_TRUE(b->protect(Gva(2 * K4), K4, kRx, kUnshare));
  const std::size_t before = mem.live();
  // The monitor's kind of edit, new memory at 4 MiB, tree after tree: one
  // page table for the three page directories that have none there.
  NewTables made;
  const EditOptions options{.new_tables = &made};
  for (PageTable* t : {&*pt, &*a, &*b}) ASSERT_TRUE(t->map(Gva(2 * M2), Gpa(G1), 3 * K4, kRw, PageSize::k4K, options));
  EXPECT_EQ(mem.live(), before + 1);
  for (PageTable* t : {&*pt, &*a, &*b}) EXPECT_EQ(t->lookup(Gva(2 * M2 + K4))->pa.value(), G1 + K4);
  expect_links_consistent(mem, {&*pt, &*a, &*b});
  // Where a tree held something else, it gets a table of its own.
  ASSERT_TRUE(b->map(Gva(3 * M2), Gpa(0), M2, kRw, PageSize::k2M, kUnshare));
  NewTables again;
  const EditOptions options2{.new_tables = &again};
  for (PageTable* t : {&*pt, &*a, &*b}) ASSERT_TRUE(t->protect(Gva(3 * M2), K4, kRx, options2));
  EXPECT_EQ(b->lookup(Gva(3 * M2))->size, PageSize::k4K);  // its 2 MiB page split
  EXPECT_TRUE(b->lookup(Gva(3 * M2))->attrs.executable);
  EXPECT_FALSE(a->lookup(Gva(3 * M2)));
  expect_links_consistent(mem, {&*pt, &*a, &*b});
  a->destroy();
  b->destroy();
  pt->destroy();
  EXPECT_EQ(mem.live(), 0u);
  EXPECT_EQ(mem.bad_releases, 0);
}

TEST(PageTable, AnUnsharingSlotCopiesItsWay) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  ASSERT_TRUE(pt->map(Gva(0), Gpa(0), M2, kRw, PageSize::k4K));
  auto copy = pt->clone(CloneKind::kCopyOnWrite);
  ASSERT_TRUE(copy);
  auto shared = copy->slot(Gva(3 * K4), 1, false);
  ASSERT_TRUE(shared);
  auto own = copy->slot(Gva(3 * K4), 1, false, /*unshare=*/true);
  ASSERT_TRUE(own);
  EXPECT_NE(own->entry, shared->entry);
  EXPECT_EQ(pt->slot(Gva(3 * K4), 1, false)->entry, shared->entry);
  store_entry(own->entry, PageTableEntry());
  EXPECT_FALSE(copy->lookup(Gva(3 * K4)));
  EXPECT_TRUE(pt->lookup(Gva(3 * K4)));
  expect_links_consistent(mem, {&*pt, &*copy});
}

TEST(PageTable, FindReportsTheDecidingEntryAndItsLevel) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  ASSERT_TRUE(pt->map(Gva(G1), Gpa(G1), G1, kRw));
  ASSERT_TRUE(pt->map(Gva(K4), Gpa(K4), K4, kRw));
  EXPECT_EQ(pt->find(Gva(G1 + 77))->level, 3u);
  EXPECT_EQ(pt->find(Gva(K4))->level, 1u);
  EXPECT_EQ(pt->find(Gva(4 * G1))->level, 3u);  // an empty PDPT entry under a present PML4 entry
  EXPECT_FALSE(pt->find(Gva(0x8000'0000'0000)));
}

TEST(PageTable, SlotMakesTheTablesDownToTheAskedLevel) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  const Gva va(0x4000'0000'0000 + 5 * K4);
  auto missing = pt->slot(va, 1, /*create=*/false);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().err, ENOENT);
  EXPECT_EQ(mem.allocations, 1);  // the root only
  auto slot = pt->slot(va, 1, /*create=*/true);
  ASSERT_TRUE(slot.ok());
  EXPECT_EQ(slot->level, 1u);
  EXPECT_EQ(mem.allocations, 4);  // PDPT, PD, PT
  EXPECT_EQ(load_entry(slot->entry).raw(), 0u);
  // A store through the slot is what the CPU then sees.
  store_entry(slot->entry, PageTableEntry::leaf(Gpa(0x7000'0000), PageSize::k4K, kRw, true));
  auto t = pt->lookup(va + 9);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->pa, Gpa(0x7000'0009));
  // The same slot again, now without creating anything.
  auto again = pt->slot(va, 1, false);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->entry, slot->entry);
  EXPECT_EQ(mem.allocations, 4);
  // A 2 MiB slot is the PD entry above it.
  auto pd = pt->slot(va, 2, false);
  ASSERT_TRUE(pd.ok());
  EXPECT_EQ(pd->level, 2u);
  EXPECT_TRUE(load_entry(pd->entry).present());
  expect_consistent(mem, *pt);
}

TEST(PageTable, SlotStopsAtALargePageAndInheritsMarkers) {
  FakeTableMemory mem;
  auto pt = PageTable::create(mem, kFull);
  ASSERT_TRUE(pt);
  pt->set_keep_empty_tables(true);  // as dunk's mirror: a table of markers stays
  ASSERT_TRUE(pt->map(Gva(G1), Gpa(G1), G1, kRw));
  auto big = pt->slot(Gva(G1 + 3 * K4), 1, /*create=*/true);
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(big->level, 3u);  // the 1 GiB page, not split
  EXPECT_TRUE(load_entry(big->entry).page_size());
  // A hidden large page is a page too.
  ASSERT_TRUE(pt->hide(Gva(G1), G1, kOwn));
  auto hidden = pt->slot(Gva(G1 + 3 * K4), 1, true);
  ASSERT_TRUE(hidden.ok());
  EXPECT_EQ(hidden->level, 3u);
  // Under a marker, the new tables carry the marker in every entry.
  ASSERT_TRUE(pt->unmap(Gva(2 * G1), G1, PageTableEntry::marker(kOwn)));
  auto marked = pt->slot(Gva(2 * G1 + 7 * K4), 1, true);
  ASSERT_TRUE(marked.ok());
  EXPECT_EQ(marked->level, 1u);
  EXPECT_EQ(load_entry(marked->entry), PageTableEntry::marker(kOwn));
  auto neighbour = pt->find(Gva(2 * G1 + 9 * M2));
  ASSERT_TRUE(neighbour);
  EXPECT_EQ(load_entry(neighbour->entry), PageTableEntry::marker(kOwn));
  EXPECT_FALSE(pt->slot(Gva(0x8000'0000'0000), 1, true).ok());
  EXPECT_FALSE(pt->slot(Gva(0), 4, true).ok());
}

}  // namespace
}  // namespace dunk::arch
