// Stopping the program's other threads for an execve (supervisor.h,
// ThreadStop). Natively execve kills every other thread of the process and
// the caller goes on as its only thread, with the process's pid as its tid.
// Here each program thread is a host thread of the supervisor that may be
// anywhere: in ring 3, blocked in a forwarded call, serving a call in ring
// 0. The caller (the owner of the stop) asks each one to park at the top
// of its loop, where it holds nothing of the supervisor's, and sends it
// kStopSignal, which ends a ring-3 run (the runs are interruptible) and a
// blocking host call (the call is made again if the thread is let go).
// Once every other thread is parked the execve cannot fail any more for
// their sake: the parked threads end, and the new program runs on the
// process's first thread when it is alive (the caller hands the request
// over and ends too), so that its tid is the pid, as natively.
//
// A thread that blocks kStopSignal in its host mask cannot be stopped
// (glibc never blocks SIGCANCEL: only a raw rt_sigprocmask can): the owner
// sees it in /proc/self/task/TID/status, lets every thread go again and
// the execve fails with EAGAIN, reported. So it does when kStopSignal
// cannot be queued (rt_tgsigqueueinfo's EAGAIN: RLIMIT_SIGPENDING, which
// the program may set to 0), and when no thread has parked for
// kStopPatienceNs: a stop never waits for ever.
//
// Each stop has a generation: a thread notes the one it parks in, and the
// owner counts only the threads parked in its own, so that a thread still
// on its way back from the last stop (let go with EAGAIN) is not taken for
// parked. Each stop marks its kicks with a fresh cookie.
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "base/syscall.h"
#include "sandbox/supervisor.h"
#include "sandbox/text_files.h"

namespace dunk::sandbox {
namespace {

// How often the owner sends kStopSignal again to a thread that has not
// parked: a signal that arrived just before the thread blocked in a host
// call (or before it looked at the request) is not lost that way.
constexpr long kKickIntervalNs = 10'000'000;
// How many looks in a row (kKickIntervalNs apart, or sooner when a thread
// parks) must find a thread blocking kStopSignal before it counts as the
// program's mask.
constexpr unsigned kLooksAtABlock = 20;

void futex_wait(const std::atomic<std::uint32_t>& word, std::uint32_t seen, long timeout_ns) noexcept {
  timespec timeout{0, timeout_ns};
  sys::call(SYS_futex, reinterpret_cast<long>(&word), FUTEX_WAIT_PRIVATE, seen,
            timeout_ns > 0 ? reinterpret_cast<long>(&timeout) : 0);
}

void futex_wake_all(const std::atomic<std::uint32_t>& word) noexcept {
  sys::call(SYS_futex, reinterpret_cast<long>(&word), FUTEX_WAKE_PRIVATE, INT32_MAX);
}

// The signals thread `tid` blocks (SigBlk in /proc/self/task/TID/status),
// or false when the thread is gone.
bool blocked_signals(long tid, std::uint64_t& mask) {
  std::string text;
  if (!read_text("/proc/self/task/" + std::to_string(tid) + "/status", text)) return false;
  const std::size_t at = text.find("\nSigBlk:");
  if (at == std::string::npos) return false;
  mask = std::strtoull(text.c_str() + at + std::strlen("\nSigBlk:"), nullptr, 16);
  return true;
}

bool task_alive(long tid) noexcept {
  char path[48];
  std::snprintf(path, sizeof path, "/proc/self/task/%ld", tid);
  struct stat st {};
  return sys::call(SYS_newfstatat, AT_FDCWD, reinterpret_cast<long>(path), reinterpret_cast<long>(&st), 0) == 0;
}

std::uint64_t now_ns() noexcept {
  timespec ts{};
  sys::call(SYS_clock_gettime, CLOCK_MONOTONIC, reinterpret_cast<long>(&ts));
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

// A fresh cookie, never 0.
std::uint64_t new_cookie(const ThreadStop& x) noexcept {
  std::uint64_t cookie = 0;
  while (cookie == 0) {
    if (sys::call(SYS_getrandom, reinterpret_cast<long>(&cookie), sizeof cookie, 0) != sizeof cookie) {
      cookie = (now_ns() * 0x9e3779b97f4a7c15u) ^ reinterpret_cast<std::uint64_t>(&x);
    }
  }
  return cookie;
}

// kStopSignal to thread `tid`, marked with the stop's cookie (si_value) so
// that the supervisor's handler tells it from the program's own signal.
// 0, or the call's -errno (-EAGAIN: the signal queue is full).
long kick(std::uint64_t cookie, long tid) noexcept {
  siginfo_t info{};
  info.si_signo = kStopSignal;
  info.si_code = SI_DETHREAD;
  info.si_pid = static_cast<pid_t>(sandbox().pid);
  info.si_uid = static_cast<uid_t>(sys::call(SYS_getuid));
  info.si_value.sival_ptr = reinterpret_cast<void*>(cookie);
  return sys::call(SYS_rt_tgsigqueueinfo, static_cast<long>(sandbox().pid), tid, kStopSignal,
                   reinterpret_cast<long>(&info));
}

// Ends the calling program thread (parked, or handing its execve over).
[[noreturn]] void end_thread(ProgramThread& t) noexcept {
  unregister_thread(t);
  release_thread_slot();
  set_current_thread(nullptr);
  if (t.host_leader) sys::call(SYS_exit, 0);  // not a pthread of dunk's
  delete &t;
  pthread_exit(nullptr);
}

// Lets every parked thread go on or end, as `x.verdict` says.
void announce(ThreadStop& x) noexcept {
  x.verdict_word.fetch_add(1, std::memory_order_release);
  futex_wake_all(x.verdict_word);
}

}  // namespace

void register_thread(ProgramThread& t) noexcept {
  ThreadStop& x = sandbox().stop;
  // Called on the host thread that runs `t`.
  t.host_leader = sys::call(SYS_gettid) == sys::call(SYS_getpid);
  LockGuard hold(x.lock);
  x.threads.push_back(&t);
}

void unregister_thread(ProgramThread& t) noexcept {
  ThreadStop& x = sandbox().stop;
  LockGuard hold(x.lock);
  std::erase(x.threads, &t);
}

void reset_thread_stop_after_fork(ProgramThread& t) noexcept {
  ThreadStop& x = sandbox().stop;
  x.lock.reset_after_fork();
  x.threads.clear();
  x.threads.push_back(&t);
  x.requested.store(false, std::memory_order_relaxed);
  x.owner = nullptr;
  t.parked_in = 0;
  t.parking.store(false, std::memory_order_relaxed);
}

bool is_stop_kick(const siginfo_t& info) noexcept {
  const ThreadStop& x = sandbox().stop;
  if (info.si_signo != kStopSignal || info.si_code != SI_DETHREAD ||
      static_cast<std::uint64_t>(info.si_pid) != sandbox().pid) {
    return false;
  }
  const auto value = reinterpret_cast<std::uint64_t>(info.si_value.sival_ptr);
  if (value == 0) return false;
  for (const auto& cookie : x.cookies) {
    if (cookie.load(std::memory_order_acquire) == value) return true;
  }
  return false;
}

void park_if_stopping(ProgramThread& t) noexcept {
  ThreadStop& x = sandbox().stop;
  if (!x.requested.load(std::memory_order_acquire)) return;
  // Signals taken for this thread are delivered before it parks; while it
  // is parked the process's signals go to the threads that go on. The
  // owner does not take the mask it sees meanwhile for the program's.
  t.parking.store(true, std::memory_order_release);
  const std::uint64_t mask = block_signals(kAllSignals);
  take_monitor_signals();
  std::uint32_t seen = 0;
  {
    LockGuard hold(x.lock);
    if (!x.requested.load(std::memory_order_relaxed) || x.owner == &t || !t.signals.empty()) {
      set_signal_mask(mask);
      t.parking.store(false, std::memory_order_release);
      return;
    }
    seen = x.verdict_word.load(std::memory_order_relaxed);
    t.parked_in = x.generation;
    x.parked_word.fetch_add(1, std::memory_order_release);
  }
  futex_wake_all(x.parked_word);
  while (x.verdict_word.load(std::memory_order_acquire) == seen) futex_wait(x.verdict_word, seen, 0);
  // The verdict of the stop this thread parked in, read under the lock: a
  // kEnd stays until every thread it ends is gone, and a later stop cannot
  // give one before this thread parks in it.
  ThreadStop::Verdict verdict;
  ProgramThread* successor;
  void (*task)(ProgramThread&, void*);
  void* task_context;
  {
    LockGuard hold(x.lock);
    t.parked_in = 0;
    verdict = x.verdict;
    successor = x.successor;
    task = x.task;
    task_context = x.task_context;
  }
  switch (verdict) {
    case ThreadStop::Verdict::kGoOn:
      set_signal_mask(mask);
      t.parking.store(false, std::memory_order_release);
      return;
    case ThreadStop::Verdict::kEnd:
      if (successor == &t) {
        // The execve handed over: it runs here, on the first thread, with
        // the calling thread's mask (set by the task).
        t.parking.store(false, std::memory_order_release);
        task(t, task_context);
        return;
      }
      end_thread(t);
  }
}

StopOutcome stop_other_threads(ProgramThread& t, long& blocker) noexcept {
  Sandbox& s = sandbox();
  ThreadStop& x = s.stop;
  const std::uint64_t cookie = new_cookie(x);
  std::uint32_t generation = 0;
  {
    LockGuard hold(x.lock);
    if (x.requested.load(std::memory_order_relaxed)) return StopOutcome::kBusy;
    if (++x.generation == 0) ++x.generation;
    generation = x.generation;
    x.cookies[generation % ThreadStop::kCookies].store(cookie, std::memory_order_release);
    x.owner = &t;
    x.requested.store(true, std::memory_order_release);
  }
  struct Waiting {
    long tid;
    bool parking;
  };
  std::vector<Waiting> waiting;
  // The thread seen blocking kStopSignal, and in how many looks in a row:
  // dunk's own code blocks every signal for moments (a thread being
  // created, a signal being queued), the program's mask is what stays.
  long blocking = 0;
  unsigned looks = 0;
  // Progress: a thread parked (or went) since the last look.
  std::size_t fewest_waiting = SIZE_MAX;
  std::uint64_t last_progress = now_ns();
  for (;;) {
    const std::uint32_t seen = x.parked_word.load(std::memory_order_acquire);
    waiting.clear();
    bool all_parked;
    {
      LockGuard hold(x.lock);
      for (const ProgramThread* p : x.threads) {
        if (p != &t && p->parked_in != generation) {
          waiting.push_back(Waiting{p->tid, p->parking.load(std::memory_order_acquire)});
        }
      }
      // A thread being created is counted before it is registered.
      all_parked = waiting.empty() && static_cast<int>(x.threads.size()) == s.threads.load();
    }
    if (all_parked) return StopOutcome::kStopped;
    const std::uint64_t now = now_ns();
    if (waiting.size() < fewest_waiting) {
      fewest_waiting = waiting.size();
      last_progress = now;
    } else if (now - last_progress >= static_cast<std::uint64_t>(kStopPatienceNs)) {
      blocker = waiting.empty() ? 0 : waiting.front().tid;
      let_threads_go_on(t);
      return StopOutcome::kTimedOut;
    }
    bool someone_blocks = false;
    for (const Waiting& w : waiting) {
      if (w.parking) continue;  // its mask is the park's
      std::uint64_t blocked = 0;
      if (blocked_signals(w.tid, blocked) && (blocked & abi::sigbit(kStopSignal)) != 0) {
        if (!someone_blocks) {
          someone_blocks = true;
          looks = w.tid == blocking ? looks + 1 : 1;
          blocking = w.tid;
        }
        if (w.tid == blocking && looks >= kLooksAtABlock) {
          blocker = w.tid;
          let_threads_go_on(t);
          return StopOutcome::kBlocked;
        }
        continue;
      }
      if (kick(cookie, w.tid) == -EAGAIN) {
        // The signal cannot be queued (RLIMIT_SIGPENDING): this stop can
        // never end.
        blocker = w.tid;
        let_threads_go_on(t);
        return StopOutcome::kNoQueue;
      }
    }
    if (!someone_blocks) looks = 0;
    futex_wait(x.parked_word, seen, kKickIntervalNs);
  }
}

void let_threads_go_on(ProgramThread&) noexcept {
  ThreadStop& x = sandbox().stop;
  {
    LockGuard hold(x.lock);
    x.verdict = ThreadStop::Verdict::kGoOn;
    x.requested.store(false, std::memory_order_release);
    x.owner = nullptr;
  }
  announce(x);
}

void end_other_threads(ProgramThread& t, ProgramThread* successor, void (*task)(ProgramThread&, void*),
                       void* context) noexcept {
  ThreadStop& x = sandbox().stop;
  {
    LockGuard hold(x.lock);
    x.ending.clear();
    for (const ProgramThread* p : x.threads) {
      if (p != successor) x.ending.push_back(p->tid);
    }
    x.verdict = ThreadStop::Verdict::kEnd;
    x.successor = successor;
    x.task = task;
    x.task_context = context;
  }
  announce(x);
  if (successor != nullptr) end_thread(t);
}

void wait_for_ended_threads(ProgramThread& t) noexcept {
  ThreadStop& x = sandbox().stop;
  for (long tid : x.ending) {
    if (tid == t.tid) continue;
    // A thread is gone from /proc once its host thread has exited (a
    // thread other than the first is reaped at once).
    while (task_alive(tid)) {
      std::atomic<std::uint32_t> never{0};
      futex_wait(never, 0, 1'000'000);
    }
  }
  LockGuard hold(x.lock);
  x.ending.clear();
  x.threads.clear();
  x.threads.push_back(&t);
  x.successor = nullptr;
  x.owner = nullptr;
  x.requested.store(false, std::memory_order_release);
}

}  // namespace dunk::sandbox
