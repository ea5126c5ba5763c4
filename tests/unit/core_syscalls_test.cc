// The monitor's system-call handlers (src/core/syscalls/), driven through the
// table exactly as the monitor drives them, against fakes of the guest
// (fake_guest.h): what each call forwards, what it changes in the mirror,
// the descriptor set, the signal state, and what it answers.
#include <asm/prctl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include <gtest/gtest.h>

#include "arch/x86_64/xsave.h"
#include "core/ldt_mirror.h"
#include "core/signal_frame.h"
#include "core/syscalls/handlers.h"
#include "fake_guest.h"

namespace dunk::core {
namespace {

using test::FakeGuest;
using test::FakeMirror;
using test::HostCall;
using Update = FakeMirror::Update;

Syscall call(long nr, std::uint64_t a0 = 0, std::uint64_t a1 = 0, std::uint64_t a2 = 0, std::uint64_t a3 = 0,
             std::uint64_t a4 = 0, std::uint64_t a5 = 0) {
  return Syscall::make(nr, {a0, a1, a2, a3, a4, a5});
}

// ---- The table ---------------------------------------------------------------

TEST(SyscallTable, NumbersReachTheirFamiliesAndTheRestIsForwarded) {
  EXPECT_EQ(syscall_handler(call(SYS_mmap)), &syscalls::mmap);
  EXPECT_EQ(syscall_handler(call(SYS_pkey_mprotect)), &syscalls::mprotect);
  EXPECT_EQ(syscall_handler(call(SYS_close_range)), &syscalls::close_range);
  EXPECT_EQ(syscall_handler(call(SYS_clone3)), &syscalls::clone_family);
  EXPECT_EQ(syscall_handler(call(SYS_rt_sigreturn)), &syscalls::rt_sigreturn);
  EXPECT_EQ(syscall_handler(call(SYS_getpid)), &forward_unchanged);
  EXPECT_EQ(syscall_handler(call(-1)), &forward_unchanged);
  EXPECT_EQ(syscall_handler(call(100000)), &forward_unchanged);
  EXPECT_EQ(syscall_handler(call(DUNK_SYSCALL_LEAVE)), &syscalls::dunk_call);
}

TEST(SyscallTable, TheNumberIsDecodedAsTheKernelDecodesIt) {
  // do_syscall_64 takes the low 32 bits of RAX: 0x1'0000'0009 is mmap.
  const Syscall high = Syscall{0x1'0000'0000ULL | SYS_mmap, {}};
  EXPECT_EQ(high.nr(), SYS_mmap);
  EXPECT_EQ(syscall_handler(high), &syscalls::mmap);
}

TEST(SyscallTable, ForwardedCallsReachTheHostAsTheGuestMadeThem) {
  FakeGuest g;
  g.host.forward_result = [](const Syscall&) { return 77L; };
  const Syscall c{0xffff'ffff'0000'0027ULL, {1, 2, 3, 4, 5, 6}};  // getpid with high bits
  EXPECT_EQ(g.run(c), Outcome::result(77));
  ASSERT_EQ(g.host.forwarded.size(), 1u);
  EXPECT_EQ(g.host.forwarded[0].rax, c.rax);
  EXPECT_EQ(g.host.forwarded[0].args, c.args);
}

// ---- Memory ------------------------------------------------------------------

TEST(MemorySyscalls, MmapMirrorsTheNewMappingWithItsProtection) {
  FakeGuest g;
  g.host.forward_result = [](const Syscall&) { return 0x7000'0000L; };
  EXPECT_EQ(g.run(call(SYS_mmap, 0, 5000, PROT_READ | PROT_EXEC | PROT_GROWSDOWN, MAP_PRIVATE | MAP_ANONYMOUS)),
            Outcome::result(0x7000'0000));
  ASSERT_EQ(g.mirror.updates.size(), 1u);
  EXPECT_EQ(g.mirror.updates[0], (Update{Update::kSet, 0x7000'0000, 0x7000'2000, PROT_READ | PROT_EXEC}));
}

TEST(MemorySyscalls, AFailedMmapChangesNothing) {
  FakeGuest g;
  g.host.forward_result = [](const Syscall&) { return static_cast<long>(-ENOMEM); };
  EXPECT_EQ(g.run(call(SYS_mmap, 0, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS)), Outcome::result(-ENOMEM));
  EXPECT_TRUE(g.mirror.updates.empty());
}

TEST(MemorySyscalls, AMappingTheMirrorCannotTakeIsUndoneAndFailsWithENOMEM) {
  FakeGuest g;
  g.host.forward_result = [](const Syscall&) { return 0x7000'0000L; };
  g.mirror.fail_with = Error{"guest-physical address space exhausted", ENOSPC};
  EXPECT_EQ(g.run(call(SYS_mmap, 0, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS)), Outcome::result(-ENOMEM));
  const auto unmaps = g.host.calls_of(SYS_munmap);
  ASSERT_EQ(unmaps.size(), 1u);
  EXPECT_EQ(unmaps[0].args[0], 0x7000'0000L);
  EXPECT_EQ(unmaps[0].args[1], 4096);
  ASSERT_EQ(g.host.stderr_lines.size(), 1u);
  EXPECT_EQ(g.host.stderr_lines[0],
            "dunk: cannot mirror new mapping at 0x70000000: guest-physical address space exhausted (errno 28)\n");
}

TEST(MemorySyscalls, MunmapAndMprotectFollowTheHost) {
  FakeGuest g;
  EXPECT_EQ(g.run(call(SYS_munmap, 0x10000, 100)), Outcome::result(0));
  EXPECT_EQ(g.run(call(SYS_mprotect, 0x20000, 0x3000, PROT_READ)), Outcome::result(0));
  EXPECT_EQ(g.run(call(SYS_pkey_mprotect, 0x30000, 0x1000, PROT_READ | PROT_WRITE, 1)), Outcome::result(0));
  // The growsdown flag extends the change to the mapping's end: read it back.
  EXPECT_EQ(g.run(call(SYS_mprotect, 0x40000, 0x1000, PROT_READ | PROT_GROWSDOWN)), Outcome::result(0));
  EXPECT_EQ(g.mirror.updates, (std::vector<Update>{
                                  {Update::kSet, 0x10000, 0x11000, PROT_NONE},
                                  {Update::kSet, 0x20000, 0x23000, PROT_READ},
                                  {Update::kSet, 0x30000, 0x31000, PROT_READ | PROT_WRITE},
                                  {Update::kSyncAll, 0, 0, 0},
                              }));
  g.mirror.updates.clear();
  g.host.forward_result = [](const Syscall&) { return static_cast<long>(-EINVAL); };
  EXPECT_EQ(g.run(call(SYS_munmap, 0x10001, 100)), Outcome::result(-EINVAL));
  EXPECT_EQ(g.run(call(SYS_mprotect, 0x10000, 100, PROT_READ)), Outcome::result(-EINVAL));
  EXPECT_TRUE(g.mirror.updates.empty());
}

TEST(MemorySyscalls, MremapMovesTheProtectionAlong) {
  FakeGuest g;
  g.mirror.protections[0x10000] = PROT_READ | PROT_WRITE;
  g.host.forward_result = [](const Syscall&) { return 0x90000L; };
  EXPECT_EQ(g.run(call(SYS_mremap, 0x10000, 0x2000, 0x4000, MREMAP_MAYMOVE)), Outcome::result(0x90000));
  EXPECT_EQ(g.mirror.updates, (std::vector<Update>{
                                  {Update::kSet, 0x10000, 0x12000, PROT_NONE},
                                  {Update::kSet, 0x90000, 0x94000, PROT_READ | PROT_WRITE},
                              }));
}

TEST(MemorySyscalls, MremapInPlaceShrinksAndDontunmapKeepsTheOld) {
  FakeGuest g;
  g.mirror.protections[0x10000] = PROT_READ;
  g.host.forward_result = [](const Syscall&) { return 0x10000L; };
  EXPECT_EQ(g.run(call(SYS_mremap, 0x10000, 0x4000, 0x1000, 0)), Outcome::result(0x10000));
  EXPECT_EQ(g.mirror.updates, (std::vector<Update>{
                                  {Update::kSet, 0x11000, 0x14000, PROT_NONE},
                                  {Update::kSet, 0x10000, 0x11000, PROT_READ},
                              }));
  g.mirror.updates.clear();
  g.host.forward_result = [](const Syscall&) { return 0x50000L; };
  EXPECT_EQ(g.run(call(SYS_mremap, 0x10000, 0x1000, 0x1000, MREMAP_MAYMOVE | MREMAP_DONTUNMAP)),
            Outcome::result(0x50000));
  EXPECT_EQ(g.mirror.updates, (std::vector<Update>{{Update::kSet, 0x50000, 0x51000, PROT_READ}}));
}

TEST(MemorySyscalls, BrkMapsWhatTheBreakGainsAndUnmapsWhatItLoses) {
  FakeGuest g;
  g.brk = 0x601000;
  g.host.forward_result = [](const Syscall&) { return 0x623456L; };
  EXPECT_EQ(g.run(call(SYS_brk, 0x623456)), Outcome::result(0x623456));
  g.host.forward_result = [](const Syscall&) { return 0x610000L; };
  EXPECT_EQ(g.run(call(SYS_brk, 0x610000)), Outcome::result(0x610000));
  g.host.forward_result = [](const Syscall&) { return 0x610000L; };
  EXPECT_EQ(g.run(call(SYS_brk, 0)), Outcome::result(0x610000));  // a query
  EXPECT_EQ(g.mirror.updates, (std::vector<Update>{
                                  {Update::kSet, 0x601000, 0x624000, PROT_READ | PROT_WRITE},
                                  {Update::kSet, 0x610000, 0x624000, PROT_NONE},
                              }));
  EXPECT_EQ(g.brk.load(), 0x610000u);
}

TEST(MemorySyscalls, GuardRegionsAndSharedMemoryAreReadBack) {
  FakeGuest g;
  EXPECT_EQ(g.run(call(SYS_madvise, 0x10000, 0x2000, 102 /*MADV_GUARD_INSTALL*/)), Outcome::result(0));
  EXPECT_EQ(g.run(call(SYS_madvise, 0x10000, 0x2000, 103 /*MADV_GUARD_REMOVE*/)), Outcome::result(0));
  EXPECT_EQ(g.run(call(SYS_madvise, 0x10000, 0x2000, MADV_DONTNEED)), Outcome::result(0));
  g.host.forward_result = [](const Syscall&) { return 0x7777'0000L; };
  EXPECT_EQ(g.run(call(SYS_shmat, 3, 0, 0)), Outcome::result(0x7777'0000));
  EXPECT_EQ(g.mirror.updates, (std::vector<Update>{
                                  {Update::kSet, 0x10000, 0x12000, PROT_NONE},
                                  {Update::kSync, 0x10000, 0x12000, 0},
                                  {Update::kSyncAll, 0, 0, 0},
                              }));
}

// ---- Descriptors -------------------------------------------------------------

TEST(DescriptorSyscalls, ClosingOneOfDunksDescriptorsIsEbadfAndReachesNoKernel) {
  FakeGuest g;
  g.dunk_fds.add(1030);
  EXPECT_EQ(g.run(call(SYS_close, 1030)), Outcome::result(-EBADF));
  EXPECT_TRUE(g.host.forwarded.empty());
  EXPECT_EQ(g.run(call(SYS_close, 5)), Outcome::result(0));
  EXPECT_EQ(g.host.forwarded.size(), 1u);
}

TEST(DescriptorSyscalls, CloseRangeClosesThePiecesAroundDunksDescriptors) {
  FakeGuest g;
  g.dunk_fds.add(1024);
  g.dunk_fds.add(1025);
  g.dunk_fds.add(2000);
  EXPECT_EQ(g.run(call(SYS_close_range, 3, 0xffff'ffff, 0)), Outcome::result(0));
  EXPECT_TRUE(g.host.forwarded.empty());
  EXPECT_EQ(g.host.calls_of(SYS_close_range), (std::vector<HostCall>{
                                                  {SYS_close_range, {3, 1023, 0, 0, 0, 0}},
                                                  {SYS_close_range, {1026, 1999, 0, 0, 0, 0}},
                                                  {SYS_close_range, {2001, 0xffff'ffff, 0, 0, 0, 0}},
                                              }));
}

TEST(DescriptorSyscalls, CloseRangeEndingOnDunksDescriptorAndCloexecOnly) {
  FakeGuest g;
  g.dunk_fds.add(1024);
  EXPECT_EQ(g.run(call(SYS_close_range, 1024, 1024, 0)), Outcome::result(0));
  EXPECT_TRUE(g.host.calls.empty());
  // CLOSE_RANGE_CLOEXEC closes nothing: forwarded as it is.
  EXPECT_EQ(g.run(call(SYS_close_range, 0, 0xffff'ffff, 1U << 2)), Outcome::result(0));
  EXPECT_EQ(g.host.forwarded.size(), 1u);
  // A piece the kernel refuses fails the call with its errno.
  g.host.answer = [](const HostCall&) { return static_cast<long>(-EINVAL); };
  EXPECT_EQ(g.run(call(SYS_close_range, 0, 2000, 0)), Outcome::result(-EINVAL));
}

// A getdents64 record for `name`.
std::vector<std::byte> dirent(const char* name) {
  const std::size_t length = 19 + std::strlen(name) + 1;
  std::vector<std::byte> record((length + 7) & ~std::size_t{7});
  const auto reclen = static_cast<std::uint16_t>(record.size());
  std::memcpy(record.data() + 16, &reclen, 2);
  std::memcpy(record.data() + 19, name, std::strlen(name));
  return record;
}

TEST(DescriptorSyscalls, ListingTheProcessesFdDirectoryHidesDunksDescriptors) {
  FakeGuest g;
  g.dunk_fds.add(1024);
  std::vector<std::byte> listing;
  for (const char* name : {".", "..", "0", "1024", "3"}) {
    auto record = dirent(name);
    listing.insert(listing.end(), record.begin(), record.end());
  }
  int reads = 0;
  g.host.answer = [&](const HostCall& c) -> long {
    if (c.nr == SYS_readlinkat) {
      const char target[] = "/proc/4242/fd";
      std::memcpy(reinterpret_cast<char*>(c.args[2]), target, sizeof target - 1);
      return sizeof target - 1;
    }
    if (c.nr == SYS_getdents64) {
      if (reads++ > 0) return 0;
      std::memcpy(reinterpret_cast<void*>(c.args[1]), listing.data(), listing.size());
      return static_cast<long>(listing.size());
    }
    return -ENOSYS;
  };
  const std::uint64_t buffer = g.memory.add(4096);
  const auto result = g.run(call(SYS_getdents64, 7, buffer, 4096));
  const std::size_t hidden = dirent("1024").size();
  ASSERT_EQ(result, Outcome::result(static_cast<long>(listing.size() - hidden)));
  EXPECT_TRUE(g.host.forwarded.empty());
  std::string names;
  for (std::size_t at = 0; at < listing.size() - hidden;) {
    const char* name = reinterpret_cast<const char*>(buffer + at + 19);
    names += std::string(name) + " ";
    std::uint16_t reclen;
    std::memcpy(&reclen, reinterpret_cast<const void*>(buffer + at + 16), 2);
    at += reclen;
  }
  EXPECT_EQ(names, ". .. 0 3 ");
}

TEST(DescriptorSyscalls, OtherListingsAreForwarded) {
  FakeGuest g;
  g.host.answer = [](const HostCall& c) -> long {
    const char target[] = "/proc/1/fd";  // another process's
    std::memcpy(reinterpret_cast<char*>(c.args[2]), target, sizeof target - 1);
    return sizeof target - 1;
  };
  EXPECT_EQ(g.run(call(SYS_getdents64, 7, 0x1000, 4096)), Outcome::result(0));
  EXPECT_EQ(g.host.forwarded.size(), 1u);
}

TEST(DescriptorSyscalls, TheOpenFileLimitIsReadUnderThePlacementLock) {
  FakeGuest g;
  std::vector<bool> held;
  g.host.forward_result = [&](const Syscall&) {
    held.push_back(g.rlimit_lock.held());
    return 0L;
  };
  g.run(call(SYS_getrlimit, RLIMIT_NOFILE, 0x1000));
  g.run(call(SYS_setrlimit, RLIMIT_STACK, 0x1000));
  g.run(call(SYS_prlimit64, 0, RLIMIT_NOFILE, 0, 0x1000));
  g.run(call(SYS_prlimit64, 4242, RLIMIT_NOFILE, 0, 0x1000));  // this process by its pid
  g.run(call(SYS_prlimit64, 1, RLIMIT_NOFILE, 0, 0x1000));     // another process
  EXPECT_EQ(held, (std::vector<bool>{true, false, true, true, false}));
  EXPECT_FALSE(g.rlimit_lock.held());
}

// Every call family against a number of dunk's: as natively for a
// descriptor the program never opened.
TEST(DescriptorSyscalls, DunksDescriptorsAreClosedToEveryCall) {
  FakeGuest g;
  g.dunk_fds.add(1024);
  const std::uint64_t buffer = g.memory.add(4096);
  const std::uint64_t empty = g.memory.add(64);  // ""
  for (const Syscall& c : {call(SYS_read, 1024, buffer, 10), call(SYS_write, 1024, buffer, 10),
                           call(SYS_pread64, 1024, buffer, 10, 0), call(SYS_fstat, 1024, buffer),
                           call(SYS_dup, 1024), call(SYS_dup2, 1024, 5), call(SYS_dup2, 5, 1024),
                           call(SYS_dup3, 5, 1024, 0), call(SYS_fcntl, 1024, F_GETFD),
                           call(SYS_ioctl, 1024, 0x5401 /*TCGETS*/, buffer), call(SYS_fchdir, 1024),
                           call(SYS_mmap, 0, 4096, PROT_READ, MAP_PRIVATE, 1024, 0),
                           call(SYS_epoll_ctl, 3, 1 /*EPOLL_CTL_ADD*/, 1024, buffer),
                           call(SYS_newfstatat, 1024, empty, buffer, AT_EMPTY_PATH),
                           call(SYS_getdents64, 1024, buffer, 4096), call(SYS_ftruncate, 1024, 0)}) {
    SCOPED_TRACE(c.nr());
    EXPECT_EQ(g.run(c), Outcome::result(-EBADF));
  }
  EXPECT_TRUE(g.host.forwarded.empty());
  // Numbers that are not dunk's, an anonymous mapping (its fd is ignored)
  // and an absolute path from a dirfd of dunk's (ignored too) go through.
  g.run(call(SYS_read, 3, buffer, 10));
  g.run(call(SYS_mmap, 0, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, 1024, 0));
  // (Regions of 64 bytes: the monitor reads a path's first 63 at once,
  // which in a real process lie in mapped pages.)
  const std::uint64_t absolute = g.memory.add(64);
  std::memcpy(reinterpret_cast<char*>(absolute), "/etc/passwd", 12);
  g.run(call(SYS_newfstatat, 1024, absolute, buffer, 0));
  EXPECT_EQ(g.host.forwarded.size(), 3u);
}

TEST(DescriptorSyscalls, ProcPathsToDunksDescriptorsDoNotExist) {
  FakeGuest g;
  g.dunk_fds.add(1025);
  auto path = [&](const char* text) {
    const std::uint64_t at = g.memory.add(64);  // the monitor reads 63 bytes at once
    std::memcpy(reinterpret_cast<char*>(at), text, std::strlen(text) + 1);
    return at;
  };
  const std::uint64_t buffer = g.memory.add(256);
  EXPECT_EQ(g.run(call(SYS_openat, static_cast<std::uint64_t>(AT_FDCWD), path("/proc/self/fd/1025"), O_RDONLY)),
            Outcome::result(-ENOENT));
  EXPECT_EQ(g.run(call(SYS_open, path("/proc/4242/fdinfo/1025"), O_RDONLY)), Outcome::result(-ENOENT));
  EXPECT_EQ(g.run(call(SYS_readlink, path("/dev/fd/1025"), buffer, 256)), Outcome::result(-ENOENT));
  EXPECT_EQ(g.run(call(SYS_newfstatat, static_cast<std::uint64_t>(AT_FDCWD), path("/proc/thread-self/fd/1025"),
                       buffer, 0)),
            Outcome::result(-ENOENT));
  EXPECT_TRUE(g.host.forwarded.empty());
  // The program's own, and another process's with the same number.
  g.run(call(SYS_open, path("/proc/self/fd/3"), O_RDONLY));
  g.run(call(SYS_open, path("/proc/1/fd/1025"), O_RDONLY));
  EXPECT_EQ(g.host.forwarded.size(), 2u);
}

TEST(DescriptorSyscalls, DescriptorsInsideStructures) {
  FakeGuest g;
  g.dunk_fds.add(1024);
  // select: a set bit of dunk's.
  const std::uint64_t set = g.memory.add(256);
  reinterpret_cast<std::uint64_t*>(set)[1024 / 64] = std::uint64_t{1} << (1024 % 64);
  EXPECT_EQ(g.run(call(SYS_select, 1025, set, 0, 0, 0)), Outcome::result(-EBADF));
  // sendmsg passing one of dunk's descriptors (SCM_RIGHTS).
  alignas(8) unsigned char control[CMSG_SPACE(sizeof(int))] = {};
  auto* cmsg = reinterpret_cast<cmsghdr*>(control);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int));
  const int passed = 1024;
  std::memcpy(CMSG_DATA(cmsg), &passed, sizeof passed);
  const std::uint64_t control_at = g.memory.add(sizeof control);
  std::memcpy(reinterpret_cast<void*>(control_at), control, sizeof control);
  msghdr msg{};
  msg.msg_control = reinterpret_cast<void*>(control_at);
  msg.msg_controllen = sizeof control;
  EXPECT_EQ(g.run(call(SYS_sendmsg, 3, g.memory.add_object(msg), 0)), Outcome::result(-EBADF));
  EXPECT_TRUE(g.host.forwarded.empty());
}

// A table of another process is looked up by number there: dunk's numbers
// are this process's only. pidfd_getfd with a pidfd of this process and
// kcmp naming it would reach dunk's descriptors: EBADF, as natively for a
// number this process never opened (under dunk exec, before: a KVM VM or
// vCPU descriptor came back).
TEST(DescriptorSyscalls, OwnTableByPidfdOrPidIsClosedToo) {
  FakeGuest g;
  g.dunk_fds.add(1024);
  long pidfd_owner = 4242;  // the process's own pid (FakeGuest's)
  g.host.answer = [&](const HostCall& c) -> long {
    if (c.nr == SYS_openat) {
      EXPECT_STREQ(reinterpret_cast<const char*>(c.args[1]), "/proc/self/fdinfo/7");
      return 99;
    }
    if (c.nr == SYS_read && c.args[0] == 99) {
      const std::string info = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nPid:\t" +
                               std::to_string(pidfd_owner) + "\nNSpid:\t" + std::to_string(pidfd_owner) + "\n";
      std::memcpy(reinterpret_cast<char*>(c.args[1]), info.data(), info.size());
      return static_cast<long>(info.size());
    }
    return 0;
  };
  EXPECT_EQ(g.run(call(SYS_pidfd_getfd, 7, 1024, 0)), Outcome::result(-EBADF));
  EXPECT_EQ(g.run(call(SYS_kcmp, 4242, 4242, 0 /*KCMP_FILE*/, 1024, 3)), Outcome::result(-EBADF));
  EXPECT_EQ(g.run(call(SYS_kcmp, 1, 4242, 0 /*KCMP_FILE*/, 3, 1024)), Outcome::result(-EBADF));
  EXPECT_TRUE(g.host.forwarded.empty());
  // Another process's table: its number 1024 is its own business.
  g.run(call(SYS_kcmp, 4242, 1, 0 /*KCMP_FILE*/, 3, 1024));
  pidfd_owner = 1;
  g.run(call(SYS_pidfd_getfd, 7, 1024, 0));
  // A number that is not dunk's: no lookup of the pidfd at all.
  const std::size_t lookups = g.host.calls_of(SYS_openat).size();
  g.run(call(SYS_pidfd_getfd, 7, 5, 0));
  EXPECT_EQ(g.host.calls_of(SYS_openat).size(), lookups);
  EXPECT_EQ(g.host.forwarded.size(), 3u);
}

TEST(DescriptorSyscalls, PollReportsDunksDescriptorsInvalid) {
  FakeGuest g;
  g.dunk_fds.add(1024);
  struct PollFd {
    std::int32_t fd;
    std::int16_t events, revents;
  };
  const PollFd entries[] = {{1024, POLLIN, 0}, {3, POLLIN, 0}};
  const std::uint64_t array = g.memory.add(sizeof entries);
  std::memcpy(reinterpret_cast<void*>(array), entries, sizeof entries);
  std::vector<std::int32_t> seen_fds;
  g.host.forward_result = [&](const Syscall& c) {
    auto* kernel = reinterpret_cast<PollFd*>(c.args[0]);
    for (int i = 0; i < 2; ++i) seen_fds.push_back(kernel[i].fd);
    kernel[1].revents = POLLIN;  // fd 3 is readable
    return 1L;
  };
  EXPECT_EQ(g.run(call(SYS_poll, array, 2, 0)), Outcome::result(2));
  EXPECT_EQ(seen_fds, (std::vector<std::int32_t>{-1, 3}));  // dunk's is not polled
  const auto* after = reinterpret_cast<const PollFd*>(array);
  EXPECT_EQ(after[0].fd, 1024);
  EXPECT_EQ(after[0].revents, POLLNVAL);
  EXPECT_EQ(after[1].revents, POLLIN);
  // Without one of dunk's, the program's array goes to the kernel as it is.
  g.host.forward_result = [&](const Syscall& c) {
    EXPECT_EQ(c.args[0], array);
    return 0L;
  };
  reinterpret_cast<PollFd*>(array)[0].fd = 4;
  EXPECT_EQ(g.run(call(SYS_poll, array, 2, 0)), Outcome::result(0));
}

// ---- Processes and threads ---------------------------------------------------

TEST(CloneSyscalls, EachCallDecodesToTheChildTheKernelWouldMake) {
  test::FakeMemory memory;
  auto decode = [&](const Syscall& c) { return syscalls::decode_clone(c, memory); };
  EXPECT_EQ(decode(call(SYS_fork))->flags, static_cast<std::uint64_t>(SIGCHLD));
  EXPECT_EQ(decode(call(SYS_vfork))->flags, static_cast<std::uint64_t>(CLONE_VM | CLONE_VFORK | SIGCHLD));
  auto thread = decode(call(SYS_clone, CLONE_VM | CLONE_SETTLS | CLONE_THREAD, 0x5000, 0, 0, 0x6000));
  EXPECT_TRUE(thread->is_thread());
  EXPECT_EQ(thread->stack, 0x5000u);
  EXPECT_EQ(thread->tls, 0x6000u);

  clone_args args{};
  args.flags = CLONE_VM | CLONE_SETTLS;
  args.exit_signal = SIGCHLD;
  args.stack = 0x10000;
  args.stack_size = 0x4000;
  args.tls = 0x8000;
  const std::uint64_t block = memory.add_object(args);
  auto three = decode(call(SYS_clone3, block, sizeof args));
  ASSERT_TRUE(three);
  EXPECT_EQ(three->flags, static_cast<std::uint64_t>(CLONE_VM | CLONE_SETTLS | SIGCHLD));
  EXPECT_EQ(three->stack, 0x14000u);  // the top of [stack, stack + stack_size)
  EXPECT_EQ(three->tls, 0x8000u);
  EXPECT_EQ(three->args3, block);
  EXPECT_EQ(decode(call(SYS_clone3, block, 63)).error().err, EINVAL);
  EXPECT_EQ(decode(call(SYS_clone3, 0x10, sizeof args)).error().err, EFAULT);
}

TEST(CloneSyscalls, ThreadsAndProcessesStartFromTheParentsFrameWithRaxZero) {
  FakeGuest g;
  g.frame.rax = SYS_clone;
  g.frame.rip = 0x401000;
  g.frame.rsp = 0x7ffe0000;
  g.frame.rbx = 99;
  EXPECT_EQ(g.run(call(SYS_clone, CLONE_VM | CLONE_THREAD | CLONE_SIGHAND, 0x5000)), Outcome::result(1234));
  EXPECT_EQ(g.run(call(SYS_fork)), Outcome::result(1234));
  ASSERT_EQ(g.threads.started.size(), 2u);
  EXPECT_TRUE(g.threads.started[0].thread);
  EXPECT_EQ(g.threads.started[0].child.rax, 0u);
  EXPECT_EQ(g.threads.started[0].child.rsp, 0x5000u);
  EXPECT_EQ(g.threads.started[0].child.rip, 0x401000u);
  EXPECT_EQ(g.threads.started[0].child.rbx, 99u);
  EXPECT_FALSE(g.threads.started[1].thread);
  EXPECT_EQ(g.threads.started[1].child.rsp, 0x7ffe0000u);  // fork: the parent's stack, copied
  // A thread without a stack of its own is refused; nothing starts.
  EXPECT_EQ(g.run(call(SYS_clone, CLONE_VM | CLONE_THREAD | CLONE_SIGHAND, 0)), Outcome::result(-EINVAL));
  EXPECT_EQ(g.threads.started.size(), 2u);
}

TEST(ProcessSyscalls, TheLastThreadsExitAndExitGroupEndTheProcess) {
  FakeGuest g;
  EXPECT_EQ(g.run(call(SYS_exit, 0)), Outcome::result(0));
  EXPECT_EQ(g.threads.thread_exits_calls, 1);
  EXPECT_EQ(g.threads.process_exits_calls, 0);
  g.threads.last_thread = true;
  g.run(call(SYS_exit, 0));
  EXPECT_EQ(g.threads.process_exits_calls, 1);
  g.run(call(SYS_exit_group, 3));
  EXPECT_EQ(g.threads.process_exits_calls, 2);
  // Made whatever signal comes meanwhile: the vCPU is let go of first.
  EXPECT_EQ(g.host.finished.size(), 3u);
  EXPECT_TRUE(g.host.forwarded.empty());
}

TEST(ProcessSyscalls, ArchPrctlKeepsTheVcpusBasesWithTheHosts) {
  FakeGuest g;
  g.vcpu.fs = 0x1111;
  g.vcpu.gs = 0x2222;
  const std::uint64_t out = g.memory.add(8);
  EXPECT_EQ(g.run(call(SYS_arch_prctl, ARCH_GET_FS, out)), Outcome::result(0));
  EXPECT_EQ(g.memory.object_at<std::uint64_t>(out), 0x1111u);
  EXPECT_EQ(g.run(call(SYS_arch_prctl, ARCH_GET_GS, out)), Outcome::result(0));
  EXPECT_EQ(g.memory.object_at<std::uint64_t>(out), 0x2222u);
  EXPECT_EQ(g.run(call(SYS_arch_prctl, ARCH_GET_FS, 0x10)), Outcome::result(-EFAULT));
  EXPECT_TRUE(g.host.forwarded.empty());

  EXPECT_EQ(g.run(call(SYS_arch_prctl, ARCH_SET_FS, 0x3333)), Outcome::result(0));
  EXPECT_EQ(g.run(call(SYS_arch_prctl, ARCH_SET_GS, 0x4444)), Outcome::result(0));
  EXPECT_EQ(g.vcpu.fs, 0x3333u);
  EXPECT_EQ(g.vcpu.gs, 0x4444u);
  EXPECT_EQ(g.host.forwarded.size(), 2u);  // the host thread follows
  // The host refuses (a non-canonical base): the vCPU keeps its base.
  g.host.forward_result = [](const Syscall&) { return static_cast<long>(-EPERM); };
  EXPECT_EQ(g.run(call(SYS_arch_prctl, ARCH_SET_FS, 0x8000'0000'0000'0000ULL)), Outcome::result(-EPERM));
  EXPECT_EQ(g.vcpu.fs, 0x3333u);
}

TEST(ProcessSyscalls, AThreadThatAsksToBeTracedLeavesVmMode) {
  FakeGuest g;
  EXPECT_EQ(g.run(call(SYS_ptrace, 0 /*PTRACE_TRACEME*/)), Outcome::leave());
  g.host.forward_result = [](const Syscall&) { return static_cast<long>(-EPERM); };
  EXPECT_EQ(g.run(call(SYS_ptrace, 0)), Outcome::result(-EPERM));  // refused: it stays
  g.host.forward_result = [](const Syscall&) { return 0L; };
  EXPECT_EQ(g.run(call(SYS_ptrace, 16 /*PTRACE_ATTACH*/, 1234)), Outcome::result(0));
}

TEST(ProcessSyscalls, ModifyLdtWritesReloadTheMirror) {
  FakeGuest g;
  alignas(8) std::byte table[LdtMirror::kBytes];
  LdtMirror ldt;
  ldt.attach(table);
  g.process.ldt = &ldt;
  // The kernel's table: two entries, the second one in use.
  g.host.answer = [](const HostCall& c) -> long {
    if (c.nr != SYS_modify_ldt || c.args[0] != 0) return 0;
    auto* out = reinterpret_cast<std::uint64_t*>(c.args[1]);
    std::memset(out, 0, static_cast<std::size_t>(c.args[2]));
    out[1] = 0x00cff2000000ffffULL;
    return c.args[2];  // read_ldt says it read the whole buffer
  };
  EXPECT_EQ(g.run(call(SYS_modify_ldt, 1, 0x1000, 16)), Outcome::result(0));
  EXPECT_EQ(ldt.generation(), 1u);
  EXPECT_EQ(ldt.bytes(), 16u);  // up to the last entry in use
  EXPECT_EQ(g.run(call(SYS_modify_ldt, 0, 0x1000, 16)), Outcome::result(0));  // a read
  EXPECT_EQ(ldt.generation(), 1u);
  g.host.forward_result = [](const Syscall&) { return static_cast<long>(-EINVAL); };
  EXPECT_EQ(g.run(call(SYS_modify_ldt, 0x11, 0x1000, 16)), Outcome::result(-EINVAL));
  EXPECT_EQ(ldt.generation(), 1u);
}

// ---- dunk's own calls ----------------------------------------------------------

TEST(DunkSyscalls, LeaveWaitsForPendingSignalsAndPingAnswers) {
  FakeGuest g;
  EXPECT_EQ(g.run(call(DUNK_SYSCALL_LEAVE)), Outcome::leave());
  g.signals.deferred = 1;
  EXPECT_EQ(g.run(call(DUNK_SYSCALL_LEAVE)), Outcome::restart());
  EXPECT_EQ(g.run(call(DUNK_SYSCALL_PING)), Outcome::result(DUNK_SYSCALL_PING));
  EXPECT_EQ(g.run(call(DUNK_SYSCALL_BASE + 77)), Outcome::result(-ENOSYS));
  EXPECT_TRUE(g.host.forwarded.empty());
  EXPECT_EQ(g.stats.dunk_calls.load(), 4u);
}

TEST(DunkSyscalls, OwnIoctlReachesDunksDescriptorsOnlyAndThePlainOneDoesNot) {
  FakeGuest g;
  g.dunk_fds.add(1025);
  constexpr std::uint64_t kRequest = 0x4020ae46, kArg = 0x7000'1000;  // KVM_SET_USER_MEMORY_REGION
  // The program's ioctl on dunk's VM descriptor: refused before any handler.
  EXPECT_EQ(g.run(call(SYS_ioctl, 1025, kRequest, kArg)), Outcome::result(-EBADF));
  EXPECT_TRUE(g.host.forwarded.empty());
  // dunk's guest code: the same ioctl, forwarded as it is.
  g.host.forward_result = [](const Syscall&) { return 0L; };
  EXPECT_EQ(g.run(call(DUNK_SYSCALL_OWN_IOCTL, 1025, kRequest, kArg)), Outcome::result(0));
  ASSERT_EQ(g.host.forwarded.size(), 1u);
  EXPECT_EQ(g.host.forwarded[0].rax, static_cast<std::uint64_t>(SYS_ioctl));
  EXPECT_EQ(g.host.forwarded[0].args[0], 1025u);
  EXPECT_EQ(g.host.forwarded[0].args[1], kRequest);
  EXPECT_EQ(g.host.forwarded[0].args[2], kArg);
  // Not a descriptor of dunk's: EBADF, nothing reaches the kernel.
  EXPECT_EQ(g.run(call(DUNK_SYSCALL_OWN_IOCTL, 5, kRequest, kArg)), Outcome::result(-EBADF));
  EXPECT_EQ(g.host.forwarded.size(), 1u);
}

TEST(DunkSyscalls, ResolveFaultAsksTheMirrorOnTheTablesTheVcpuRunsOn) {
  FakeGuest g;
  g.page_table_root = 0x7000;  // ring 0 switched to tables of its own
  g.mirror.resolvable.insert(0x5000);
  // RSI: bit 0 a write, bit 1 an instruction fetch.
  EXPECT_EQ(g.run(call(DUNK_SYSCALL_RESOLVE_FAULT, 0x5000, 1)), Outcome::result(1));
  EXPECT_EQ(g.run(call(DUNK_SYSCALL_RESOLVE_FAULT, 0x9000, 2)), Outcome::result(0));
  g.page_table_root = 0;
  EXPECT_EQ(g.run(call(DUNK_SYSCALL_RESOLVE_FAULT, 0x5000, 0)), Outcome::result(1));
  EXPECT_EQ(g.mirror.faults, (std::vector<FakeMirror::Fault>{{0x5000, true, false, 0x7000},
                                                             {0x9000, false, true, 0x7000},
                                                             {0x5000, false, false, 0}}));
  EXPECT_EQ(g.stats.faults_resolved.load(), 2u);
  EXPECT_TRUE(g.host.forwarded.empty());
  // A first touch the handler passed on is counted as the monitor's own.
  g.mirror.fault_chunks_assigned = 1;
  g.mirror.fault_chunks_reclaimed = 1;
  EXPECT_EQ(g.run(call(DUNK_SYSCALL_RESOLVE_FAULT, 0x5000, 0)), Outcome::result(1));
  EXPECT_EQ(g.stats.chunks_assigned.load(), 1u);
  EXPECT_EQ(g.stats.chunks_reclaimed.load(), 1u);
}

TEST(DunkSyscalls, AssignEagerlyIsTheMonitorsSwitch) {
  FakeGuest g;
  EXPECT_EQ(g.run(call(DUNK_SYSCALL_ASSIGN_EAGERLY)), Outcome::result(0));
  EXPECT_EQ(g.mirror.eager_switches, 1);
  EXPECT_TRUE(g.host.forwarded.empty());
}

TEST(DunkSyscalls, GuestPhysicalAnswersTheAddressOrTheMirrorsErrno) {
  FakeGuest g;
  g.mirror.gpa_offset = 0x1000'0000;
  EXPECT_EQ(g.run(call(DUNK_SYSCALL_GUEST_PHYSICAL, 0x7f00'0000'1234)), Outcome::result(0x7f00'1000'1234));
  g.mirror.assign_error = Error{"guest-physical address space exhausted", ENOMEM};
  EXPECT_EQ(g.run(call(DUNK_SYSCALL_GUEST_PHYSICAL, 0x1234)), Outcome::result(-ENOMEM));
  EXPECT_TRUE(g.host.forwarded.empty());
}

// ---- Signals -------------------------------------------------------------------

TEST(SignalSyscalls, RtSigactionKeepsTheProgramsActionAndGivesTheHostDunksHandler) {
  FakeGuest g;
  const abi::Sigaction act{0x401000, SA_RESTART | abi::kSaRestorer, 0x402000,
                           abi::sigbit(SIGUSR2) | abi::sigbit(SIGKILL)};
  const std::uint64_t in = g.memory.add_object(act);
  const std::uint64_t out = g.memory.add(sizeof(abi::Sigaction));
  std::vector<abi::Sigaction> installed;
  g.host.answer = [&](const HostCall& c) {
    if (c.nr == SYS_rt_sigaction && c.args[0] == SIGUSR1) {
      installed.push_back(*reinterpret_cast<const abi::Sigaction*>(c.args[1]));
    }
    return 0L;
  };
  EXPECT_EQ(g.run(call(SYS_rt_sigaction, SIGUSR1, in, out, 8)), Outcome::result(0));
  const abi::Sigaction stored = g.actions.get(SIGUSR1);
  EXPECT_EQ(stored.handler, 0x401000u);
  EXPECT_EQ(stored.mask, abi::sigbit(SIGUSR2));  // SIGKILL cannot be blocked
  EXPECT_EQ(g.memory.object_at<abi::Sigaction>(out).handler, 0u);  // the old action: SIG_DFL
  // The host runs dunk's handler, with the program's flags (the kernel
  // decides restarts natively) and every signal blocked while it runs.
  ASSERT_EQ(installed.size(), 1u);
  EXPECT_EQ(installed[0].handler, reinterpret_cast<std::uint64_t>(&dunk_host_signal_handler));
  EXPECT_EQ(installed[0].flags, static_cast<std::uint64_t>(SA_RESTART | SA_SIGINFO) | abi::kSaRestorer);
  EXPECT_EQ(installed[0].restorer, reinterpret_cast<std::uint64_t>(&dunk_host_signal_restorer));
  EXPECT_EQ(installed[0].mask, ~std::uint64_t{0});
  EXPECT_TRUE(g.host.forwarded.empty());
}

TEST(SignalSyscalls, RtSigactionChecksLikeTheKernel) {
  FakeGuest g;
  EXPECT_EQ(g.run(call(SYS_rt_sigaction, SIGUSR1, 0, 0, 4)), Outcome::result(-EINVAL));
  EXPECT_EQ(g.run(call(SYS_rt_sigaction, 0, 0, 0, 8)), Outcome::result(-EINVAL));
  EXPECT_EQ(g.run(call(SYS_rt_sigaction, 65, 0, 0, 8)), Outcome::result(-EINVAL));
  EXPECT_EQ(g.run(call(SYS_rt_sigaction, SIGUSR1, 0x10, 0, 8)), Outcome::result(-EFAULT));
  // SIGKILL and SIGSTOP are the kernel's to refuse.
  g.host.forward_result = [](const Syscall&) { return static_cast<long>(-EINVAL); };
  EXPECT_EQ(g.run(call(SYS_rt_sigaction, SIGKILL, 0, 0, 8)), Outcome::result(-EINVAL));
  // The host refuses the new action: the table keeps the old one.
  const std::uint64_t in = g.memory.add_object(abi::Sigaction{0x401000, 0, 0, 0});
  g.host.answer = [](const HostCall&) { return static_cast<long>(-EINVAL); };
  EXPECT_EQ(g.run(call(SYS_rt_sigaction, SIGUSR1, in, 0, 8)), Outcome::result(-EINVAL));
  EXPECT_EQ(g.actions.get(SIGUSR1).handler, 0u);
}

TEST(SignalSyscalls, SigaltstackFollowsDoSigaltstack) {
  FakeGuest g;
  g.frame.rsp = 0x7fff'0000;
  const std::uint64_t out = g.memory.add(sizeof(abi::SignalStack));
  EXPECT_EQ(g.run(call(SYS_sigaltstack, 0, out)), Outcome::result(0));
  EXPECT_EQ(g.memory.object_at<abi::SignalStack>(out).flags, SS_DISABLE);

  const std::uint64_t small = g.memory.add_object(abi::SignalStack{0x10000, 0, 0, 1024});
  EXPECT_EQ(g.run(call(SYS_sigaltstack, small, 0)), Outcome::result(-ENOMEM));
  const std::uint64_t bad = g.memory.add_object(abi::SignalStack{0x10000, 7, 0, 8192});
  EXPECT_EQ(g.run(call(SYS_sigaltstack, bad, 0)), Outcome::result(-EINVAL));
  const std::uint64_t good = g.memory.add_object(abi::SignalStack{0x10000, abi::kSsAutodisarm, 0, 8192});
  EXPECT_EQ(g.run(call(SYS_sigaltstack, good, out)), Outcome::result(0));
  EXPECT_EQ(g.signals.altstack.sp, 0x10000u);
  EXPECT_EQ(g.signals.altstack.size, 8192u);

  // With SS_AUTODISARM the kernel never considers a thread on it; without,
  // a thread on it cannot change it, and sees SS_ONSTACK.
  g.frame.rsp = 0x11000;
  EXPECT_EQ(g.run(call(SYS_sigaltstack, 0, out)), Outcome::result(0));
  EXPECT_EQ(g.memory.object_at<abi::SignalStack>(out).flags, abi::kSsAutodisarm);
  g.signals.altstack.flags = 0;
  EXPECT_EQ(g.run(call(SYS_sigaltstack, good, out)), Outcome::result(-EPERM));
  EXPECT_EQ(g.run(call(SYS_sigaltstack, 0, out)), Outcome::result(0));
  EXPECT_EQ(g.memory.object_at<abi::SignalStack>(out).flags, SS_ONSTACK);
}

// A signal frame as a handler's RET leaves it: RSP just past pretcode.
struct ReturnFrame {
  FakeGuest& g;
  abi::RtSigframe frame{};
  std::uint64_t at = 0;
  // What push_signal_frame writes: the user selectors, the alternate
  // stack as it was (none).
  explicit ReturnFrame(FakeGuest& guest) : g(guest) {
    frame.uc.mcontext.cs = DUNK_USER_CS;
    frame.uc.mcontext.ss = DUNK_USER_DS;
    frame.uc.flags = abi::kUcFpXstate | abi::kUcSigcontextSs | abi::kUcStrictRestoreSs;
    frame.uc.stack = abi::kNoSignalStack;
  }
  void place() {
    at = g.memory.add_object(frame);
    g.frame.rsp = at + 8;
  }
};

// A host signal that came while the monitor served rt_sigreturn (after the
// handler's last instruction) was queued with the handler's mask as the one
// its own handler interrupts; its frame is built on the restored state, so
// that mask must be the restored one, and the host mask what the queued
// handlers' actions make of it. Before: the SIGUSR1 handler's mask came back
// when the SIGALRM handler returned (Signals.SimultaneousSignalsLeaveThe...).
TEST(SignalSyscalls, RtSigreturnChainsSignalsThatArrivedMeanwhileFromTheRestoredMask) {
  FakeGuest g;
  ReturnFrame r(g);
  r.frame.uc.mcontext.rip = 0x400123;
  r.frame.uc.sigmask = abi::sigbit(SIGHUP);  // the interrupted code's mask
  r.place();
  const std::uint64_t usr1_handler_mask = abi::sigbit(SIGHUP) | abi::sigbit(SIGUSR1);
  g.host.thread_mask = usr1_handler_mask | abi::sigbit(SIGALRM) | abi::sigbit(SIGUSR2);
  auto queue = [&](int sig, std::uint64_t mask_before, std::uint64_t sa_mask) {
    PendingSignal& p = g.signals.queue[g.signals.tail.load() % CpuSignals::kQueue];
    p = PendingSignal{};
    const std::int32_t signo = sig;
    std::memcpy(p.info + offsetof(siginfo_t, si_signo), &signo, 4);
    p.action = abi::Sigaction{0x401000, abi::kSaRestorer | abi::kSaSiginfo, 0x402000, sa_mask};
    p.mask_before = mask_before;
    g.signals.tail.fetch_add(1);
  };
  // As the host handlers left them: each took the mask in force then.
  queue(SIGALRM, usr1_handler_mask, 0);
  queue(SIGTERM, usr1_handler_mask | abi::sigbit(SIGALRM), abi::sigbit(SIGUSR2));
  EXPECT_EQ(g.run(call(SYS_rt_sigreturn)), Outcome::result(0));
  EXPECT_EQ(g.frame.rip, 0x400123u);
  const std::uint64_t restored = abi::sigbit(SIGHUP);
  EXPECT_EQ(g.signals.queue[0].mask_before, restored);
  EXPECT_EQ(g.signals.queue[1].mask_before, restored | abi::sigbit(SIGALRM));
  EXPECT_EQ(g.host.thread_mask,
            restored | abi::sigbit(SIGALRM) | abi::sigbit(SIGTERM) | abi::sigbit(SIGUSR2));
  // Nothing arrived: the mask is the frame's.
  FakeGuest quiet;
  ReturnFrame q(quiet);
  q.frame.uc.sigmask = abi::sigbit(SIGHUP);
  q.place();
  quiet.host.thread_mask = usr1_handler_mask;
  EXPECT_EQ(quiet.run(call(SYS_rt_sigreturn)), Outcome::result(0));
  EXPECT_EQ(quiet.host.thread_mask, restored);
}

TEST(SignalSyscalls, RtSigreturnRestoresRegistersMaskFpuAndAltstack) {
  FakeGuest g;
  ReturnFrame r(g);
  abi::Sigcontext& sc = r.frame.uc.mcontext;
  sc.rax = 42, sc.rbx = 1, sc.rcx = 2, sc.r15 = 15, sc.rsp = 0x7000'0000, sc.rip = 0x400123;
  sc.eflags = arch::rflags::kCF | arch::rflags::kIF | arch::rflags::kIOPL;  // IF and IOPL are not the frame's to set
  r.frame.uc.sigmask = abi::sigbit(SIGUSR1) | abi::sigbit(SIGKILL);
  r.frame.uc.stack = abi::SignalStack{0x20000, 0, 0, 16384};
  alignas(64) std::byte image[FakeGuest::kFpuSize] = {};
  arch::xsave::Image(image).fill_initial(sizeof image);
  const std::uint64_t xstate_bv = ~std::uint64_t{0};  // whatever the program wrote
  std::memcpy(image + arch::xsave::kXstateBvOffset, &xstate_bv, 8);
  std::memset(image + arch::xsave::kXcompBvOffset, 0xff, 8);
  sc.fpstate = g.memory.add(sizeof image);
  std::memcpy(reinterpret_cast<void*>(sc.fpstate), image, sizeof image);
  r.place();
  g.frame.rflags = arch::rflags::kIF | arch::rflags::kFixed1;

  EXPECT_EQ(g.run(call(SYS_rt_sigreturn)), Outcome::result(42));
  EXPECT_EQ(g.frame.rbx, 1u);
  EXPECT_EQ(g.frame.rcx, 2u);
  EXPECT_EQ(g.frame.r15, 15u);
  EXPECT_EQ(g.frame.rsp, 0x7000'0000u);
  EXPECT_EQ(g.frame.rip, 0x400123u);
  EXPECT_EQ(g.frame.rflags, arch::rflags::kIF | arch::rflags::kFixed1 | arch::rflags::kCF);
  EXPECT_EQ(g.host.thread_mask, abi::sigbit(SIGUSR1));
  arch::xsave::Image loaded(g.vcpu.fpu.data());
  EXPECT_EQ(loaded.xstate_bv(), g.process.fpu.xcr0);
  EXPECT_EQ(loaded.xcomp_bv(), 0u);
  EXPECT_EQ(loaded.mxcsr(), arch::xsave::kInitMxcsr);
  EXPECT_EQ(g.signals.altstack.sp, 0x20000u);
  EXPECT_EQ(g.signals.altstack.size, 16384u);
}

TEST(SignalSyscalls, FramesShowUserSelectorsAndRtSigreturnChecksThem) {
  auto returning = [](std::uint16_t cs, std::uint16_t ss, std::uint64_t uc_flags) {
    FakeGuest g;
    g.frame.cs = DUNK_KERNEL_CS;
    g.frame.ss = DUNK_KERNEL_DS;
    ReturnFrame r(g);
    r.frame.uc.mcontext.cs = cs;
    r.frame.uc.mcontext.ss = ss;
    r.frame.uc.mcontext.rax = 5;
    r.frame.uc.flags = uc_flags;
    r.place();
    const Outcome o = g.run(call(SYS_rt_sigreturn));
    // The guest keeps running on dunk's ring-0 selectors whatever happens.
    EXPECT_EQ(g.frame.cs, static_cast<std::uint64_t>(DUNK_KERNEL_CS));
    return o;
  };
  // What frames say (and a program that read CS/SS itself may write).
  EXPECT_EQ(returning(0x33, 0x2b, abi::kUcStrictRestoreSs), Outcome::result(5));
  EXPECT_EQ(returning(DUNK_KERNEL_CS, DUNK_KERNEL_DS, abi::kUcStrictRestoreSs), Outcome::result(5));
  // RPL 3 is forced, as the kernel does.
  EXPECT_EQ(returning(0x30, 0x28, abi::kUcStrictRestoreSs), Outcome::result(5));
  // A data segment as CS, the null selector, a 32-bit code segment dunk
  // cannot run at CPL 0: the IRET's #GP with the selector.
  EXPECT_EQ(returning(0x2b, 0x2b, 0), Outcome::signal(5, ForcedSignal{SIGSEGV, SI_KERNEL, 13, 0x28}));
  EXPECT_EQ(returning(0, 0x2b, 0), Outcome::signal(5, ForcedSignal{SIGSEGV, SI_KERNEL, 13, 0}));
  EXPECT_EQ(returning(0x23, 0x2b, 0), Outcome::signal(5, ForcedSignal{SIGSEGV, SI_KERNEL, 13, 0x20}));
  // A bad SS: replaced (force_valid_ss) unless UC_STRICT_RESTORE_SS.
  EXPECT_EQ(returning(0x33, 0x33, 0), Outcome::result(5));
  EXPECT_EQ(returning(0x33, 0x33, abi::kUcStrictRestoreSs), Outcome::signal(5, ForcedSignal{SIGSEGV, SI_KERNEL, 13, 0x30}));
}

// At CPL 0 the program's SS may be the null selector: an interrupt or
// exception from ring 3 loads it in 64-bit mode, and a ring-3 run of the
// privileged API that one ended leaves it so until the next system call
// (dunk sandbox's supervisor, signal 32 nested under SA_NODEFER). A frame
// built there says the user data segment, as every native frame does, and
// its own rt_sigreturn accepts it. Before, the frame said 0 and its return
// was the #GP of a null SS under UC_STRICT_RESTORE_SS: SIGSEGV.
TEST(SignalSyscalls, AFrameBuiltOnANullStackSegmentReturns) {
  for (const std::uint64_t ss : {std::uint64_t{0}, std::uint64_t{DUNK_KERNEL_DS}}) {
    FakeGuest g;
    const std::uint64_t stack = g.memory.add(64 * 1024);
    g.frame.cs = DUNK_KERNEL_CS;
    g.frame.ss = ss;
    g.frame.rsp = stack + 64 * 1024 - 256;
    g.frame.rip = 0x400500;
    g.frame.rax = 77;
    const TrapFrame before = g.frame;
    PendingSignal p{};
    const std::int32_t signo = SIGUSR1;
    std::memcpy(p.info + offsetof(siginfo_t, si_signo), &signo, 4);
    p.action = abi::Sigaction{0x401000, abi::kSaRestorer | abi::kSaSiginfo | abi::kSaNodefer, 0x402000, 0};
    ASSERT_TRUE(push_signal_frame(g.memory, g.frame, p, g.initial_fpu, g.process.fpu, g.signals.altstack));
    EXPECT_EQ(g.memory.object_at<abi::RtSigframe>(g.frame.rsp).uc.mcontext.ss, DUNK_USER_DS) << "SS " << ss;
    // The handler's RET pops the return address; its restorer calls
    // rt_sigreturn.
    g.frame.rsp += 8;
    g.frame.rip = 0x402002;
    EXPECT_EQ(g.run(call(SYS_rt_sigreturn)), Outcome::result(77)) << "SS " << ss;
    EXPECT_EQ(g.frame.rip, before.rip);
    EXPECT_EQ(g.frame.rsp, before.rsp);
  }
}

TEST(SignalSyscalls, AnXsaveImageTheCpuRefusesRestoresRegistersAndResetsTheFpu) {
  // restore_sigcontext restores the registers before the FPU fails; the
  // call then returns 0 with the FPU reset, and SIGSEGV is forced.
  FakeGuest g;
  ReturnFrame r(g);
  r.frame.uc.mcontext.rbx = 77;
  r.frame.uc.mcontext.rip = 0x400999;
  r.frame.uc.mcontext.fpstate = g.memory.add(FakeGuest::kFpuSize);
  r.place();
  g.vcpu.refuse_fpu = true;
  EXPECT_EQ(g.run(call(SYS_rt_sigreturn)), Outcome::signal(0, ForcedSignal{SIGSEGV}));
  EXPECT_EQ(g.frame.rbx, 77u);
  EXPECT_EQ(g.frame.rip, 0x400999u);
}

TEST(SignalSyscalls, ABadFrameIsSigsegvAsTheKernelsSignalFault) {
  {
    FakeGuest g;
    g.frame.rsp = 0x18;  // unreadable
    EXPECT_EQ(g.run(call(SYS_rt_sigreturn)), Outcome::signal(0, ForcedSignal{SIGSEGV}));
  }
  {
    FakeGuest g;
    ReturnFrame r(g);
    r.frame.uc.mcontext.fpstate = 0x40;  // unreadable image
    r.place();
    EXPECT_EQ(g.run(call(SYS_rt_sigreturn)), Outcome::signal(0, ForcedSignal{SIGSEGV}));
  }
  {
    FakeGuest g;
    ReturnFrame r(g);
    r.place();
    g.vcpu.refuse_fpu = true;  // e.g. reserved MXCSR bits
    EXPECT_EQ(g.run(call(SYS_rt_sigreturn)), Outcome::signal(0, ForcedSignal{SIGSEGV}));
  }
  {
    FakeGuest g;
    ReturnFrame r(g);
    r.frame.uc.stack = abi::SignalStack{0x20000, 0, 0, 100};  // too small to install
    r.place();
    EXPECT_EQ(g.run(call(SYS_rt_sigreturn)), Outcome::signal(0, ForcedSignal{SIGSEGV}));
  }
}

}  // namespace
}  // namespace dunk::core
