// The walker against structures built in the test's own memory: every
// access and descriptor of representative calls, compared exactly.
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/sched.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <initializer_list>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "abi/layouts.h"
#include "abi/walk.h"
#include "abi_test_support.h"

namespace dunk::abi {
namespace {

using testing::addr_of;
using testing::FakeMemory;
using testing::Labels;
using testing::Recorder;
using Lines = std::vector<std::string>;

struct Walked {
  WalkResult result;
  Lines lines;
};

class AbiWalk : public ::testing::Test {
 protected:
  Walked run(std::uint64_t nr, std::initializer_list<std::uint64_t> args, Phase phase = Phase::kEntry,
             std::int64_t ret = 0) {
    Call call;
    call.number = nr;
    unsigned i = 0;
    for (std::uint64_t a : args) call.args[i++] = a;
    Recorder recorder(labels, copy ? &memory : nullptr);
    WalkResult result = walk(call, memory, recorder, phase, ret);
    return {result, recorder.lines};
  }
  template <class T>
  std::uint64_t at(const char* name, T& object) {
    memory.add(object);
    labels.add(name, object);
    return addr_of(&object);
  }
  std::uint64_t at(const char* name, void* p, std::size_t size) {
    memory.add(p, size);
    labels.add(name, p, size);
    return addr_of(p);
  }
  std::uint64_t string(const char* name, const char* s) {
    memory.add_string(s);
    labels.add(name, s, std::strlen(s) + 1);
    return addr_of(s);
  }

  FakeMemory memory;
  Labels labels;
  bool copy = false;
};

// --- read, write, and the vectored family ------------------------------

TEST_F(AbiWalk, ReadWritesTheBufferUpToTheResult) {
  char buf[4096];
  const std::uint64_t b = at("buf", buf);
  Walked in = run(SYS_read, {3, b, sizeof buf});
  EXPECT_EQ(in.result.completeness, Completeness::kComplete);
  EXPECT_EQ(in.lines, (Lines{"fd 3 use at arg0", "#0 write buf+0 4096 at arg1"}));
  Walked out = run(SYS_read, {3, b, sizeof buf}, Phase::kExit, 1024);
  EXPECT_EQ(out.lines, (Lines{"#0 write buf+0 4096 at arg1 written 1024"}));
  Walked eof = run(SYS_read, {3, b, sizeof buf}, Phase::kExit, 0);
  EXPECT_EQ(eof.lines, (Lines{"#0 write buf+0 4096 at arg1"}));
  Walked error = run(SYS_read, {3, b, sizeof buf}, Phase::kExit, -EBADF);
  EXPECT_EQ(error.lines, (Lines{"#0 write buf+0 4096 at arg1"}));
}

TEST_F(AbiWalk, Pread64AndWrite) {
  char buf[100];
  const std::uint64_t b = at("buf", buf);
  EXPECT_EQ(run(SYS_pread64, {5, b, 100, 4096}, Phase::kExit, 60).lines,
            (Lines{"#0 write buf+0 100 at arg1 written 60"}));
  EXPECT_EQ(run(SYS_write, {1, b, 10}).lines, (Lines{"fd 1 use at arg0", "#0 read buf+0 10 at arg1"}));
  // Nothing the kernel reads is reported after the call.
  EXPECT_EQ(run(SYS_write, {1, b, 10}, Phase::kExit, 10).lines, Lines{});
  // A NULL buffer or a zero length is no access.
  EXPECT_EQ(run(SYS_write, {1, 0, 10}).lines, (Lines{"fd 1 use at arg0"}));
  EXPECT_EQ(run(SYS_write, {1, b, 0}).lines, (Lines{"fd 1 use at arg0"}));
}

TEST_F(AbiWalk, ReadvSpreadsTheResultOverItsVectors) {
  char a[10], b[20], c[30];
  iovec iov[3] = {{a, sizeof a}, {b, sizeof b}, {c, sizeof c}};
  at("a", a);
  at("b", b);
  at("c", c);
  const std::uint64_t v = at("iov", iov);
  Walked in = run(SYS_readv, {4, v, 3});
  EXPECT_EQ(in.lines, (Lines{"fd 4 use at arg0", "#0 read iov+0 48 at arg1", "#1 write a+0 10 at #0+0",
                             "#2 write b+0 20 at #0+16", "#3 write c+0 30 at #0+32"}));
  Walked out = run(SYS_readv, {4, v, 3}, Phase::kExit, 25);
  EXPECT_EQ(out.lines, (Lines{"#0 read iov+0 48 at arg1", "#1 write a+0 10 at #0+0 written 10",
                              "#2 write b+0 20 at #0+16 written 15", "#3 write c+0 30 at #0+32"}));
  // preadv2 has the same shape, with an offset and flags.
  EXPECT_EQ(run(SYS_preadv2, {4, v, 2, 0, 0, 0}, Phase::kExit, 12).lines,
            (Lines{"#0 read iov+0 32 at arg1", "#1 write a+0 10 at #0+0 written 10",
                   "#2 write b+0 20 at #0+16 written 2"}));
}

TEST_F(AbiWalk, WritevReadsItsVectors) {
  char a[] = "hello", b[] = "world";
  iovec iov[2] = {{a, 5}, {b, 0}};
  at("a", a);
  at("b", b);
  const std::uint64_t v = at("iov", iov);
  EXPECT_EQ(run(SYS_writev, {1, v, 2}).lines,
            (Lines{"fd 1 use at arg0", "#0 read iov+0 32 at arg1", "#1 read a+0 5 at #0+0"}));
}

TEST_F(AbiWalk, LengthsAsTheKernelChecksThem) {
  char buf[64];
  const std::uint64_t b = at("buf", buf), p = string("p", "link");
  // A negative int count: EINVAL before any access.
  EXPECT_EQ(run(SYS_readlink, {p, b, static_cast<std::uint64_t>(-1)}).lines, (Lines{"#0 read p+0 5 at arg0 nul"}));
  // Upper bits of an int count are not the kernel's.
  EXPECT_EQ(run(SYS_readlink, {p, b, 0xffffffff00000010}).lines,
            (Lines{"#0 read p+0 5 at arg0 nul", "#1 write buf+0 16 at arg1"}));
  // An address is never read beyond a sockaddr_storage.
  EXPECT_EQ(run(SYS_connect, {3, b, 1000}).lines, (Lines{"fd 3 use at arg0", "#0 read buf+0 128 at arg1"}));
}

TEST_F(AbiWalk, VmspliceMayWriteNowOrReadLater) {
  char buf[10];
  iovec iov{buf, sizeof buf};
  at("buf", buf);
  const std::uint64_t v = at("iov", iov);
  // Into a pipe the kernel may keep the pages and read them when the pipe
  // is read; out of one it writes them before returning.
  EXPECT_EQ(run(SYS_vmsplice, {3, v, 1, 0}).lines,
            (Lines{"fd 3 use at arg0", "#0 read iov+0 16 at arg1", "#1 readwrite buf+0 10 at #0+0 async"}));
  EXPECT_EQ(run(SYS_vmsplice, {3, v, 1, 0}, Phase::kExit, 4).lines,
            (Lines{"#0 read iov+0 16 at arg1", "#1 readwrite buf+0 10 at #0+0 written 4 async"}));
}

TEST_F(AbiWalk, TooManyIovecsAreRefusedNotWalked) {
  iovec iov[1]{};
  const std::uint64_t v = at("iov", iov);
  Walked w = run(SYS_readv, {4, v, 1025});
  EXPECT_EQ(w.result.completeness, Completeness::kIncomplete);
  EXPECT_EQ(w.lines, (Lines{"fd 4 use at arg0"}));
}

// The sandbox's case: the walker decodes nested pointers from the copy the
// visitor made, not from the program's memory, which a thread may change.
TEST_F(AbiWalk, NestedPointersComeFromTheVisitorsCopy) {
  char a[8], evil[8];
  iovec iov[1] = {{a, sizeof a}};
  at("a", a);
  at("evil", evil);
  const std::uint64_t v = at("iov", iov);

  struct Racing final : Visitor {
    Racing(iovec* t, void* s, Memory& m, const Labels& l) : target(t), swap(s), inner(l, &m) {}
    const void* access(const Access& a) noexcept override {
      const void* copy = inner.access(a);
      target->iov_base = swap;  // another thread changes the array after the copy
      return copy;
    }
    void fd(const FdUse& u) noexcept override { inner.fd(u); }
    iovec* target;
    void* swap;
    Recorder inner;
  } racing(iov, evil, memory, labels);
  Call call{SYS_readv, {4, v, 1, 0, 0, 0}};
  walk(call, memory, racing, Phase::kEntry);
  EXPECT_EQ(racing.inner.lines, (Lines{"fd 4 use at arg0", "#0 read iov+0 16 at arg1", "#1 write a+0 8 at #0+0"}));
}

// --- sockets -----------------------------------------------------------

TEST_F(AbiWalk, SendmsgReadsNameVectorsAndControlWithItsDescriptors) {
  char data[] = "hi";
  iovec iov{data, 2};
  sockaddr_storage addr{};
  alignas(8) char control[CMSG_SPACE(2 * sizeof(int))] = {};
  msghdr msg{};
  msg.msg_name = &addr;
  msg.msg_namelen = 16;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(2 * sizeof(int));
  const int passed[2] = {7, 9};
  std::memcpy(CMSG_DATA(c), passed, sizeof passed);
  at("data", data);
  at("iov", iov);
  at("addr", addr);
  at("control", control);
  const std::uint64_t m = at("msg", msg);
  Walked w = run(SYS_sendmsg, {5, m, MSG_NOSIGNAL});
  EXPECT_EQ(w.result.completeness, Completeness::kComplete);
  EXPECT_EQ(w.lines, (Lines{"fd 5 use at arg0", "#0 read msg+0 56 at arg1", "#1 read addr+0 16 at #0+0",
                            "#2 read iov+0 16 at #0+16", "#3 read data+0 2 at #2+0", "#4 read control+0 24 at #0+32",
                            "fd 7 use at #4+16", "fd 9 use at #4+20"}));
  EXPECT_EQ(run(SYS_sendmsg, {5, m, 0}, Phase::kExit, 2).lines, Lines{});
}

TEST_F(AbiWalk, RecvmsgWritesWhatTheKernelReportsAndItsDescriptorsAreNew) {
  char a[4], b[10];
  iovec iov[2] = {{a, sizeof a}, {b, sizeof b}};
  sockaddr_storage name{};
  alignas(8) char control[64] = {};
  msghdr msg{};
  msg.msg_name = &name;
  msg.msg_namelen = sizeof name;
  msg.msg_iov = iov;
  msg.msg_iovlen = 2;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  at("a", a);
  at("b", b);
  at("iov", iov);
  at("name", name);
  at("control", control);
  const std::uint64_t m = at("msg", msg);
  EXPECT_EQ(run(SYS_recvmsg, {5, m, 0}).lines,
            (Lines{"fd 5 use at arg0", "#0 readwrite msg+0 56 at arg1", "#1 write name+0 128 at #0+0",
                   "#2 read iov+0 32 at #0+16", "#3 write a+0 4 at #2+0", "#4 write b+0 10 at #2+16",
                   "#5 write control+0 64 at #0+32"}));
  // What the kernel does: 6 bytes, a 16-byte address, one descriptor.
  msg.msg_namelen = 16;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  const int received = 11;
  std::memcpy(CMSG_DATA(c), &received, sizeof received);
  msg.msg_controllen = CMSG_SPACE(sizeof(int));
  EXPECT_EQ(run(SYS_recvmsg, {5, m, 0}, Phase::kExit, 6).lines,
            (Lines{"#0 readwrite msg+0 56 at arg1 written 56", "#1 write name+0 16 at #0+0 written 16",
                   "#2 read iov+0 32 at #0+16", "#3 write a+0 4 at #2+0 written 4",
                   "#4 write b+0 10 at #2+16 written 2", "#5 write control+0 24 at #0+32 written 24",
                   "fd 11 new at #5+16"}));
}

TEST_F(AbiWalk, RecvmmsgWritesOnlyTheMessagesReceived) {
  char a[8], b[8];
  iovec va{a, sizeof a}, vb{b, sizeof b};
  mmsghdr msgs[2] = {};
  msgs[0].msg_hdr.msg_iov = &va;
  msgs[0].msg_hdr.msg_iovlen = 1;
  msgs[1].msg_hdr.msg_iov = &vb;
  msgs[1].msg_hdr.msg_iovlen = 1;
  at("a", a);
  at("b", b);
  at("va", va);
  at("vb", vb);
  const std::uint64_t v = at("msgs", msgs);
  EXPECT_EQ(run(SYS_recvmmsg, {5, v, 2, MSG_WAITFORONE, 0}).lines,
            (Lines{"fd 5 use at arg0", "#0 readwrite msgs+0 128 at arg1", "#1 read va+0 16 at #0+16",
                   "#2 write a+0 8 at #1+0", "#3 read vb+0 16 at #0+80", "#4 write b+0 8 at #3+0"}));
  msgs[0].msg_len = 3;
  EXPECT_EQ(run(SYS_recvmmsg, {5, v, 2, MSG_WAITFORONE, 0}, Phase::kExit, 1).lines,
            (Lines{"#0 readwrite msgs+0 128 at arg1 written 64", "#1 read va+0 16 at #0+16",
                   "#2 write a+0 8 at #1+0 written 3"}));
}

TEST_F(AbiWalk, RecvfromsAddressLengthIsValueResult) {
  char buf[100];
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  const std::uint64_t b = at("buf", buf), a = at("addr", addr), l = at("len", len);
  EXPECT_EQ(run(SYS_recvfrom, {3, b, 100, 0, a, l}).lines,
            (Lines{"fd 3 use at arg0", "#0 write buf+0 100 at arg1", "#1 readwrite len+0 4 at arg5",
                   "#2 write addr+0 128 at arg4"}));
  len = 16;  // the kernel's answer
  EXPECT_EQ(run(SYS_recvfrom, {3, b, 100, 0, a, l}, Phase::kExit, 42).lines,
            (Lines{"#0 write buf+0 100 at arg1 written 42", "#1 readwrite len+0 4 at arg5 written 4",
                   "#2 write addr+0 16 at arg4 written 16"}));
  // accept4 creates the descriptor it returns.
  EXPECT_EQ(run(SYS_accept4, {3, a, l, SOCK_CLOEXEC}, Phase::kExit, 8).lines,
            (Lines{"#0 readwrite len+0 4 at arg2 written 4", "#1 write addr+0 16 at arg1 written 16",
                   "fd 8 new at ret"}));
}

// --- files -------------------------------------------------------------

TEST_F(AbiWalk, Getdents64WritesTheResult) {
  alignas(8) char dirp[32768];
  const std::uint64_t d = at("dirp", dirp);
  EXPECT_EQ(run(SYS_getdents64, {3, d, sizeof dirp}).lines, (Lines{"fd 3 use at arg0", "#0 write dirp+0 32768 at arg1"}));
  EXPECT_EQ(run(SYS_getdents64, {3, d, sizeof dirp}, Phase::kExit, 480).lines,
            (Lines{"#0 write dirp+0 32768 at arg1 written 480"}));
}

TEST_F(AbiWalk, NewfstatatUsesItsDirfdOnlyForARelativePath) {
  struct stat st;
  const std::uint64_t s = at("st", st);
  const std::uint64_t rel = string("rel", "file"), abs = string("abs", "/etc/hosts"), empty = string("empty", "");
  EXPECT_EQ(run(SYS_newfstatat, {3, rel, s, 0}).lines,
            (Lines{"#0 read rel+0 5 at arg1 nul", "#1 write st+0 144 at arg2", "fd 3 dirfd at arg0"}));
  EXPECT_EQ(run(SYS_newfstatat, {3, abs, s, 0}).lines,
            (Lines{"#0 read abs+0 11 at arg1 nul", "#1 write st+0 144 at arg2"}));
  EXPECT_EQ(run(SYS_newfstatat, {static_cast<std::uint64_t>(AT_FDCWD), rel, s, 0}).lines,
            (Lines{"#0 read rel+0 5 at arg1 nul", "#1 write st+0 144 at arg2", "fd -100 dirfd at arg0"}));
  EXPECT_EQ(run(SYS_newfstatat, {7, empty, s, AT_EMPTY_PATH}).lines,
            (Lines{"#0 read empty+0 1 at arg1 nul", "#1 write st+0 144 at arg2", "fd 7 dirfd at arg0"}));
  EXPECT_EQ(run(SYS_newfstatat, {3, rel, s, 0}, Phase::kExit, 0).lines, (Lines{"#0 write st+0 144 at arg2 written 144"}));
  EXPECT_EQ(run(SYS_newfstatat, {3, rel, s, 0}, Phase::kExit, -ENOENT).lines, (Lines{"#0 write st+0 144 at arg2"}));
}

TEST_F(AbiWalk, StatxAndOpenat) {
  struct statx stx;
  const std::uint64_t s = at("stx", stx), p = string("p", "a/b");
  EXPECT_EQ(run(SYS_statx, {9, p, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, s}).lines,
            (Lines{"#0 read p+0 4 at arg1 nul", "#1 write stx+0 256 at arg4", "fd 9 dirfd at arg0"}));
  EXPECT_EQ(run(SYS_openat, {9, p, O_RDONLY}, Phase::kExit, 4).lines, (Lines{"fd 4 new at ret"}));
  EXPECT_EQ(run(SYS_openat, {9, p, O_RDONLY}, Phase::kExit, -ENOENT).lines, Lines{});
}

TEST_F(AbiWalk, AStringWithoutItsNulIsReadToTheKernelsLimit) {
  static char name[300];
  std::memset(name, 'x', sizeof name);
  const std::uint64_t n = at("name", name, sizeof name);
  // memfd_create reads at most 250 bytes of its name.
  Walked w = run(SYS_memfd_create, {n, 0});
  EXPECT_EQ(w.lines, (Lines{"#0 read name+0 250 at arg0"}));
  EXPECT_FALSE(w.result.unreadable);
  // A path that runs into unreadable memory: the kernel reads up to the
  // byte it cannot read and fails with EFAULT; the access includes it, so a
  // sandbox sees the whole range the kernel would try.
  Walked cut = run(SYS_chdir, {n});
  EXPECT_EQ(cut.lines, (Lines{"#0 read name+0 301 at arg0"}));
  EXPECT_TRUE(cut.result.unreadable);
  Walked none = run(SYS_chdir, {0x1000});
  EXPECT_EQ(none.lines, (Lines{"#0 read 0x1000 1 at arg0"}));
  EXPECT_TRUE(none.result.unreadable);
}

TEST_F(AbiWalk, ExecveReadsItsPathAndBothArrays) {
  const char* argv[] = {"ls", "-l", nullptr};
  const char* envp[] = {"A=1", nullptr};
  string("s0", argv[0]);
  string("s1", argv[1]);
  string("e0", envp[0]);
  const std::uint64_t p = string("path", "/bin/ls"), av = at("argv", argv), ev = at("envp", envp);
  Walked w = run(SYS_execve, {p, av, ev});
  EXPECT_EQ(w.result.completeness, Completeness::kComplete);
  EXPECT_EQ(w.lines, (Lines{"#0 read path+0 8 at arg0 nul", "#1 read argv+0 24 at arg1 null", "#2 read s0+0 3 at #1+0 nul",
                            "#3 read s1+0 3 at #1+8 nul", "#4 read envp+0 16 at arg2 null",
                            "#5 read e0+0 4 at #4+0 nul"}));
  // execveat: its dirfd, relative path.
  static const char ls[] = "ls";  // not the literal argv[0] points to
  const std::uint64_t rel = string("rel", ls);
  EXPECT_EQ(run(SYS_execveat, {4, rel, av, 0, 0}).lines,
            (Lines{"#0 read rel+0 3 at arg1 nul", "#1 read argv+0 24 at arg2 null", "#2 read s0+0 3 at #1+0 nul",
                   "#3 read s1+0 3 at #1+8 nul", "fd 4 dirfd at arg0"}));
}

// --- signals and threads ----------------------------------------------

TEST_F(AbiWalk, RtSigactionReadsTheNewAndWritesTheOld) {
  std::array<std::uint64_t, 4> act{}, old{};
  const std::uint64_t a = at("act", act), o = at("old", old);
  EXPECT_EQ(run(SYS_rt_sigaction, {SIGINT, a, o, 8}).lines,
            (Lines{"#0 read act+0 32 at arg1", "#1 write old+0 32 at arg2"}));
  EXPECT_EQ(run(SYS_rt_sigaction, {SIGINT, a, o, 8}, Phase::kExit, 0).lines,
            (Lines{"#0 write old+0 32 at arg2 written 32"}));
  EXPECT_EQ(run(SYS_rt_sigaction, {SIGINT, 0, o, 8}, Phase::kExit, -EINVAL).lines, (Lines{"#0 write old+0 32 at arg2"}));
}

TEST_F(AbiWalk, CloneWritesTheTidsItsFlagsName) {
  int ptid = 0, ctid = 0;
  const std::uint64_t p = at("ptid", ptid), c = at("ctid", ctid);
  const std::uint64_t thread = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM |
                               CLONE_SETTLS | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID;
  Walked w = run(SYS_clone, {thread, 0x7f0000100000, p, c, 0x7f0000200000});
  EXPECT_EQ(w.lines, (Lines{"#0 write ptid+0 4 at arg2", "#1 write ctid+0 4 at arg3 async child"}));
  EXPECT_TRUE(w.result.async);
  EXPECT_EQ(run(SYS_clone, {thread, 0x7f0000100000, p, c, 0}, Phase::kExit, 1234).lines,
            (Lines{"#0 write ptid+0 4 at arg2 written 4", "#1 write ctid+0 4 at arg3 async child"}));
  // A fork: no flags that touch memory.
  EXPECT_EQ(run(SYS_clone, {SIGCHLD, 0, p, c, 0}).lines, Lines{});
  // CLONE_PIDFD: the parent_tid slot receives a new descriptor.
  EXPECT_EQ(run(SYS_clone, {CLONE_PIDFD | SIGCHLD, 0, p, 0, 0}).lines, (Lines{"#0 write ptid+0 4 at arg2"}));
  ptid = 12;
  EXPECT_EQ(run(SYS_clone, {CLONE_PIDFD | SIGCHLD, 0, p, 0, 0}, Phase::kExit, 99).lines,
            (Lines{"#0 write ptid+0 4 at arg2 written 4", "fd 12 new at #0+0"}));
}

TEST_F(AbiWalk, Clone3DecodesItsArguments) {
  int pidfd = 0, ptid = 0, ctid = 0;
  pid_t set_tid[1] = {500};
  clone_args args{};
  args.flags = CLONE_PIDFD | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID | CLONE_INTO_CGROUP;
  args.pidfd = addr_of(&pidfd);
  args.parent_tid = addr_of(&ptid);
  args.child_tid = addr_of(&ctid);
  args.exit_signal = SIGCHLD;
  args.set_tid = addr_of(set_tid);
  args.set_tid_size = 1;
  args.cgroup = 9;
  at("pidfd", pidfd);
  at("ptid", ptid);
  at("ctid", ctid);
  at("settid", set_tid);
  const std::uint64_t a = at("args", args);
  EXPECT_EQ(run(SYS_clone3, {a, sizeof args}).lines,
            (Lines{"#0 read args+0 88 at arg0", "#1 write pidfd+0 4 at #0+8", "#2 write ptid+0 4 at #0+24",
                   "#3 write ctid+0 4 at #0+16 async child", "#4 read settid+0 4 at #0+64", "fd 9 use at #0+80"}));
  pidfd = 12;
  EXPECT_EQ(run(SYS_clone3, {a, sizeof args}, Phase::kExit, 600).lines,
            (Lines{"#0 read args+0 88 at arg0", "#1 write pidfd+0 4 at #0+8 written 4", "fd 12 new at #0+8",
                   "#2 write ptid+0 4 at #0+24 written 4", "#3 write ctid+0 4 at #0+16 async child"}));
  // Version 0 of the structure has no set_tid and no cgroup.
  EXPECT_EQ(run(SYS_clone3, {a, 64}).lines,
            (Lines{"#0 read args+0 64 at arg0", "#1 write pidfd+0 4 at #0+8", "#2 write ptid+0 4 at #0+24",
                   "#3 write ctid+0 4 at #0+16 async child"}));
  Walked small = run(SYS_clone3, {a, 32});
  EXPECT_EQ(small.result.completeness, Completeness::kIncomplete);
  EXPECT_EQ(small.lines, Lines{});
}

TEST_F(AbiWalk, RegistrationsTheKernelUsesLater) {
  int tid = 0;
  std::array<std::uint64_t, 3> head{};
  alignas(32) std::array<std::uint32_t, 8> area{};
  const std::uint64_t t = at("tid", tid), h = at("head", head), r = at("area", area);
  Walked w = run(SYS_set_tid_address, {t});
  EXPECT_EQ(w.lines, (Lines{"#0 write tid+0 4 at arg0 async"}));
  EXPECT_TRUE(w.result.async);
  EXPECT_FALSE(w.result.later_unbounded);
  Walked robust = run(SYS_set_robust_list, {h, 24});
  EXPECT_EQ(robust.lines, (Lines{"#0 readwrite head+0 24 at arg0 async later"}));
  EXPECT_TRUE(robust.result.later_unbounded);
  EXPECT_EQ(run(SYS_set_robust_list, {h, 24}, Phase::kExit, 0).lines,
            (Lines{"#0 readwrite head+0 24 at arg0 async later"}));
  EXPECT_EQ(run(SYS_set_robust_list, {h, 24}, Phase::kExit, -EINVAL).lines, Lines{});
  Walked reg = run(SYS_rseq, {r, 32, 0, 0x53053053});
  EXPECT_EQ(reg.lines, (Lines{"#0 readwrite area+0 32 at arg0 async later"}));
  EXPECT_TRUE(reg.result.later_unbounded);
  Walked unreg = run(SYS_rseq, {r, 32, 1, 0x53053053});
  EXPECT_EQ(unreg.lines, (Lines{"#0 write area+0 32 at arg0"}));
  EXPECT_FALSE(unreg.result.async);
  EXPECT_EQ(run(SYS_rseq, {r, 32, 4, 0}).result.completeness, Completeness::kIncomplete);
}

TEST_F(AbiWalk, SigaltstackRegistersAStackTheKernelWritesFramesTo) {
  static char stack[8192];
  stack_t ss{stack, 0, sizeof stack}, old{};
  at("stack", stack);
  const std::uint64_t s = at("ss", ss), o = at("old", old);
  Walked w = run(SYS_sigaltstack, {s, o});
  EXPECT_EQ(w.lines, (Lines{"#0 read ss+0 24 at arg0", "#1 write stack+0 8192 at #0+0 async", "#2 write old+0 24 at arg1"}));
  EXPECT_TRUE(w.result.async);
  ss.ss_flags = SS_DISABLE;
  EXPECT_EQ(run(SYS_sigaltstack, {s, 0}).lines, (Lines{"#0 read ss+0 24 at arg0"}));
}

// --- descriptors in bulk -------------------------------------------------

TEST_F(AbiWalk, PollAndPpollUseTheirDescriptorsAndWriteReventsAlways) {
  pollfd fds[3] = {{0, POLLIN, 0}, {-1, POLLIN, 0}, {5, POLLOUT, 0}};  // -1: ignored
  timespec ts{1, 0};
  std::uint64_t mask = 0;
  const std::uint64_t f = at("fds", fds), t = at("ts", ts), m = at("mask", mask);
  EXPECT_EQ(run(SYS_poll, {f, 3, 1000}).lines,
            (Lines{"#0 readwrite fds+0 24 at arg0", "fd 0 use at #0+0", "fd 5 use at #0+16"}));
  EXPECT_EQ(run(SYS_poll, {f, 3, 1000}, Phase::kExit, -EINTR).lines, (Lines{"#0 readwrite fds+0 24 at arg0 written 24"}));
  EXPECT_EQ(run(SYS_ppoll, {f, 3, t, m, 8}).lines,
            (Lines{"#0 readwrite fds+0 24 at arg0", "fd 0 use at #0+0", "fd 5 use at #0+16",
                   "#1 readwrite ts+0 16 at arg2", "#2 read mask+0 8 at arg3"}));
}

TEST_F(AbiWalk, SelectAndPselect6UseTheBitsBelowNfds) {
  fd_set rfds, efds;
  FD_ZERO(&rfds);
  FD_ZERO(&efds);
  FD_SET(3, &rfds);
  FD_SET(9, &rfds);
  FD_SET(12, &rfds);  // at or above nfds: not looked at
  FD_SET(0, &efds);
  timeval tv{1, 0};
  const std::uint64_t r = at("rfds", rfds), e = at("efds", efds), t = at("tv", tv);
  EXPECT_EQ(run(SYS_select, {10, r, 0, e, t}).lines,
            (Lines{"#0 readwrite rfds+0 8 at arg1", "fd 3 use at #0+0", "fd 9 use at #0+1",
                   "#1 readwrite efds+0 8 at arg3", "fd 0 use at #1+0", "#2 readwrite tv+0 16 at arg4"}));
  // Interrupted: the sets are not written, the time left is.
  EXPECT_EQ(run(SYS_select, {10, r, 0, e, t}, Phase::kExit, -EINTR).lines,
            (Lines{"#0 readwrite rfds+0 8 at arg1", "#1 readwrite efds+0 8 at arg3",
                   "#2 readwrite tv+0 16 at arg4 written 16"}));
  EXPECT_EQ(run(SYS_select, {10, r, 0, e, t}, Phase::kExit, 1).lines,
            (Lines{"#0 readwrite rfds+0 8 at arg1 written 8", "#1 readwrite efds+0 8 at arg3 written 8",
                   "#2 readwrite tv+0 16 at arg4 written 16"}));
  std::uint64_t mask = 0;
  struct {
    std::uint64_t set, size;
  } sig{addr_of(&mask), 8};
  at("mask", mask);
  const std::uint64_t s = at("sig", sig);
  timespec ts{0, 0};
  const std::uint64_t tsa = at("ts", ts);
  EXPECT_EQ(run(SYS_pselect6, {4, r, 0, 0, tsa, s}).lines,
            (Lines{"#0 readwrite rfds+0 8 at arg1", "fd 3 use at #0+0", "#1 readwrite ts+0 16 at arg4",
                   "#2 read sig+0 16 at arg5", "#3 read mask+0 8 at #2+0"}));
}

TEST_F(AbiWalk, EpollCtlAndWait) {
  epoll_event ev{EPOLLIN, {}};
  epoll_event events[10];
  const std::uint64_t e = at("ev", ev), es = at("events", events);
  EXPECT_EQ(run(SYS_epoll_ctl, {4, EPOLL_CTL_ADD, 7, e}).lines,
            (Lines{"fd 4 use at arg0", "fd 7 use at arg2", "#0 read ev+0 12 at arg3"}));
  EXPECT_EQ(run(SYS_epoll_ctl, {4, EPOLL_CTL_DEL, 7, e}).lines, (Lines{"fd 4 use at arg0", "fd 7 use at arg2"}));
  EXPECT_EQ(run(SYS_epoll_ctl, {4, 99, 7, e}).result.completeness, Completeness::kIncomplete);
  EXPECT_EQ(run(SYS_epoll_wait, {4, es, 10, static_cast<std::uint64_t>(-1)}).lines, (Lines{"fd 4 use at arg0", "#0 write events+0 120 at arg1"}));
  EXPECT_EQ(run(SYS_epoll_wait, {4, es, 10, static_cast<std::uint64_t>(-1)}, Phase::kExit, 2).lines,
            (Lines{"#0 write events+0 120 at arg1 written 24"}));
}

// --- commands ----------------------------------------------------------

TEST_F(AbiWalk, FutexOperations) {
  std::uint32_t word = 0, word2 = 0;
  timespec ts{0, 1000};
  const std::uint64_t w = at("w", word), w2 = at("w2", word2), t = at("ts", ts);
  Walked wait = run(SYS_futex, {w, FUTEX_WAIT_PRIVATE, 0, t, 0, 0});
  EXPECT_EQ(wait.lines, (Lines{"#0 read w+0 4 at arg0", "#1 read ts+0 16 at arg3"}));
  EXPECT_EQ(std::string(wait.result.command->name), "FUTEX_WAIT");
  EXPECT_EQ(run(SYS_futex, {w, FUTEX_WAKE, 1, 0, 0, 0}).lines, (Lines{"#0 address w+0 4 at arg0"}));
  EXPECT_EQ(run(SYS_futex, {w, FUTEX_CMP_REQUEUE_PRIVATE, 1, 10, w2, 0}).lines,
            (Lines{"#0 read w+0 4 at arg0", "#1 address w2+0 4 at arg4"}));
  EXPECT_EQ(run(SYS_futex, {w, FUTEX_WAKE_OP, 1, 1, w2, 0x12345678}).lines,
            (Lines{"#0 address w+0 4 at arg0", "#1 readwrite w2+0 4 at arg4"}));
  EXPECT_EQ(run(SYS_futex, {w, FUTEX_LOCK_PI | FUTEX_CLOCK_REALTIME, 0, t, 0, 0}).lines,
            (Lines{"#0 readwrite w+0 4 at arg0", "#1 read ts+0 16 at arg3"}));
  EXPECT_EQ(run(SYS_futex, {w, FUTEX_LOCK_PI, 0, 0, 0, 0}, Phase::kExit, 0).lines,
            (Lines{"#0 readwrite w+0 4 at arg0 written 4"}));
  Walked unknown = run(SYS_futex, {w, 99, 0, 0, 0, 0});
  EXPECT_EQ(unknown.result.completeness, Completeness::kIncomplete);
  EXPECT_EQ(unknown.lines, Lines{});
}

using Blob = std::array<char, 24>;

TEST_F(AbiWalk, IoctlsByTableByEncodingAndUnknown) {
  termios t;
  winsize ws;
  int n = 0;
  std::array<char, 24> blob{};
  const std::uint64_t ta = at("t", t), wa = at("ws", ws), na = at("n", n), ba = at("blob", blob);
  Walked tc = run(SYS_ioctl, {1, TCGETS, ta});
  EXPECT_EQ(tc.result.completeness, Completeness::kComplete);
  EXPECT_EQ(tc.lines, (Lines{"fd 1 use at arg0", "#0 write t+0 36 at arg2"}));
  EXPECT_EQ(run(SYS_ioctl, {1, TIOCGWINSZ, wa}).lines, (Lines{"fd 1 use at arg0", "#0 write ws+0 8 at arg2"}));
  EXPECT_EQ(run(SYS_ioctl, {1, TIOCSWINSZ, wa}).lines, (Lines{"fd 1 use at arg0", "#0 read ws+0 8 at arg2"}));
  EXPECT_EQ(run(SYS_ioctl, {3, FIONREAD, na}, Phase::kExit, 0).lines, (Lines{"#0 write n+0 4 at arg2 written 4"}));
  EXPECT_EQ(run(SYS_ioctl, {3, FIOCLEX, na}).lines, (Lines{"fd 3 use at arg0"}));
  // A driver's request: its _IOC bits say 24 bytes out; what it does with
  // pointers inside is not known.
  Walked encoded = run(SYS_ioctl, {3, _IOR('x', 1, Blob), ba});
  EXPECT_EQ(encoded.result.completeness, Completeness::kDirectOnly);
  EXPECT_EQ(encoded.lines, (Lines{"fd 3 use at arg0", "#0 write blob+0 24 at arg2"}));
  EXPECT_EQ(run(SYS_ioctl, {3, _IOW('x', 2, Blob), ba}).lines,
            (Lines{"fd 3 use at arg0", "#0 read blob+0 24 at arg2"}));
  Walked legacy = run(SYS_ioctl, {3, 0x5499, ba});
  EXPECT_EQ(legacy.result.completeness, Completeness::kIncomplete);
  EXPECT_EQ(legacy.lines, (Lines{"fd 3 use at arg0"}));
  // FICLONE's argument is a descriptor, whatever its encoding says.
  EXPECT_EQ(run(SYS_ioctl, {3, FICLONE, 4}).lines, (Lines{"fd 3 use at arg0", "fd 4 use at arg2"}));
  EXPECT_EQ(run(SYS_ioctl, {3, 0x5441, O_RDWR}, Phase::kExit, 5).lines, (Lines{"fd 5 new at ret"}));
}

TEST_F(AbiWalk, FcntlCommands) {
  struct flock lk {};
  const std::uint64_t l = at("lk", lk);
  EXPECT_EQ(run(SYS_fcntl, {3, F_GETLK, l}).lines, (Lines{"fd 3 use at arg0", "#0 readwrite lk+0 32 at arg2"}));
  EXPECT_EQ(run(SYS_fcntl, {3, F_SETLKW, l}).lines, (Lines{"fd 3 use at arg0", "#0 read lk+0 32 at arg2"}));
  EXPECT_EQ(run(SYS_fcntl, {3, F_SETFD, FD_CLOEXEC}).lines, (Lines{"fd 3 use at arg0"}));
  EXPECT_EQ(run(SYS_fcntl, {3, F_DUPFD, 10}).lines, (Lines{"fd 3 use at arg0"}));
  EXPECT_EQ(run(SYS_fcntl, {3, F_DUPFD, 10}, Phase::kExit, 10).lines, (Lines{"fd 10 new at ret"}));
  EXPECT_EQ(run(SYS_fcntl, {3, F_GETFL, 0}, Phase::kExit, 2).lines, Lines{});
  EXPECT_EQ(run(SYS_fcntl, {3, 12345, l}).result.completeness, Completeness::kIncomplete);
}

TEST_F(AbiWalk, PrctlOptions) {
  char name[16] = {};
  const std::uint64_t worker = string("worker", "worker"), buf = at("buf", name);
  EXPECT_EQ(run(SYS_prctl, {PR_SET_NAME, worker, 0, 0, 0}).lines, (Lines{"#0 read worker+0 7 at arg1 nul"}));
  EXPECT_EQ(run(SYS_prctl, {PR_GET_NAME, buf, 0, 0, 0}, Phase::kExit, 0).lines,
            (Lines{"#0 write buf+0 16 at arg1 written 16"}));
  sock_filter filter[2] = {};
  sock_fprog prog{2, filter};
  at("filter", filter);
  const std::uint64_t p = at("prog", prog);
  EXPECT_EQ(run(SYS_prctl, {PR_SET_SECCOMP, 2, p, 0, 0}).lines,
            (Lines{"#0 read prog+0 16 at arg2", "#1 read filter+0 16 at #0+8"}));
  char selector = 0;
  const std::uint64_t s = at("selector", selector);
  EXPECT_EQ(run(SYS_prctl, {PR_SET_SYSCALL_USER_DISPATCH, 1, 0x400000, 0x1000, s}).lines,
            (Lines{"#0 address 0x400000 4096 at arg2", "#1 read selector+0 1 at arg4 async"}));
  EXPECT_EQ(run(SYS_prctl, {PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0}).lines, Lines{});
  EXPECT_EQ(run(SYS_prctl, {0x7fff, 0, 0, 0, 0}).result.completeness, Completeness::kIncomplete);
}

TEST_F(AbiWalk, SmallOutputs) {
  char buf[32];
  utsname u;
  timespec ts;
  const std::uint64_t b = at("buf", buf), ua = at("u", u), t = at("ts", ts);
  EXPECT_EQ(run(SYS_getrandom, {b, 32, 0}, Phase::kExit, 16).lines, (Lines{"#0 write buf+0 32 at arg0 written 16"}));
  EXPECT_EQ(run(SYS_uname, {ua}).lines, (Lines{"#0 write u+0 390 at arg0"}));
  EXPECT_EQ(run(SYS_clock_gettime, {CLOCK_MONOTONIC, t}, Phase::kExit, 0).lines,
            (Lines{"#0 write ts+0 16 at arg1 written 16"}));
  // nanosleep writes the time left only when interrupted.
  EXPECT_EQ(run(SYS_nanosleep, {t, t}, Phase::kExit, 0).lines, (Lines{"#0 write ts+0 16 at arg1"}));
  EXPECT_EQ(run(SYS_nanosleep, {t, t}, Phase::kExit, -EINTR).lines, (Lines{"#0 write ts+0 16 at arg1 written 16"}));
}

TEST_F(AbiWalk, IoSubmitReadsIocbsAndNamesTheirBuffersAsAsync) {
  char buf[100], data[5] = {'a', 'b', 'c', 'd', 'e'};
  iovec vec{data, 5};
  iocb cb1{}, cb2{};
  cb1.aio_lio_opcode = IOCB_CMD_PREAD;
  cb1.aio_fildes = 3;
  cb1.aio_buf = addr_of(buf);
  cb1.aio_nbytes = sizeof buf;
  cb2.aio_lio_opcode = IOCB_CMD_PWRITEV;
  cb2.aio_fildes = 4;
  cb2.aio_buf = addr_of(&vec);
  cb2.aio_nbytes = 1;
  cb2.aio_flags = IOCB_FLAG_RESFD;
  cb2.aio_resfd = 9;
  iocb* ptrs[2] = {&cb1, &cb2};
  at("buf", buf);
  at("data", data);
  at("vec", vec);
  at("cb1", cb1);
  at("cb2", cb2);
  const std::uint64_t p = at("ptrs", ptrs);
  Walked w = run(SYS_io_submit, {0x1000, 2, p});
  EXPECT_EQ(w.result.completeness, Completeness::kComplete);
  EXPECT_TRUE(w.result.async);
  EXPECT_EQ(w.lines, (Lines{"#0 read ptrs+0 16 at arg2", "#1 readwrite cb1+0 64 at #0+0", "fd 3 use at #1+20",
                            "#2 write buf+0 100 at #1+24 async", "#3 readwrite cb2+0 64 at #0+8", "fd 4 use at #3+20",
                            "fd 9 use at #3+60", "#4 read vec+0 16 at #3+24", "#5 read data+0 5 at #4+0 async"}));
  EXPECT_EQ(run(SYS_io_submit, {0x1000, 2, p}, Phase::kExit, 1).lines,
            (Lines{"#0 read ptrs+0 16 at arg2", "#1 readwrite cb1+0 64 at #0+0 written 64",
                   "#2 write buf+0 100 at #1+24 async"}));
  cb1.aio_lio_opcode = 42;
  EXPECT_EQ(run(SYS_io_submit, {0x1000, 1, p}).result.completeness, Completeness::kIncomplete);
}

TEST_F(AbiWalk, MappingsAreAddressRanges) {
  EXPECT_EQ(run(SYS_mmap, {0, 8192, PROT_READ, MAP_PRIVATE, 3, 0}).lines, (Lines{"fd 3 use at arg4"}));
  EXPECT_EQ(run(SYS_mmap, {0, 8192, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, static_cast<std::uint64_t>(-1), 0}).lines,
            Lines{});
  EXPECT_EQ(run(SYS_mmap, {0x10000, 8192, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, 0, 0}).lines,
            (Lines{"#0 address 0x10000 8192 at arg0"}));
  // munmap's range is reported even at address 0.
  EXPECT_EQ(run(SYS_munmap, {0, 1ULL << 46}).lines, (Lines{"#0 address 0x0 70368744177664 at arg0"}));
  EXPECT_EQ(run(SYS_mprotect, {0x20000, 4096, PROT_NONE}).lines, (Lines{"#0 address 0x20000 4096 at arg0"}));
  EXPECT_EQ(run(SYS_mremap, {0x20000, 4096, 8192, MREMAP_MAYMOVE, 0}).lines, (Lines{"#0 address 0x20000 4096 at arg0"}));
  EXPECT_EQ(run(SYS_mremap, {0x20000, 4096, 8192, MREMAP_MAYMOVE | MREMAP_FIXED, 0x40000}).lines,
            (Lines{"#0 address 0x20000 4096 at arg0", "#1 address 0x40000 8192 at arg4"}));
  EXPECT_EQ(run(SYS_mmap, {0, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, 0, 0}).result.completeness,
            Completeness::kComplete);
  EXPECT_EQ(run(SYS_shmat, {5, 0, 0}).result.completeness, Completeness::kComplete);
  EXPECT_EQ(run(SYS_shmat, {5, 0x50000, 0}).result.completeness, Completeness::kIncomplete);
}

TEST_F(AbiWalk, ProcessVmReadvWritesLocallyAndReadsRemotely) {
  char a[8], b[8];
  iovec local[2] = {{a, 8}, {b, 8}};
  iovec remote[1] = {{reinterpret_cast<void*>(0x7000), 16}};
  at("a", a);
  at("b", b);
  const std::uint64_t l = at("local", local), r = at("remote", remote);
  EXPECT_EQ(run(SYS_process_vm_readv, {1234, l, 2, r, 1, 0}).lines,
            (Lines{"#0 read local+0 32 at arg1", "#1 write a+0 8 at #0+0", "#2 write b+0 8 at #0+16",
                   "#3 read remote+0 16 at arg3", "#4 read 0x7000 16 at #3+0 remote"}));
  EXPECT_EQ(run(SYS_process_vm_readv, {1234, l, 2, r, 1, 0}, Phase::kExit, 10).lines,
            (Lines{"#0 read local+0 32 at arg1", "#1 write a+0 8 at #0+0 written 8", "#2 write b+0 8 at #0+16 written 2"}));
  EXPECT_EQ(run(SYS_process_vm_writev, {1234, l, 2, r, 1, 0}, Phase::kExit, 10).lines,
            (Lines{"#0 read remote+0 16 at arg3", "#1 write 0x7000 16 at #0+0 written 10 remote"}));
}

// --- what the walker cannot describe -----------------------------------

TEST_F(AbiWalk, CallsItCannotDescribeSaySo) {
  Walked unknown = run(500, {});
  EXPECT_EQ(unknown.result.completeness, Completeness::kIncomplete);
  EXPECT_EQ(unknown.result.call, nullptr);
  EXPECT_EQ(run(kX32Bit | SYS_read, {0, 0, 0}).result.completeness, Completeness::kIncomplete);
  Walked enosys = run(SYS_uselib, {0x1000});
  EXPECT_EQ(enosys.result.completeness, Completeness::kComplete);  // the kernel touches nothing
  EXPECT_EQ(enosys.lines, Lines{});
  EXPECT_EQ(run(SYS_rt_sigreturn, {}).result.completeness, Completeness::kIncomplete);
  Walked ring = run(SYS_io_uring_enter, {3, 1, 0, 0, 0, 0});
  EXPECT_EQ(ring.result.completeness, Completeness::kIncomplete);
  EXPECT_TRUE(ring.result.later_unbounded);
  EXPECT_NE(ring.result.reason, nullptr);
  EXPECT_EQ(run(SYS_bpf, {5, 0x1000, 128}).result.completeness, Completeness::kIncomplete);
  EXPECT_EQ(run(SYS_semctl, {1, 0, 13 /* GETALL */, 0x1000}).result.completeness, Completeness::kIncomplete);
  EXPECT_EQ(run(SYS_semctl, {1, 0, 2 /* IPC_STAT */ | 0x100 /* IPC_64 */, 0x1000}).result.completeness,
            Completeness::kComplete);
  EXPECT_TRUE(run(SYS_io_setup, {8, 0}).result.later_unbounded);
  // Unknown socket options of a level whose options are bytes are complete.
  int one = 1;
  const std::uint64_t o = at("one", one);
  EXPECT_EQ(run(SYS_setsockopt, {3, SOL_SOCKET, SO_REUSEADDR, o, 4}).result.completeness, Completeness::kComplete);
  EXPECT_EQ(run(SYS_setsockopt, {3, 280 /* SOL_ALG */, 1, o, 4}).result.completeness, Completeness::kDirectOnly);
  EXPECT_EQ(run(SYS_setsockopt, {3, 0 /* SOL_IP */, 64 /* IPT_SO_SET_REPLACE */, o, 4}).result.completeness,
            Completeness::kIncomplete);
}

TEST_F(AbiWalk, UnreadableStructuresAreFlagged) {
  Walked w = run(SYS_readv, {3, 0x1000, 2});
  EXPECT_EQ(w.lines, (Lines{"fd 3 use at arg0", "#0 read 0x1000 32 at arg1"}));
  EXPECT_TRUE(w.result.unreadable);
  EXPECT_EQ(w.result.completeness, Completeness::kIncomplete);  // its buffers are unknown
  Walked leaf = run(SYS_read, {3, 0x1000, 2});  // nothing to read to describe it
  EXPECT_FALSE(leaf.result.unreadable);
  EXPECT_EQ(leaf.result.completeness, Completeness::kComplete);
  // A buffer whose value-result length cannot be read cannot be described.
  char addr[16];
  const std::uint64_t a = at("addr", addr);
  Walked len = run(SYS_getsockname, {3, a, 0x2000});
  EXPECT_EQ(len.result.completeness, Completeness::kIncomplete);
  EXPECT_EQ(len.lines, (Lines{"fd 3 use at arg0", "#0 readwrite 0x2000 4 at arg2"}));
}

// A sandbox copies each access; strings and pointer arrays are copied as
// the walker sized them, and the copy must end as the walk saw it end.
TEST_F(AbiWalk, CopiesOfStringsAndArraysCarryTheirTerminators) {
  copy = true;
  const char* argv[] = {"sh", nullptr};
  string("s0", argv[0]);
  const std::uint64_t p = string("path", "/bin/sh"), av = at("argv", argv);
  Walked w = run(SYS_execve, {p, av, 0});
  EXPECT_EQ(w.lines, (Lines{"#0 read path+0 8 at arg0 nul", "#1 read argv+0 16 at arg1 null", "#2 read s0+0 3 at #1+0 nul"}));
}

// A structure sized by its own field: if the field changes between the
// walker's read and the visitor's copy, the copy is not what was sized.
TEST_F(AbiWalk, ASelfSizedStructureThatChangesIsIncomplete) {
  struct Handle {
    std::uint32_t bytes;
    std::int32_t type;
    unsigned char f[32];
  } handle{8, 1, {}};
  const std::uint64_t h = at("handle", handle);
  Walked still = run(SYS_open_by_handle_at, {3, h, O_RDONLY});
  EXPECT_EQ(still.lines, (Lines{"#0 read handle+0 16 at arg1", "fd 3 dirfd at arg0"}));
  EXPECT_EQ(still.result.completeness, Completeness::kComplete);

  struct Growing final : Visitor {
    Growing(Handle& target, Memory& m, const Labels& l) : handle(target), inner(l, &m) {}
    const void* access(const Access& a) noexcept override {
      handle.bytes = 32;  // another thread, just before the copy
      return inner.access(a);
    }
    void fd(const FdUse& u) noexcept override { inner.fd(u); }
    Handle& handle;
    Recorder inner;
  } growing(handle, memory, labels);
  Call call{SYS_open_by_handle_at, {3, h, O_RDONLY, 0, 0, 0}};
  const WalkResult r = walk(call, memory, growing, Phase::kEntry);
  EXPECT_EQ(r.completeness, Completeness::kIncomplete);
  EXPECT_EQ(growing.inner.lines, (Lines{"#0 read handle+0 16 at arg1", "fd 3 dirfd at arg0"}));
}

TEST_F(AbiWalk, CapgetsDataSizeFollowsTheHeadersVersion) {
  struct {
    std::uint32_t version;
    int pid;
  } header{0x20080522, 0};
  std::array<std::uint32_t, 6> data{};
  const std::uint64_t hd = at("header", header), d = at("data", data);
  EXPECT_EQ(run(SYS_capget, {hd, d}).lines, (Lines{"#0 readwrite header+0 8 at arg0", "#1 write data+0 24 at arg1"}));
  header.version = 0x19980330;
  EXPECT_EQ(run(SYS_capget, {hd, d}).lines, (Lines{"#0 readwrite header+0 8 at arg0", "#1 write data+0 12 at arg1"}));
  header.version = 1;  // EINVAL: the kernel writes its version into the header
  EXPECT_EQ(run(SYS_capget, {hd, d}, Phase::kExit, -EINVAL).lines, (Lines{"#0 readwrite header+0 8 at arg0 written 8"}));
}

}  // namespace
}  // namespace dunk::abi
