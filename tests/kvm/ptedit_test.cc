// PTEditor's API in VM mode (dunk/ptedit.h): the same calls, on dunk's
// guest page tables, without ioctls or exits.
#include "dunk/ptedit.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

#include "core/machine.h"
#include "dunk/dunk.h"
#include "dunk/paging.h"
#include "dunk/traps.h"

namespace dunk {
namespace {

constexpr std::size_t kPage = 4096;

std::uint64_t kvm_runs() { return core::Machine::instance().stats().kvm_runs.load(); }

char* pages(std::size_t n) {
  void* p = mmap(nullptr, n * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  EXPECT_NE(p, MAP_FAILED);
  return static_cast<char*>(p);
}

TEST(Ptedit, InitEntersVmModeAndResolveReadsEveryLevel) {
  ASSERT_EQ(ptedit_init(), 0);
  ASSERT_TRUE(in_vm());
  char* p = pages(1);
  ptedit_entry_t e = ptedit_resolve(p, 0);
  auto info = AddressSpace::current().lookup(p);
  leave();
  ASSERT_TRUE(info);
  constexpr size_t kAll = PTEDIT_VALID_MASK_PGD | PTEDIT_VALID_MASK_P4D | PTEDIT_VALID_MASK_PUD |
                          PTEDIT_VALID_MASK_PMD | PTEDIT_VALID_MASK_PTE;
  ASSERT_EQ(e.valid, kAll);  // a small mmap is mapped with 4 KiB pages
  EXPECT_EQ(e.vaddr, reinterpret_cast<size_t>(p));
  EXPECT_EQ(e.pgd, e.p4d);
  EXPECT_EQ(ptedit_get_pfn(e.pte), info->physical / kPage);
  EXPECT_EQ((e.pte >> PTEDIT_PAGE_BIT_PRESENT) & 1, 1u);
  EXPECT_EQ((e.pte >> PTEDIT_PAGE_BIT_RW) & 1, 1u);
  EXPECT_EQ(e.pmd & 1, 1u);                                 // present...
  EXPECT_EQ((e.pmd >> PTEDIT_PAGE_BIT_PSE) & 1, 0u);        // ...and a link to the page table
  EXPECT_NE(ptedit_get_pfn(e.pmd), ptedit_get_pfn(e.pte));
}

std::atomic<int> write_faults{0};
char* guarded = nullptr;
TrapAction make_writable_again(TrapFrame& f) noexcept {
  if (reinterpret_cast<char*>(f.cr2) < guarded || reinterpret_cast<char*>(f.cr2) >= guarded + kPage) {
    return TrapAction::kDefault;
  }
  write_faults.fetch_add(1);
  ptedit_pte_set_bit(guarded, 0, PTEDIT_PAGE_BIT_RW);
  return TrapAction::kResume;
}

TEST(Ptedit, BitEditsTakeEffectWithoutExits) {
  ASSERT_EQ(ptedit_init(), 0);
  guarded = pages(1);
  ASSERT_TRUE(set_trap_handler(kPageFault, make_writable_again));
  const std::uint64_t before = kvm_runs();
  ptedit_pte_clear_bit(guarded, 0, PTEDIT_PAGE_BIT_RW);
  unsigned char rw_cleared = ptedit_pte_get_bit(guarded, 0, PTEDIT_PAGE_BIT_RW);
  guarded[0] = 'w';  // faults once; the handler sets RW again
  unsigned char rw_set = ptedit_pte_get_bit(guarded, 0, PTEDIT_PAGE_BIT_RW);
  unsigned char dirty = ptedit_pte_get_bit(guarded, 0, PTEDIT_PAGE_BIT_DIRTY);
  const std::uint64_t after = kvm_runs();
  auto info = AddressSpace::current().lookup(guarded);
  leave();
  EXPECT_EQ(rw_cleared, 0);
  EXPECT_EQ(rw_set, 1);
  EXPECT_EQ(dirty, 1);
  EXPECT_EQ(write_faults.load(), 1);
  EXPECT_EQ(guarded[0], 'w');
  EXPECT_EQ(after - before, 0u);
  ASSERT_TRUE(info);
  EXPECT_TRUE(info->program_owned);  // the monitor leaves it alone now
}

TEST(Ptedit, PfnSwapAndPhysicalPageAccess) {
  ASSERT_EQ(ptedit_init(), 0);
  char* a = pages(1);
  char* b = pages(1);
  std::strcpy(a, "page a");
  std::strcpy(b, "page b");
  const size_t pfn_a = ptedit_pte_get_pfn(a, 0), pfn_b = ptedit_pte_get_pfn(b, 0);
  ptedit_pte_set_pfn(a, 0, pfn_b);  // a now shows b's frame
  char through_a[8];
  std::memcpy(through_a, a, sizeof through_a);
  ptedit_pte_set_pfn(a, 0, pfn_a);
  char physical[kPage];
  ptedit_read_physical_page(pfn_a, physical);
  std::memset(physical, 0, kPage);
  std::strcpy(physical, "rewritten");
  ptedit_write_physical_page(pfn_b, physical);
  leave();
  EXPECT_NE(pfn_a, pfn_b);
  EXPECT_STREQ(through_a, "page b");
  EXPECT_STREQ(a, "page a");
  EXPECT_STREQ(b, "rewritten");
}

TEST(Ptedit, UpdateWritesTheSelectedLevels) {
  ASSERT_EQ(ptedit_init(), 0);
  char* p = pages(1);
  ptedit_entry_t e = ptedit_resolve(p, 0);
  ptedit_entry_t change{};
  change.pte = e.pte & ~(size_t{1} << PTEDIT_PAGE_BIT_RW);
  change.valid = PTEDIT_VALID_MASK_PTE;
  ptedit_update(p, 0, &change);
  auto info = AddressSpace::current().lookup(p);
  ptedit_entry_t again = ptedit_resolve(p, 0);
  leave();
  ASSERT_TRUE(info);
  EXPECT_EQ(info->access & kWrite, 0u);
  EXPECT_EQ(again.pmd, e.pmd);  // untouched
  EXPECT_EQ(ptedit_get_pfn(again.pte), ptedit_get_pfn(e.pte));
}

TEST(Ptedit, PagingRootAndMemoryTypes) {
  ASSERT_EQ(ptedit_init(), 0);
  const size_t root = ptedit_get_paging_root(0);
  const size_t expected_root = AddressSpace::current().root();
  const size_t mts = ptedit_get_mts();
  const int wb = ptedit_find_first_mt(PTEDIT_MT_WB);
  const int uc = ptedit_find_first_mt(PTEDIT_MT_UC);
  ptedit_set_paging_root(0, root);  // the same space again
  const size_t still = ptedit_get_paging_root(0);
  leave();
  EXPECT_EQ(root, expected_root);
  EXPECT_EQ(still, root);
  EXPECT_EQ(mts, 0x0007040600070406u);  // the power-on IA32_PAT dunk loads
  EXPECT_EQ(wb, 0);
  EXPECT_EQ(uc, 3);
  for (unsigned char mt = 0; mt < 8; ++mt) EXPECT_EQ(ptedit_extract_mt(ptedit_apply_mt(0x1000, mt)), mt);
  EXPECT_STREQ(ptedit_mt_to_string(PTEDIT_MT_WB), "WB");
  EXPECT_EQ(ptedit_set_pfn(0x8000000000000867, 0x1234), 0x8000000001234867u);
  EXPECT_EQ(ptedit_get_pagesize(), 4096);
}

TEST(Ptedit, OtherProcessesAreRefused) {
  ASSERT_EQ(ptedit_init(), 0);
  char* p = pages(1);
  ptedit_entry_t e = ptedit_resolve(p, getppid());
  leave();
  EXPECT_EQ(e.valid, 0u);
}

}  // namespace
}  // namespace dunk
