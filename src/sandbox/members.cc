// The sandbox's processes, and signals kept among them (members.h).
#include "sandbox/members.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "base/syscall.h"
#include "sandbox/supervisor.h"

namespace dunk::sandbox {
namespace {

Members* the_members = nullptr;

// pidfd_send_signal's flag for the target's whole process group (Linux 6.9).
constexpr std::uint64_t kPidfdSignalProcessGroup = 1u << 2;
// pidfd_open's flag for a thread's pidfd (Linux 6.9): the pid is a tid.
constexpr std::uint64_t kPidfdThread = O_EXCL;

// The whole of a small /proc file, NUL-terminated; its length, or -1.
long read_proc(const char* path, char (&buffer)[1024]) noexcept {
  const long fd = sys::call(SYS_openat, AT_FDCWD, reinterpret_cast<long>(path), O_RDONLY | O_CLOEXEC);
  if (sys::failed(fd)) return -1;
  const long n = sys::call(SYS_read, fd, reinterpret_cast<long>(buffer), sizeof buffer - 1);
  sys::call(SYS_close, fd);
  if (n < 0) return -1;
  buffer[n] = '\0';
  return n;
}

// Field `index` (1-based, as proc(5) counts) of /proc/PID/stat, or -1. The
// command name (field 2) may hold spaces and parentheses: the fields after
// it are counted from its last ')'.
long long stat_field(pid_t pid, int index) noexcept {
  char path[64], buffer[1024];
  std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
  if (read_proc(path, buffer) < 0) return -1;
  const char* at = std::strrchr(buffer, ')');
  if (at == nullptr || index < 3) return -1;
  ++at;
  for (int field = 3; field <= index; ++field) {
    while (*at == ' ') ++at;
    if (*at == '\0') return -1;
    if (field == index) return std::strtoll(at, nullptr, 10);
    while (*at != ' ' && *at != '\0') ++at;
  }
  return -1;
}

// A "Name:\tvalue" line's value in a /proc status-like file, or `absent`.
long long keyed(const char* path, const char* key, long long absent) noexcept {
  char buffer[1024];
  if (read_proc(path, buffer) < 0) return absent;
  const std::size_t length = std::strlen(key);
  for (const char* line = buffer; line != nullptr && *line != '\0';) {
    if (std::strncmp(line, key, length) == 0) return std::strtoll(line + length, nullptr, 10);
    line = std::strchr(line, '\n');
    if (line != nullptr) ++line;
  }
  return absent;
}

// The thread group a thread id belongs to, or -1 when there is none.
pid_t thread_group_of(pid_t tid) noexcept {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/status", tid);
  return static_cast<pid_t>(keyed(path, "Tgid:", -1));
}

bool own_process(pid_t pid) noexcept { return pid == static_cast<pid_t>(sandbox().pid); }

bool member(pid_t pid) noexcept {
  if (own_process(pid)) return true;
  const Members* m = members();
  return m != nullptr && m->contains(pid);
}

void refuse_outside(ProgramThread& t, const abi::Call& call) noexcept {
  refuse(t, call, -ESRCH, "a process outside the sandbox (its signals stay among its own processes)");
}

// kill(0), kill(-PGRP), kill(-1): the sandbox's processes of the group (all
// of them but the caller, for -1), one by one. 0 when one was signalled,
// else the first error (ESRCH: none).
long kill_among_members(pid_t target, int sig) noexcept {
  const pid_t self = static_cast<pid_t>(sandbox().pid);
  const long long group = target == 0 ? stat_field(self, 5) : -static_cast<long long>(target);
  long result = -ESRCH;
  bool sent = false;
  members()->each([&](pid_t pid) {
    if (target == -1 ? pid == self : stat_field(pid, 5) != group) return;
    const long ret = sys::call(SYS_kill, pid, sig);
    if (ret == 0) {
      sent = true;
    } else if (result == -ESRCH) {
      result = ret;
    }
  });
  // The caller itself, for a group it is in (it is a member, but the table
  // may not be there: a sandbox that could not map it has only itself).
  return sent ? 0 : result;
}

}  // namespace

Members* members() noexcept { return the_members; }
void set_members(Members* m) noexcept { the_members = m; }

Members* Members::create() noexcept {
  const long memory = sys::call(SYS_mmap, 0, static_cast<long>(sizeof(Members)), PROT_READ | PROT_WRITE,
                                MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (sys::failed(memory)) return nullptr;
  return new (reinterpret_cast<void*>(memory)) Members();
}

std::uint64_t Members::start_time(pid_t pid) noexcept {
  const long long start = stat_field(pid, 22);
  return start > 0 ? static_cast<std::uint64_t>(start) : 0;
}

bool Members::take(Entry& e, pid_t expected, pid_t pid, std::uint64_t start) noexcept {
  if (!e.pid.compare_exchange_strong(expected, -1, std::memory_order_acq_rel)) return false;
  e.start.store(start, std::memory_order_release);
  e.pid.store(pid, std::memory_order_release);
  return true;
}

bool Members::add(pid_t pid) noexcept {
  const std::uint64_t start = start_time(pid);
  if (start == 0) return false;
  for (Entry& e : entries_) {
    if (e.pid.load(std::memory_order_acquire) == 0 && take(e, 0, pid, start)) return true;
  }
  // Full: an entry whose process has gone (or whose pid another process
  // now has) is free again.
  for (Entry& e : entries_) {
    const pid_t old = e.pid.load(std::memory_order_acquire);
    if (old > 0 && start_time(old) != e.start.load(std::memory_order_acquire) && take(e, old, pid, start)) return true;
  }
  return false;
}

bool Members::contains(pid_t pid) const noexcept {
  if (pid <= 0) return false;
  for (const Entry& e : entries_) {
    if (e.pid.load(std::memory_order_acquire) != pid) continue;
    const std::uint64_t start = e.start.load(std::memory_order_acquire);
    if (start != 0 && start_time(pid) == start) return true;
  }
  return false;
}

bool confine_signal(ProgramThread& t, const abi::Call& call) noexcept {
  const auto arg = [&](int i) { return static_cast<pid_t>(static_cast<std::uint32_t>(call.args[i])); };
  switch (abi::kernel_number(call.number)) {
    case SYS_kill: {
      const pid_t pid = arg(0);
      if (pid > 0) {
        if (member(pid)) return false;
        refuse_outside(t, call);
        return true;
      }
      if (pid == INT_MIN) return false;  // the kernel's ESRCH
      const int sig = static_cast<int>(call.args[1]);
      if (sig < 0 || sig > _NSIG - 1) return false;  // the kernel's EINVAL
      if (members() == nullptr) {
        // Only this process is known to be the sandbox's.
        const long ret = pid == -1 ? -ESRCH : sys::call(SYS_kill, sys::call(SYS_getpid), sig);
        t.frame.rax = static_cast<std::uint64_t>(ret);
        return true;
      }
      t.frame.rax = static_cast<std::uint64_t>(kill_among_members(pid, sig));
      return true;
    }
    case SYS_tkill: {
      const pid_t tid = arg(0);
      if (tid <= 0 || tid == t.tid || member(thread_group_of(tid))) return false;
      refuse_outside(t, call);
      return true;
    }
    case SYS_tgkill:
    case SYS_rt_sigqueueinfo:
    case SYS_rt_tgsigqueueinfo: {
      const pid_t pid = arg(0);
      if (pid <= 0 || member(pid)) return false;
      refuse_outside(t, call);
      return true;
    }
    case SYS_pidfd_open: {
      const pid_t pid = arg(0);
      if (pid <= 0) return false;
      if (member((call.args[1] & kPidfdThread) != 0 ? thread_group_of(pid) : pid)) return false;
      refuse_outside(t, call);
      return true;
    }
    case SYS_pidfd_send_signal: {
      if ((call.args[3] & kPidfdSignalProcessGroup) != 0) {
        refuse(t, call, -EPERM, "a pidfd's whole process group, which may hold processes outside the sandbox");
        return true;
      }
      // The process the descriptor names, as its fdinfo says (-1: gone;
      // absent: not a pidfd, which the kernel refuses itself).
      char path[64];
      std::snprintf(path, sizeof path, "/proc/thread-self/fdinfo/%d", static_cast<int>(call.args[0]));
      const long long pid = keyed(path, "Pid:", 0);
      if (pid <= 0 || member(static_cast<pid_t>(pid))) return false;
      refuse_outside(t, call);
      return true;
    }
    default:
      return false;
  }
}

}  // namespace dunk::sandbox
