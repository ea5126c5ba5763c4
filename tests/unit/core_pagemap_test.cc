// The soft-dirty files of /proc served from dunk's dirty bits
// (src/core/syscalls/pagemap.cc), driven through the system-call table as
// the monitor drives it, against fakes of the guest and of the kernel
// (fake_guest.h): which descriptors are noted, what a read of pagemap
// returns (bit 55 dunk's, everything else the kernel's), which writes to
// clear_refs are served and which reach the kernel.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "core/syscalls/handlers.h"
#include "fake_guest.h"

namespace dunk::core {
namespace {

using test::FakeDirtyBits;
using test::FakeGuest;
using test::HostCall;
using Kind = ServedFiles::Kind;

constexpr std::uint64_t kSoftDirty = std::uint64_t{1} << 55;
constexpr std::uint64_t kPresent = std::uint64_t{1} << 63;

Syscall call(long nr, std::uint64_t a0 = 0, std::uint64_t a1 = 0, std::uint64_t a2 = 0, std::uint64_t a3 = 0) {
  return Syscall::make(nr, {a0, a1, a2, a3, 0, 0});
}

// A kernel with files: what /proc/self/fd/N links to, each descriptor's
// inode, and pagemap contents (entry i = kernel_entry(i)).
struct Kernel {
  std::map<int, std::string> links;
  std::map<int, std::uint64_t> inodes;
  long position = 0;  // of the pagemap descriptor, in bytes
  static std::uint64_t kernel_entry(std::uint64_t page) { return kPresent | (page * 3) | (page % 2 ? kSoftDirty : 0); }

  void install(FakeGuest& g) {
    g.host.answer = [this](const HostCall& c) -> long {
      switch (c.nr) {
        case SYS_readlinkat: {
          const std::string link = reinterpret_cast<const char*>(c.args[1]);
          const int fd = std::stoi(link.substr(std::string("/proc/self/fd/").size()));
          auto it = links.find(fd);
          if (it == links.end()) return -ENOENT;
          std::memcpy(reinterpret_cast<char*>(c.args[2]), it->second.data(), it->second.size());
          return static_cast<long>(it->second.size());
        }
        case SYS_fstat: {
          auto it = inodes.find(static_cast<int>(c.args[0]));
          if (it == inodes.end()) return -EBADF;
          auto* st = reinterpret_cast<struct stat*>(c.args[1]);
          st->st_dev = 0x16;
          st->st_ino = it->second;
          return 0;
        }
        case SYS_lseek:
          return position;
        case SYS_read:
        case SYS_pread64: {
          const long at = c.nr == SYS_read ? position : c.args[3];
          auto* out = reinterpret_cast<std::uint64_t*>(c.args[1]);
          for (long i = 0; i < c.args[2] / 8; ++i) out[i] = kernel_entry(static_cast<std::uint64_t>(at / 8 + i));
          if (c.nr == SYS_read) position += c.args[2];
          return c.args[2];
        }
        default:
          return 0;
      }
    };
  }
};

// Opens `path` (as the kernel would, at descriptor `fd`) through the table.
void open_at(FakeGuest& g, Kernel& k, int fd, const std::string& path, std::uint64_t inode = 100) {
  k.links[fd] = path;
  k.inodes[fd] = inode;
  g.host.forward_result = [fd](const Syscall&) { return static_cast<long>(fd); };
  EXPECT_EQ(g.run(call(SYS_openat, static_cast<std::uint64_t>(AT_FDCWD), 0, O_RDONLY)), Outcome::result(fd));
  g.host.forward_result = [](const Syscall&) { return 0L; };
}

TEST(PagemapSyscalls, TheTableSendsOpensReadsAndWritesToTheFamily) {
  for (long nr : {SYS_open, SYS_openat, SYS_openat2}) EXPECT_EQ(syscall_handler(call(nr)), &syscalls::open_proc_file);
  for (long nr : {SYS_read, SYS_pread64}) EXPECT_EQ(syscall_handler(call(nr)), &syscalls::read_served);
  for (long nr : {SYS_write, SYS_pwrite64}) EXPECT_EQ(syscall_handler(call(nr)), &syscalls::write_served);
  EXPECT_EQ(syscall_handler(call(SYS_readv)), &forward_unchanged);
  EXPECT_EQ(syscall_handler(call(SYS_writev)), &forward_unchanged);
}

TEST(PagemapSyscalls, PathsNameThisProcesssFilesWhateverTheRoute) {
  EXPECT_EQ(ServedFiles::classify("/proc/4242/pagemap", 4242), Kind::kPagemap);
  EXPECT_EQ(ServedFiles::classify("/proc/4242/clear_refs", 4242), Kind::kClearRefs);
  EXPECT_EQ(ServedFiles::classify("/proc/4242/task/4250/pagemap", 4242), Kind::kPagemap);
  EXPECT_EQ(ServedFiles::classify("/proc/4242/task/4250/clear_refs", 4242), Kind::kClearRefs);
  EXPECT_EQ(ServedFiles::classify("/proc/4243/pagemap", 4242), std::nullopt);  // another process
  EXPECT_EQ(ServedFiles::classify("/proc/42420/pagemap", 4242), std::nullopt);
  EXPECT_EQ(ServedFiles::classify("/proc/4242/maps", 4242), std::nullopt);
  EXPECT_EQ(ServedFiles::classify("/proc/4242/pagemap2", 4242), std::nullopt);
  EXPECT_EQ(ServedFiles::classify("/proc/4242/task//pagemap", 4242), std::nullopt);
  EXPECT_EQ(ServedFiles::classify("/tmp/proc/4242/pagemap", 4242), std::nullopt);
  EXPECT_EQ(ServedFiles::classify("/proc/self/pagemap", 4242), std::nullopt);  // readlink resolves self
}

TEST(PagemapSyscalls, OpeningThisProcesssFilesNotesThemAndNothingElse) {
  FakeGuest g;
  Kernel k;
  k.install(g);
  open_at(g, k, 5, "/proc/4242/pagemap", 100);
  open_at(g, k, 6, "/proc/4242/task/4242/clear_refs", 101);
  open_at(g, k, 7, "/proc/1/pagemap", 102);
  open_at(g, k, 8, "/etc/hostname", 103);
  ASSERT_TRUE(g.dirty.served.find(5));
  EXPECT_EQ(g.dirty.served.find(5)->kind, Kind::kPagemap);
  EXPECT_EQ(g.dirty.served.find(5)->ino, 100u);
  ASSERT_TRUE(g.dirty.served.find(6));
  EXPECT_EQ(g.dirty.served.find(6)->kind, Kind::kClearRefs);
  EXPECT_FALSE(g.dirty.served.find(7));
  EXPECT_FALSE(g.dirty.served.find(8));
  // The opens themselves were the kernel's.
  EXPECT_EQ(g.host.forwarded.size(), 4u);
  // A failed open notes nothing and asks nothing more.
  g.host.calls.clear();
  g.host.forward_result = [](const Syscall&) { return static_cast<long>(-ENOENT); };
  EXPECT_EQ(g.run(call(SYS_open, 0, O_RDONLY)), Outcome::result(-ENOENT));
  EXPECT_TRUE(g.host.calls.empty());
}

TEST(PagemapSyscalls, AReadOfPagemapHasDunksBit55AndTheKernelsEverythingElse) {
  FakeGuest g;
  Kernel k;
  k.install(g);
  open_at(g, k, 5, "/proc/4242/pagemap");
  constexpr std::uint64_t kFirstPage = 0x7000'0000 / 4096;
  k.position = static_cast<long>(kFirstPage * 8);
  g.dirty.dirty = {kFirstPage + 1, kFirstPage + 2};
  const std::uint64_t buffer = g.memory.add(4 * 8);
  g.host.forwarded.clear();
  EXPECT_EQ(g.run(call(SYS_read, 5, buffer, 32)), Outcome::result(32));
  EXPECT_TRUE(g.host.forwarded.empty());
  for (std::uint64_t i = 0; i < 4; ++i) {
    const std::uint64_t got = g.memory.object_at<std::uint64_t>(buffer + i * 8);
    const std::uint64_t kernel = Kernel::kernel_entry(kFirstPage + i);
    EXPECT_EQ(got & ~kSoftDirty, kernel & ~kSoftDirty) << i;
    EXPECT_EQ((got & kSoftDirty) != 0, i == 1 || i == 2) << i;
  }
  // The file position moved as the kernel's read moves it.
  EXPECT_EQ(k.position, static_cast<long>((kFirstPage + 4) * 8));
  EXPECT_EQ(g.dirty.queries, (std::vector<FakeDirtyBits::Query>{{kFirstPage, 4}}));
}

TEST(PagemapSyscalls, LargeReadsGoInChunksAndPreadKeepsItsPosition) {
  FakeGuest g;
  Kernel k;
  k.install(g);
  open_at(g, k, 5, "/proc/4242/pagemap");
  const std::uint64_t pages = 3000;  // more than one 16 KiB chunk
  const std::uint64_t buffer = g.memory.add(pages * 8);
  g.dirty.dirty = {10, 2999};
  k.position = 0;
  EXPECT_EQ(g.run(call(SYS_pread64, 5, buffer, pages * 8, 0)), Outcome::result(static_cast<long>(pages * 8)));
  EXPECT_EQ(g.dirty.queries, (std::vector<FakeDirtyBits::Query>{{0, 2048}, {2048, 952}}));
  EXPECT_EQ(k.position, 0);  // pread leaves it
  std::size_t dirty = 0;
  for (std::uint64_t i = 0; i < pages; ++i) dirty += (g.memory.object_at<std::uint64_t>(buffer + i * 8) & kSoftDirty) != 0;
  EXPECT_EQ(dirty, 2u);
  EXPECT_NE(g.memory.object_at<std::uint64_t>(buffer + 2999 * 8) & kSoftDirty, 0u);
}

TEST(PagemapSyscalls, WhatTheKernelRefusesOrWhatIsNotServedIsForwarded) {
  FakeGuest g;
  Kernel k;
  k.install(g);
  const std::uint64_t buffer = g.memory.add(64);
  // Nothing served yet: a read goes straight to the kernel, with no
  // question asked.
  g.host.calls.clear();
  EXPECT_EQ(g.run(call(SYS_read, 3, buffer, 64)), Outcome::result(0));
  EXPECT_TRUE(g.host.calls.empty());
  open_at(g, k, 5, "/proc/4242/pagemap", 100);
  g.host.forwarded.clear();
  EXPECT_EQ(g.run(call(SYS_read, 5, buffer, 12)).kind(), Outcome::Kind::kResult);  // not whole entries
  EXPECT_EQ(g.run(call(SYS_pread64, 5, buffer, 16, 4)).kind(), Outcome::Kind::kResult);  // misaligned
  EXPECT_EQ(g.run(call(SYS_write, 5, buffer, 1)).kind(), Outcome::Kind::kResult);  // pagemap is not clear_refs
  EXPECT_EQ(g.run(call(SYS_read, 6, buffer, 16)).kind(), Outcome::Kind::kResult);  // another descriptor
  EXPECT_EQ(g.host.forwarded.size(), 4u);
  EXPECT_TRUE(g.dirty.queries.empty());
  // The number closed and reused for another file: never served again.
  k.inodes[5] = 200;
  g.host.forwarded.clear();
  EXPECT_EQ(g.run(call(SYS_read, 5, buffer, 16)).kind(), Outcome::Kind::kResult);
  EXPECT_EQ(g.host.forwarded.size(), 1u);
  EXPECT_FALSE(g.dirty.served.find(5));
  EXPECT_TRUE(g.dirty.queries.empty());
}

TEST(PagemapSyscalls, ClearRefsFourIsServedAndEveryOtherWriteIsTheKernels) {
  FakeGuest g;
  Kernel k;
  k.install(g);
  open_at(g, k, 6, "/proc/4242/clear_refs");
  auto write = [&](const std::string& text, long nr = SYS_write, std::uint64_t count = 0) {
    const std::uint64_t at = g.memory.add(text.size() + 1);
    std::memcpy(reinterpret_cast<void*>(at), text.data(), text.size());
    g.host.forwarded.clear();
    const int clears = g.dirty.clears;
    const Outcome o = g.run(call(nr, 6, at, count != 0 ? count : text.size(), 0));
    return std::make_tuple(o, g.dirty.clears - clears, g.host.forwarded.size());
  };
  EXPECT_EQ(write("4\n"), std::make_tuple(Outcome::result(2), 1, std::size_t{0}));
  EXPECT_EQ(write("4"), std::make_tuple(Outcome::result(1), 1, std::size_t{0}));
  EXPECT_EQ(write(" +04 \t"), std::make_tuple(Outcome::result(6), 1, std::size_t{0}));
  EXPECT_EQ(write("4\n", SYS_pwrite64), std::make_tuple(Outcome::result(2), 1, std::size_t{0}));
  // The kernel reads 12 characters at most: what follows does not matter,
  // and the whole count is answered.
  EXPECT_EQ(write("4           garbage"), std::make_tuple(Outcome::result(19), 1, std::size_t{0}));
  for (const char* other : {"1", "5", "44", "4x", "-4", "", " ", "0x4"}) {
    auto [o, clears, forwarded] = write(other);
    EXPECT_EQ(clears, 0) << other;
    EXPECT_EQ(forwarded, std::size_t{1}) << other;
  }
  // An unreadable buffer: the kernel's EFAULT.
  g.host.forwarded.clear();
  g.run(call(SYS_write, 6, 0x10, 2));
  EXPECT_EQ(g.host.forwarded.size(), 1u);
  EXPECT_EQ(g.dirty.clears, 5);
}

}  // namespace
}  // namespace dunk::core
