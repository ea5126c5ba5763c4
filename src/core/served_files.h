// The descriptors whose reads or writes the monitor answers itself instead
// of forwarding them (syscalls/pagemap.cc): this process's /proc pagemap and
// clear_refs files. A fixed table, no allocation. Each entry remembers the
// open file's identity (device and inode numbers), so that a descriptor the
// program closed and whose number now names another file is never served:
// the handler compares before it serves (and forgets on a mismatch).
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string_view>

#include "base/lock.h"

namespace dunk::core {

class ServedFiles {
 public:
  enum class Kind : std::uint8_t { kPagemap, kClearRefs };
  struct Entry {
    int fd = -1;
    Kind kind = Kind::kPagemap;
    std::uint64_t dev = 0, ino = 0;
  };
  static constexpr unsigned kMax = 32;

  // What an open file's path (as /proc/self/fd/N reads) makes it: process
  // `pid`'s pagemap or clear_refs, also through one of its threads
  // (/proc/PID/task/TID/...; what /proc/self and /proc/thread-self lead
  // to). nullopt for every other file, another process's included.
  static std::optional<Kind> classify(std::string_view path, long pid) noexcept {
    auto take_number = [&path]() -> std::optional<long> {
      long value = 0;
      std::size_t digits = 0;
      while (digits < path.size() && digits < 18 && path[digits] >= '0' && path[digits] <= '9') {
        value = value * 10 + (path[digits++] - '0');
      }
      if (digits == 0) return std::nullopt;
      path.remove_prefix(digits);
      return value;
    };
    auto take = [&path](std::string_view prefix) {
      if (!path.starts_with(prefix)) return false;
      path.remove_prefix(prefix.size());
      return true;
    };
    if (!take("/proc/") || take_number() != pid) return std::nullopt;
    if (take("/task/") && !take_number()) return std::nullopt;
    if (path == "/pagemap") return Kind::kPagemap;
    if (path == "/clear_refs") return Kind::kClearRefs;
    return std::nullopt;
  }

  // Nothing is served: the cheap test every read and write makes first.
  bool empty() const noexcept { return count_.load(std::memory_order_acquire) == 0; }

  // Serves `entry` from now on (replacing what `entry.fd` had). False when
  // the table is full: then the descriptor is forwarded as any other.
  bool add(const Entry& entry) noexcept {
    LockGuard hold(lock_);
    unsigned n = count_.load(std::memory_order_relaxed);
    for (unsigned i = 0; i < n; ++i) {
      if (entries_[i].fd == entry.fd) {
        entries_[i] = entry;
        return true;
      }
    }
    if (n == kMax) return false;
    entries_[n] = entry;
    count_.store(n + 1, std::memory_order_release);
    return true;
  }

  std::optional<Entry> find(int fd) noexcept {
    if (empty()) return std::nullopt;
    LockGuard hold(lock_);
    const unsigned n = count_.load(std::memory_order_relaxed);
    for (unsigned i = 0; i < n; ++i) {
      if (entries_[i].fd == fd) return entries_[i];
    }
    return std::nullopt;
  }

  void forget(int fd) noexcept {
    LockGuard hold(lock_);
    unsigned n = count_.load(std::memory_order_relaxed);
    for (unsigned i = 0; i < n; ++i) {
      if (entries_[i].fd != fd) continue;
      entries_[i] = entries_[n - 1];
      count_.store(n - 1, std::memory_order_release);
      return;
    }
  }

 private:
  Lock lock_;
  Entry entries_[kMax];
  std::atomic<unsigned> count_{0};
};

}  // namespace dunk::core
