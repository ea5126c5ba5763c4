// A VM's whole life in one process: dunk::shutdown() gives back every
// descriptor and the vCPUs' memory, the next enter() builds a new VM, and
// a shutdown that would pull the VM from under a thread is refused.
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <string>
#include <thread>

#include "dunk/dunk.h"
#include "support.h"

namespace dunk {
namespace {

int open_descriptors() {
  int n = 0;
  DIR* dir = opendir("/proc/self/fd");
  while (dirent* e = readdir(dir)) n += e->d_name[0] != '.';
  closedir(dir);
  return n - 1;  // the directory's own
}

// The process's resident memory in KiB.
long resident_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

TEST(Lifecycle, ShutdownGivesBackEverythingAndEnterBuildsANewVm) {
  const int descriptors = open_descriptors();
  long resident_after_first = 0;
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    test::enter_or_fail();
    EXPECT_TRUE(test::in_guest_ring0());
    EXPECT_EQ(syscall(SYS_getpid), getpid());
    // A thread on a vCPU of its own, in this VM.
    std::atomic<bool> thread_in_vm{false};
    std::thread([&] { thread_in_vm = test::in_guest_ring0(); }).join();
    EXPECT_TRUE(thread_in_vm);
    // In VM mode a listing hides dunk's descriptors; outside it shows them:
    // KVM, the VM, two vCPUs, the mirror's probe.
    EXPECT_EQ(open_descriptors(), descriptors);
    leave();
    EXPECT_FALSE(in_vm());
    EXPECT_EQ(open_descriptors(), descriptors + 5);
    // The thread's exit may still be in the kernel's hands for a moment.
    Status down = shutdown();
    for (int tries = 0; !down && down.error().err == EBUSY && tries < 100; ++tries) {
      usleep(10000);
      down = shutdown();
    }
    ASSERT_TRUE(down) << down.error().what;
    EXPECT_EQ(open_descriptors(), descriptors);
    EXPECT_FALSE(in_vm());
    if (round == 0) resident_after_first = resident_kib();
  }
  // Three VMs built and torn down cost what one did (page tables, vCPU
  // areas and stacks went back to the kernel): within 1 MiB.
  EXPECT_LT(resident_kib(), resident_after_first + 1024);
}

TEST(Lifecycle, ShutdownWhileAThreadIsInVmModeIsRefused) {
  test::enter_or_fail();
  std::atomic<bool> entered{false}, may_leave{false};
  std::thread worker([&] {
    entered = in_vm();
    while (!may_leave) usleep(1000);
  });
  while (!entered) usleep(1000);
  leave();
  // The worker still runs in VM mode.
  const Status busy = shutdown();
  ASSERT_FALSE(busy);
  EXPECT_EQ(busy.error().err, EBUSY);
  // The VM is intact: this thread enters again and works.
  test::enter_or_fail();
  EXPECT_EQ(syscall(SYS_getppid), getppid());
  may_leave = true;
  worker.join();
  leave();
  Status down = shutdown();
  for (int tries = 0; !down && down.error().err == EBUSY && tries < 100; ++tries) {
    usleep(10000);
    down = shutdown();
  }
  EXPECT_TRUE(down) << down.error().what;
}

std::atomic<int> handled{0};
std::atomic<int> handled_in_vm{-1};

TEST(Lifecycle, HandlersStayInstalledAcrossShutdown) {
  struct sigaction sa {};
  sa.sa_handler = [](int) {
    handled.fetch_add(1);
    handled_in_vm = test::in_guest_ring0() ? 1 : 0;
  };
  ASSERT_EQ(sigaction(SIGUSR1, &sa, nullptr), 0);
  test::enter_or_fail();
  raise(SIGUSR1);
  EXPECT_EQ(handled.load(), 1);
  EXPECT_EQ(handled_in_vm.load(), 1);
  leave();
  ASSERT_TRUE(shutdown());
  raise(SIGUSR1);  // outside VM mode, through dunk's host handler
  EXPECT_EQ(handled.load(), 2);
  EXPECT_EQ(handled_in_vm.load(), 0);
  test::enter_or_fail();  // a new VM adopts the handler again
  raise(SIGUSR1);
  EXPECT_EQ(handled.load(), 3);
  EXPECT_EQ(handled_in_vm.load(), 1);
}

}  // namespace
}  // namespace dunk
