// The sandbox's processes, and signals kept among them.
//
// Without a PID namespace the program could signal any process of its user
// (kill(-1, SIGKILL) ends every one, dunk's waiting process and the user's
// shell among them) and so end dunk's watch over it (the time limit, the
// cgroup's removal). So, whatever the policy says, its signals reach only
// the sandbox's own processes, as they would from inside a PID namespace:
// kill, tkill, tgkill, rt_sigqueueinfo, rt_tgsigqueueinfo, pidfd_open and
// pidfd_send_signal aimed at any other process fail with ESRCH (it does not
// exist for the program), reported; kill(0), kill(-PGRP) and kill(-1) go
// to the sandbox's processes of that group (or all of them but the
// caller), one by one (docs/SANDBOX.md, "Signals stay in the sandbox").
//
// Members: a table in shared memory (MAP_SHARED, anonymous) that the
// sandbox's first process maps before the program runs; every process of
// the sandbox inherits it through fork and keeps it across execve (which
// the supervisor serves in the same process). It lies outside the untrusted
// region: only the supervisor reads and writes it, lock-free. An entry is a
// pid and the process's start time (field 22 of /proc/PID/stat), so that a
// pid the kernel gives to a process outside the sandbox once a member has
// gone is not taken for a member; such stale entries are reused.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>

#include "abi/walk.h"

namespace dunk::sandbox {

struct ProgramThread;

class Members {
 public:
  // A new, empty table in shared memory; nullptr when it cannot be mapped.
  static Members* create() noexcept;
  Members(const Members&) = delete;
  Members& operator=(const Members&) = delete;

  // Adds process `pid` (alive: its start time is read now). False when the
  // table is full of live members.
  bool add(pid_t pid) noexcept;
  // Whether `pid` is a live member (or a zombie one).
  bool contains(pid_t pid) const noexcept;
  // Calls f(pid) for every live member.
  template <class F>
  void each(F&& f) const noexcept {
    for (const Entry& e : entries_) {
      const pid_t pid = e.pid.load(std::memory_order_acquire);
      if (pid > 0 && start_time(pid) == e.start.load(std::memory_order_acquire)) f(pid);
    }
  }

  static constexpr int kCapacity = 16384;

 private:
  Members() = default;
  struct Entry {
    std::atomic<pid_t> pid{0};  // 0: free; -1: being written
    std::atomic<std::uint64_t> start{0};
  };
  // The process's start time in clock ticks since boot; 0 when it is gone.
  static std::uint64_t start_time(pid_t pid) noexcept;
  bool take(Entry& e, pid_t expected, pid_t pid, std::uint64_t start) noexcept;

  Entry entries_[kCapacity];
};

// The table of this sandbox (null before the sandbox starts).
Members* members() noexcept;
void set_members(Members* m) noexcept;

// A call that would signal (or take a pidfd of) a process: decided here,
// whatever the policy said. True when it answered (refused, or served as
// the sandbox's group); false: forward it as it is.
bool confine_signal(ProgramThread& t, const abi::Call& call) noexcept;

}  // namespace dunk::sandbox
