// Threads created in VM mode start in VM mode on a vCPU of their own, with
// their own TLS, and synchronise with each other as natively.
#include <dirent.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "core/machine.h"
#include "dunk/dunk.h"
#include "support.h"

namespace dunk {
namespace {

thread_local int tls_value = 1;

// Every descriptor, dunk's too: /proc/self/fdinfo (a listing of
// /proc/self/fd hides dunk's in VM mode).
int open_fds() {
  int n = 0;
  DIR* d = opendir("/proc/self/fdinfo");
  while (readdir(d) != nullptr) ++n;
  closedir(d);
  return n;
}

// dunk's own descriptors (a vCPU's among them), which the program's view
// of /proc/self/fdinfo does not show.
int dunks_fds() {
  const FdSet& set = core::Machine::instance().dunk_fds();
  int n = 0;
  for (int fd = 0; fd < FdSet::kLimit; ++fd) n += set.contains(fd) ? 1 : 0;
  return n;
}

std::uint64_t vcpus_created() { return core::Machine::instance().stats().vcpus.load(); }

TEST(Threads, NewThreadStartsInVmModeWithItsOwnTls) {
  test::enter_or_fail();
  tls_value = 42;
  bool child_in_vm = false;
  int child_tls = 0;
  pid_t child_tid = 0;
  std::thread t([&] {
    child_in_vm = in_vm();
    child_tls = tls_value;
    tls_value = 7;
    child_tid = static_cast<pid_t>(syscall(SYS_gettid));
  });
  t.join();
  EXPECT_TRUE(child_in_vm);
  EXPECT_EQ(child_tls, 1);   // a fresh TLS block, initialised
  EXPECT_EQ(tls_value, 42);  // ours untouched
  EXPECT_NE(child_tid, static_cast<pid_t>(syscall(SYS_gettid)));
  EXPECT_GT(child_tid, 0);
  leave();
}

TEST(Threads, ConditionVariablesAndAtomicsAcrossVcpus) {
  test::enter_or_fail();
  std::mutex m;
  std::condition_variable cv;
  int turn = 0;
  constexpr int kRounds = 200;
  std::atomic<long> sum{0};
  auto player = [&](int me) {
    for (int i = 0; i < kRounds; ++i) {
      std::unique_lock lock(m);
      cv.wait(lock, [&] { return turn % 2 == me; });
      ++turn;
      sum.fetch_add(me + 1);
      cv.notify_all();
    }
  };
  std::thread a(player, 0), b(player, 1);
  a.join();
  b.join();
  EXPECT_EQ(turn, 2 * kRounds);
  EXPECT_EQ(sum.load(), 3L * kRounds);
  leave();
}

long vm_size_kib() {
  FILE* f = std::fopen("/proc/self/status", "r");
  char line[256];
  long kib = -1;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::sscanf(line, "VmSize: %ld kB", &kib) == 1) break;
  }
  std::fclose(f);
  return kib;
}

TEST(Threads, ThousandsInSequenceReuseVcpusAndLeakNothing) {
  test::enter_or_fail();
  std::atomic<int> ran{0};
  auto create_and_join = [&](int n) {
    for (int i = 0; i < n; ++i) {
      std::thread t([&] {
        if (in_vm()) ran.fetch_add(1);
      });
      t.join();
    }
  };
  // The first threads grow the vCPU pool and glibc's stack cache; after
  // that, nothing may grow with the number of threads.
  create_and_join(100);
  const int fds = open_fds();
  const int dunk_fds = dunks_fds();
  const long vm_kib = vm_size_kib();
  const std::uint64_t vcpus = vcpus_created();
  // 2,000 in the test tiers, 10,000 in the stress run: a leak of one page
  // per thread shows as 8 MiB, of a descriptor or a vCPU as 2,000.
  const int kThreads = test::rounds("DUNK_TEST_THREADS", 2000, 10000);
  create_and_join(kThreads);
  EXPECT_EQ(ran.load(), kThreads + 100);
  // Joined threads hand their vCPU on; the pool grows only when a thread is
  // started before its predecessor has been reaped by the kernel (a matter
  // of scheduling, so a few may be added), never with the number of
  // threads; each vCPU is one fd of dunk's, which the program does not see.
  const std::uint64_t new_vcpus = vcpus_created() - vcpus;
  EXPECT_LE(new_vcpus, 16u);
  EXPECT_EQ(open_fds(), fds);
  EXPECT_EQ(dunks_fds(), dunk_fds + static_cast<int>(new_vcpus));
  EXPECT_LE(vm_size_kib() - vm_kib, 16 * 1024);
  leave();
}

// A thread made by the raw clone system call, without TLS of its own
// (no CLONE_SETTLS): in VM mode too, and signals sent to it reach it there.
std::atomic<int> raw_thread_in_guest{-1};
std::atomic<pid_t> raw_thread_tid{0};
std::atomic<pid_t> raw_signal_tid{0};
std::atomic<bool> raw_thread_release{false};

int raw_thread(void*) {
  raw_thread_tid.store(static_cast<pid_t>(syscall(SYS_gettid)));
  raw_thread_in_guest.store(test::in_guest_ring0() ? 1 : 0);
  while (!raw_thread_release.load()) {
  }
  return 0;
}

TEST(Threads, RawCloneWithoutTlsRunsInVmModeAndGetsItsSignals) {
  struct sigaction sa {};
  sa.sa_handler = [](int) {
    if (test::in_guest_ring0()) raw_signal_tid.store(static_cast<pid_t>(syscall(SYS_gettid)));
  };
  ASSERT_EQ(sigaction(SIGUSR1, &sa, nullptr), 0);
  test::enter_or_fail();
  constexpr std::size_t kStack = 256 * 1024;
  static char stack[kStack] __attribute__((aligned(16)));
  static pid_t child_tid = 1;  // cleared by the kernel when the thread exits
  const int flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM |
                    CLONE_CHILD_CLEARTID;
  int tid = clone(raw_thread, stack + kStack, flags, nullptr, nullptr, nullptr, &child_tid);
  ASSERT_GT(tid, 0) << strerror(errno);
  while (raw_thread_tid.load() == 0) {
  }
  EXPECT_EQ(raw_thread_tid.load(), tid);
  EXPECT_EQ(raw_thread_in_guest.load(), 1);
  ASSERT_EQ(syscall(SYS_tgkill, getpid(), tid, SIGUSR1), 0);
  while (raw_signal_tid.load() == 0) {
  }
  EXPECT_EQ(raw_signal_tid.load(), tid);
  raw_thread_release.store(true);
  while (__atomic_load_n(&child_tid, __ATOMIC_ACQUIRE) != 0) {
    syscall(SYS_futex, &child_tid, FUTEX_WAIT, tid, nullptr, nullptr, 0);
  }
}

TEST(Threads, SixtyFourAliveAtOnce) {
  test::enter_or_fail();
  constexpr int kThreads = 64;
  std::atomic<int> arrived{0};
  std::atomic<bool> release{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      if (in_vm()) arrived.fetch_add(1);
      while (!release.load()) std::this_thread::yield();
    });
  }
  while (arrived.load() < kThreads) std::this_thread::yield();
  release = true;
  for (auto& t : threads) t.join();
  EXPECT_EQ(arrived.load(), kThreads);
  leave();
}

TEST(Threads, ExitGroupEndsAllVcpuThreads) {
  pid_t pid = fork();
  if (pid == 0) {
    if (!enter()) _exit(100);
    for (int i = 0; i < 4; ++i) {
      std::thread([] {
        for (;;) std::this_thread::yield();  // busy in the guest
      }).detach();
    }
    usleep(20000);
    std::exit(23);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 23);
}

// At KVM's limit of vCPUs per VM (lowered here with DUNK_MAX_VCPUS), one
// more thread alive at once cannot be created: pthread_create fails with
// EAGAIN and dunk says why; the program goes on.
TEST(Threads, BeyondKvmsVcpuLimitThreadCreationFailsWithEagainAndSaysWhy) {
  test::ChildResult r = test::run_in_child([] {
    setenv("DUNK_MAX_VCPUS", "3", 1);
    if (!enter()) return 10;
    std::atomic<bool> release{false};
    auto park = [](void* flag) -> void* {
      while (!static_cast<std::atomic<bool>*>(flag)->load()) usleep(1000);
      return nullptr;
    };
    pthread_t a, b, c;
    if (pthread_create(&a, nullptr, park, &release) != 0) return 11;
    if (pthread_create(&b, nullptr, park, &release) != 0) return 12;
    const int third = pthread_create(&c, nullptr, park, &release);
    release = true;
    pthread_join(a, nullptr);
    pthread_join(b, nullptr);
    if (third != EAGAIN) return 13;
    // Once the others are gone, their vCPUs serve new threads again.
    if (pthread_create(&c, nullptr, park, &release) != 0) return 14;
    pthread_join(c, nullptr);
    return test::in_guest_ring0() ? 0 : 15;
  });
  EXPECT_TRUE(r.exited) << r.output;
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("dunk: cannot give a new thread a vCPU: KVM allows 3 vCPUs per VM"), std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace dunk
