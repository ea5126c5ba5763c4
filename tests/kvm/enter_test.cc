// Entering and leaving VM mode: the program goes on unchanged.
#include <gtest/gtest.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <string>

#include "dunk/dunk.h"
#include "guest/abi.h"
#include "support.h"

namespace dunk {
namespace {

long ping() { return syscall(DUNK_SYSCALL_PING); }

TEST(Enter, RunsInTheVmAndComesBack) {
  EXPECT_FALSE(in_vm());
  EXPECT_EQ(ping(), -1);  // outside VM mode dunk's calls are unknown: ENOSYS
  test::enter_or_fail();
  EXPECT_TRUE(in_vm());
  EXPECT_EQ(ping(), DUNK_SYSCALL_PING);
  leave();
  EXPECT_FALSE(in_vm());
  EXPECT_EQ(ping(), -1);
}

TEST(Enter, SystemCallsReachTheHost) {
  pid_t native_pid = getpid();
  test::enter_or_fail();
  EXPECT_EQ(getpid(), native_pid);
  EXPECT_EQ(syscall(SYS_gettid), native_pid);
  // errno semantics: a failing call sets errno in the program's TLS.
  errno = 0;
  EXPECT_EQ(close(-1), -1);
  EXPECT_EQ(errno, EBADF);
  leave();
}

TEST(Enter, KeepsStackRegistersAndFloatingPointState) {
  volatile double x = 1.5;
  volatile int local = 42;
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%d", local);
  test::enter_or_fail();
  EXPECT_EQ(local, 42);
  EXPECT_STREQ(buffer, "42");
  EXPECT_DOUBLE_EQ(std::sqrt(x * x), 1.5);
  leave();
}

TEST(Enter, ClocksWorkThroughTheVdso) {
  timespec before{}, inside{}, after{};
  ASSERT_EQ(clock_gettime(CLOCK_MONOTONIC, &before), 0);
  test::enter_or_fail();
  ASSERT_EQ(clock_gettime(CLOCK_MONOTONIC, &inside), 0);
  time_t t = time(nullptr);
  leave();
  ASSERT_EQ(clock_gettime(CLOCK_MONOTONIC, &after), 0);
  auto ns = [](const timespec& ts) { return ts.tv_sec * 1'000'000'000LL + ts.tv_nsec; };
  EXPECT_LE(ns(before), ns(inside));
  EXPECT_LE(ns(inside), ns(after));
  EXPECT_GT(t, 1'600'000'000);
}

}  // namespace
}  // namespace dunk
