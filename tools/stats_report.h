// What `dunk exec --stats` reports: the counters of core::Stats, named
// (exit kinds, exception mnemonics, system-call names) and sorted by count.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/stats.h"

namespace dunk::cli {

struct NamedCount {
  std::string name;
  std::uint64_t count = 0;
};

struct StatsReport {
  std::vector<std::string> command;  // what ran
  int wait_status = 0;               // as waitpid() gave it

  std::uint64_t processes = 0;
  std::uint64_t vcpus = 0;
  std::uint64_t kvm_runs = 0;
  std::uint64_t dunk_calls = 0;
  std::uint64_t faults_resolved = 0;
  std::uint64_t chunks_assigned = 0;   // guest-physical chunks given on first touch
  std::uint64_t chunks_reclaimed = 0;  // of those, taken back from another chunk
  // Non-zero entries only, by count descending (then by name).
  std::vector<NamedCount> exits;
  std::vector<NamedCount> exceptions;
  std::vector<NamedCount> syscalls;
  std::uint64_t total_exits = 0;
  std::uint64_t total_exceptions = 0;
  std::uint64_t total_syscalls = 0;

  // VM exits per forwarded system call; 0 when there were none.
  double exits_per_syscall() const;
};

StatsReport make_report(const core::Stats& stats, const std::vector<std::string>& command, int wait_status);

// The name of system call `nr` on x86-64, "syscall_<nr>" if unknown.
std::string syscall_name(unsigned nr);

std::string format_text(const StatsReport& report);
std::string format_json(const StatsReport& report);

}  // namespace dunk::cli
