// /proc/self/pagemap's soft-dirty bit and clear_refs "4" served by the
// monitor from dunk's dirty bits (src/core/syscalls/pagemap.cc): what a
// program that tracks its writes through the kernel's interface (the Boehm
// collector, CRIU) sees in VM mode, and that the clean never reaches the
// kernel.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <set>
#include <vector>

#include "core/machine.h"
#include "dunk/dunk.h"
#include "support.h"

namespace dunk {
namespace {

constexpr std::size_t kPage = 4096;
constexpr std::size_t kPages = 16;
constexpr std::uint64_t kSoftDirty = std::uint64_t{1} << 55;
constexpr std::uint64_t kPresent = std::uint64_t{1} << 63;

std::uint64_t kvm_runs() { return core::Machine::instance().stats().kvm_runs.load(); }

off_t offset_of(const char* p) { return static_cast<off_t>(reinterpret_cast<std::uintptr_t>(p) / kPage * 8); }

std::vector<std::uint64_t> entries(int fd, const char* p) {
  std::vector<std::uint64_t> e(kPages);
  EXPECT_EQ(pread(fd, e.data(), kPages * 8, offset_of(p)), static_cast<ssize_t>(kPages * 8));
  return e;
}

std::set<std::size_t> soft_dirty(const std::vector<std::uint64_t>& e) {
  std::set<std::size_t> pages;
  for (std::size_t i = 0; i < e.size(); ++i) {
    if (e[i] & kSoftDirty) pages.insert(i);
  }
  return pages;
}

TEST(Pagemap, SoftDirtyIsDunksAndClearRefsNeverReachesTheKernel) {
  char* p = static_cast<char*>(
      mmap(nullptr, kPages * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0));
  ASSERT_NE(p, MAP_FAILED);
  // The kernel's own interface, opened outside VM mode (so never served).
  const int kernel_pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  const int kernel_clear = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
  ASSERT_GE(kernel_pagemap, 0);
  ASSERT_GE(kernel_clear, 0);
  // Whether this kernel has soft-dirty bits at all (CONFIG_MEM_SOFT_DIRTY).
  ASSERT_EQ(write(kernel_clear, "4", 1), 1);
  p[0] = 1;
  const bool kernel_has_soft_dirty = (entries(kernel_pagemap, p)[0] & kSoftDirty) != 0;

  test::enter_or_fail();
  const int pagemap = open("/proc/thread-self/pagemap", O_RDONLY | O_CLOEXEC);
  const int clear = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
  ASSERT_GE(pagemap, 0);
  ASSERT_GE(clear, 0);
  const int duplicate = dup(pagemap);  // not noted: the kernel's answers
  ASSERT_EQ(write(clear, "4\n", 2), 2);
  p[2 * kPage] = 1;
  p[5 * kPage + 100] = 1;
  // A read first, uncounted: with guest-physical space assigned on first
  // touch, the first use of fresh memory (the vector entries() returns) may
  // take a fault exit of its own. Reading pagemap changes nothing.
  (void)entries(pagemap, p);
  const std::uint64_t before = kvm_runs();
  const std::vector<std::uint64_t> after_writes = entries(pagemap, p);
  const std::uint64_t one_read = kvm_runs() - before;
  // lseek + read, as the Boehm collector reads it.
  std::vector<std::uint64_t> by_read(kPages);
  ASSERT_EQ(lseek(pagemap, offset_of(p), SEEK_SET), offset_of(p));
  ASSERT_EQ(read(pagemap, by_read.data(), kPages * 8), static_cast<ssize_t>(kPages * 8));
  EXPECT_EQ(lseek(pagemap, 0, SEEK_CUR), offset_of(p) + static_cast<off_t>(kPages * 8));
  ASSERT_EQ(write(clear, "4", 1), 1);
  const std::vector<std::uint64_t> after_clear = entries(pagemap, p);
  p[7 * kPage] = 1;
  const std::vector<std::uint64_t> after_one = entries(pagemap, p);
  const std::vector<std::uint64_t> through_dup = entries(duplicate, p);
  leave();
  const std::vector<std::uint64_t> kernel_view = entries(kernel_pagemap, p);

  EXPECT_EQ(soft_dirty(after_writes), (std::set<std::size_t>{2, 5}));
  EXPECT_EQ(by_read, after_writes);
  EXPECT_EQ(one_read, 1u) << "a served read costs the one exit any system call costs";
  for (std::uint64_t e : after_writes) EXPECT_NE(e & kPresent, 0u) << "the other bits are the kernel's";
  EXPECT_TRUE(soft_dirty(after_clear).empty());
  EXPECT_EQ(soft_dirty(after_one), (std::set<std::size_t>{7}));
  // The kernel never saw a clean since the native one: on a kernel with
  // soft-dirty bits, pages 2 and 5 are still dirty in its view (and through
  // a descriptor dunk does not serve); without them, nothing ever is.
  EXPECT_EQ((kernel_view[2] & kSoftDirty) != 0, kernel_has_soft_dirty);
  EXPECT_EQ((kernel_view[5] & kSoftDirty) != 0, kernel_has_soft_dirty);
  EXPECT_EQ((through_dup[2] & kSoftDirty) != 0, kernel_has_soft_dirty);
  close(duplicate);
  close(pagemap);
  close(clear);
}

}  // namespace
}  // namespace dunk
