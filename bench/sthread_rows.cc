#include "bench/sthread_rows.h"

#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

extern char** environ;

namespace dunk::bench {

namespace {

// The operations dunk-sthread-bench measures (the same names there).
constexpr const char* kOperations[] = {
    "sthread create+join",      "sthread callgate round trip", "sthread switch, 1 page",  "sthread switch, 4 pages",
    "sthread switch, 16 pages", "sthread switch, 64 pages",    "sthread switch, 256 pages",
    "sthread table pages",
};

// $DUNK_STHREAD_BENCH, or dunk-sthread-bench beside the dunk executable,
// as the build leaves them.
std::string helper_path() {
  if (const char* env = std::getenv("DUNK_STHREAD_BENCH"); env != nullptr && *env != '\0') return env;
  char exe[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe);
  if (n <= 0 || n == sizeof exe) return "dunk-sthread-bench";
  const std::string_view path(exe, static_cast<std::size_t>(n));
  return fmt::format("{}/dunk-sthread-bench", path.substr(0, path.rfind('/')));
}

// Runs the helper with `args`; empty, or why it failed.
std::string run_helper(const std::string& path, const std::vector<std::string>& args) {
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(path.c_str()));
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  if (int err = posix_spawn(&pid, path.c_str(), nullptr, nullptr, argv.data(), environ); err != 0) {
    return fmt::format("cannot run {}: {} (DUNK_STHREAD_BENCH names another)", path, std::strerror(err));
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return fmt::format("waitpid({}): {}", path, std::strerror(errno));
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
  return WIFEXITED(status) ? fmt::format("{} exited with status {}", path, WEXITSTATUS(status))
                           : fmt::format("{} was killed by signal {}", path, WTERMSIG(status));
}

double count_of(const nlohmann::json& row, const char* key) {
  const auto it = row.find(key);
  return it == row.end() || !it->is_number() ? -1 : it->get<double>();
}

// One helper row as a row of the report. The helper counts exits on every
// vCPU of its process (its sthreads run on workers' vCPUs), not KVM's count
// of one vCPU nor one thread's host calls: those stay n/a.
Result to_result(const nlohmann::json& row) {
  Result r;
  r.name = row.value("operation", "");
  r.mode = row.value("mode", "");
  r.iterations = row.value("iterations", std::uint64_t{0});
  r.ns_per_op = count_of(row, "ns_per_op");
  r.userspace_exits_per_op = count_of(row, "userspace_exits_per_op");
  r.note = row.value("note", "");
  const double cow = count_of(row, "cow_per_op"), reset = count_of(row, "reset_per_op");
  if (cow >= 0 && reset >= 0) {
    r.note = fmt::format("{:.2f} pages copied on write and {:.2f} reset per operation{}{}", cow, reset,
                         r.note.empty() ? "" : "; ", r.note);
  }
  if (const double tables = count_of(row, "table_pages_per_op"); tables >= 0) {
    r.note = fmt::format("{:.2f} page-table pages per compartment{}{}", tables, r.note.empty() ? "" : "; ", r.note);
  }
  if (const std::string kinds = row.value("exits_by_kind", ""); !kinds.empty()) {
    r.note += fmt::format("{}exits: {}", r.note.empty() ? "" : "; ", kinds);
  }
  return r;
}

}  // namespace

bool sthread_rows_wanted(const Options& options) {
  if (options.only.empty()) return false;
  return std::any_of(std::begin(kOperations), std::end(kOperations), [&](const char* op) { return options.wants(op); });
}

void run_sthread_rows(const Options& options, Report& report) {
  const std::string path = helper_path();
  char json[] = "/tmp/dunk-sthread-bench-XXXXXX";
  const int fd = mkstemp(json);
  if (fd < 0) {
    report.failures.push_back(fmt::format("sthread rows: mkstemp: {}", std::strerror(errno)));
    return;
  }
  close(fd);
  // Creations cost milliseconds under emulation, callgates tenths of one:
  // the same scale as dunk bench's fork (1/1000) and signal (1/100) rows.
  const std::uint64_t n = std::max<std::uint64_t>(options.iterations / 1000, 10);
  const std::uint64_t calls = std::max<std::uint64_t>(options.iterations / 100, 40);
  const std::string why = run_helper(
      path, {"--quiet", "--json", json, "--only", options.only, std::to_string(n), std::to_string(calls)});
  nlohmann::json doc;
  if (why.empty()) {
    std::ifstream in(json);
    doc = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  }
  std::remove(json);
  if (!why.empty() || !doc.is_object() || !doc.contains("results") || !doc["results"].is_array()) {
    report.failures.push_back(why.empty() ? fmt::format("sthread rows: {} wrote no valid JSON", path)
                                          : "sthread rows: " + why);
    return;
  }
  for (const nlohmann::json& row : doc["results"]) report.results.push_back(to_result(row));
}

}  // namespace dunk::bench
