// `dunk bench`: measurements of VM mode side by side with native execution,
// in one run, with exact counts of what each operation costs (VM exits, host
// system calls). Under emulation (the nested test VM) the times mean little;
// the ratios and the counts are what to read.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace dunk::bench {

struct Options {
  std::uint64_t iterations = 100'000;
  std::string json_path;   // empty: no JSON
  std::string chart_path;  // empty: no chart (PNG)
  bool privileged = true;  // also the privileged-API benchmarks (bench/privileged.h)
  // Only the operations whose name contains this (empty: all).
  std::string only;
  bool wants(const std::string& operation) const { return only.empty() || operation.find(only) != std::string::npos; }
};

// One operation measured one way (native, or in VM mode).
struct Result {
  std::string name;        // e.g. "getpid"
  std::string mode;        // "native" or "vm"
  std::uint64_t iterations = 0;
  double ns_per_op = 0;
  // Per operation, exact differences of counters over the measured loop
  // minus an empty loop. Negative: not available (reason in `note`).
  double userspace_exits_per_op = -1;  // KVM_RUN returns (dunk's count)
  double kvm_exits_per_op = -1;        // all VM exits KVM saw ("exits" stat)
  double host_syscalls_per_op = -1;    // raw_syscalls:sys_enter of the thread
  std::string note;
  // What the measured calls returned ("ok", "-1 EACCES"), where a row
  // checks it (the sandbox rows); empty elsewhere.
  std::string answer;
  // Exact totals over the measured loop minus an empty one, by name (JSON
  // "counts"), where a row has more than the per-operation columns.
  std::vector<std::pair<std::string, double>> counts;
};

struct Report {
  std::vector<Result> results;
  std::string environment;  // where it ran: kernel, KVM, nested or not
  // Measurements that got a wrong answer (a dirty-tracking way that missed
  // a written page): the run fails.
  std::vector<std::string> failures;
};

// Runs every benchmark; fills `report`. Returns false (with a message on
// stderr) when VM mode is not available.
bool run(const Options& options, Report& report);

// Human-readable table on stdout; JSON to options.json_path if set.
void print(const Report& report);
bool write_json(const Report& report, const std::string& path);
// A PNG bar chart of the times, with the ratios, drawn by gnuplot; false
// (and why on stderr) when it cannot be drawn.
bool write_chart(const Report& report, const std::string& path);

// CLOCK_MONOTONIC in nanoseconds.
std::uint64_t now_ns();

}  // namespace dunk::bench
