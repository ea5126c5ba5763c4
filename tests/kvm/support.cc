#include "support.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "dunk/dunk.h"

namespace dunk::test {

void enter_or_fail() {
  Status s = enter();
  if (!s) {
    char buf[512];
    FAIL() << "dunk::enter() failed: " << describe(s.error(), buf, sizeof buf);
  }
  ASSERT_TRUE(in_vm());
}

void shutdown_or_fail() {
  leave();
  Status down = shutdown();
  for (int tries = 0; !down && down.error().err == EBUSY && tries < 200; ++tries) {
    usleep(10000);
    down = shutdown();
  }
  ASSERT_TRUE(down) << "dunk::shutdown() failed: " << down.error().what;
}

void reset_signal_state() {
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    signal(sig, SIG_DFL);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  stack_t off{};
  off.ss_flags = SS_DISABLE;
  sigaltstack(&off, nullptr);
  const itimerval stop{};
  setitimer(ITIMER_REAL, &stop, nullptr);
  setitimer(ITIMER_VIRTUAL, &stop, nullptr);
  setitimer(ITIMER_PROF, &stop, nullptr);
}

bool in_guest_ring0() {
  std::uint16_t cs;
  asm volatile("mov %%cs, %0" : "=r"(cs));
  return (cs & 3) == 0 && in_vm();
}

ChildResult run_in_child(const std::function<int()>& body) {
  int pipefd[2];
  EXPECT_EQ(pipe(pipefd), 0);
  std::fflush(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    close(pipefd[0]);
    dup2(pipefd[1], 1);
    dup2(pipefd[1], 2);
    close(pipefd[1]);
    int code = body();
    std::fflush(nullptr);
    _exit(code);
  }
  close(pipefd[1]);
  ChildResult result;
  char buf[4096];
  ssize_t n;
  while ((n = read(pipefd[0], buf, sizeof buf)) > 0) result.output.append(buf, static_cast<size_t>(n));
  close(pipefd[0]);
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  if (WIFEXITED(status)) {
    result.exited = true;
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.signaled = true;
    result.signal = WTERMSIG(status);
  }
  return result;
}

int rounds(const char* env, int bounded, int stress) {
  if (const char* value = std::getenv(env); value != nullptr && std::atoi(value) > 0) return std::atoi(value);
  const char* all = std::getenv("DUNK_TEST_STRESS");
  return all != nullptr && std::string_view(all) == "1" ? stress : bounded;
}

}  // namespace dunk::test
