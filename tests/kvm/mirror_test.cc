// The address-space mirror at its limits: address spaces far larger than
// the guest-physical space (GPA assigned on first touch, reclaimed when
// exhausted), programs that fit never paying for a reclaim, faults on
// addresses whose mapping is gone in a fork child's VM, and faults the
// kernel resolves on its own (a growsdown stack of any thread).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "core/machine.h"
#include "dunk/dunk.h"
#include "dunk/paging.h"
#include "support.h"

namespace dunk {
namespace {

constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kGiB = std::uint64_t{1} << 30;

core::Stats& stats() { return core::Machine::instance().stats(); }

// Enters VM mode with a guest-physical space of `bits` (0: the CPU's).
void enter_with_gpa_bits(unsigned bits) {
  core::MachineConfig config = core::MachineConfig::from_environment();
  config.gpa_bits = bits;
  core::Machine::instance().configure(config);
  test::enter_or_fail();
}

// What `body` wrote to stderr (dunk's messages go there).
std::string stderr_of(const std::function<void()>& body) {
  char path[] = "/dev/shm/dunk-stderr-XXXXXX";
  const int file = mkstemp(path);
  EXPECT_GE(file, 0);
  unlink(path);
  const int saved = dup(2);
  dup2(file, 2);
  body();
  dup2(saved, 2);
  close(saved);
  std::string text(4096, '\0');
  const ssize_t n = pread(file, text.data(), text.size(), 0);
  close(file);
  text.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  return text;
}

// Counters a piece of the test moved.
struct ChunkCounts {
  std::uint64_t assigned = stats().chunks_assigned.load();
  std::uint64_t reclaimed = stats().chunks_reclaimed.load();
  ChunkCounts since() const {
    ChunkCounts now;
    now.assigned -= assigned;
    now.reclaimed -= reclaimed;
    return now;
  }
};

std::uint32_t capacity() { return core::Machine::instance().mirror().chunk_capacity(); }

// --- address spaces larger than the guest-physical space ----------------------

// The reproducer of the issue: 2 TiB PROT_NONE, one page every 2 GiB made
// read/write and touched (1024 pages), then read back.
TEST(HugeAddressSpace, TwoTebibytesTouchedEveryTwoGibibytes) {
  test::enter_or_fail();
  const ChunkCounts before;
  constexpr std::uint64_t kSize = 2048 * kGiB, kStep = 2 * kGiB;
  std::uint64_t sum = 0, expected = 0;
  const std::string messages = stderr_of([&] {
    auto* p = static_cast<char*>(mmap(nullptr, kSize, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
    ASSERT_NE(p, MAP_FAILED);
    for (std::uint64_t off = 0; off < kSize; off += kStep) {
      ASSERT_EQ(mprotect(p + off, kPage, PROT_READ | PROT_WRITE), 0) << off / kGiB;
      p[off] = static_cast<char>(off >> 31);
      expected += static_cast<unsigned char>(off >> 31);
    }
    for (std::uint64_t off = 0; off < kSize; off += kStep) sum += static_cast<unsigned char>(p[off]);
    ASSERT_EQ(munmap(p, kSize), 0);
  });
  const ChunkCounts moved = before.since();
  leave();
  EXPECT_EQ(sum, expected);
  EXPECT_EQ(messages, "") << "dunk said something";
  EXPECT_GE(moved.assigned, 1024u);
  if (capacity() < 1024) {
    EXPECT_GE(moved.reclaimed, 1024u - capacity());
  }
}

// A database's way: a file of several hundred GiB (sparse, on tmpfs) mapped
// whole and touched a page per GiB; the data reaches the file.
TEST(HugeAddressSpace, SparseFileOfSixHundredGibibytes) {
  char path[] = "/dev/shm/dunk-sparse-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  unlink(path);
  constexpr std::uint64_t kCount = 600, kSize = kCount * kGiB;
  ASSERT_EQ(ftruncate(fd, static_cast<off_t>(kSize)), 0);
  test::enter_or_fail();
  const ChunkCounts before;
  std::uint64_t sum = 0;
  const std::string messages = stderr_of([&] {
    auto* p = static_cast<char*>(mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0));
    ASSERT_NE(p, MAP_FAILED);
    for (std::uint64_t i = 0; i < kCount; ++i) p[i * kGiB + i] = static_cast<char>(i * 7);
    for (std::uint64_t i = 0; i < kCount; ++i) sum += static_cast<unsigned char>(p[i * kGiB + i]);
    ASSERT_EQ(munmap(p, kSize), 0);
  });
  const ChunkCounts moved = before.since();
  leave();
  std::uint64_t expected = 0;
  for (std::uint64_t i = 0; i < kCount; ++i) expected += static_cast<unsigned char>(i * 7);
  EXPECT_EQ(sum, expected);
  EXPECT_EQ(messages, "");
  for (std::uint64_t i = 0; i < kCount; i += 61) {
    char c = 0;
    ASSERT_EQ(pread(fd, &c, 1, static_cast<off_t>(i * kGiB + i)), 1);
    EXPECT_EQ(c, static_cast<char>(i * 7)) << i;
  }
  close(fd);
  if (capacity() < kCount) {
    EXPECT_GE(moved.reclaimed, kCount - capacity());
  }
}

// 16 TiB reserved on a 36-bit guest-physical space (63 chunks): a page
// every 16 GiB used, twice round.
TEST(HugeAddressSpace, SixteenTebibytesOnAThirtySixBitSpace) {
  enter_with_gpa_bits(36);
  EXPECT_EQ(capacity(), 63u);
  const ChunkCounts before;
  constexpr std::uint64_t kSize = 16384 * kGiB, kStep = 16 * kGiB;
  std::uint64_t sum = 0, expected = 0;
  const std::string messages = stderr_of([&] {
    auto* p = static_cast<char*>(mmap(nullptr, kSize, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
    ASSERT_NE(p, MAP_FAILED);
    std::uint64_t n = 0;
    for (std::uint64_t off = 0; off < kSize; off += kStep, ++n) {
      ASSERT_EQ(mprotect(p + off, kPage, PROT_READ | PROT_WRITE), 0);
      p[off + 100] = static_cast<char>(n);
      expected += static_cast<unsigned char>(n);
    }
    for (std::uint64_t off = 0; off < kSize; off += kStep) sum += static_cast<unsigned char>(p[off + 100]);
    ASSERT_EQ(munmap(p, kSize), 0);
  });
  const ChunkCounts moved = before.since();
  leave();
  EXPECT_EQ(sum, expected);
  EXPECT_EQ(messages, "");
  EXPECT_GE(moved.reclaimed, 2 * 1024u - 63u);
}

// A chunk reclaimed while another vCPU uses it: that vCPU faults it back
// and sees the memory the host has there — also memory replaced while the
// chunk had no GPA space, which only a translation cached from before the
// reclaim could hide.
TEST(HugeAddressSpace, AnotherThreadSeesItsMemoryThroughReclaims) {
  enter_with_gpa_bits(34);  // 15 chunks
  auto* page = static_cast<std::uint64_t*>(
      mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(page, MAP_FAILED);
  page[0] = 0;
  constexpr std::uint64_t kOthers = 40;
  auto* others = static_cast<char*>(
      mmap(nullptr, kOthers * kGiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
  ASSERT_NE(others, MAP_FAILED);
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> seen{0};
  std::thread reader([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      seen.store(std::atomic_ref<std::uint64_t>(page[0]).load(std::memory_order_relaxed), std::memory_order_relaxed);
    }
  });
  const ChunkCounts before;
  constexpr std::uint64_t kRounds = 30;
  for (std::uint64_t round = 1; round <= kRounds; ++round) {
    // Every other chunk once: more than there is room for, so the page's
    // chunk is taken from under the reader.
    for (std::uint64_t i = 0; i < kOthers; ++i) others[i * kGiB + round] = 1;
    if (round % 2 == 0) {
      // New memory at the same address, with the round in it.
      void* fresh = mmap(page, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
      ASSERT_EQ(fresh, static_cast<void*>(page));
    }
    std::atomic_ref<std::uint64_t>(page[0]).store(round, std::memory_order_relaxed);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (seen.load(std::memory_order_relaxed) != round && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::yield();
    }
    ASSERT_EQ(seen.load(), round) << "the reader kept seeing old memory";
  }
  stop = true;
  reader.join();
  const ChunkCounts moved = before.since();
  leave();
  EXPECT_GE(moved.reclaimed, kRounds * (kOthers - 15));
  munmap(others, kOthers * kGiB);
  munmap(page, kPage);
}

// What a program does whose chunks fit the GPA space: it never pays for a
// reclaim, and first touches are few.
TEST(HugeAddressSpace, AProgramThatFitsNeverPaysForAReclaim) {
  test::enter_or_fail();
  const ChunkCounts before;
  std::vector<std::vector<char>> heap;
  for (int i = 0; i < 64; ++i) heap.emplace_back(1 << 20, static_cast<char>(i));
  char path[] = "/dev/shm/dunk-fits-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  unlink(path);
  ASSERT_EQ(ftruncate(fd, 8 << 20), 0);
  auto* file = static_cast<char*>(mmap(nullptr, 8 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  ASSERT_NE(file, MAP_FAILED);
  std::memset(file, 'x', 8 << 20);
  std::vector<std::thread> threads;
  std::atomic<long> total{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::vector<long> work(100000, t);
      long s = 0;
      for (long v : work) s += v;
      total += s;
    });
  }
  for (std::thread& t : threads) t.join();
  munmap(file, 8 << 20);
  close(fd);
  const ChunkCounts moved = before.since();
  leave();
  EXPECT_EQ(total.load(), 100000L * (0 + 1 + 2 + 3));
  EXPECT_EQ(moved.reclaimed, 0u);
  EXPECT_EQ(stats().chunks_reclaimed.load(), 0u);
  EXPECT_LE(moved.assigned, 4u) << "first touches of chunks the program already used";
}

// --- the privileged paging API's eager assignment -------------------------------

// The privileged paging API expects every mapped page present: its first
// call, made by dunk's code in the guest, gives GPA space to every chunk
// with mappings — a memory slot created from the guest, past the guard that
// keeps the program's calls off dunk's descriptors (DUNK_SYSCALL_OWN_IOCTL).
TEST(EagerAssignment, ThePagingApiMakesAnUntouchedChunkResidentFromTheGuest) {
  test::enter_or_fail();
  auto* region = static_cast<char*>(
      mmap(nullptr, 3 * kGiB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
  ASSERT_NE(region, MAP_FAILED);
  char* page = reinterpret_cast<char*>((reinterpret_cast<std::uintptr_t>(region) + kGiB) & ~(kGiB - 1)) + 5 * kPage;
  ASSERT_EQ(mprotect(page, kPage, PROT_READ | PROT_WRITE), 0);
  core::Mirror& mirror = core::Machine::instance().mirror();
  const bool resident_before = mirror.resident(Hva(reinterpret_cast<std::uint64_t>(page)));
  const std::uint64_t faults_before = stats().faults_resolved.load();
  const std::optional<PageInfo> info = AddressSpace::current().lookup(page);  // in the guest
  const bool resident_after = mirror.resident(Hva(reinterpret_cast<std::uint64_t>(page)));
  page[7] = 'x';  // no fault: present already
  const std::uint64_t faults_after = stats().faults_resolved.load();
  leave();
  EXPECT_FALSE(resident_before);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->access & (kRead | kWrite), kRead | kWrite);
  EXPECT_TRUE(resident_after);
  EXPECT_EQ(faults_after, faults_before);
  EXPECT_EQ(page[7], 'x');
  munmap(region, 3 * kGiB);
}

// --- dunk's own mappings stay out of the program's address space ---------------

// Fills every gap of the address space between `from` and the main stack
// (but the stack's room to grow) with inaccessible reservations: a mapping
// made after this can only go below `from`, where the test leaves room —
// the way a program's layout may happen to put it there.
class GapFiller {
 public:
  explicit GapFiller(std::uintptr_t from) {
    FILE* maps = std::fopen("/proc/self/maps", "r");
    std::vector<std::pair<std::uintptr_t, std::uintptr_t>> ranges;
    std::uintptr_t stack = 0;
    char line[512];
    while (std::fgets(line, sizeof line, maps) != nullptr) {
      std::uintptr_t lo, hi;
      if (std::sscanf(line, "%lx-%lx", &lo, &hi) != 2) continue;
      if (std::strstr(line, "[stack]") != nullptr) stack = lo;
      ranges.emplace_back(lo, hi);
    }
    std::fclose(maps);
    const std::uintptr_t limit = stack - (64u << 20);
    for (std::size_t i = 0; i + 1 < ranges.size(); ++i) {
      const std::uintptr_t lo = std::max(ranges[i].second, from), hi = std::min(ranges[i + 1].first, limit);
      if (lo >= hi) continue;
      void* p = mmap(reinterpret_cast<void*>(lo), hi - lo, PROT_NONE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
      if (p == reinterpret_cast<void*>(lo)) filled_.emplace_back(lo, hi - lo);
    }
  }
  ~GapFiller() {
    for (auto [p, size] : filled_) munmap(reinterpret_cast<void*>(p), size);
  }

 private:
  std::vector<std::pair<std::uintptr_t, std::size_t>> filled_;
};

// A fork child writes to an address the program unmapped: natively SIGSEGV
// at once, in its VM too (and nothing of dunk's appeared there: the vCPU's
// run page of a new VM once landed in exactly such a hole).
TEST(ForkChild, FaultOnAnAddressWhoseMappingIsGoneIsSigsegv) {
  ASSERT_TRUE(enter(EnterOptions{.follow_fork = true}));
  char path[] = "/dev/shm/dunk-gone-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  unlink(path);
  ASSERT_EQ(ftruncate(fd, 3 * kPage), 0);
  auto* p = static_cast<char*>(mmap(nullptr, 3 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  ASSERT_NE(p, MAP_FAILED);
  close(fd);
  ASSERT_EQ(munmap(p, 3 * kPage), 0);
  GapFiller above(reinterpret_cast<std::uintptr_t>(p) + 3 * kPage);
  const pid_t pid = fork();
  if (pid == 0) {
    unsigned char residency[3];
    // mincore fails with ENOMEM where nothing is mapped.
    if (mincore(p, 3 * kPage, residency) == 0 || errno != ENOMEM) _exit(3);
    if (!test::in_guest_ring0()) _exit(4);
    p[0] = 1;
    _exit(5);
  }
  ASSERT_GT(pid, 0);
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  pid_t done = 0;
  while ((done = waitpid(pid, &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (done == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    FAIL() << "the child hung on its fault";
  }
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
  EXPECT_EQ(WTERMSIG(status), SIGSEGV);
}

// --- faults the kernel resolves on its own ------------------------------------

constexpr std::size_t kMappedStack = 64 * 1024;
constexpr std::size_t kRoom = 64u << 20;

// A small MAP_GROWSDOWN mapping with room below it; returns its start.
char* growsdown_mapping() {
  auto* base = static_cast<char*>(mmap(nullptr, kRoom, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
  EXPECT_NE(base, MAP_FAILED);
  munmap(base, kRoom - kMappedStack);
  void* stack = mmap(base + kRoom - kMappedStack, kMappedStack, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN | MAP_FIXED, -1, 0);
  EXPECT_EQ(stack, static_cast<void*>(base + kRoom - kMappedStack));
  return static_cast<char*>(stack);
}

__attribute__((noinline)) long recurse(int depth) {
  volatile char frame[1024];
  std::memset(const_cast<char*>(frame), depth, sizeof frame);
  return depth == 0 ? frame[3] : recurse(depth - 1) + frame[7];
}

void* deep_recursion(void*) { return reinterpret_cast<void*>(recurse(4096)); }  // 4 MiB and more

TEST(GrowsDown, ThreadStackGrowsPastItsMappedPart) {
  test::enter_or_fail();
  char* stack = growsdown_mapping();
  GapFiller above(reinterpret_cast<std::uintptr_t>(stack) + kMappedStack);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  ASSERT_EQ(pthread_attr_setstack(&attr, stack, kMappedStack), 0);
  pthread_t thread;
  ASSERT_EQ(pthread_create(&thread, &attr, deep_recursion, nullptr), 0);
  void* result = nullptr;
  ASSERT_EQ(pthread_join(thread, &result), 0);
  leave();
  EXPECT_EQ(reinterpret_cast<long>(result), reinterpret_cast<long>(deep_recursion(nullptr)));
  // The kernel grew the mapping by what the thread used.
  FILE* maps = std::fopen("/proc/self/maps", "r");
  char line[512];
  std::uintptr_t grown = 0;
  while (std::fgets(line, sizeof line, maps) != nullptr) {
    std::uintptr_t lo, hi;
    if (std::sscanf(line, "%lx-%lx", &lo, &hi) == 2 && hi == reinterpret_cast<std::uintptr_t>(stack) + kMappedStack) {
      grown = hi - lo;
    }
  }
  std::fclose(maps);
  EXPECT_GT(grown, std::uintptr_t{4} << 20);
}

TEST(GrowsDown, AnyAccessBelowAGrowsdownMappingGrowsIt) {
  test::enter_or_fail();
  char* start = growsdown_mapping();
  GapFiller above(reinterpret_cast<std::uintptr_t>(start) + kMappedStack);
  // Not a push: a plain store 1 MiB below, then one in between.
  volatile char* far = start - (1u << 20);
  *far = 'a';
  volatile char* near = start - 5 * kPage;
  *near = 'b';
  const bool ok = *far == 'a' && *near == 'b';
  leave();
  EXPECT_TRUE(ok);
}

}  // namespace
}  // namespace dunk
