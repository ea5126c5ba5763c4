#include "tools/exec.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string_view>

#include "base/fd_placement.h"
#include "base/unique_fd.h"
#include "tools/check.h"
#include "tools/program.h"
#include "tools/stats_file.h"
#include "tools/stats_report.h"
#include "tools/supervise.h"

extern char** environ;

namespace dunk::cli {
namespace {

void complain(std::string_view message) { fmt::print(stderr, "dunk: {}\n", message); }

int fail(int status, std::string_view message) {
  complain(message);
  return status;
}

std::string error_text(const Error& error) {
  char buf[256];
  return error.format(buf, sizeof buf);
}

// libdunk-preload.so: $DUNK_PRELOAD (for installs that keep it elsewhere),
// or the one next to the dunk executable, as the build leaves them.
std::string preload_candidate() {
  if (const char* env = std::getenv("DUNK_PRELOAD"); env != nullptr && *env != '\0') return env;
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe);
  if (n <= 0 || n == sizeof exe) return "libdunk-preload.so";
  std::string_view path(exe, static_cast<std::size_t>(n));
  return fmt::format("{}/libdunk-preload.so", path.substr(0, path.rfind('/')));
}

// The preload library's absolute path (every process of the tree resolves
// LD_PRELOAD against its own working directory), or why there is none.
std::string find_preload(std::string& path) {
  std::string candidate = preload_candidate();
  char resolved[PATH_MAX];
  if (realpath(candidate.c_str(), resolved) == nullptr || access(resolved, R_OK) != 0) {
    return fmt::format("cannot use the preload library {}: {} (DUNK_PRELOAD names another)", candidate,
                       std::strerror(errno));
  }
  path = resolved;
  if (path.find_first_of(": ") != std::string::npos) {
    return fmt::format("cannot name {} in LD_PRELOAD, whose entries are separated by ':' and ' '", path);
  }
  return {};
}

// A KVM handle for the whole process tree, inherited across fork and exec
// and named by DUNK_KVM_FD (src/core/machine.cc, Machine::open_kvm): a
// program that drops its privileges, and could no longer open the device,
// still enters VM mode. Invalid when the device cannot be opened here.
UniqueFd inheritable_kvm_handle() {
  int fd = open(kvm_device().c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return UniqueFd();
  UniqueFd handle(move_out_of_program_range(fd));
  if (fcntl(handle.get(), F_SETFD, 0) != 0) return UniqueFd();
  return handle;
}

// Where --strace lines go: FILE, or dunk's stderr. One open file
// description for the whole tree, appending, so that every line of every
// thread and process lands whole; inherited (not close-on-exec) above the
// program's descriptors, where the monitor keeps it out of the program's
// reach like the KVM handle. Invalid with `why` set when FILE cannot be
// written.
UniqueFd strace_output(const ExecOptions& options, std::string& why) {
  int fd = -1;
  if (options.strace_path.empty() || options.strace_path == "-") {
    fd = fcntl(2, F_DUPFD_CLOEXEC, 3);
  } else {
    fd = open(options.strace_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0666);
  }
  if (fd < 0) {
    why = fmt::format("cannot write the system-call trace to {}: {}",
                      options.strace_path.empty() ? "stderr" : options.strace_path, std::strerror(errno));
    return UniqueFd();
  }
  UniqueFd out(move_out_of_program_range(fd));
  if (fcntl(out.get(), F_SETFD, 0) != 0) {
    why = fmt::format("cannot pass the system-call trace's descriptor on: {}", std::strerror(errno));
    return UniqueFd();
  }
  return out;
}

// What the program's environment names for dunk: the inherited KVM handle,
// the statistics block, the trace's descriptor, the address --gdb serves
// PROG at (-1/empty: none).
struct ChildHandles {
  int kvm_fd = -1;
  std::string stats_path;
  int strace_fd = -1;
  std::string gdb_address;
};

// The program's environment: dunk's, with the preload library first in
// LD_PRELOAD, DUNK_KVM_FD naming the inherited KVM handle (if any),
// DUNK_STATS the shared statistics block and DUNK_STRACE_FD the trace's
// descriptor (when asked for). A DUNK_STRACE_FD inherited from an outer
// `dunk exec --strace` does not reach this one's program unless asked anew.
std::vector<std::string> child_environment(const std::string& preload, const ChildHandles& handles) {
  const std::string& stats_path = handles.stats_path;
  std::vector<std::string> env;
  std::string ld_preload = "LD_PRELOAD=" + preload;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view entry(*e);
    if (entry.starts_with("LD_PRELOAD=")) {
      if (entry.size() > 11) ld_preload += fmt::format(":{}", entry.substr(11));
    } else if (!(entry.starts_with("DUNK_STATS=") && !stats_path.empty()) && !entry.starts_with("DUNK_KVM_FD=") &&
               !entry.starts_with("DUNK_STRACE_FD=") && !entry.starts_with("DUNK_GDB=")) {
      env.emplace_back(entry);
    }
  }
  env.push_back(std::move(ld_preload));
  if (handles.kvm_fd >= 0) env.push_back(fmt::format("DUNK_KVM_FD={}", handles.kvm_fd));
  if (!stats_path.empty()) env.push_back("DUNK_STATS=" + stats_path);
  if (handles.strace_fd >= 0) env.push_back(fmt::format("DUNK_STRACE_FD={}", handles.strace_fd));
  // --gdb: the preload library serves PROG to gdb (src/debug/gdb_server.h).
  if (!handles.gdb_address.empty()) env.push_back("DUNK_GDB=" + handles.gdb_address);
  return env;
}

// Where the reports go, opened before the program starts so that a bad
// path fails at once rather than after a long run.
struct ReportOutputs {
  UniqueFd text;  // -1 with `text_wanted`: stderr
  bool text_wanted = false;
  UniqueFd json;
};

std::string open_output(const std::string& path, UniqueFd& fd) {
  fd.reset(open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666));
  return fd.valid() ? std::string() : fmt::format("cannot write {}: {}", path, std::strerror(errno));
}

std::string open_outputs(const ExecOptions& options, ReportOutputs& out) {
  out.text_wanted = options.stats;
  if (options.stats && !options.stats_path.empty() && options.stats_path != "-") {
    if (std::string why = open_output(options.stats_path, out.text); !why.empty()) return why;
  }
  if (!options.stats_json_path.empty()) return open_output(options.stats_json_path, out.json);
  return {};
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

void write_reports(const ReportOutputs& out, const StatsReport& report, const ExecOptions& options) {
  if (out.text_wanted && !write_all(out.text.valid() ? out.text.get() : 2, format_text(report))) {
    complain(fmt::format("cannot write the statistics to {}: {}", options.stats_path, std::strerror(errno)));
  }
  if (out.json.valid() && !write_all(out.json.get(), format_json(report))) {
    complain(fmt::format("cannot write {}: {}", options.stats_json_path, std::strerror(errno)));
  }
}

// Runs the program and reports on it; the statistics file exists only for
// the duration of this call. Returns the wait status, or -1 after an error.
int run_and_report(const ExecOptions& options, const std::string& path, const std::string& preload) {
  ReportOutputs out;
  if (std::string why = open_outputs(options, out); !why.empty()) return fail(-1, why);
  std::optional<StatsFile> stats;
  if (options.stats || !options.stats_json_path.empty()) {
    Result<StatsFile> created = StatsFile::create();
    if (!created) return fail(-1, fmt::format("cannot create the statistics file: {}", error_text(created.error())));
    stats.emplace(std::move(created).value());
  }
  UniqueFd trace;
  if (options.strace) {
    std::string why;
    trace = strace_output(options, why);
    if (!trace.valid()) return fail(-1, why);
  }
  UniqueFd kvm = inheritable_kvm_handle();
  const ChildHandles handles{kvm.get(), stats ? stats->path() : "", trace.get(), options.gdb};
  Result<int> status = run_child(path, options.command, child_environment(preload, handles));
  if (!status) return fail(-1, fmt::format("cannot start {}: {}", options.command[0], error_text(status.error())));
  if (stats) write_reports(out, make_report(stats->stats(), options.command, *status), options);
  return *status;
}

}  // namespace

int run_exec(const ExecOptions& options) {
  if (options.command.empty()) return fail(kExitCannotRun, "exec: no program given");
  Program program = find_program(options.command[0]);
  if (!program.ok()) return fail(program.status, program.error);
  std::string preload;
  if (std::string why = find_preload(preload); !why.empty()) return fail(kExitCannotRun, why);
  // Probe VM mode in dunk itself, so that a machine without it gets one
  // clear line and the program never starts natively.
  if (std::string why = vm_mode_unavailable(); !why.empty()) return fail(kExitCannotRun, why);
  int status = run_and_report(options, program.path, preload);
  if (status == -1) return kExitCannotRun;
  if (WIFSIGNALED(status)) end_like(status);
  return WEXITSTATUS(status);
}

}  // namespace dunk::cli
