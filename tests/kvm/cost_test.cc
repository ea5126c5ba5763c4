// A forwarded system call costs exactly one KVM_RUN round trip plus the call
// itself. Counted, not timed.
#include <gtest/gtest.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>

#include "core/machine.h"
#include "dunk/dunk.h"
#include "support.h"

namespace dunk {
namespace {

constexpr int kCalls = 1000;

std::uint64_t kvm_runs() { return core::Machine::instance().stats().kvm_runs.load(); }

TEST(Cost, OneExitPerForwardedSystemCall) {
  test::enter_or_fail();
  leave();
  // The difference between a loop of kCalls getpids and an empty one.
  std::uint64_t before = kvm_runs();
  test::enter_or_fail();
  for (int i = 0; i < kCalls; ++i) syscall(SYS_getpid);
  leave();
  std::uint64_t loop = kvm_runs() - before;
  before = kvm_runs();
  test::enter_or_fail();
  leave();
  std::uint64_t empty = kvm_runs() - before;
  EXPECT_EQ(loop - empty, static_cast<std::uint64_t>(kCalls));
}

// The host side of the same: KVM_RUN and getpid, two host system calls,
// counted by the raw_syscalls:sys_enter tracepoint (needs tracefs and the
// right to open tracepoint counters, e.g. root).
TEST(Cost, TwoHostSystemCallsPerForwardedSystemCall) {
  long id = -1;
  if (FILE* f = std::fopen("/sys/kernel/tracing/events/raw_syscalls/sys_enter/id", "r")) {
    if (std::fscanf(f, "%ld", &id) != 1) id = -1;
    std::fclose(f);
  }
  ASSERT_GE(id, 0) << "tracefs (/sys/kernel/tracing) is needed to count host system calls";
  perf_event_attr attr{};
  attr.type = PERF_TYPE_TRACEPOINT;
  attr.size = sizeof attr;
  attr.config = static_cast<std::uint64_t>(id);
  int fd = static_cast<int>(syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0));
  ASSERT_GE(fd, 0) << "perf_event_open(raw_syscalls:sys_enter): " << std::strerror(errno);
  auto count = [fd] {
    std::uint64_t n = 0;
    EXPECT_EQ(read(fd, &n, sizeof n), static_cast<ssize_t>(sizeof n));
    return n;
  };
  // On one CPU: a thread the host moves to another CPU costs one more call
  // at its next entry, the vCPU's TSC_AUX following the host's CPU number
  // (Monitor::follow_host_cpu): not a cost of forwarding.
  cpu_set_t original, one;
  ASSERT_EQ(sched_getaffinity(0, sizeof original, &original), 0);
  CPU_ZERO(&one);
  CPU_SET(sched_getcpu(), &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
  test::enter_or_fail();
  leave();
  std::uint64_t before = count();
  test::enter_or_fail();
  for (int i = 0; i < kCalls; ++i) syscall(SYS_getpid);
  leave();
  std::uint64_t loop = count() - before;
  before = count();
  test::enter_or_fail();
  leave();
  std::uint64_t empty = count() - before;
  EXPECT_EQ(loop - empty, 2u * kCalls);
  close(fd);
  sched_setaffinity(0, sizeof original, &original);
}

}  // namespace
}  // namespace dunk
