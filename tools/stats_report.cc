#include "tools/stats_report.h"

#include <signal.h>
#include <sys/wait.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>

#include "abi/syscalls.h"
#include "arch/x86_64/vectors.h"
#include "core/exit.h"

namespace dunk::cli {
namespace {

using Counter = std::atomic<std::uint64_t>;

// Collects the non-zero counters, named, sorted by count descending.
template <class Name>
std::vector<NamedCount> named_counts(const Counter* counters, unsigned n, Name name, std::uint64_t& total) {
  std::vector<NamedCount> out;
  total = 0;
  for (unsigned i = 0; i < n; ++i) {
    std::uint64_t count = counters[i].load(std::memory_order_relaxed);
    if (count == 0) continue;
    out.push_back({name(i), count});
    total += count;
  }
  std::sort(out.begin(), out.end(), [](const NamedCount& a, const NamedCount& b) {
    return a.count != b.count ? a.count > b.count : a.name < b.name;
  });
  return out;
}

std::string exception_name(unsigned vector) {
  std::string_view mnemonic = arch::exception_info(vector).mnemonic;
  return mnemonic.empty() ? fmt::format("vector_{}", vector) : std::string(mnemonic);
}

std::string quoted_command(const std::vector<std::string>& command) {
  std::string out;
  for (const std::string& word : command) {
    if (!out.empty()) out += ' ';
    bool plain = !word.empty() && word.find_first_not_of(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") == std::string::npos;
    if (plain) {
      out += word;
      continue;
    }
    out += '\'';
    for (char c : word) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    out += '\'';
  }
  return out;
}

std::string outcome(int wait_status) {
  if (WIFSIGNALED(wait_status)) {
    return fmt::format("killed by signal {} (SIG{})", WTERMSIG(wait_status), sigabbrev_np(WTERMSIG(wait_status)));
  }
  return fmt::format("exited with status {}", WEXITSTATUS(wait_status));
}

// One line of the text report: a label, a right-aligned count, a note.
void line(std::string& out, int indent, std::string_view label, std::uint64_t count, std::string_view note = {}) {
  fmt::format_to(std::back_inserter(out), "{:{}}{:<{}}{:>12}{}\n", "", indent, label, 30 - indent, count, note);
}

void section(std::string& out, std::string_view label, std::uint64_t total, const std::vector<NamedCount>& items,
             std::string_view note = {}) {
  line(out, 2, label, total, note);
  for (const NamedCount& item : items) line(out, 4, item.name, item.count);
}

}  // namespace

double StatsReport::exits_per_syscall() const {
  return total_syscalls == 0 ? 0.0 : static_cast<double>(total_exits) / static_cast<double>(total_syscalls);
}

std::string syscall_name(unsigned nr) {
  // The system-call schema's name (src/abi/syscalls.h).
  const char* name = abi::name_of(nr);
  return name != nullptr ? std::string(name) : fmt::format("syscall_{}", nr);
}

StatsReport make_report(const core::Stats& stats, const std::vector<std::string>& command, int wait_status) {
  using core::Stats;
  StatsReport r;
  r.command = command;
  r.wait_status = wait_status;
  r.processes = stats.processes.load();
  r.vcpus = stats.vcpus.load();
  r.kvm_runs = stats.kvm_runs.load();
  r.dunk_calls = stats.dunk_calls.load();
  r.faults_resolved = stats.faults_resolved.load();
  r.chunks_assigned = stats.chunks_assigned.load();
  r.chunks_reclaimed = stats.chunks_reclaimed.load();
  auto exit_name = [](unsigned kind) { return std::string(core::exit_kind_name(static_cast<core::ExitKind>(kind))); };
  r.exits = named_counts(stats.exits, Stats::kExitKinds, exit_name, r.total_exits);
  r.exceptions = named_counts(stats.exceptions, Stats::kVectors, exception_name, r.total_exceptions);
  r.syscalls = named_counts(stats.syscalls, Stats::kSyscalls, syscall_name, r.total_syscalls);
  return r;
}

std::string format_text(const StatsReport& r) {
  std::string out = fmt::format("dunk exec: {}: {}\n", quoted_command(r.command), outcome(r.wait_status));
  line(out, 2, "processes in VM mode", r.processes);
  line(out, 2, "vCPUs", r.vcpus);
  line(out, 2, "KVM_RUN calls", r.kvm_runs);
  std::string per_syscall =
      r.total_syscalls == 0 ? "" : fmt::format("  ({:.2f} per forwarded system call)", r.exits_per_syscall());
  section(out, "VM exits", r.total_exits, r.exits, per_syscall);
  section(out, "exceptions", r.total_exceptions, r.exceptions);
  section(out, "system calls forwarded", r.total_syscalls, r.syscalls);
  line(out, 2, "dunk's own calls", r.dunk_calls);
  line(out, 2, "page faults resolved", r.faults_resolved);
  line(out, 4, "GPA chunks assigned", r.chunks_assigned);
  line(out, 4, "GPA chunks reclaimed", r.chunks_reclaimed);
  return out;
}

std::string format_json(const StatsReport& r) {
  using Json = nlohmann::ordered_json;  // keeps the count-descending order
  auto object = [](const std::vector<NamedCount>& items) {
    Json o = Json::object();
    for (const NamedCount& item : items) o[item.name] = item.count;
    return o;
  };
  Json j;
  j["command"] = r.command;
  if (WIFSIGNALED(r.wait_status)) {
    j["signal"] = WTERMSIG(r.wait_status);
  } else {
    j["exit_status"] = WEXITSTATUS(r.wait_status);
  }
  j["processes"] = r.processes;
  j["vcpus"] = r.vcpus;
  j["kvm_runs"] = r.kvm_runs;
  j["exits"] = object(r.exits);
  j["exceptions"] = object(r.exceptions);
  j["syscalls"] = object(r.syscalls);
  j["dunk_calls"] = r.dunk_calls;
  j["faults_resolved"] = r.faults_resolved;
  j["chunks_assigned"] = r.chunks_assigned;
  j["chunks_reclaimed"] = r.chunks_reclaimed;
  j["totals"] = {{"exits", r.total_exits}, {"exceptions", r.total_exceptions}, {"syscalls", r.total_syscalls}};
  j["exits_per_syscall"] = r.exits_per_syscall();
  // Arguments need not be UTF-8; replace what is not rather than fail.
  return j.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

}  // namespace dunk::cli
