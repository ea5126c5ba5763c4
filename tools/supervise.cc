#include "tools/supervise.h"

#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace dunk::cli {
namespace {

constexpr int kIgnored[] = {SIGINT, SIGQUIT};
constexpr int kForwarded[] = {SIGTERM, SIGHUP, SIGUSR1, SIGUSR2};

// The running child, for the forwarding handler; 0 when there is none, so
// that a signal can never reach a reaped (and possibly reused) pid.
volatile sig_atomic_t forward_to = 0;

void forward(int sig) {
  int saved = errno;
  if (forward_to > 0) kill(forward_to, sig);
  errno = saved;
}

// dunk's signal handling while the child runs. The managed signals stay
// blocked from before the fork until the child's pid is known, so none is
// lost or sent nowhere; the child gets back the original mask and, since
// they are untouched until after the fork, the original dispositions.
// SIGCHLD is the exception: ignored, it would make the kernel reap the
// child before dunk can wait for it; the child gets it back (see exec_child).
class SignalScope {
 public:
  SignalScope() {
    struct sigaction child_default {};
    child_default.sa_handler = SIG_DFL;
    sigaction(SIGCHLD, &child_default, &original_sigchld_);
    sigset_t managed;
    sigemptyset(&managed);
    for (int sig : kIgnored) sigaddset(&managed, sig);
    for (int sig : kForwarded) sigaddset(&managed, sig);
    sigprocmask(SIG_BLOCK, &managed, &original_mask_);
  }
  SignalScope(const SignalScope&) = delete;
  SignalScope& operator=(const SignalScope&) = delete;
  ~SignalScope() {
    forward_to = 0;
    for (const Saved& s : saved_) sigaction(s.sig, &s.action, nullptr);
    sigaction(SIGCHLD, &original_sigchld_, nullptr);
    sigprocmask(SIG_SETMASK, &original_mask_, nullptr);
  }

  const sigset_t& original_mask() const { return original_mask_; }
  const struct sigaction& original_sigchld() const { return original_sigchld_; }

  void child_started(pid_t pid) {
    forward_to = pid;
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    struct sigaction pass_on {};
    pass_on.sa_handler = forward;
    pass_on.sa_flags = SA_RESTART;
    sigemptyset(&pass_on.sa_mask);
    for (int sig : kIgnored) install(sig, ignore);
    for (int sig : kForwarded) install(sig, pass_on);
    sigprocmask(SIG_SETMASK, &original_mask_, nullptr);
  }

 private:
  struct Saved {
    int sig;
    struct sigaction action;
  };
  void install(int sig, const struct sigaction& action) {
    Saved& s = saved_[count_++];
    s.sig = sig;
    sigaction(sig, &action, &s.action);
  }

  sigset_t original_mask_{};
  struct sigaction original_sigchld_ {};
  Saved saved_[std::size(kIgnored) + std::size(kForwarded)]{};
  unsigned count_ = 0;
};

std::vector<char*> c_strings(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (const std::string& s : strings) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

// The child, between fork and exec: only async-signal-safe calls.
[[noreturn]] void exec_child(const char* path, char* const* argv, char* const* shell_argv,
                             char* const* envp, const SignalScope& signals) {
  sigaction(SIGCHLD, &signals.original_sigchld(), nullptr);
  sigprocmask(SIG_SETMASK, &signals.original_mask(), nullptr);
  execve(path, argv, envp);
  // execvp's fallback: an executable file the kernel cannot load is a script for /bin/sh.
  if (errno == ENOEXEC) execve(shell_argv[0], shell_argv, envp);
  int err = errno;
  char message[512];
  int n = std::snprintf(message, sizeof message, "dunk: %s: %s\n", argv[0], std::strerror(err));
  if (n > 0) (void)!write(2, message, std::min<std::size_t>(static_cast<std::size_t>(n), sizeof message - 1));
  _exit(err == ENOENT ? 127 : 126);
}

std::uint64_t now_ns() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<std::uint64_t>(now.tv_sec) * 1000000000u + static_cast<std::uint64_t>(now.tv_nsec);
}

// Whether the child ended (it stays waitable) before `deadline_ns`.
bool ended_before(pid_t pid, std::uint64_t deadline_ns) {
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  for (;;) {
    siginfo_t info{};
    if (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT | WNOHANG) == 0 && info.si_pid == pid) break;
    const std::uint64_t now = now_ns();
    if (now >= deadline_ns) {
      if (pidfd >= 0) close(pidfd);
      return false;
    }
    // The pidfd becomes readable when the child ends; without one (a
    // kernel before 5.3), a look every 10 ms.
    const std::uint64_t left_ms = (deadline_ns - now + 999999) / 1000000;
    if (pidfd >= 0) {
      pollfd p{pidfd, POLLIN, 0};
      poll(&p, 1, static_cast<int>(std::min<std::uint64_t>(left_ms, 1000)));
    } else {
      usleep(static_cast<useconds_t>(std::min<std::uint64_t>(left_ms, 10) * 1000));
    }
  }
  if (pidfd >= 0) close(pidfd);
  return true;
}

// Waits for the child; stops forwarding signals to it before reaping it.
Result<int> wait_for(pid_t pid, const TimeLimit* limit) {
  if (limit != nullptr && limit->seconds != 0 &&
      !ended_before(pid, now_ns() + std::min<std::uint64_t>(limit->seconds, 1u << 30) * 1000000000u)) {
    limit->expired(pid, limit->cookie);
  }
  siginfo_t info{};
  while (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT) != 0) {
    if (errno != EINTR) return Error{"waitid failed", errno};
  }
  forward_to = 0;
  int status = 0;
  while (waitpid(pid, &status, 0) != pid) {
    if (errno != EINTR) return Error{"waitpid failed", errno};
  }
  return status;
}

}  // namespace

Result<int> run_child(const std::string& path, const std::vector<std::string>& argv,
                      const std::vector<std::string>& envp) {
  std::vector<char*> c_argv = c_strings(argv);
  std::vector<std::string> shell = {"/bin/sh", path};
  shell.insert(shell.end(), argv.begin() + 1, argv.end());
  std::vector<char*> c_shell = c_strings(shell);
  std::vector<char*> c_envp = c_strings(envp);

  SignalScope signals;
  pid_t pid = fork();
  if (pid < 0) return Error{"fork failed", errno};
  if (pid == 0) exec_child(path.c_str(), c_argv.data(), c_shell.data(), c_envp.data(), signals);
  signals.child_started(pid);
  return wait_for(pid, nullptr);
}

Result<int> run_function_child(int (*child)(void*), void* arg, const TimeLimit* limit) {
  SignalScope signals;
  pid_t pid = fork();
  if (pid < 0) return Error{"fork failed", errno};
  if (pid == 0) {
    sigaction(SIGCHLD, &signals.original_sigchld(), nullptr);
    sigprocmask(SIG_SETMASK, &signals.original_mask(), nullptr);
    std::fflush(nullptr);
    _exit(child(arg));
  }
  signals.child_started(pid);
  return wait_for(pid, limit);
}

void end_like(int wait_status) {
  std::fflush(nullptr);
  if (!WIFSIGNALED(wait_status)) std::exit(WEXITSTATUS(wait_status));
  int sig = WTERMSIG(wait_status);
  rlimit core{};
  getrlimit(RLIMIT_CORE, &core);
  core.rlim_cur = 0;
  setrlimit(RLIMIT_CORE, &core);
  signal(sig, SIG_DFL);
  sigset_t only;
  sigemptyset(&only);
  sigaddset(&only, sig);
  sigprocmask(SIG_UNBLOCK, &only, nullptr);
  raise(sig);
  _exit(128 + sig);  // a signal whose default action does not end the process
}

}  // namespace dunk::cli
