// Descriptors: every argument of every call that holds one is reported,
// with its role; and the descriptors inside structures (poll arrays, fd
// sets, SCM_RIGHTS, io_uring registrations, ...) too.
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/io_uring.h>
#include <linux/kcmp.h>
#include <linux/landlock.h>
#include <linux/mount.h>
#include <linux/perf_event.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <array>
#include <cstring>
#include <initializer_list>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "abi/commands.h"
#include "abi/walk.h"
#include "abi_test_support.h"

namespace dunk::abi {
namespace {

using testing::addr_of;
using testing::FakeMemory;
using testing::Labels;
using testing::Recorder;
using Lines = std::vector<std::string>;

FdRole role_of(Kind k) {
  switch (k) {
    case Kind::kDirFd: return FdRole::kDirFd;
    case Kind::kFdTarget: return FdRole::kTarget;
    case Kind::kFdFirst: return FdRole::kRangeFirst;
    case Kind::kFdLast: return FdRole::kRangeLast;
    case Kind::kRemoteFd: return FdRole::kRemote;
    default: return FdRole::kUse;
  }
}

// Every call, every argument the table calls a descriptor: given distinct
// numbers there (and zeroed memory behind every pointer, so paths are empty
// and relative), the walker reports each of them, with its role, and no
// other descriptor.
TEST(AbiDescriptors, EveryDescriptorArgumentOfEveryCallIsReported) {
  static std::array<std::byte, 1 << 16> zeros{};
  FakeMemory memory;
  memory.add(zeros.data(), zeros.size());
  Labels labels;
  unsigned calls = 0, uses = 0;
  for (const CallSpec& c : all_calls()) {
    if (c.has(kNotImplemented)) continue;
    Call call{c.number, {}};
    for (unsigned i = 0; i < c.arg_count; ++i) {
      call.args[i] = c.args[i].is_pointer() || c.args[i].format == Format::kPtr ? addr_of(zeros.data()) : 0;
    }
    // Commands of value 0 must not turn a descriptor into something else.
    const Resolved r = resolve(c, call.args);
    std::map<unsigned, FdRole> expected;
    for (unsigned i = 0; i < c.arg_count; ++i) {
      const Arg& a = r.args[i];
      if (a.is_fd() || a.kind == Kind::kRemoteFd) {
        call.args[i] = 100 + i;
        expected[i] = role_of(a.kind);
      }
    }
    if (expected.empty()) continue;
    ++calls;
    Recorder recorder(labels);
    walk(call, memory, recorder, Phase::kEntry);
    std::map<unsigned, FdRole> seen;
    for (const FdUse& u : recorder.fds) {
      if (!u.where.in_register()) continue;
      EXPECT_EQ(u.fd, static_cast<int>(100 + u.where.arg)) << c.name;
      seen[u.where.arg] = u.role;
    }
    EXPECT_EQ(seen, expected) << c.name;
    uses += static_cast<unsigned>(seen.size());
  }
  std::printf("%u calls take descriptors: %u descriptor arguments reported\n", calls, uses);
  EXPECT_GE(calls, 110u);
}

class AbiDescriptorTest : public ::testing::Test {
 protected:
  Lines fds(std::uint64_t nr, std::initializer_list<std::uint64_t> args, Phase phase = Phase::kEntry,
            std::int64_t ret = 0) {
    Call call{nr, {}};
    unsigned i = 0;
    for (std::uint64_t a : args) call.args[i++] = a;
    Recorder recorder(labels);
    walk(call, memory, recorder, phase, ret);
    Lines only;
    for (const std::string& l : recorder.lines) {
      if (l.rfind("fd ", 0) == 0) only.push_back(l);
    }
    return only;
  }
  template <class T>
  std::uint64_t at(T& object) {
    memory.add(object);
    return addr_of(&object);
  }

  FakeMemory memory;
  Labels labels;
};

TEST_F(AbiDescriptorTest, DupAndCloseRange) {
  EXPECT_EQ(fds(SYS_dup2, {1024, 5}), (Lines{"fd 1024 use at arg0", "fd 5 target at arg1"}));
  EXPECT_EQ(fds(SYS_dup3, {3, 1024, O_CLOEXEC}), (Lines{"fd 3 use at arg0", "fd 1024 target at arg1"}));
  EXPECT_EQ(fds(SYS_dup, {7}), (Lines{"fd 7 use at arg0"}));
  EXPECT_EQ(fds(SYS_dup, {7}, Phase::kExit, 8), (Lines{"fd 8 new at ret"}));
  EXPECT_EQ(fds(SYS_close_range, {3, ~0u, 0}), (Lines{"fd 3 first at arg0", "fd -1 last at arg1"}));
}

TEST_F(AbiDescriptorTest, AnotherProcesssDescriptorsAreNotOurs) {
  EXPECT_EQ(fds(SYS_pidfd_getfd, {4, 1024, 0}), (Lines{"fd 4 use at arg0", "fd 1024 remote at arg1"}));
  EXPECT_EQ(fds(SYS_kcmp, {10, 11, KCMP_FILE, 3, 1024}), (Lines{"fd 3 remote at arg3", "fd 1024 remote at arg4"}));
  EXPECT_EQ(fds(SYS_kcmp, {10, 11, KCMP_VM, 3, 1024}), Lines{});
}

TEST_F(AbiDescriptorTest, ArgumentsACommandOrFlagMakesDescriptors) {
  EXPECT_EQ(fds(SYS_waitid, {P_PIDFD, 6, 0, WEXITED, 0}), (Lines{"fd 6 use at arg1"}));
  EXPECT_EQ(fds(SYS_waitid, {P_PID, 6, 0, WEXITED, 0}), Lines{});
  // perf_event_open: group -1 is none; PERF_FLAG_PID_CGROUP makes pid a cgroup.
  perf_event_attr attr{};
  attr.size = sizeof attr;
  const std::uint64_t a = at(attr);
  EXPECT_EQ(fds(SYS_perf_event_open, {a, 0, static_cast<std::uint64_t>(-1), static_cast<std::uint64_t>(-1), 0}),
            Lines{});
  EXPECT_EQ(fds(SYS_perf_event_open, {a, 9, 0, 8, PERF_FLAG_PID_CGROUP}),
            (Lines{"fd 9 use at arg1", "fd 8 use at arg3"}));
  EXPECT_EQ(fds(SYS_signalfd4, {static_cast<std::uint64_t>(-1), 0, 8, 0}), Lines{});
  EXPECT_EQ(fds(SYS_signalfd4, {5, 0, 8, 0}), (Lines{"fd 5 use at arg0"}));
  EXPECT_EQ(fds(SYS_mmap, {0, 4096, PROT_READ, MAP_SHARED, 4, 0}), (Lines{"fd 4 use at arg4"}));
  EXPECT_EQ(fds(SYS_fsconfig, {3, 5 /* FSCONFIG_SET_FD */, 0, 0, 9}), (Lines{"fd 3 use at arg0", "fd 9 use at arg4"}));
  static const char rel[] = "dev";
  memory.add_string(rel);
  EXPECT_EQ(fds(SYS_fsconfig, {3, 3 /* FSCONFIG_SET_PATH */, 0, addr_of(rel), 9}),
            (Lines{"fd 3 use at arg0", "fd 9 dirfd at arg4"}));
}

TEST_F(AbiDescriptorTest, DirfdsOfRelativePathsOnly) {
  static const char rel[] = "a", abs[] = "/a";
  memory.add_string(rel);
  memory.add_string(abs);
  EXPECT_EQ(fds(SYS_linkat, {3, addr_of(rel), 4, addr_of(abs), 0}), (Lines{"fd 3 dirfd at arg0"}));
  EXPECT_EQ(fds(SYS_renameat2, {3, addr_of(abs), 4, addr_of(rel), 0}), (Lines{"fd 4 dirfd at arg2"}));
  EXPECT_EQ(fds(SYS_symlinkat, {addr_of(abs), 5, addr_of(rel)}), (Lines{"fd 5 dirfd at arg1"}));
  // utimensat with no path acts on the dirfd itself.
  EXPECT_EQ(fds(SYS_utimensat, {6, 0, 0, 0}), (Lines{"fd 6 dirfd at arg0"}));
  // openat2 with RESOLVE_IN_ROOT resolves even an absolute path from dirfd.
  std::array<std::uint64_t, 3> how{O_RDONLY, 0, 0};
  EXPECT_EQ(fds(SYS_openat2, {7, addr_of(abs), at(how), 24}), (Lines{"fd 7 dirfd at arg0"}));
}

TEST_F(AbiDescriptorTest, DescriptorsInsideStructures) {
  // io_uring registrations: -1 marks an empty slot.
  std::array<int, 3> files{3, -1, 5};
  EXPECT_EQ(fds(SYS_io_uring_register, {8, IORING_REGISTER_FILES, at(files), 3}),
            (Lines{"fd 8 use at arg0", "fd 3 use at #0+0", "fd 5 use at #0+8"}));
  int efd = 11;
  EXPECT_EQ(fds(SYS_io_uring_register, {8, IORING_REGISTER_EVENTFD, at(efd), 1}),
            (Lines{"fd 8 use at arg0", "fd 11 use at #0+0"}));
  std::array<int, 2> update_fds{12, -1};
  io_uring_files_update update{0, 0, addr_of(update_fds.data())};
  at(update_fds);
  EXPECT_EQ(fds(SYS_io_uring_register, {8, IORING_REGISTER_FILES_UPDATE, at(update), 2}),
            (Lines{"fd 8 use at arg0", "fd 12 use at #1+0"}));
  // An idmapped mount names a user namespace by descriptor.
  mount_attr ma{};
  ma.attr_set = MOUNT_ATTR_IDMAP;
  ma.userns_fd = 13;
  static const char rel[] = "m";
  memory.add_string(rel);
  EXPECT_EQ(fds(SYS_mount_setattr, {3, addr_of(rel), 0, at(ma), sizeof ma}),
            (Lines{"fd 13 use at #1+24", "fd 3 dirfd at arg0"}));
  landlock_path_beneath_attr beneath{LANDLOCK_ACCESS_FS_READ_FILE, 14};
  EXPECT_EQ(fds(SYS_landlock_add_rule, {4, LANDLOCK_RULE_PATH_BENEATH, at(beneath), 0}),
            (Lines{"fd 4 use at arg0", "fd 14 use at #0+8"}));
  int prog = 15;
  EXPECT_EQ(fds(SYS_setsockopt, {3, SOL_SOCKET, SO_ATTACH_BPF, at(prog), 4}),
            (Lines{"fd 3 use at arg0", "fd 15 use at #0+0"}));
  // mq_notify with SIGEV_THREAD: sigev_signo is a netlink socket.
  sigevent sev{};
  sev.sigev_notify = SIGEV_THREAD;
  sev.sigev_signo = 16;
  EXPECT_EQ(fds(SYS_mq_notify, {5, at(sev)}), (Lines{"fd 5 use at arg0", "fd 16 use at #0+8"}));
  struct {
    std::int64_t src_fd;
    std::uint64_t offset, length, dest;
  } range{17, 0, 0, 0};
  EXPECT_EQ(fds(SYS_ioctl, {3, FICLONERANGE, at(range)}), (Lines{"fd 3 use at arg0", "fd 17 use at #0+0"}));
}

TEST_F(AbiDescriptorTest, NewDescriptorsAtExit) {
  std::array<int, 2> pair{3, 4};
  const std::uint64_t p = at(pair);
  EXPECT_EQ(fds(SYS_pipe2, {p, O_CLOEXEC}), Lines{});
  EXPECT_EQ(fds(SYS_pipe2, {p, O_CLOEXEC}, Phase::kExit, 0), (Lines{"fd 3 new at #0+0", "fd 4 new at #0+4"}));
  EXPECT_EQ(fds(SYS_pipe2, {p, O_CLOEXEC}, Phase::kExit, -EMFILE), Lines{});
  EXPECT_EQ(fds(SYS_socketpair, {AF_UNIX, SOCK_STREAM, 0, p}, Phase::kExit, 0),
            (Lines{"fd 3 new at #0+0", "fd 4 new at #0+4"}));
  EXPECT_EQ(fds(SYS_socket, {AF_INET, SOCK_STREAM, 0}, Phase::kExit, 5), (Lines{"fd 5 new at ret"}));
  EXPECT_EQ(fds(SYS_eventfd2, {0, 0}, Phase::kExit, 6), (Lines{"fd 6 new at ret"}));
}

}  // namespace
}  // namespace dunk::abi
