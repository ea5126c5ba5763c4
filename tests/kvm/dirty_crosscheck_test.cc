// The cross-check a garbage collector's dirty-page source must pass
// (bdwgc's CHECK_SOFT_VDB does the same for soft-dirty): mprotect tracking
// and dunk's dirty bits run together over one heap while several threads
// write random pages; every page mprotect saw written (its first write
// after a protect traps) must be in dunk's report of that round or the next
// one. A page written but reported clean fails the test.
//
// Ordering, per round: dunk collects (and cleans), then the heap is
// write-protected again. A write that traps after round k's protect came
// after round k's collect; it is in collect k+1, or — written after collect
// k+1 but before protect k+1 — in collect k+2.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "dunk/dirty.h"
#include "dunk/dunk.h"
#include "support.h"

namespace dunk {
namespace {

constexpr std::size_t kPage = 4096;
constexpr std::size_t kPages = 2048;
constexpr std::size_t kWords = kPages / 64;

char* heap = nullptr;
// Pages mprotect saw written (by the SIGSEGV handler) or the kernel wrote
// (by the test's own record), since the last swap.
std::atomic<std::uint64_t> trapped[kWords];
std::atomic<std::uint64_t> kernel_written[kWords];

void mark(std::atomic<std::uint64_t>* bits, std::size_t page) {
  bits[page / 64].fetch_or(std::uint64_t{1} << (page % 64));
}

std::set<std::size_t> swap_out(std::atomic<std::uint64_t>* bits) {
  std::set<std::size_t> pages;
  for (std::size_t w = 0; w < kWords; ++w) {
    for (std::uint64_t b = bits[w].exchange(0); b != 0; b &= b - 1) pages.insert(w * 64 + __builtin_ctzll(b));
  }
  return pages;
}

void on_write_fault(int, siginfo_t* info, void*) {
  auto* at = static_cast<char*>(info->si_addr);
  if (at < heap || at >= heap + kPages * kPage) abort();  // not the heap: a real crash
  const std::size_t page = static_cast<std::size_t>(at - heap) / kPage;
  mark(trapped, page);
  mprotect(heap + page * kPage, kPage, PROT_READ | PROT_WRITE);
}

struct Outcome {
  std::size_t rounds = 0;
  std::size_t checked = 0;  // pages some way saw written
  std::size_t missed = 0;   // ...that dunk reported clean in both rounds
  std::size_t kernel_checked = 0, kernel_missed = 0;
};

// `kernel_writes`: one thread also has the kernel write heap pages
// (pread from a file), recording each after the call returned.
Outcome cross_check(bool kernel_writes) {
  Outcome run;
  EXPECT_TRUE(enter(EnterOptions{.interrupts = true}));
  heap = static_cast<char*>(
      mmap(nullptr, kPages * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0));
  struct sigaction sa {};
  sa.sa_sigaction = on_write_fault;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigaction(SIGSEGV, &sa, nullptr);
  auto tracker = DirtyTracker::create(heap, kPages * kPage);
  EXPECT_TRUE(tracker);
  if (!tracker) return run;
  const int file = memfd_create("crosscheck", 0);
  EXPECT_EQ(write(file, "written by the kernel", 21), 21);

  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (unsigned w = 0; w < 3; ++w) {
    writers.emplace_back([&, w] {
      std::mt19937 rng(w + 1);
      while (!stop.load(std::memory_order_relaxed)) {
        const std::size_t page = rng() % kPages;
        static_cast<volatile char*>(heap)[page * kPage + (rng() % kPage)] = static_cast<char>(w);
        for (int spin = 0; spin < 200; ++spin) asm volatile("" ::: "memory");
      }
    });
  }
  if (kernel_writes) {
    writers.emplace_back([&] {
      std::mt19937 rng(99);
      while (!stop.load(std::memory_order_relaxed)) {
        const std::size_t page = rng() % kPages;
        char* at = heap + page * kPage + 64;
        // Recorded before the write, as the trap handler records the
        // others: the round it lands in began before the write.
        mark(kernel_written, page);
        // Opened first, or the kernel's copy fails with EFAULT: the main
        // thread may protect it again meanwhile, then try again.
        for (;;) {
          mprotect(heap + page * kPage, kPage, PROT_READ | PROT_WRITE);
          if (pread(file, at, 21, 0) == 21) break;
        }
        usleep(200);
      }
    });
  }

  std::vector<std::set<std::size_t>> reported, seen, seen_kernel;
  constexpr std::size_t kRounds = 30;
  for (std::size_t r = 0; r < kRounds; ++r) {
    usleep(20000);
    std::set<std::size_t> got;
    tracker->collect_each([&](void* p) { got.insert(static_cast<std::size_t>(static_cast<char*>(p) - heap) / kPage); });
    reported.push_back(std::move(got));
    seen.push_back(swap_out(trapped));
    seen_kernel.push_back(swap_out(kernel_written));
    mprotect(heap, kPages * kPage, PROT_READ);
  }
  stop = true;
  mprotect(heap, kPages * kPage, PROT_READ | PROT_WRITE);
  for (auto& t : writers) t.join();
  leave();
  signal(SIGSEGV, SIG_DFL);
  close(file);

  // seen[k] holds writes after protect k-1: they must be in reported[k] or
  // reported[k + 1]. (Round 0's traps came before any protect: none.)
  for (std::size_t k = 1; k + 1 < kRounds; ++k) {
    auto covered = [&](std::size_t page) { return reported[k].count(page) != 0 || reported[k + 1].count(page) != 0; };
    for (std::size_t page : seen[k]) {
      ++run.checked;
      if (!covered(page)) ++run.missed;
    }
    for (std::size_t page : seen_kernel[k]) {
      ++run.kernel_checked;
      if (!covered(page)) ++run.kernel_missed;
    }
  }
  run.rounds = kRounds;
  munmap(heap, kPages * kPage);
  return run;
}

// Disabled: it hung once (900 s timeout) and failed once in a dozen runs
// in the nested test VM, a process taking SIGSEGV from mprotect in a loop
// with several threads in VM mode (docs/ARCHITECTURE.md, "Known
// problems"). Its twin below with the kernel's writes runs; enable this
// one with --gtest_also_run_disabled_tests.
TEST(DirtyCrossCheck, DISABLED_EveryPageMprotectSeesWrittenDunkReports) {
  const Outcome run = cross_check(/*kernel_writes=*/false);
  EXPECT_GT(run.checked, 100u) << "the writers did not get to write enough to check anything";
  EXPECT_EQ(run.missed, 0u) << run.missed << " of " << run.checked << " written pages reported clean";
}

// The kernel's writes into the heap (a forwarded pread) go through the
// host's page tables; the monitor reports the buffer after the call
// (syscalls/kernel_writes.cc).
TEST(DirtyCrossCheck, EveryPageTheKernelWritesDunkReports) {
  const Outcome run = cross_check(/*kernel_writes=*/true);
  EXPECT_EQ(run.missed, 0u) << run.missed << " of " << run.checked << " written pages reported clean";
  EXPECT_GT(run.kernel_checked, 20u);
  EXPECT_EQ(run.kernel_missed, 0u) << run.kernel_missed << " of " << run.kernel_checked
                                   << " pages the kernel wrote reported clean";
}

}  // namespace
}  // namespace dunk
