// The walker against structures built in the test's own memory: every
// access and descriptor of representative calls, compared exactly.
#include <fcntl.h>
#include <linux/aio_abi.h>
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

class WalkTest : public ::testing::Test {
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

TEST_F(WalkTest, ReadWritesTheBufferUpToTheResult) {
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

TEST_F(WalkTest, Pread64AndWrite) {
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

TEST_F(WalkTest, ReadvSpreadsTheResultOverItsVectors) {
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

TEST_F(WalkTest, WritevReadsItsVectors) {
  char a[] = "hello", b[] = "world";
  iovec iov[2] = {{a, 5}, {b, 0}};
  at("a", a);
  at("b", b);
  const std::uint64_t v = at("iov", iov);
  EXPECT_EQ(run(SYS_writev, {1, v, 2}).lines,
            (Lines{"fd 1 use at arg0", "#0 read iov+0 32 at arg1", "#1 read a+0 5 at #0+0"}));
}

TEST_F(WalkTest, TooManyIovecsAreRefusedNotWalked) {
  iovec iov[1]{};
  const std::uint64_t v = at("iov", iov);
  Walked w = run(SYS_readv, {4, v, 1025});
  EXPECT_EQ(w.result.completeness, Completeness::kIncomplete);
  EXPECT_EQ(w.lines, (Lines{"fd 4 use at arg0"}));
}

// The sandbox's case: the walker decodes nested pointers from the copy the
// visitor made, not from the program's memory, which a thread may change.
TEST_F(WalkTest, NestedPointersComeFromTheVisitorsCopy) {
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

}  // namespace
}  // namespace dunk::abi
