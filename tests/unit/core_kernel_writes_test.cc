// What the kernel wrote for a call, reported to the dirty state after the
// call (src/core/syscalls/kernel_writes.cc), driven through the system-call
// table as the monitor drives it, against fakes of the guest and of the
// kernel (fake_guest.h): the buffers of read, readv, pread64, recvmsg and
// getdents64 at the lengths the kernel returned; nothing for a failed call
// or while no reader has cleaned; the writers that cannot be bounded
// reported as such.
#include <linux/aio_abi.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "fake_guest.h"

namespace dunk::core {
namespace {

using test::FakeDirtyBits;
using test::FakeGuest;
using Range = FakeDirtyBits::Range;

Syscall call(long nr, std::uint64_t a0 = 0, std::uint64_t a1 = 0, std::uint64_t a2 = 0, std::uint64_t a3 = 0,
             std::uint64_t a4 = 0) {
  return Syscall::make(nr, {a0, a1, a2, a3, a4, 0});
}

std::vector<Range> sorted(std::vector<Range> v) {
  std::sort(v.begin(), v.end());
  return v;
}

TEST(CoreKernelWrites, ReadReportsTheBytesTheKernelReturned) {
  FakeGuest g;
  const std::uint64_t buffer = g.memory.add(8192);
  g.host.forward_result = [](const Syscall&) { return 5000L; };
  const Outcome out = g.run(call(SYS_read, 3, buffer, 8192));
  EXPECT_EQ(out.value(), 5000);
  ASSERT_EQ(g.host.forwarded.size(), 1u);
  EXPECT_EQ(g.dirty.wrote, (std::vector<Range>{{buffer, 5000}}));
  EXPECT_TRUE(g.dirty.later.empty());
  EXPECT_EQ(g.dirty.unseen + g.dirty.unbounded, 0);
}

TEST(CoreKernelWrites, Pread64ReportsTheBytesTheKernelReturned) {
  FakeGuest g;
  const std::uint64_t buffer = g.memory.add(100);
  g.host.forward_result = [](const Syscall&) { return 17L; };
  g.run(call(SYS_pread64, 3, buffer, 100, 4096));
  EXPECT_EQ(g.dirty.wrote, (std::vector<Range>{{buffer, 17}}));
}

TEST(CoreKernelWrites, ReadvReportsTheReturnedBytesOverItsIovecsInOrder) {
  FakeGuest g;
  const std::uint64_t a = g.memory.add(10), b = g.memory.add(100), c = g.memory.add(100);
  const iovec iov[3] = {{reinterpret_cast<void*>(a), 10}, {reinterpret_cast<void*>(b), 100},
                        {reinterpret_cast<void*>(c), 100}};
  const std::uint64_t vec = g.memory.add_object(iov);
  g.host.forward_result = [](const Syscall&) { return 50L; };
  g.run(call(SYS_readv, 3, vec, 3));
  // 10 into the first, 40 into the second, none into the third.
  EXPECT_EQ(g.dirty.wrote, (std::vector<Range>{{a, 10}, {b, 40}}));
}

TEST(CoreKernelWrites, RecvmsgReportsDataNameControlAndTheHeaderItsKernelUpdated) {
  FakeGuest g;
  const std::uint64_t a = g.memory.add(16), b = g.memory.add(64);
  const std::uint64_t name = g.memory.add(sizeof(sockaddr_storage));
  const std::uint64_t control = g.memory.add(64);
  const iovec iov[2] = {{reinterpret_cast<void*>(a), 16}, {reinterpret_cast<void*>(b), 64}};
  const std::uint64_t vec = g.memory.add_object(iov);
  msghdr header{};
  header.msg_name = reinterpret_cast<void*>(name);
  header.msg_namelen = sizeof(sockaddr_storage);
  header.msg_iov = reinterpret_cast<iovec*>(vec);
  header.msg_iovlen = 2;
  header.msg_control = reinterpret_cast<void*>(control);
  header.msg_controllen = 64;
  const std::uint64_t msg = g.memory.add_object(header);
  // The kernel: 20 bytes of data, a 16-byte address, 24 bytes of control
  // data (what it writes back into the header).
  g.host.forward_result = [&](const Syscall&) {
    msghdr* h = reinterpret_cast<msghdr*>(msg);
    h->msg_namelen = 16;
    h->msg_controllen = 24;
    return 20L;
  };
  g.run(call(SYS_recvmsg, 3, msg, 0));
  const std::vector<Range> got = sorted(g.dirty.wrote);
  auto has = [&](Range r) { return std::find(got.begin(), got.end(), r) != got.end(); };
  EXPECT_TRUE(has({a, 16}));
  EXPECT_TRUE(has({b, 4}));
  EXPECT_TRUE(has({name, 16}));
  EXPECT_TRUE(has({control, 24}));
  // The header's lengths and flags are the kernel's writes too.
  bool header_reported = false;
  for (const Range& r : got) header_reported |= r.start >= msg && r.start < msg + sizeof(msghdr);
  EXPECT_TRUE(header_reported);
  // Nothing outside what was written.
  for (const Range& r : got) {
    const bool inside = (r.start >= a && r.start + r.length <= a + 16) || (r.start >= b && r.start + r.length <= b + 4) ||
                        (r.start >= name && r.start + r.length <= name + 16) ||
                        (r.start >= control && r.start + r.length <= control + 24) ||
                        (r.start >= msg && r.start + r.length <= msg + sizeof(msghdr));
    EXPECT_TRUE(inside) << std::hex << r.start << " +" << std::dec << r.length;
  }
}

TEST(CoreKernelWrites, Getdents64ReportsTheRecordsTheKernelReturned) {
  FakeGuest g;
  const std::uint64_t buffer = g.memory.add(4096);
  // Not a listing of dunk's /proc/self/fd: forwarded as it is.
  g.host.forward_result = [](const Syscall&) { return 312L; };
  g.run(call(SYS_getdents64, 3, buffer, 4096));
  ASSERT_EQ(g.host.forwarded.size(), 1u);
  EXPECT_EQ(g.dirty.wrote, (std::vector<Range>{{buffer, 312}}));
}

TEST(CoreKernelWrites, AFailedCallOrAnEmptyReadReportsNothing) {
  FakeGuest g;
  const std::uint64_t buffer = g.memory.add(64);
  g.host.forward_result = [](const Syscall&) { return static_cast<long>(-EAGAIN); };
  g.run(call(SYS_read, 3, buffer, 64));
  g.host.forward_result = [](const Syscall&) { return 0L; };
  g.run(call(SYS_read, 3, buffer, 64));
  EXPECT_TRUE(g.dirty.wrote.empty());
  EXPECT_EQ(g.dirty.unseen + g.dirty.unbounded, 0);
}

TEST(CoreKernelWrites, NoWalkWhileNoReaderHasCleaned) {
  FakeGuest g;
  g.dirty.watch = false;
  const std::uint64_t a = g.memory.add(10);
  const iovec iov[1] = {{reinterpret_cast<void*>(a), 10}};
  const std::uint64_t vec = g.memory.add_object(iov);
  g.host.forward_result = [](const Syscall&) { return 10L; };
  g.run(call(SYS_readv, 3, vec, 1));
  EXPECT_TRUE(g.dirty.wrote.empty());
  EXPECT_EQ(g.dirty.watch_checks, 1);
  // The walk would have read the iovec array: no host call at all here.
  EXPECT_TRUE(g.host.calls.empty());
}

TEST(CoreKernelWrites, HotCallsTheSchemaDescribesAreNeverUnseenWrites) {
  FakeGuest g;
  const std::uint64_t word = g.memory.add(8), ts = g.memory.add(16), termios = g.memory.add(64);
  g.run(call(SYS_futex, word, 0 /* FUTEX_WAIT */, 0, 0));
  g.run(call(SYS_futex, word, 1 /* FUTEX_WAKE */, 1));
  g.run(call(SYS_clock_gettime, 1, ts));
  g.run(call(SYS_ioctl, 1, TCGETS, termios));
  g.run(call(SYS_fcntl, 3, 1 /* F_GETFD */));
  g.run(call(SYS_sched_yield));
  EXPECT_EQ(g.dirty.unseen, 0);
  EXPECT_EQ(g.dirty.unbounded, 0);
  // (TCGETS fills the kernel's struct termios: 36 bytes, not glibc's 60.)
  EXPECT_EQ(sorted(g.dirty.wrote), sorted({{ts, 16}, {termios, 36}}));
}

TEST(CoreKernelWrites, AnIoctlTheSchemaCannotDescribeMakesTheNextPassBlind) {
  FakeGuest g;
  const std::uint64_t arg = g.memory.add(64);
  g.run(call(SYS_ioctl, 3, 0x7a01 /* a driver's number without _IOC direction */, arg));
  EXPECT_EQ(g.dirty.unseen, 1);
  EXPECT_EQ(g.dirty.unbounded, 0);
}

TEST(CoreKernelWrites, AsynchronousWritersAreAlwaysDirtyEvenBeforeTheFirstClean) {
  FakeGuest g;
  g.dirty.watch = false;
  const std::uint64_t rseq = g.memory.add(32), tid = g.memory.add(4);
  g.run(call(SYS_rseq, rseq, 32, 0, 0x53053053));
  g.run(call(SYS_set_tid_address, tid));
  EXPECT_EQ(sorted(g.dirty.later), sorted({{rseq, 32}, {tid, 4}}));
  EXPECT_TRUE(g.dirty.wrote.empty());
}

TEST(CoreKernelWrites, IoSubmitBuffersAreAlwaysDirty) {
  FakeGuest g;
  const std::uint64_t data = g.memory.add(512);
  iocb cb{};
  cb.aio_lio_opcode = IOCB_CMD_PREAD;
  cb.aio_fildes = 3;
  cb.aio_buf = data;
  cb.aio_nbytes = 512;
  const std::uint64_t block = g.memory.add_object(cb);
  const std::uint64_t list = g.memory.add_object(block);
  g.host.forward_result = [](const Syscall&) { return 1L; };
  g.run(call(SYS_io_submit, 77, 1, list));
  EXPECT_EQ(g.dirty.later, (std::vector<Range>{{data, 512}}));
}

TEST(CoreKernelWrites, IoUringAndAioContextsAreUnboundedWriters) {
  FakeGuest g;
  g.dirty.watch = false;
  const std::uint64_t params = g.memory.add(120), ctx = g.memory.add(8);
  g.host.forward_result = [](const Syscall&) { return 5L; };
  g.run(call(SYS_io_uring_setup, 8, params));
  EXPECT_EQ(g.dirty.unbounded, 1);
  g.host.forward_result = [](const Syscall&) { return 0L; };
  g.run(call(SYS_io_setup, 8, ctx));
  EXPECT_EQ(g.dirty.unbounded, 2);
  // A failed setup registers nothing.
  g.host.forward_result = [](const Syscall&) { return static_cast<long>(-ENOSYS); };
  g.run(call(SYS_io_uring_setup, 8, params));
  EXPECT_EQ(g.dirty.unbounded, 2);
}

TEST(CoreKernelWrites, AVforkChildsWritesAreUnseenWrites) {
  FakeGuest g;
  g.threads.start_result = 999;
  g.run(call(SYS_vfork));
  EXPECT_EQ(g.dirty.unseen, 1);
  EXPECT_EQ(g.dirty.unbounded, 0);
  // fork: the child's memory is its own.
  g.run(call(SYS_fork));
  EXPECT_EQ(g.dirty.unseen, 1);
  EXPECT_EQ(g.dirty.unbounded, 0);
  // clone(CLONE_VM | CLONE_VFORK), as posix_spawn makes it.
  g.run(call(SYS_clone, CLONE_VM | CLONE_VFORK | SIGCHLD, g.memory.add(64) + 64));
  EXPECT_EQ(g.dirty.unseen, 2);
  EXPECT_EQ(g.dirty.unbounded, 0);
}

}  // namespace
}  // namespace dunk::core
