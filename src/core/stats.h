// Counters the monitor keeps: VM exits by kind, exceptions by vector, system
// calls by number. One block per process, or one block in a shared file that
// every process of a tree adds to (DUNK_STATS, set by `dunk exec --stats`).
// Plain relaxed atomics: every vCPU thread counts into the same block.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "core/exit.h"

namespace dunk::core {

struct Stats {
  static constexpr std::uint64_t kMagic = 0x7374'6174'6b6e'7564;  // "dunkstat"
  static constexpr std::uint32_t kVersion = 3;
  static constexpr unsigned kExitKinds = static_cast<unsigned>(ExitKind::kOther) + 1;
  static constexpr unsigned kVectors = 32;
  static constexpr unsigned kSyscalls = 1024;

  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t size;
  std::atomic<std::uint64_t> processes;    // processes that entered VM mode
  std::atomic<std::uint64_t> vcpus;        // vCPUs created
  std::atomic<std::uint64_t> kvm_runs;     // KVM_RUN calls
  std::atomic<std::uint64_t> exits[kExitKinds];
  std::atomic<std::uint64_t> exceptions[kVectors];
  std::atomic<std::uint64_t> syscalls[kSyscalls];
  std::atomic<std::uint64_t> dunk_calls;   // dunk's private system calls
  std::atomic<std::uint64_t> faults_resolved;  // guest #PFs the mirror fixed up
  std::atomic<std::uint64_t> signals_delivered;  // signal frames built for the program's handlers
  // Guest-physical chunks the mirror gave host chunks on first touch, and
  // how many of those it had to take back from another chunk (GPA space
  // exhausted): a program whose chunks fit never pays for a reclaim.
  std::atomic<std::uint64_t> chunks_assigned;
  std::atomic<std::uint64_t> chunks_reclaimed;

  void add(std::atomic<std::uint64_t>& counter) noexcept { counter.fetch_add(1, std::memory_order_relaxed); }
  // Every count back to 0 (a fork child's copy of its parent's private block).
  void clear_counts() noexcept {
    auto* first = reinterpret_cast<std::byte*>(&processes);
    std::memset(first, 0, sizeof(Stats) - static_cast<std::size_t>(first - reinterpret_cast<std::byte*>(this)));
  }
  void count_exit(ExitKind kind) noexcept { add(exits[static_cast<unsigned>(kind)]); }
  void count_syscall(std::uint64_t nr) noexcept {
    if (nr < kSyscalls) add(syscalls[nr]);
  }
};

}  // namespace dunk::core
