// Dirty-page tracking from the dirty bits (dunk/dirty.h): exactly the pages
// written since the last reset, on 4 KiB granularity even where the range
// was mapped with large pages, without an exit.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstdint>
#include <set>
#include <vector>

#include "core/machine.h"
#include "dunk/dirty.h"
#include "dunk/dunk.h"
#include "dunk/paging.h"
#include "support.h"

namespace dunk {
namespace {

constexpr std::size_t kPage = 4096;

std::uint64_t kvm_runs() { return core::Machine::instance().stats().kvm_runs.load(); }

std::set<void*> collected(DirtyTracker& t) {
  void* pages[512];
  std::size_t n = t.collect(pages, 512);
  EXPECT_LE(n, 512u);
  return std::set<void*>(pages, pages + n);
}

TEST(Dirty, ReportsExactlyThePagesWrittenSinceTheLastReset) {
  test::enter_or_fail();
  constexpr std::size_t kPages = 256;
  auto* heap = static_cast<char*>(
      mmap(nullptr, kPages * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0));
  ASSERT_NE(heap, MAP_FAILED);
  auto tracker = DirtyTracker::create(heap, kPages * kPage);
  ASSERT_TRUE(tracker);
  tracker->reset();
  EXPECT_EQ(tracker->count(), 0u);

  const std::uint64_t before = kvm_runs();
  std::set<void*> want;
  for (std::size_t i : {3u, 4u, 77u, 200u, 255u}) {
    heap[i * kPage + 100] = 1;
    want.insert(heap + i * kPage);
  }
  volatile char sink = heap[10 * kPage];  // reads do not count
  (void)sink;
  std::set<void*> first = collected(*tracker);
  // The next epoch: only what is written after the collect.
  heap[4 * kPage] = 2;
  heap[5 * kPage] = 2;
  std::set<void*> second = collected(*tracker);
  std::set<void*> third = collected(*tracker);
  const std::uint64_t after = kvm_runs();
  leave();

  EXPECT_EQ(first, want);
  EXPECT_EQ(second, (std::set<void*>{heap + 4 * kPage, heap + 5 * kPage}));
  EXPECT_TRUE(third.empty());
  EXPECT_EQ(after - before, 0u);
}

TEST(Dirty, LargePagesAreTrackedAtFourKilobytes) {
  test::enter_or_fail();
  constexpr std::size_t k2M = 2u << 20;
  void* raw = mmap(nullptr, 2 * k2M, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(raw, MAP_FAILED);
  auto* big = reinterpret_cast<char*>((reinterpret_cast<std::uintptr_t>(raw) + k2M - 1) & ~(k2M - 1));
  // Map it freshly so that the monitor gives it a 2 MiB page.
  ASSERT_EQ(mprotect(big, k2M, PROT_READ), 0);
  ASSERT_EQ(mprotect(big, k2M, PROT_READ | PROT_WRITE), 0);
  auto before = AddressSpace::current().lookup(big);
  ASSERT_TRUE(before);
  EXPECT_EQ(before->size, PageSize::k2M);
  auto tracker = DirtyTracker::create(big, k2M);
  ASSERT_TRUE(tracker);
  EXPECT_EQ(AddressSpace::current().lookup(big)->size, PageSize::k4K);
  EXPECT_FALSE(AddressSpace::current().lookup(big)->program_owned);  // still the monitor's
  tracker->reset();
  big[17 * kPage + 5] = 'x';
  big[400 * kPage] = 'y';
  std::set<void*> got = collected(*tracker);
  leave();
  EXPECT_EQ(got, (std::set<void*>{big + 17 * kPage, big + 400 * kPage}));
}

TEST(Dirty, NeedsVmModeAndAlignedRanges) {
  char buffer[2 * kPage];
  EXPECT_FALSE(DirtyTracker::create(buffer, kPage));  // not in VM mode
  test::enter_or_fail();
  EXPECT_FALSE(DirtyTracker::create(buffer + 1, kPage));
  leave();
}

}  // namespace
}  // namespace dunk
