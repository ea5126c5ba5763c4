// A set of descriptor numbers below kFdPlacementCeiling: the descriptors
// dunk holds in a process (/dev/kvm, the VM, the vCPUs, the mirror's probe),
// which the program must never reach. Lock-free, async-signal-safe: a signal
// handler and every vCPU thread may ask at any moment.
#pragma once

#include <atomic>
#include <cstdint>

#include "base/fd_placement.h"

namespace dunk {

class FdSet {
 public:
  static constexpr int kLimit = kFdPlacementCeiling;

  void add(int fd) noexcept {
    if (in_range(fd)) words_[fd / 64].fetch_or(bit(fd), std::memory_order_relaxed);
  }
  void remove(int fd) noexcept {
    if (in_range(fd)) words_[fd / 64].fetch_and(~bit(fd), std::memory_order_relaxed);
  }
  bool contains(int fd) const noexcept {
    return in_range(fd) && (words_[fd / 64].load(std::memory_order_relaxed) & bit(fd)) != 0;
  }

  // Empties the set, calling `each(fd)` for every member (in increasing order).
  template <class F>
  void drain(F&& each) noexcept {
    for (int word = 0; word < kLimit / 64; ++word) {
      std::uint64_t bits = words_[word].exchange(0, std::memory_order_relaxed);
      while (bits != 0) {
        each(word * 64 + __builtin_ctzll(bits));
        bits &= bits - 1;
      }
    }
  }

 private:
  static constexpr bool in_range(int fd) noexcept { return fd >= 0 && fd < kLimit; }
  static constexpr std::uint64_t bit(int fd) noexcept { return std::uint64_t{1} << (fd % 64); }

  std::atomic<std::uint64_t> words_[kLimit / 64] = {};
};

}  // namespace dunk
