// Dirty-page tracking (dunk/dirty.h): exactly the pages written since the
// last clean, on 4 KiB granularity, without an exit; written by any thread
// on any vCPU, cleaned while they run; ranges added, removed, mapped after
// tracking began; and the conservative answers — shared memory, ranges
// the kernel writes, threads outside VM mode — that are never silently
// clean. Each test runs in its own process.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <new>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/dirty.h"
#include "core/machine.h"
#include "dunk/dirty.h"
#include "dunk/dunk.h"
#include "dunk/paging.h"
#include "support.h"

namespace dunk {
namespace {

constexpr std::size_t kPage = 4096;

std::uint64_t kvm_runs() { return core::Machine::instance().stats().kvm_runs.load(); }

char* map_pages(std::size_t n, int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, int fd = -1) {
  void* p = mmap(nullptr, n * kPage, PROT_READ | PROT_WRITE, flags, fd, 0);
  EXPECT_NE(p, MAP_FAILED);
  return static_cast<char*>(p);
}

std::set<void*> collected(DirtyTracker& t, bool clean = true) {
  std::set<void*> pages;
  t.collect_each([&](void* p) { pages.insert(p); }, clean);
  return pages;
}

std::set<void*> pages_of(char* base, std::initializer_list<std::size_t> indices) {
  std::set<void*> s;
  for (std::size_t i : indices) s.insert(base + i * kPage);
  return s;
}

std::set<void*> all_pages(char* base, std::size_t n) {
  std::set<void*> s;
  for (std::size_t i = 0; i < n; ++i) s.insert(base + i * kPage);
  return s;
}

TEST(Dirty, ReportsExactlyThePagesWrittenSinceTheLastReset) {
  test::enter_or_fail();
  constexpr std::size_t kPages = 256;
  char* heap = map_pages(kPages);
  auto tracker = DirtyTracker::create(heap, kPages * kPage);
  ASSERT_TRUE(tracker);
  tracker->reset();
  EXPECT_EQ(tracker->count(), 0u);

  const std::uint64_t before = kvm_runs();
  for (std::size_t i : {3u, 4u, 77u, 200u, 255u}) heap[i * kPage + 100] = 1;
  volatile char sink = heap[10 * kPage];  // reads do not count
  (void)sink;
  void* listed[2];
  const std::size_t n = tracker->collect(listed, 2);  // more than fit: all counted, all cleaned
  heap[4 * kPage] = 2;
  heap[5 * kPage] = 2;
  std::set<void*> second = collected(*tracker);
  std::set<void*> third = collected(*tracker);
  const std::uint64_t after = kvm_runs();
  leave();

  EXPECT_EQ(n, 5u);
  EXPECT_EQ(listed[0], heap + 3 * kPage);  // address order
  EXPECT_EQ(listed[1], heap + 4 * kPage);
  EXPECT_EQ(second, pages_of(heap, {4, 5}));
  EXPECT_TRUE(third.empty());
  EXPECT_EQ(after - before, 0u) << "collecting costs no exit";
}

TEST(Dirty, LargePagesAreTrackedAtFourKilobytes) {
  test::enter_or_fail();
  constexpr std::size_t k2M = 2u << 20;
  void* raw = mmap(nullptr, 3 * k2M, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(raw, MAP_FAILED);
  auto* big = reinterpret_cast<char*>((reinterpret_cast<std::uintptr_t>(raw) + k2M - 1) & ~(k2M - 1));
  // Map it freshly so that the monitor gives it a 2 MiB page.
  ASSERT_EQ(mprotect(big, k2M, PROT_READ), 0);
  ASSERT_EQ(mprotect(big, k2M, PROT_READ | PROT_WRITE), 0);
  ASSERT_EQ(AddressSpace::current().lookup(big)->size, PageSize::k2M);
  auto tracker = DirtyTracker::create(big, k2M);
  ASSERT_TRUE(tracker);
  EXPECT_EQ(AddressSpace::current().lookup(big)->size, PageSize::k4K);
  EXPECT_FALSE(AddressSpace::current().lookup(big)->program_owned);  // still the monitor's
  tracker->reset();
  big[17 * kPage + 5] = 'x';
  big[400 * kPage] = 'y';
  std::set<void*> got = collected(*tracker);
  // Memory mapped later in a tracked range may come with a large page: it
  // is reported whole once (it is new), and 4 KiB from then on.
  char* later = big + k2M;
  ASSERT_EQ(munmap(later, k2M), 0);
  ASSERT_TRUE(tracker->add(later, k2M));
  ASSERT_EQ(mmap(later, k2M, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0), later);
  const bool large = AddressSpace::current().lookup(later)->size == PageSize::k2M;
  const std::size_t whole = collected(*tracker).size();
  later[10 * kPage] = 'w';
  std::set<void*> after_split = collected(*tracker);
  leave();
  EXPECT_EQ(got, pages_of(big, {17, 400}));
  EXPECT_TRUE(large);
  EXPECT_EQ(whole, 512u);
  EXPECT_EQ(after_split, pages_of(later, {10}));
}

// A range far larger than one edit's stock of table pages (4,096: about
// 8 GiB of 1 GiB pages split to 4 KiB) is split whole, when tracked and when
// a clean meets large pages mapped later: every page exact, none reported
// because a large page was left unsplit.
TEST(Dirty, RangesOfManyGigabytesAreSplitWhole) {
  test::enter_or_fail();
  constexpr std::size_t k1G = std::size_t{1} << 30;
  constexpr std::size_t kSize = 16 * k1G;
  void* raw = mmap(nullptr, kSize + k1G, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  ASSERT_NE(raw, MAP_FAILED);
  auto* big = reinterpret_cast<char*>((reinterpret_cast<std::uintptr_t>(raw) + k1G - 1) & ~(k1G - 1));
  const PageSize before = AddressSpace::current().lookup(big + 15 * k1G)->size;
  auto tracker = DirtyTracker::create(big, kSize);
  ASSERT_TRUE(tracker) << "splitting 16 GiB";
  const PageSize after = AddressSpace::current().lookup(big + 15 * k1G)->size;
  tracker->reset();
  const std::size_t pages_per_g = k1G / kPage;
  for (std::size_t g : {0u, 7u, 9u, 15u}) big[g * k1G + 3 * kPage] = 1;
  std::set<void*> got = collected(*tracker);
  leave();
  munmap(raw, kSize + k1G);

  EXPECT_NE(before, PageSize::k4K) << "the monitor mirrored it with large pages (else this tests nothing)";
  EXPECT_EQ(after, PageSize::k4K);
  EXPECT_EQ(got, pages_of(big, {3, 7 * pages_per_g + 3, 9 * pages_per_g + 3, 15 * pages_per_g + 3}));
}

TEST(Dirty, NeedsVmModeAndAlignedRanges) {
  char buffer[2 * kPage];
  EXPECT_FALSE(DirtyTracker::create(buffer, kPage));  // not in VM mode
  test::enter_or_fail();
  EXPECT_FALSE(DirtyTracker::create(buffer + 1, kPage));
  char* heap = map_pages(4);
  auto t = DirtyTracker::create(heap, 4 * kPage);
  ASSERT_TRUE(t);
  Status overlap = t->add(heap + kPage, kPage);
  Status dunks = t->add(core::Machine::instance().arena().base().as_ptr<void>(), kPage);
  leave();
  ASSERT_FALSE(overlap);
  EXPECT_EQ(overlap.error().err, EEXIST);
  ASSERT_FALSE(dunks);
  EXPECT_EQ(dunks.error().err, EPERM);
}

// ---- Ranges ------------------------------------------------------------------

TEST(Dirty, RangesGrowAndShrinkLikeAHeap) {
  test::enter_or_fail();
  char* heap = map_pages(64);
  auto t = DirtyTracker::create();
  ASSERT_TRUE(t);
  ASSERT_TRUE(t->add(heap + 16 * kPage, 16 * kPage));  // the heap's first section
  ASSERT_TRUE(t->add(heap, 8 * kPage));                 // another, below
  t->reset();
  for (std::size_t i : {1u, 9u, 17u, 40u}) heap[i * kPage] = 1;  // 9 and 40: not tracked
  std::set<void*> first = collected(*t);
  // Grown: the new range's pages are reported as their bits are; this
  // memory is new since it was mapped (after the reset), so all of it.
  ASSERT_TRUE(t->add(heap + 32 * kPage, 32 * kPage));
  std::set<void*> grown = collected(*t);
  ASSERT_TRUE(t->remove(heap + 16 * kPage, 8 * kPage));  // shrank: the middle of a section goes
  for (std::size_t i : {16u, 20u, 24u, 33u}) heap[i * kPage] = 2;
  std::set<void*> shrunk = collected(*t);
  const std::size_t ranges = t->range_count();
  leave();
  EXPECT_EQ(first, pages_of(heap, {1, 17}));
  EXPECT_EQ(grown, all_pages(heap + 32 * kPage, 32));
  EXPECT_EQ(shrunk, pages_of(heap, {24, 33}));
  EXPECT_EQ(ranges, 3u);  // [0, 8), [24, 32), [32, 64)
}

TEST(Dirty, MemoryMappedAfterTrackingBeganIsReported) {
  test::enter_or_fail();
  // Reserve an address range, track it while nothing is mapped there.
  char* area = static_cast<char*>(mmap(nullptr, 32 * kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(area, MAP_FAILED);
  ASSERT_EQ(munmap(area, 32 * kPage), 0);
  auto t = DirtyTracker::create(area, 32 * kPage);
  ASSERT_TRUE(t);
  t->reset();
  EXPECT_TRUE(collected(*t).empty());
  // Mapped now: new memory is dirty without a write (the kernel filled it).
  ASSERT_EQ(mmap(area + 4 * kPage, 4 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0),
            area + 4 * kPage);
  std::set<void*> mapped = collected(*t);
  area[5 * kPage] = 1;
  std::set<void*> written = collected(*t);
  // Unmapped and mapped again at the same place: new memory again.
  ASSERT_EQ(munmap(area + 4 * kPage, 4 * kPage), 0);
  std::set<void*> gone = collected(*t);
  ASSERT_EQ(mmap(area + 6 * kPage, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0),
            area + 6 * kPage);
  std::set<void*> again = collected(*t);
  leave();
  EXPECT_EQ(mapped, pages_of(area, {4, 5, 6, 7}));
  EXPECT_EQ(written, pages_of(area, {5}));
  EXPECT_TRUE(gone.empty());
  EXPECT_EQ(again, pages_of(area, {6}));
}

// ---- Every vCPU --------------------------------------------------------------

// Threads on vCPUs of their own rewrite their own pages in rounds, spinning
// in the guest between rounds (so their TLBs keep entries that already have
// the dirty bit, and nothing flushes them); the main thread collects between
// rounds. Every page written in a round must be in the collect after it.
void other_vcpus_writes_are_never_lost(bool interrupts) {
  ASSERT_TRUE(enter(EnterOptions{.interrupts = interrupts}));
  constexpr std::size_t kPages = 512, kThreads = 3, kRounds = 40;
  char* heap = map_pages(kPages);
  auto t = DirtyTracker::create(heap, kPages * kPage);
  ASSERT_TRUE(t);
  std::atomic<std::size_t> round{0}, done{0};
  std::atomic<bool> in_vm_mode[kThreads] = {};
  std::vector<std::thread> threads;
  for (std::size_t w = 0; w < kThreads; ++w) {
    threads.emplace_back([&, w] {
      in_vm_mode[w] = dunk::in_vm();
      for (std::size_t r = 1; r <= kRounds; ++r) {
        while (round.load() < r) {  // spin in the guest: no system call
        }
        // Pages w, w + 3, w + 6, ...: the same ones every round.
        for (std::size_t p = w; p < kPages; p += kThreads) heap[p * kPage + r] = static_cast<char>(r);
        done.fetch_add(1);
      }
    });
  }
  t->reset();
  std::size_t missed = 0, loud = 0;
  for (std::size_t r = 1; r <= kRounds; ++r) {
    round.store(r);
    while (done.load() < r * kThreads) {
    }
    std::set<void*> got = collected(*t);
    for (std::size_t p = 0; p < kPages; ++p) missed += got.count(heap + p * kPage) == 0;
    loud += !t->last_pass().quiet;
  }
  for (auto& th : threads) th.join();
  leave();
  for (std::size_t w = 0; w < kThreads; ++w) EXPECT_TRUE(in_vm_mode[w]);
  EXPECT_EQ(missed, 0u);
  // The threads spun in the guest during the cleans (all but perhaps the
  // last, when they may have ended): not quiet, so what was cleaned stayed
  // sticky — reported again, never short.
  EXPECT_GE(loud, kRounds - 1);
}

TEST(Dirty, WritesOnOtherVcpusAreNeverLostWithoutInterrupts) { other_vcpus_writes_are_never_lost(false); }
TEST(Dirty, WritesOnOtherVcpusAreNeverLostWithShootdowns) { other_vcpus_writes_are_never_lost(true); }

TEST(Dirty, ThreadsBlockedInTheHostMakeACollectExact) {
  // A stopped world: the other threads wait in a system call (as a
  // collector stops them) while the collect cleans, so it is exact, and
  // their first stores after it are seen although they wrote the same pages
  // before (their vCPUs flush on the way back from the host).
  test::enter_or_fail();
  constexpr std::size_t kPages = 64, kThreads = 3, kRounds = 10;
  char* heap = map_pages(kPages);
  auto t = DirtyTracker::create(heap, kPages * kPage);
  ASSERT_TRUE(t);
  int go[kThreads][2], back[2];
  for (auto& p : go) ASSERT_EQ(pipe(p), 0);
  ASSERT_EQ(pipe(back), 0);
  auto page_of = [](std::size_t w, std::size_t r) { return (w * 7 + r % 3) % kPages; };
  std::vector<std::thread> threads;
  for (std::size_t w = 0; w < kThreads; ++w) {
    threads.emplace_back([&, w] {
      char r;
      while (read(go[w][0], &r, 1) == 1 && r != 0) {  // blocked in the host between rounds
        heap[page_of(w, static_cast<std::size_t>(r)) * kPage + static_cast<std::size_t>(r)] = r;
        (void)!write(back[1], "x", 1);
      }
    });
  }
  // Until every thread is in VM mode (and blocked), a collect is blind.
  for (int i = 0; i < 100; ++i) {
    usleep(20000);
    t->reset();
    if (!t->last_pass().blind) break;
  }
  t->reset();
  std::size_t wrong = 0, loud = 0;
  for (std::size_t r = 1; r <= kRounds; ++r) {
    const char token = static_cast<char>(r);
    for (std::size_t w = 0; w < kThreads; ++w) (void)!write(go[w][1], &token, 1);
    char x;
    for (std::size_t w = 0; w < kThreads; ++w) ASSERT_EQ(read(back[0], &x, 1), 1);
    // Let them get back into read() before the collect.
    usleep(20000);
    std::set<void*> want;
    for (std::size_t w = 0; w < kThreads; ++w) want.insert(heap + page_of(w, r) * kPage);
    wrong += collected(*t) != want;
    loud += !t->last_pass().quiet;
  }
  for (std::size_t w = 0; w < kThreads; ++w) (void)!write(go[w][1], "", 1);
  for (auto& th : threads) th.join();
  leave();
  EXPECT_EQ(wrong, 0u);
  EXPECT_EQ(loud, 0u) << "every collect should have been quiet";
}

// ---- What dunk cannot see ----------------------------------------------------------

TEST(Dirty, SharedMappingsAreAlwaysDirty) {
  test::enter_or_fail();
  // Private memory between two shared mappings (anonymous shared memory a
  // fork child could write, and a file another process could write).
  char* area = static_cast<char*>(mmap(nullptr, 12 * kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(area, MAP_FAILED);
  int fd = memfd_create("dirty-test", 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 4 * kPage), 0);
  ASSERT_NE(mmap(area, 4 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0), MAP_FAILED);
  ASSERT_NE(mmap(area + 4 * kPage, 4 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0),
            MAP_FAILED);
  ASSERT_NE(mmap(area + 8 * kPage, 4 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0), MAP_FAILED);
  auto t = DirtyTracker::create(area, 12 * kPage);
  ASSERT_TRUE(t);
  t->reset();
  std::set<void*> idle = collected(*t);
  area[5 * kPage] = 1;
  std::set<void*> written = collected(*t);
  leave();
  std::set<void*> shared = all_pages(area, 4);
  for (std::size_t i = 8; i < 12; ++i) shared.insert(area + i * kPage);
  EXPECT_EQ(idle, shared);
  std::set<void*> with_write = shared;
  with_write.insert(area + 5 * kPage);
  EXPECT_EQ(written, with_write);
}

TEST(Dirty, RangesTheKernelWritesAreAlwaysDirtyUntilRemoved) {
  test::enter_or_fail();
  char* heap = map_pages(16);
  auto t = DirtyTracker::create(heap, 16 * kPage);
  ASSERT_TRUE(t);
  t->reset();
  ASSERT_TRUE(core::add_always_dirty(hva_of(heap + 2 * kPage), 2 * kPage));
  std::set<void*> registered = collected(*t);
  std::set<void*> still = collected(*t);
  core::remove_always_dirty(hva_of(heap + 2 * kPage), 2 * kPage);
  std::set<void*> removed = collected(*t);
  leave();
  EXPECT_EQ(registered, pages_of(heap, {2, 3}));
  EXPECT_EQ(still, pages_of(heap, {2, 3}));
  EXPECT_TRUE(removed.empty());
}

TEST(Dirty, AThreadOutsideVmModeMakesEverythingDirty) {
  test::enter_or_fail();
  char* heap = map_pages(8);
  auto t = DirtyTracker::create(heap, 8 * kPage);
  ASSERT_TRUE(t);
  t->reset();
  std::atomic<int> stage{0};
  std::thread outsider([&] {
    leave();  // this thread goes on on the host: its stores set no dirty bit
    heap[3 * kPage] = 1;
    stage = 1;
    while (stage.load() != 2) usleep(1000);
    ASSERT_TRUE(enter());
    stage = 3;
  });
  while (stage.load() != 1) usleep(1000);
  std::set<void*> while_outside = collected(*t);
  std::set<void*> still_outside = collected(*t);
  stage = 2;
  while (stage.load() != 3) usleep(1000);
  outsider.join();
  // Its exit counts as leaving VM mode too (the kernel writes its
  // clear_child_tid word on the way out): until the kernel has reaped it,
  // every pass is blind.
  while (core::kernel_thread_count() != 1) usleep(1000);
  std::set<void*> after_return = collected(*t);  // it was outside since the last clean
  std::set<void*> settled = collected(*t);
  heap[6 * kPage] = 1;
  std::set<void*> exact = collected(*t);
  leave();
  EXPECT_EQ(while_outside, all_pages(heap, 8));
  EXPECT_EQ(still_outside, all_pages(heap, 8));
  EXPECT_EQ(after_return, all_pages(heap, 8));
  EXPECT_TRUE(settled.empty());
  EXPECT_EQ(exact, pages_of(heap, {6}));
}

TEST(Dirty, AThreadThatNeverEnteredMakesEverythingDirty) {
  // Started before VM mode: dunk never saw it; the kernel's thread count
  // gives it away.
  std::atomic<bool> stop{false};
  std::thread native([&] {
    while (!stop.load()) usleep(1000);
  });
  test::enter_or_fail();
  char* heap = map_pages(4);
  auto t = DirtyTracker::create(heap, 4 * kPage);
  ASSERT_TRUE(t);
  t->reset();
  heap[kPage] = 1;
  std::set<void*> with_it = collected(*t);
  stop = true;
  native.join();
  // The kernel counts the thread until it is reaped: give it the time.
  std::set<void*> without;
  for (int i = 0; i < 100; ++i) {
    usleep(10000);
    (void)collected(*t);
    if (!t->last_pass().blind) break;
  }
  heap[2 * kPage] = 1;
  without = collected(*t);
  leave();
  EXPECT_EQ(with_it, all_pages(heap, 4));
  EXPECT_EQ(without, pages_of(heap, {2}));
}

// ---- The kernel's and the monitor's writes ----------------------------------------------

// A tracker over 8 fresh pages, cleaned; `write` makes the kernel write
// some of them through a forwarded call; returns what the next collect
// reports. No store of the guest's touches the pages.
template <class F>
std::set<void*> after_kernel_write(char*& heap, F&& write) {
  heap = map_pages(8);
  auto t = DirtyTracker::create(heap, 8 * kPage);
  EXPECT_TRUE(t);
  if (!t) return {};
  t->reset();
  write(heap);
  return collected(*t);
}

// A pipe holding `bytes`.
struct Pipe {
  int fds[2] = {-1, -1};
  explicit Pipe(std::string_view bytes) {
    EXPECT_EQ(pipe(fds), 0);
    EXPECT_EQ(::write(fds[1], bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  }
  ~Pipe() {
    close(fds[0]);
    close(fds[1]);
  }
};

TEST(Dirty, ForwardedReadIntoTheHeapIsSeen) {
  test::enter_or_fail();
  char* heap = nullptr;
  Pipe p("kernel");
  // Across the boundary of pages 3 and 4.
  const std::set<void*> got =
      after_kernel_write(heap, [&](char* h) { ASSERT_EQ(read(p.fds[0], h + 3 * kPage + 4093, 6), 6); });
  leave();
  EXPECT_EQ(std::string(heap + 3 * kPage + 4093, 6), "kernel");
  EXPECT_EQ(got, pages_of(heap, {3, 4}));
}

TEST(Dirty, ForwardedReadvIntoTheHeapIsSeenOnlyWhereTheKernelWrote) {
  test::enter_or_fail();
  char* heap = nullptr;
  Pipe p("0123456789");
  const std::set<void*> got = after_kernel_write(heap, [&](char* h) {
    // 4 bytes into page 1, 6 into page 6, none into page 2 (the kernel
    // ran out of data).
    iovec iov[3] = {{h + 1 * kPage, 4}, {h + 6 * kPage, 6}, {h + 2 * kPage, 100}};
    ASSERT_EQ(readv(p.fds[0], iov, 3), 10);
  });
  leave();
  EXPECT_EQ(std::string(heap + 6 * kPage, 6), "456789");
  EXPECT_EQ(got, pages_of(heap, {1, 6}));
}

TEST(Dirty, ForwardedPread64IntoTheHeapIsSeen) {
  test::enter_or_fail();
  const int file = memfd_create("pread", 0);
  ASSERT_GE(file, 0);
  ASSERT_EQ(write(file, "0123456789", 10), 10);
  char* heap = nullptr;
  const std::set<void*> got =
      after_kernel_write(heap, [&](char* h) { ASSERT_EQ(pread(file, h + 5 * kPage, 100, 4), 6); });
  leave();
  close(file);
  EXPECT_EQ(std::string(heap + 5 * kPage, 6), "456789");
  EXPECT_EQ(got, pages_of(heap, {5}));
}

TEST(Dirty, ForwardedRecvmsgIntoTheHeapIsSeenWithItsHeader) {
  test::enter_or_fail();
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_DGRAM, 0, pair), 0);
  ASSERT_EQ(send(pair[1], "datagram", 8, 0), 8);
  char* heap = nullptr;
  const std::set<void*> got = after_kernel_write(heap, [&](char* h) {
    // The data lands on pages 2 and 7, the header the kernel updates
    // (msg_controllen, msg_flags) on page 0.
    iovec iov[2] = {{h + 2 * kPage, 3}, {h + 7 * kPage, 100}};
    auto* msg = new (h + 0 * kPage) msghdr{};
    msg->msg_iov = iov;
    msg->msg_iovlen = 2;
    ASSERT_EQ(recvmsg(pair[0], msg, 0), 8);
  });
  leave();
  close(pair[0]);
  close(pair[1]);
  EXPECT_EQ(std::string(heap + 7 * kPage, 5), "agram");
  // Page 0 also holds the guest's own stores of the header: dirty either way.
  EXPECT_EQ(got, pages_of(heap, {0, 2, 7}));
}

TEST(Dirty, ForwardedRecvmsgDataAloneIsSeen) {
  test::enter_or_fail();
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_DGRAM, 0, pair), 0);
  ASSERT_EQ(send(pair[1], "datagram", 8, 0), 8);
  iovec iov[1];
  msghdr msg{};
  char* heap = nullptr;
  const std::set<void*> got = after_kernel_write(heap, [&](char* h) {
    iov[0] = {h + 4 * kPage, 100};
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    ASSERT_EQ(recvmsg(pair[0], &msg, 0), 8);
  });
  leave();
  close(pair[0]);
  close(pair[1]);
  EXPECT_EQ(std::string(heap + 4 * kPage, 8), "datagram");
  EXPECT_EQ(got, pages_of(heap, {4}));
}

TEST(Dirty, ForwardedGetdents64IntoTheHeapIsSeen) {
  test::enter_or_fail();
  const int dir = open("/", O_RDONLY | O_DIRECTORY);
  ASSERT_GE(dir, 0);
  char* heap = nullptr;
  long got_bytes = 0;
  const std::set<void*> got = after_kernel_write(heap, [&](char* h) {
    got_bytes = syscall(SYS_getdents64, dir, h + 6 * kPage, 2 * kPage);
    ASSERT_GT(got_bytes, 0);
  });
  leave();
  close(dir);
  // The first record is "." or another name: an inode number, then names.
  std::set<void*> expected = pages_of(heap, {6});
  if (got_bytes > static_cast<long>(kPage)) expected.insert(heap + 7 * kPage);
  EXPECT_EQ(got, expected);
}

TEST(Dirty, AKernelWriteTheMonitorReportsDirectlyIsSeenWithoutAnExit) {
  test::enter_or_fail();
  char* heap = map_pages(8);
  auto t = DirtyTracker::create(heap, 8 * kPage);
  ASSERT_TRUE(t);
  t->reset();
  // The entry point the monitor's handlers call (core::note_kernel_write):
  // any thread, no exit.
  const std::uint64_t before = kvm_runs();
  core::note_kernel_write(hva_of(heap + 3 * kPage + 4093), 6);
  const std::uint64_t after = kvm_runs();
  std::set<void*> reported = collected(*t);
  leave();
  EXPECT_EQ(reported, pages_of(heap, {3, 4}));
  EXPECT_EQ(after - before, 0u);
}

TEST(Dirty, MarksFromManyVcpusWhileCollectingAreNeverLost) {
  test::enter_or_fail();
  constexpr std::size_t kPages = 1024, kThreads = 3;
  char* heap = map_pages(kPages);
  auto t = DirtyTracker::create(heap, kPages * kPage);
  ASSERT_TRUE(t);
  t->reset();
  std::atomic<bool> stop{false};
  std::vector<std::set<void*>> marked(kThreads);
  std::vector<std::thread> threads;
  for (std::size_t w = 0; w < kThreads; ++w) {
    threads.emplace_back([&, w] {
      std::mt19937 rng(static_cast<unsigned>(w));
      for (int i = 0; i < 3000; ++i) {
        char* page = heap + (rng() % kPages) * kPage;
        core::note_kernel_write(hva_of(page), 1);
        marked[w].insert(page);
      }
    });
  }
  std::set<void*> reported;
  for (int i = 0; i < 20; ++i) {
    std::set<void*> got = collected(*t);
    reported.insert(got.begin(), got.end());
  }
  for (auto& th : threads) th.join();
  std::set<void*> last = collected(*t);
  reported.insert(last.begin(), last.end());
  leave();
  std::set<void*> all;
  for (auto& m : marked) all.insert(m.begin(), m.end());
  for (void* p : all) EXPECT_TRUE(reported.count(p)) << p;
}

TEST(Dirty, WritesTheMonitorMakesForTheProgramAreReported) {
  // sigaltstack and rt_sigaction are served by the monitor, which writes
  // their old values into the program's memory through the host's page
  // tables (GuestMemory::write): it reports the pages it wrote. The guest
  // never touches them itself.
  test::enter_or_fail();
  char* heap = map_pages(8);
  auto t = DirtyTracker::create(heap, 8 * kPage);
  ASSERT_TRUE(t);
  t->reset();
  ASSERT_EQ(syscall(SYS_sigaltstack, nullptr, heap + 2 * kPage + 64), 0);
  ASSERT_EQ(syscall(SYS_rt_sigaction, SIGUSR2, nullptr, heap + 5 * kPage + 128, 8), 0);
  std::set<void*> got = collected(*t);
  leave();
  EXPECT_EQ(got, pages_of(heap, {2, 5}));
}

}  // namespace
}  // namespace dunk
