#include "tools/sandbox.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
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
#include <algorithm>
#include <optional>
#include <string_view>

#include "abi/names.h"
#include "base/fd_placement.h"
#include "base/unique_fd.h"
#include "sandbox/call_log.h"
#include "sandbox/cgroup.h"
#include "sandbox/fs_view.h"
#include "sandbox/host_layer.h"
#include "sandbox/limits.h"
#include "sandbox/network.h"
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

// --time-limit ended the program: coreutils' timeout's status.
constexpr int kExitTimeLimit = 124;

int fail(int status, std::string_view message) {
  fmt::print(stderr, "dunk: {}\n", message);
  return status;
}

// What a PATH search found in one directory.
enum class Found { kNothing, kExecutable, kNotExecutable };
struct Candidate {
  std::string path;
  Found found;
};

// The first executable regular file PATH's directories hold (`look` says
// what one directory holds), as execvp() searches; empty, with the status
// and message, when there is none.
template <typename Look>
std::string search_path(const std::string& name, int& status, std::string& why, Look look) {
  const char* env = std::getenv("PATH");
  std::string_view path = env != nullptr ? env : "/usr/local/bin:/usr/bin:/bin";
  bool denied = false;
  while (true) {
    const std::size_t colon = path.find(':');
    const Candidate c = look(std::string(path.substr(0, colon)));
    if (c.found == Found::kExecutable) return c.path;
    denied |= c.found == Found::kNotExecutable;
    if (colon == std::string_view::npos) break;
    path.remove_prefix(colon + 1);
  }
  status = denied ? kExitNotExecutable : kExitNotFound;
  why = fmt::format("{}: {}", name, denied ? "Permission denied" : "command not found");
  return {};
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
  return search_path(name, status, why, [&](std::string dir) {
    if (dir.empty()) dir = ".";
    std::string candidate = dir + "/" + name;
    struct stat st {};
    if (stat(candidate.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return Candidate{candidate, Found::kNothing};
    const bool runs = access(candidate.c_str(), X_OK) == 0;
    return Candidate{candidate, runs ? Found::kExecutable : Found::kNotExecutable};
  });
}

std::optional<sandbox::OnViolation> parse_on_violation(const std::string& text) {
  if (text.empty()) return sandbox::OnViolation::kPolicy;
  if (text == "kill") return sandbox::OnViolation::kKill;
  if (text == "errno") return sandbox::OnViolation::kErrno;
  if (text == "log") return sandbox::OnViolation::kLog;
  return std::nullopt;
}

// ---- limits/network ------------------------------------------------------------

// A limit set on the sandbox's process (the host's), before the program's
// first instruction.
struct Limit {
  int resource;
  rlim_t soft, hard;
  const char* option;
};

struct Child {
  sandbox::SandboxOptions options;
  sandbox::NetworkPolicy* network = nullptr;  // --unshare-net: told whether the namespace was made
  const sandbox::TreeCgroup* cgroup = nullptr;  // the --cgroup-* limits' cgroup, or none
  std::string stats_path;
  std::vector<Limit> limits;
  int close_fd = -1;  // dunk's, not the program's (--learn's file)
  int kvm_fd = -1;    // inherited by the sandbox (a view's Landlock rules leave /dev/kvm out)
  bool new_session = false;  // --new-session
  std::string chdir;  // without a view: the directory to start in
};

// The --rlimit-* options (sandbox/limits.h): the host's limits to set and
// what the supervisor keeps; empty, or why the command line is refused.
std::string parse_limits(const SandboxCommandOptions& options, std::vector<Limit>& limits,
                         sandbox::LimitSettings& settings) {
  constexpr rlim_t kMinStack = rlim_t{1} << 20;
  for (std::size_t i = 0; i < options.rlimits.size(); ++i) {
    const std::string& text = options.rlimits[i];
    const sandbox::LimitOption& o = sandbox::limit_options()[i];
    if (text.empty()) continue;
    rlimit current{};
    getrlimit(o.resource, &current);
    const sandbox::ParsedLimit p = sandbox::parse_limit(text, o.unit, current);
    if (!p.ok) return fmt::format("{}: {}", o.name, p.error);
    const rlim_t v = p.value;
    switch (o.resource) {
      case RLIMIT_AS:
        // Served by the supervisor, never the host's (limits.h).
        settings.address_space_set = true;
        settings.address_space = rlimit{v, v};
        settings.ceiling[RLIMIT_AS] = v;
        break;
      case RLIMIT_CPU: {
        // SIGXCPU at the limit, SIGKILL a second later (the kernel's
        // behaviour between a soft and a hard limit).
        const rlim_t hard = p.keyword || v == RLIM_INFINITY ? v : v + 1;
        limits.push_back({RLIMIT_CPU, v, hard, o.name});
        settings.ceiling[RLIMIT_CPU] = hard;
        break;
      }
      case RLIMIT_NOFILE:
        // The host's hard limit stays, for dunk's own descriptors above the
        // program's range; the program is held to v (limits.h).
        limits.push_back({RLIMIT_NOFILE, v, std::max(v, current.rlim_max), o.name});
        settings.nofile_set = true;
        settings.nofile_hard = v;
        settings.ceiling[RLIMIT_NOFILE] = v;
        break;
      case RLIMIT_STACK:
        if (v < kMinStack) {
          return fmt::format("{}: at least 1 MiB (the supervisor of the program's first thread runs on the "
                             "process's stack), not '{}'",
                             o.name, text);
        }
        [[fallthrough]];
      default:
        limits.push_back({o.resource, v, v, o.name});
        settings.ceiling[o.resource] = v;
    }
  }
  return {};
}

// A whole number for `option`, at most `max`; or why not.
std::string parse_count(const char* option, const std::string& text, std::uint64_t max, std::uint64_t& out) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos) {
    return fmt::format("{}: '{}' is not a whole number", option, text);
  }
  out = 0;
  for (const char c : text) {
    out = out * 10 + static_cast<std::uint64_t>(c - '0');
    if (out > max) return fmt::format("{}: '{}' is more than {}", option, text, max);
  }
  return {};
}

// --time-limit: every process of the sandbox is dunk's descendant (dunk
// is their subreaper, so an orphan comes back to it rather than to init);
// each is killed, parents before children, pass after pass until none is
// left alive (a process being killed cannot fork, so the passes end).
struct ProcessEntry {
  pid_t pid, parent;
  char state;
};

std::vector<ProcessEntry> read_processes() {
  std::vector<ProcessEntry> all;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return all;
  while (dirent* d = readdir(proc)) {
    if (d->d_name[0] < '1' || d->d_name[0] > '9') continue;
    const int pid = std::atoi(d->d_name);
    char path[64], text[512];
    std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    const ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0) continue;
    text[n] = '\0';
    // "pid (comm) state ppid ...": comm may hold anything but ends at the last ')'.
    const char* close_paren = std::strrchr(text, ')');
    ProcessEntry e{};
    int parent = 0;
    if (close_paren == nullptr || std::sscanf(close_paren + 1, " %c %d", &e.state, &parent) != 2) continue;
    e.pid = static_cast<pid_t>(pid);
    e.parent = parent;
    all.push_back(e);
  }
  closedir(proc);
  return all;
}

void kill_descendants() {
  const pid_t self = getpid();
  for (int pass = 0; pass < 10000; ++pass) {
    const std::vector<ProcessEntry> all = read_processes();
    std::vector<pid_t> tree{self};
    std::size_t alive = 0;
    for (std::size_t next = 0; next < tree.size(); ++next) {
      for (const ProcessEntry& e : all) {
        if (e.parent != tree[next]) continue;
        tree.push_back(e.pid);
        if (e.state != 'Z' && e.state != 'X') {
          kill(e.pid, SIGKILL);
          ++alive;
        }
      }
    }
    if (alive == 0) return;
    usleep(1000);
  }
}

struct TimeLimitState {
  bool fired = false;
  const sandbox::TreeCgroup* cgroup = nullptr;
};

void kill_sandbox_tree(pid_t, void* cookie) {
  auto& state = *static_cast<TimeLimitState*>(cookie);
  state.fired = true;
  if (state.cgroup != nullptr) state.cgroup->kill_all();
  kill_descendants();
}

int sandbox_child(void* arg) {
  auto& child = *static_cast<Child*>(arg);
  if (child.close_fd >= 0) close(child.close_fd);
  if (child.new_session && setsid() < 0) {
    return fail(kExitCannotRun, fmt::format("sandbox: --new-session: setsid failed: {}", std::strerror(errno)));
  }
  // First, so that every process and thread of the sandbox counts.
  if (child.cgroup != nullptr) {
    if (const int err = child.cgroup->enter(); err != 0) {
      return fail(kExitCannotRun, fmt::format("sandbox: cannot move into the cgroup {}: {}", child.cgroup->path(),
                                              std::strerror(err)));
    }
  }
  // --unshare-net: a network namespace of the program's own, inherited by
  // the whole tree, made before VM mode is entered.
  if (child.network != nullptr && child.network->unshare()) {
    const sandbox::NetNamespace ns = sandbox::make_network_namespace();
    if (ns.made && !ns.why.empty()) {
      return fail(kExitCannotRun, "sandbox: --unshare-net: the program's network namespace: " + ns.why);
    }
    if (ns.made) {
      child.network->set_namespace();
    } else {
      // Never a silent change of meaning: the program has no network
      // either way, but no loopback of its own either.
      fmt::print(stderr,
                 "dunk: sandbox: --unshare-net: no network namespace can be made here ({}); no network by "
                 "decision instead: AF_UNIX sockets only, no loopback, no abstract AF_UNIX names\n",
                 ns.why);
    }
  }
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

std::vector<std::string> program_environment(bool drop_stats, const std::vector<std::vector<std::string>>& changes) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view entry(*e);
    if (drop_stats && entry.starts_with("DUNK_STATS=")) continue;
    env.emplace_back(entry);
  }
  // --clearenv, --setenv, --unsetenv, in their order.
  for (const std::vector<std::string>& change : changes) {
    if (change.size() == 2 && change[0].empty()) {
      env.clear();
      continue;
    }
    const std::string prefix = change[0] + "=";
    std::erase_if(env, [&](const std::string& entry) { return entry.starts_with(prefix); });
    if (change.size() == 2) env.push_back(prefix + change[1]);
  }
  return env;
}

// All that can be read from descriptor `text` (a decimal number, as
// bubblewrap's --file FD), or why not.
std::string read_descriptor(const std::string& text, std::string& data) {
  char* end = nullptr;
  const long fd = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || fd < 0 || fd > INT_MAX) return "not a descriptor number";
  char buffer[65536];
  for (;;) {
    const ssize_t n = read(static_cast<int>(fd), buffer, sizeof buffer);
    if (n == 0) return {};
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fmt::format("cannot read descriptor {}: {}", fd, std::strerror(errno));
    data.append(buffer, static_cast<std::size_t>(n));
  }
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
  return search_path(name, status, why, [&](std::string dir) {
    if (dir.empty() || dir[0] != '/') dir = "/" + dir;
    std::string candidate = dir + "/" + name;
    sandbox::FsView::Resolved r;
    if (view.resolve("/", candidate, {}, r) != 0 || !S_ISREG(r.st.st_mode)) return Candidate{candidate, Found::kNothing};
    const bool runs = syscall(SYS_faccessat2, r.object, "", X_OK, AT_EACCESS | AT_EMPTY_PATH) == 0;
    return Candidate{candidate, runs ? Found::kExecutable : Found::kNotExecutable};
  });
}

std::string kvm_device() {
  const char* device = std::getenv("DUNK_KVM_DEVICE");
  return device != nullptr && device[0] != '\0' ? device : "/dev/kvm";
}

// Removes the view's skeleton directory however dunk leaves.
// The command line's forms are the view's kinds, in the same order.
using Form = SandboxCommandOptions::Form;
using Kind = sandbox::BindSpec::Kind;
static_assert(static_cast<int>(Form::kBind) == static_cast<int>(Kind::kBind) &&
              static_cast<int>(Form::kTmpfs) == static_cast<int>(Kind::kTmpfs) &&
              static_cast<int>(Form::kDir) == static_cast<int>(Kind::kDir) &&
              static_cast<int>(Form::kSymlink) == static_cast<int>(Kind::kSymlink) &&
              static_cast<int>(Form::kDev) == static_cast<int>(Kind::kDev) &&
              static_cast<int>(Form::kProc) == static_cast<int>(Kind::kProc));

struct ViewCleanup {
  sandbox::FsView* view = nullptr;
  ~ViewCleanup() {
    if (view != nullptr) view->remove_own_trees();
  }
};

}  // namespace

RlimitOption rlimit_option(std::size_t index) {
  const sandbox::LimitOption& o = sandbox::limit_options()[index];
  return RlimitOption{o.name, o.unit == (1u << 20) ? "MiB" : o.resource == RLIMIT_CPU ? "SECONDS" : "N"};
}

int run_sandbox_command(const SandboxCommandOptions& options) {
  if (options.print_default_policy) {
    fmt::print("{}", sandbox::default_policy_text());
    return 0;
  }
  if (options.command.empty()) return fail(kExitCannotRun, "sandbox: no program given");
  if (!options.unsupported.empty()) return fail(kExitCannotRun, "sandbox: " + options.unsupported);
  const auto on_violation = parse_on_violation(options.on_violation);
  if (!on_violation) {
    return fail(kExitCannotRun, fmt::format("sandbox: --on-violation takes kill, errno or log, not '{}'", options.on_violation));
  }
  if (options.log_format != "text" && options.log_format != "json") {
    return fail(kExitCannotRun, fmt::format("sandbox: --log-format takes text or json, not '{}'", options.log_format));
  }
  // ---- limits/network ----
  std::vector<Limit> limits;
  sandbox::LimitSettings limit_settings;
  if (std::string why = parse_limits(options, limits, limit_settings); !why.empty()) {
    return fail(kExitCannotRun, "sandbox: " + why);
  }
  std::uint64_t seconds = 0;
  if (!options.time_limit.empty()) {
    if (std::string why = parse_count("--time-limit", options.time_limit, 1u << 30, seconds); !why.empty()) {
      return fail(kExitCannotRun, "sandbox: " + why);
    }
  }
  if (!options.max_threads.empty()) {
    std::uint64_t n = 0;
    if (std::string why = parse_count("--max-threads", options.max_threads, 1u << 20, n); !why.empty()) {
      return fail(kExitCannotRun, "sandbox: " + why);
    }
    limit_settings.max_threads = static_cast<std::int64_t>(n);
  }
  sandbox::CgroupLimits cgroup_limits;
  {
    struct {
      const char* option;
      const std::string& text;
      std::uint64_t max;
      std::uint64_t& out;
    } const counts[] = {
        {"--cgroup-mem-max", options.cgroup_mem_max, std::uint64_t{1} << 62, cgroup_limits.memory_max},
        {"--cgroup-pids-max", options.cgroup_pids_max, std::uint64_t{1} << 22, cgroup_limits.pids_max},
        {"--cgroup-cpu-ms-per-sec", options.cgroup_cpu_ms_per_sec, std::uint64_t{1} << 20,
         cgroup_limits.cpu_ms_per_sec},
    };
    for (const auto& c : counts) {
      if (c.text.empty()) continue;
      if (std::string why = parse_count(c.option, c.text, c.max, c.out); !why.empty()) {
        return fail(kExitCannotRun, "sandbox: " + why);
      }
    }
  }
  sandbox::NetworkPolicy network;
  if (options.unshare_net) network.set_unshare();
  for (const std::string& rule : options.allow_connect) {
    if (std::string why = network.add_connect(rule); !why.empty()) {
      return fail(kExitCannotRun, "sandbox: --allow-connect: " + why);
    }
  }
  for (const std::string& port : options.allow_bind) {
    if (std::string why = network.add_bind(port); !why.empty()) {
      return fail(kExitCannotRun, "sandbox: --allow-bind: " + why);
    }
  }
  sandbox::LoadResult policy =
      options.policy_path.empty()
          ? sandbox::load_default_policy(sandbox::LoadOptions::for_this_process("the built-in default policy"))
          : sandbox::load_policy_file(options.policy_path, sandbox::LoadOptions::for_this_process(options.policy_path));
  if (!policy) return fail(kExitCannotRun, policy.error());
  // --learn: the run allows every call; `policy` is the reference the
  // learned one is compared with.
  std::optional<sandbox::LoadResult> allow_all;
  sandbox::CallLog* learned = nullptr;
  int learn_fd = -1;
  if (!options.learn_path.empty()) {
    allow_all.emplace(sandbox::load_policy_text(R"({"defaultAction": "SCMP_ACT_ALLOW"})",
                                                sandbox::LoadOptions::for_this_process("--learn")));
    if (!*allow_all) return fail(kExitCannotRun, allow_all->error());
    learn_fd = open(options.learn_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (learn_fd < 0) {
      return fail(kExitCannotRun,
                  fmt::format("sandbox: --learn: cannot write {}: {}", options.learn_path, std::strerror(errno)));
    }
    learned = sandbox::CallLog::create();
    if (learned == nullptr) return fail(kExitCannotRun, "sandbox: --learn: cannot map the record of the run's calls");
  }

  // The view: every SRC opened and checked before anything runs.
  if (!options.bind_error.empty()) return fail(kExitCannotRun, "sandbox: " + options.bind_error);
  if (options.pending_perms >= 0) {
    return fail(kExitCannotRun, fmt::format("sandbox: --perms {:o}: no --tmpfs, --dir, --file, --bind-data or "
                                            "--ro-bind-data after it",
                                            options.pending_perms));
  }
  std::unique_ptr<sandbox::FsView> view;
  ViewCleanup cleanup;
  int landlock = 0;
  if (!options.binds.empty()) {
    std::vector<sandbox::BindSpec> specs;
    for (const auto& b : options.binds) {
      sandbox::BindSpec& spec = specs.emplace_back(sandbox::BindSpec{.option = b.option,
                                                                     .source = b.source,
                                                                     .destination = b.destination,
                                                                     .writable = b.writable,
                                                                     .kind = static_cast<sandbox::BindSpec::Kind>(b.form),
                                                                     .optional = b.optional,
                                                                     .perms = b.perms});
      if (b.form == Form::kData) {
        if (std::string err = read_descriptor(b.source, spec.data); !err.empty()) {
          return fail(kExitCannotRun, fmt::format("sandbox: {} {} {}: {}", b.option, b.source, b.destination, err));
        }
      }
    }
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

  // The host filter: what the policy the program runs under may allow
  // (under --learn, every call), what the view turns it into, what dunk
  // needs; every other call kills the process.
  std::vector<std::uint64_t> host_filter;
  const sandbox::Policy& enforced = allow_all ? allow_all->value() : policy.value();
  const sandbox::HostFilterFor with{.view = view != nullptr, .network = network.active()};
  if (const std::vector<int> calls = sandbox::host_filter_calls(enforced, *on_violation, with); !calls.empty()) {
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
  child.options.policy = &enforced;
  child.network = &network;
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
  child.options.envp = program_environment(stats.has_value(), options.environment);
  child.new_session = options.new_session;
  child.options.host_filter = std::move(host_filter);
  child.limits = std::move(limits);
  child.options.limits = limit_settings;
  child.options.network = &network;
  child.options.learn = learned;
  child.close_fd = learn_fd;
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

  // The tree's cgroup: made (and its limits written) before anything runs,
  // after the last refusal that could leave it behind.
  sandbox::TreeCgroup cgroup;
  if (cgroup_limits.any()) {
    if (std::string refused = cgroup.create(cgroup_limits); !refused.empty()) {
      return fail(kExitCannotRun, "sandbox: --cgroup-*: cgroup v2: " + refused);
    }
    child.cgroup = &cgroup;
  }
  TimeLimitState limit_state{false, cgroup.active() ? &cgroup : nullptr};
  const bool& timed_out = limit_state.fired;
  const TimeLimit time_limit{seconds, &kill_sandbox_tree, &limit_state};
  // Orphans of the sandbox come back to dunk, which must find them all
  // when the time is up (or, under a cgroup, when the program ends).
  // So too when dunk made directories for the view that the program
  // writes in (--tmpfs, --dir, --dev's shm): they go when it ends.
  const bool ends_with_program = seconds != 0 || cgroup.active() || (view && view->has_own_trees());
  if (ends_with_program) prctl(PR_SET_CHILD_SUBREAPER, 1);
  Result<int> wait_status = run_function_child(sandbox_child, &child, seconds != 0 ? &time_limit : nullptr);
  // What the program left running would outlive the time limit, or keep
  // the cgroup alive: the sandbox ends with its program.
  if (ends_with_program && !timed_out) {
    cgroup.kill_all();
    kill_descendants();
  }
  // Then what dunk made for the view goes (--tmpfs, --dir, --dev, the skeleton).
  if (view && !view->remove_own_trees()) {
    fmt::print(stderr, "dunk: sandbox: cannot remove all of {}, which dunk made for the view\n", view->own_path());
  }
  sandbox::TreeCounts tree;
  if (cgroup.active()) {
    if (std::string left = cgroup.finish(tree); !left.empty()) fail(0, "sandbox: " + left);
  }
  if (!wait_status) return fail(kExitCannotRun, fmt::format("cannot start the sandbox: {}", wait_status.error().what));
  if (stats) report_stats(options, *stats, *wait_status);
  if (learned != nullptr) {
    const std::string reference =
        options.policy_path.empty() ? "dunk's default policy" : "the policy " + options.policy_path;
    const std::string text = sandbox::learn_policy(learned->calls(), &policy.value(), reference);
    const bool written = write(learn_fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    const int err = errno;
    close(learn_fd);
    if (!written) {
      return fail(kExitCannotRun,
                  fmt::format("sandbox: --learn: cannot write {}: {}", options.learn_path, std::strerror(err)));
    }
  }
  if (timed_out) {
    fmt::print(stderr, "dunk: {}: killed at the time limit ({} s, --time-limit)\n", options.command[0], seconds);
    return kExitTimeLimit;
  }
  if (tree.pids_refused != 0) {
    fmt::print(stderr, "dunk: sandbox: {} fork{} or thread{} of the tree refused (EAGAIN) at --cgroup-pids-max {}\n",
               tree.pids_refused, tree.pids_refused == 1 ? "" : "s", tree.pids_refused == 1 ? "" : "s",
               cgroup_limits.pids_max);
  }
  const bool killed_by_oom = WIFSIGNALED(*wait_status) && WTERMSIG(*wait_status) == SIGKILL && tree.oom_kills != 0;
  if (killed_by_oom) {
    fmt::print(stderr, "dunk: {}: killed by the OOM killer at the tree's memory limit (--cgroup-mem-max {} bytes)\n",
               options.command[0], cgroup_limits.memory_max);
    end_like(*wait_status);
  }
  if (tree.oom_kills != 0) {
    fmt::print(stderr, "dunk: sandbox: the OOM killer killed {} process{} of the tree at --cgroup-mem-max {} bytes\n",
               tree.oom_kills, tree.oom_kills == 1 ? "" : "es", cgroup_limits.memory_max);
  }
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
