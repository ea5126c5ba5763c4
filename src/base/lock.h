// A mutex for dunk's own data, usable on the monitor's paths: it never enters
// libc (waiting is a raw futex call) and never allocates. Only the monitor
// and dunk's set-up code take it; guest code never does, so a program that
// stops holding one of its own locks cannot block it.
#pragma once

#include <linux/futex.h>
#include <sys/syscall.h>

#include <atomic>
#include <cstdint>

#include "base/syscall.h"

namespace dunk {

class Lock {
 public:
  void lock() noexcept {
    // 0 = free, 1 = held, 2 = held with waiters (U. Drepper, "Futexes Are
    // Tricky", mutex #2).
    std::uint32_t expected = 0;
    if (state_.compare_exchange_strong(expected, 1, std::memory_order_acquire)) return;
    if (expected != 2) expected = state_.exchange(2, std::memory_order_acquire);
    while (expected != 0) {
      sys::call(SYS_futex, reinterpret_cast<long>(&state_), FUTEX_WAIT_PRIVATE, 2, 0);
      expected = state_.exchange(2, std::memory_order_acquire);
    }
  }

  // Takes the lock if it is free; false (and nothing taken) otherwise.
  bool try_lock() noexcept {
    std::uint32_t expected = 0;
    return state_.compare_exchange_strong(expected, 1, std::memory_order_acquire);
  }

  void unlock() noexcept {
    if (state_.exchange(0, std::memory_order_release) == 2) {
      sys::call(SYS_futex, reinterpret_cast<long>(&state_), FUTEX_WAKE_PRIVATE, 1);
    }
  }

  // Whether some thread holds the lock right now (for assertions and tests).
  bool held() const noexcept { return state_.load(std::memory_order_relaxed) != 0; }

  // After fork the child has one thread; a lock another thread held is stale.
  void reset_after_fork() noexcept { state_.store(0, std::memory_order_relaxed); }

 private:
  std::atomic<std::uint32_t> state_{0};
};

class LockGuard {
 public:
  explicit LockGuard(Lock& lock) noexcept : lock_(lock) { lock_.lock(); }
  ~LockGuard() { lock_.unlock(); }
  LockGuard(const LockGuard&) = delete;
  LockGuard& operator=(const LockGuard&) = delete;

 private:
  Lock& lock_;
};

}  // namespace dunk
