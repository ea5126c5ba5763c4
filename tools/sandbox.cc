#include "tools/sandbox.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <memory>
#include <cstring>
#include <optional>
#include <string_view>

#include "abi/names.h"
#include "base/fd_placement.h"
#include "base/unique_fd.h"
#include "sandbox/fs_view.h"
#include "sandbox/host_layer.h"
#include "sandbox/policy.h"
#include "sandbox/runtime.h"
#include "sandbox/test_switches.h"
#include "tools/program.h"
#include "tools/sandbox_host_filter.h"
#include "tools/stats_file.h"
#include "tools/stats_report.h"
#include "tools/supervise.h"

extern char** environ;

namespace dunk::cli {
namespace {

int fail(int status, std::string_view message) {
  fmt::print(stderr, "dunk: {}\n", message);
  return status;
}

// PROG as execvp() finds it: a name with a slash as it is, else the first
// executable regular file of that name on PATH. Empty, with the status and
// message, when there is none.
std::string resolve(const std::string& name, int& status, std::string& why) {
  if (name.empty()) {
    status = kExitNotFound;
    why = "an empty program name";
    return {};
  }
  if (name.find('/') != std::string::npos) return name;
  const char* env = std::getenv("PATH");
  std::string_view path = env != nullptr ? env : "/usr/local/bin:/usr/bin:/bin";
  bool denied = false;
  while (true) {
    const std::size_t colon = path.find(':');
    std::string dir(path.substr(0, colon));
    if (dir.empty()) dir = ".";
    std::string candidate = dir + "/" + name;
    struct stat st {};
    if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      if (access(candidate.c_str(), X_OK) == 0) return candidate;
      denied = true;
    }
    if (colon == std::string_view::npos) break;
    path.remove_prefix(colon + 1);
  }
  status = denied ? kExitNotExecutable : kExitNotFound;
  why = fmt::format("{}: {}", name, denied ? "Permission denied" : "command not found");
  return {};
}

std::optional<sandbox::OnViolation> parse_on_violation(const std::string& text) {
  if (text.empty()) return sandbox::OnViolation::kPolicy;
  if (text == "kill") return sandbox::OnViolation::kKill;
  if (text == "errno") return sandbox::OnViolation::kErrno;
  if (text == "log") return sandbox::OnViolation::kLog;
  return std::nullopt;
}

struct Limit {
  int resource;
  rlim_t soft, hard;
  const char* option;
};

struct Child {
  sandbox::SandboxOptions options;
  std::string stats_path;
  std::vector<Limit> limits;
  int kvm_fd = -1;          // inherited by the sandbox (a view's Landlock rules leave /dev/kvm out)
  std::string chdir;        // without a view: the directory to start in
};

// nsjail's units: seconds of CPU (SIGXCPU at the limit, SIGKILL a second
// later, as the kernel does between a soft and a hard limit), MiB of file.
std::vector<Limit> limits_of(const SandboxCommandOptions& options) {
  std::vector<Limit> limits;
  if (options.rlimit_cpu) limits.push_back({RLIMIT_CPU, *options.rlimit_cpu, *options.rlimit_cpu + 1, "--rlimit-cpu"});
  if (options.rlimit_fsize) {
    const rlim_t bytes = *options.rlimit_fsize << 20;
    limits.push_back({RLIMIT_FSIZE, bytes, bytes, "--rlimit-fsize"});
  }
  return limits;
}

int sandbox_child(void* arg) {
  auto& child = *static_cast<Child*>(arg);
  // In the sandbox's process before the program's first instruction; the
  // program's own setrlimit may only lower them (the hard limits).
  for (const Limit& l : child.limits) {
    const rlimit value{l.soft, l.hard};
    if (setrlimit(l.resource, &value) != 0) {
      return fail(kExitCannotRun, fmt::format("{}: cannot set the limit: {}", l.option, std::strerror(errno)));
    }
  }
  // The monitor reads DUNK_STATS when it builds the VM; the program's
  // environment does not carry it.
  if (!child.stats_path.empty()) setenv("DUNK_STATS", child.stats_path.c_str(), 1);
  // ... and DUNK_KVM_FD, in every process of the sandbox: under Landlock,
  // a fork child could not open the device again.
  if (child.kvm_fd >= 0) setenv("DUNK_KVM_FD", std::to_string(child.kvm_fd).c_str(), 1);
  if (!child.chdir.empty() && chdir(child.chdir.c_str()) != 0) {
    return fail(kExitCannotRun, fmt::format("sandbox: --chdir {}: {}", child.chdir, std::strerror(errno)));
  }
  sandbox::StartFailure failure = sandbox::run_sandbox(child.options);
  return fail(failure.status, failure.message);
}

std::vector<std::string> program_environment(bool drop_stats) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view entry(*e);
    if (drop_stats && entry.starts_with("DUNK_STATS=")) continue;
    env.emplace_back(entry);
  }
  return env;
}

void report_stats(const SandboxCommandOptions& options, const StatsFile& stats, int status) {
  StatsReport report = make_report(stats.stats(), options.command, status);
  if (options.stats) fmt::print(stderr, "{}", format_text(report));
  if (!options.stats_json_path.empty()) {
    std::FILE* f = std::fopen(options.stats_json_path.c_str(), "w");
    if (f == nullptr) {
      fail(0, fmt::format("cannot write {}: {}", options.stats_json_path, std::strerror(errno)));
      return;
    }
    fmt::print(f, "{}", format_json(report));
    std::fclose(f);
  }
}

// ---- File system ---------------------------------------------------------------

// PROG as execvp() would find it inside the view: a name with a slash as it
// is (the loader resolves it there), else the first executable regular
// file of that name in a PATH directory of the view.
std::string resolve_in_view(sandbox::FsView& view, const std::string& name, int& status, std::string& why) {
  if (name.empty() || name.find('/') != std::string::npos) return resolve(name, status, why);
  const char* env = std::getenv("PATH");
  std::string_view path = env != nullptr ? env : "/usr/local/bin:/usr/bin:/bin";
  bool denied = false;
  while (true) {
    const std::size_t colon = path.find(':');
    std::string dir(path.substr(0, colon));
    if (dir.empty() || dir[0] != '/') dir = "/" + dir;
    const std::string candidate = dir + "/" + name;
    sandbox::FsView::Resolved r;
    if (view.resolve("/", candidate, {}, r) == 0 && S_ISREG(r.st.st_mode)) {
      if (syscall(SYS_faccessat2, r.object, "", X_OK, AT_EACCESS | AT_EMPTY_PATH) == 0) return candidate;
      denied = true;
    }
    if (colon == std::string_view::npos) break;
    path.remove_prefix(colon + 1);
  }
  status = denied ? kExitNotExecutable : kExitNotFound;
  why = fmt::format("{}: {}", name, denied ? "Permission denied" : "command not found");
  return {};
}

std::string kvm_device() {
  const char* device = std::getenv("DUNK_KVM_DEVICE");
  return device != nullptr && device[0] != '\0' ? device : "/dev/kvm";
}

// Removes the view's skeleton directory however dunk leaves.
struct ViewCleanup {
  sandbox::FsView* view = nullptr;
  ~ViewCleanup() {
    if (view != nullptr) view->remove_skeleton();
  }
};

}  // namespace

int run_sandbox_command(const SandboxCommandOptions& options) {
  if (options.print_default_policy) {
    fmt::print("{}", sandbox::default_policy_text());
    return 0;
  }
  if (options.command.empty()) return fail(kExitCannotRun, "sandbox: no program given");
  const auto on_violation = parse_on_violation(options.on_violation);
  if (!on_violation) {
    return fail(kExitCannotRun, fmt::format("sandbox: --on-violation takes kill, errno or log, not '{}'", options.on_violation));
  }
  if (options.log_format != "text" && options.log_format != "json") {
    return fail(kExitCannotRun, fmt::format("sandbox: --log-format takes text or json, not '{}'", options.log_format));
  }
  sandbox::LoadResult policy =
      options.policy_path.empty()
          ? sandbox::load_default_policy(sandbox::LoadOptions::for_this_process("the built-in default policy"))
          : sandbox::load_policy_file(options.policy_path, sandbox::LoadOptions::for_this_process(options.policy_path));
  if (!policy) return fail(kExitCannotRun, policy.error());

  // The view: every SRC opened and checked before anything runs.
  if (!options.bind_error.empty()) return fail(kExitCannotRun, "sandbox: " + options.bind_error);
  std::unique_ptr<sandbox::FsView> view;
  ViewCleanup cleanup;
  int landlock = 0;
  if (!options.binds.empty()) {
    std::vector<sandbox::BindSpec> specs;
    for (const auto& b : options.binds) specs.push_back({b.option, b.source, b.destination, b.writable});
    std::string why;
    view = sandbox::FsView::build(specs, why);
    if (!view) return fail(kExitCannotRun, "sandbox: " + why);
    cleanup.view = view.get();
    landlock = sandbox::landlock_abi();
    if (landlock == 0) {
      fmt::print(stderr, "dunk: sandbox: this kernel has no Landlock: the file-system view rests on the supervisor's "
                         "checks alone\n");
    }
  }

  // The host filter: what the policy may allow, what the view turns it
  // into, what dunk needs; every other call kills the process.
  std::vector<std::uint64_t> host_filter;
  if (const std::vector<int> calls = sandbox::host_filter_calls(policy.value(), *on_violation, view != nullptr);
      !calls.empty()) {
    std::string why;
    host_filter = host_filter_program(calls, sandbox::test_switches().host_filter_logs, why);
    if (host_filter.empty()) return fail(kExitCannotRun, "sandbox: cannot build the host's seccomp filter: " + why);
  }

  int status = 0;
  std::string why;
  const std::string path =
      view ? resolve_in_view(*view, options.command[0], status, why) : resolve(options.command[0], status, why);
  if (path.empty()) return fail(status, why);

  Child child;
  child.options.policy = &policy.value();
  child.options.on_violation = *on_violation;
  child.options.log_format = options.log_format == "json" ? sandbox::LogFormat::kJson : sandbox::LogFormat::kText;
  child.options.path = path;
  child.options.argv = options.command;
  if (!options.log_path.empty()) {
    const int fd = open(options.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return fail(kExitCannotRun, fmt::format("cannot write {}: {}", options.log_path, std::strerror(errno)));
    // Out of the program's way, as dunk's own descriptors are.
    child.options.log_fd = move_out_of_program_range(fd);
  }
  std::optional<StatsFile> stats;
  if (options.stats || !options.stats_json_path.empty()) {
    Result<StatsFile> created = StatsFile::create();
    if (!created) return fail(kExitCannotRun, "cannot create the statistics file");
    stats.emplace(std::move(created).value());
    child.stats_path = stats->path();
  }
  child.options.envp = program_environment(stats.has_value());
  child.options.host_filter = std::move(host_filter);
  child.limits = limits_of(options);
  UniqueFd kvm;
  if (view) {
    child.options.view = view.get();
    if (!options.chdir.empty()) {
      child.options.cwd = options.chdir;
    } else if (char here[PATH_MAX]; getcwd(here, sizeof here) != nullptr) {
      child.options.cwd = here;
    }
    child.options.landlock = landlock > 0;
    child.options.own_file = child.stats_path;
    if (const int fd = open(kvm_device().c_str(), O_RDWR | O_CLOEXEC); fd >= 0) {
      kvm = UniqueFd(move_out_of_program_range(fd));
      child.kvm_fd = kvm.get();
    }
  } else {
    child.chdir = options.chdir;
  }

  Result<int> wait_status = run_function_child(sandbox_child, &child);
  if (view) view->remove_skeleton();
  if (!wait_status) return fail(kExitCannotRun, fmt::format("cannot start the sandbox: {}", wait_status.error().what));
  if (stats) report_stats(options, *stats, *wait_status);
  if (WIFSIGNALED(*wait_status)) {
    const int sig = WTERMSIG(*wait_status);
    const char* name = abi::signal_name(sig);
    fmt::print(stderr, "dunk: {}: killed by {}{}\n", options.command[0], name != nullptr ? name : fmt::format("signal {}", sig),
               sig == SIGSYS ? " (a policy violation)" : "");
    end_like(*wait_status);
  }
  return WEXITSTATUS(*wait_status);
}

}  // namespace dunk::cli
