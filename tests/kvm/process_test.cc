// fork, vfork/posix_spawn, execve and threads from VM mode work: a fork
// child continues outside VM mode, or, with EnterOptions::follow_fork (what
// `dunk exec` uses), in a VM of its own that carries the parent's page
// tables.
#include <gtest/gtest.h>
#include <pthread.h>
#include <spawn.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "dunk/dunk.h"
#include "dunk/paging.h"
#include "support.h"

extern char** environ;

namespace dunk {
namespace {

std::string read_all(int fd) {
  std::string out;
  char buf[512];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  return out;
}

TEST(Process, ForkChildRunsOutsideVmModeAndParentStaysIn) {
  test::enter_or_fail();
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  volatile int on_stack = 1234;
  pid_t pid = fork();
  if (pid == 0) {
    // The child is a normal process again, with the parent's memory.
    char line[64];
    int n = std::snprintf(line, sizeof line, "child in_vm=%d stack=%d", in_vm() ? 1 : 0, on_stack);
    (void)!write(fds[1], line, static_cast<std::size_t>(n));
    _exit(7);
  }
  ASSERT_GT(pid, 0);
  close(fds[1]);
  EXPECT_EQ(read_all(fds[0]), "child in_vm=0 stack=1234");
  close(fds[0]);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 7);
  EXPECT_TRUE(in_vm());
  leave();
}

TEST(Process, ForkChildCanEnterAVmOfItsOwn) {
  test::enter_or_fail();
  pid_t pid = fork();
  if (pid == 0) {
    if (in_vm()) _exit(1);
    if (!enter()) _exit(2);
    if (!in_vm()) _exit(3);
    leave();
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  leave();
}

TEST(Process, ForkChildFollowsIntoAVmOfItsOwn) {
  ASSERT_TRUE(enter(EnterOptions{.follow_fork = true}));
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  volatile int on_stack = 4321;
  pid_t pid = fork();
  if (pid == 0) {
    // Memory, stack and registers as the parent left them; a thread and a
    // grandchild of its own, all in VM mode.
    std::atomic<bool> thread_in_vm{false};
    std::thread t([&] { thread_in_vm = test::in_guest_ring0(); });
    t.join();
    int grandchild_status = -1;
    pid_t grandchild = fork();
    if (grandchild == 0) _exit(test::in_guest_ring0() ? 9 : 8);
    waitpid(grandchild, &grandchild_status, 0);
    char line[96];
    int n = std::snprintf(line, sizeof line, "child vm=%d stack=%d thread=%d grandchild=%d",
                          test::in_guest_ring0() ? 1 : 0, on_stack, thread_in_vm ? 1 : 0,
                          WIFEXITED(grandchild_status) ? WEXITSTATUS(grandchild_status) : -1);
    (void)!write(fds[1], line, static_cast<std::size_t>(n));
    _exit(7);
  }
  ASSERT_GT(pid, 0);
  close(fds[1]);
  EXPECT_EQ(read_all(fds[0]), "child vm=1 stack=4321 thread=1 grandchild=9");
  close(fds[0]);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 7);
  EXPECT_TRUE(test::in_guest_ring0());
}

TEST(Process, ForkChildInVmModeDiesOfItsFault) {
  ASSERT_TRUE(enter(EnterOptions{.follow_fork = true}));
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  if (pid == 0) {
    if (!test::in_guest_ring0()) _exit(1);
    (void)!write(fds[1], "in the guest", 12);
    *static_cast<volatile int*>(nullptr) = 1;
    _exit(2);
  }
  close(fds[1]);
  EXPECT_EQ(read_all(fds[0]), "in the guest");
  close(fds[0]);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << status;
  EXPECT_EQ(WTERMSIG(status), SIGSEGV);
}

// A fork child that closes every descriptor above 2 (as subprocess, daemons
// and closefrom() do) goes on running in its own VM, whose descriptors the
// program cannot close.
TEST(Process, ForkChildClosingEveryDescriptorStaysInVmMode) {
  ASSERT_TRUE(enter(EnterOptions{.follow_fork = true}));
  test::ChildResult r = test::run_in_child([] {
    pid_t pid = fork();
    if (pid == 0) {
      if (syscall(SYS_close_range, 3u, ~0u, 0u) != 0) _exit(10);
      for (int fd = 3; fd < 1024; ++fd) close(fd);
      std::printf("child alive vm=%d\n", test::in_guest_ring0() ? 1 : 0);
      std::fflush(stdout);
      _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
  });
  EXPECT_TRUE(r.exited) << r.output;
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "child alive vm=1\n");
}

TEST(Process, PosixSpawnRunsAProgram) {
  test::enter_or_fail();
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  const char* argv[] = {"/bin/echo", "spawned", "from", "vm", nullptr};
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, "/bin/echo", &actions, nullptr, const_cast<char**>(argv), environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  EXPECT_EQ(read_all(fds[0]), "spawned from vm\n");
  close(fds[0]);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  leave();
}

TEST(Process, VforkAndExec) {
  test::enter_or_fail();
  pid_t pid = vfork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", "exit 9", static_cast<char*>(nullptr));
    _exit(127);
  }
  ASSERT_GT(pid, 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 9);
  EXPECT_TRUE(in_vm());
  leave();
}

TEST(Process, ExecveFromVmModeReplacesTheImage) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    if (!enter()) _exit(100);
    execl("/bin/sh", "sh", "-c", "echo replaced; exit 5", static_cast<char*>(nullptr));
    _exit(101);
  }
  close(fds[1]);
  EXPECT_EQ(read_all(fds[0]), "replaced\n");
  close(fds[0]);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 5);
}

TEST(Process, ExecveFromAMultithreadedProcess) {
  test::ChildResult r = test::run_in_child([] {
    if (!enter()) return 100;
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    for (int i = 0; i < 3; ++i) {
      threads.emplace_back([&] {
        while (!stop.load()) sched_yield();
      });
    }
    char sh[] = "/bin/sh", dash_c[] = "-c", script[] = "echo exec-ok; exit 6";
    char* argv[] = {sh, dash_c, script, nullptr};
    execve(sh, argv, environ);
    return 101;  // the other threads die with the old image; nothing joins them
  });
  EXPECT_TRUE(r.exited) << r.output;
  EXPECT_EQ(r.exit_code, 6);
  EXPECT_EQ(r.output, "exec-ok\n");
}

TEST(Process, WaitFamilySeesExitStatusesAndSignals) {
  ASSERT_TRUE(enter(EnterOptions{.follow_fork = true}));
  pid_t exits = fork();
  if (exits == 0) _exit(5);
  pid_t killed = fork();
  if (killed == 0) {
    for (;;) pause();
  }
  siginfo_t info{};
  ASSERT_EQ(waitid(P_PID, static_cast<id_t>(exits), &info, WEXITED), 0);
  EXPECT_EQ(info.si_pid, exits);
  EXPECT_EQ(info.si_code, CLD_EXITED);
  EXPECT_EQ(info.si_status, 5);
  ASSERT_EQ(kill(killed, SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(wait4(killed, &status, 0, nullptr), killed);
  EXPECT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGTERM);
  EXPECT_EQ(waitpid(-1, &status, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
}

// Forks while other threads are inside dunk's locked sections (changing
// signal actions, creating threads and vCPUs): a child must not inherit a
// lock that some thread of the parent held, and hang building its VM.
TEST(Process, ForkWhileOtherThreadsHoldDunksLocksDoesNotHangTheChild) {
  ASSERT_TRUE(enter(EnterOptions{.follow_fork = true}));
  std::atomic<bool> stop{false};
  std::thread sigactions([&stop] {
    struct sigaction act {};
    act.sa_handler = SIG_IGN;
    while (!stop.load()) sigaction(SIGUSR2, &act, nullptr);
  });
  std::thread spawner([&stop] {
    while (!stop.load()) std::thread([] {}).join();
  });
  constexpr int kForks = 60;
  int hung = 0, failed = 0;
  for (int i = 0; i < kForks && hung == 0; ++i) {
    pid_t pid = fork();
    if (pid == 0) {
      struct sigaction act {};
      act.sa_handler = SIG_DFL;
      if (sigaction(SIGUSR2, &act, nullptr) != 0) _exit(2);
      bool thread_in_vm = false;
      std::thread([&thread_in_vm] { thread_in_vm = test::in_guest_ring0(); }).join();
      _exit(thread_in_vm && test::in_guest_ring0() ? 0 : 3);
    }
    ASSERT_GT(pid, 0);
    int status = 0;
    // A child that needs more than 60 s (emulated) to start has hung.
    for (int waited = 0; waitpid(pid, &status, WNOHANG) == 0; ++waited) {
      if (waited == 6000) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        ++hung;
        break;
      }
      usleep(10000);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failed;
  }
  stop = true;
  sigactions.join();
  spawner.join();
  EXPECT_EQ(hung, 0);
  EXPECT_EQ(failed, 0);
}

// A fork child following the fork keeps what the program did to its page
// tables through the privileged API (dunk/paging.h), whatever the host's
// mappings say: an alias made with map(), a page made read-only with
// protect(), a page unmapped with unmap(), and a clone, which maps the
// alias too. Its writes go to its own copy of the memory.
TEST(Process, ForkChildKeepsThePageTableEdits) {
  ASSERT_TRUE(enter(EnterOptions{.follow_fork = true}));
  constexpr std::size_t kPage = 4096;
  AddressSpace& as = AddressSpace::process();
  auto* data = static_cast<char*>(
      mmap(nullptr, 3 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0));
  ASSERT_NE(data, MAP_FAILED);
  // The alias's addresses: reserved on the host, so that nothing else goes there.
  auto* alias = static_cast<char*>(mmap(nullptr, kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(alias, MAP_FAILED);
  data[0] = 'a';
  ASSERT_TRUE(as.map(alias, data, kPage, kRead | kWrite, PageSize::k4K));
  ASSERT_TRUE(as.protect(data + kPage, kPage, kRead));
  ASSERT_TRUE(as.unmap(data + 2 * kPage, kPage));
  flush_tlb();
  auto clone = as.clone(CloneMode::kCopy);
  ASSERT_TRUE(clone);
  ASSERT_EQ(alias[0], 'a');
  const pid_t pid = fork();
  if (pid == 0) {
    int code = 0;
    auto read_only = as.lookup(data + kPage);
    auto in_clone = (*clone)->lookup(alias);
    auto alias_page = as.lookup(alias);
    if (!in_vm()) {
      code = 10;
    } else if (alias[0] != 'a') {
      code = 11;
    } else if (!read_only || (read_only->access & kWrite) != 0 || !read_only->program_owned) {
      code = 12;
    } else if (as.lookup(data + 2 * kPage)) {
      code = 13;
    } else if (!in_clone || !alias_page || in_clone->physical != alias_page->physical) {
      code = 14;
    } else {
      alias[0] = 'b';  // the same frame as data[0], in the child's copy
      if (data[0] != 'b') code = 15;
    }
    _exit(code);
  }
  ASSERT_GT(pid, 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(data[0], 'a');
  EXPECT_TRUE(in_vm());
  leave();
}

// A signal sent to a fork child at once, while dunk builds its VM (or even
// before the child has run at all): the child's handler runs in VM mode, in
// ring 0, as every handler of a program in VM mode does, never on the host
// in dunk's code.
volatile sig_atomic_t child_handler_ran = 0;
volatile sig_atomic_t child_handler_in_ring0 = 0;
void note_where_the_handler_runs(int) {
  child_handler_in_ring0 = test::in_guest_ring0() ? 1 : 0;
  child_handler_ran = 1;
}

TEST(Process, SignalSentRightAfterForkReachesTheChildInVmMode) {
  ASSERT_TRUE(enter(EnterOptions{.follow_fork = true}));
  struct sigaction act {};
  act.sa_handler = note_where_the_handler_runs;
  ASSERT_EQ(sigaction(SIGUSR1, &act, nullptr), 0);
  sigset_t usr1, old;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  constexpr int kRounds = 20;
  int on_host = 0, failed = 0;
  for (int i = 0; i < kRounds; ++i) {
    const pid_t pid = fork();
    if (pid == 0) {
      // Until the handler has run (it may have before this line).
      sigprocmask(SIG_BLOCK, &usr1, &old);
      while (child_handler_ran == 0) sigsuspend(&old);
      _exit(child_handler_in_ring0 != 0 && in_vm() ? 0 : 3);
    }
    ASSERT_GT(pid, 0);
    kill(pid, SIGUSR1);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status)) {
      ++failed;
    } else if (WEXITSTATUS(status) == 3) {
      ++on_host;
    } else if (WEXITSTATUS(status) != 0) {
      ++failed;
    }
  }
  EXPECT_EQ(on_host, 0);
  EXPECT_EQ(failed, 0);
  signal(SIGUSR1, SIG_DFL);
  leave();
}

TEST(Process, ThreadsCreatedInVmModeRunAndJoin) {
  test::enter_or_fail();
  std::atomic<int> counter{0};
  std::thread workers[4];
  for (auto& w : workers) {
    w = std::thread([&counter] {
      for (int i = 0; i < 1000; ++i) counter.fetch_add(1);
    });
  }
  for (auto& w : workers) w.join();
  EXPECT_EQ(counter.load(), 4000);
  EXPECT_TRUE(in_vm());
  leave();
}

}  // namespace
}  // namespace dunk
