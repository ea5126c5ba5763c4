#include "bench/sandbox_bench.h"

#include <fcntl.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "bench/probes.h"
#include "bench/sandbox_loop.h"
#include "bench/seccomp_policy.h"
#include "sandbox/policy.h"

namespace dunk::bench {
namespace {

using sandbox::Action;

constexpr const char* kAllowedName = "getpid";
constexpr const char* kDeniedName = "getppid";

// The ways the rows compare, in the order they run.
enum class Way { kNative, kDunk, kSeccompBpf, kSeccompNotify, kPtrace };
constexpr Way kWays[] = {Way::kNative, Way::kDunk, Way::kSeccompBpf, Way::kSeccompNotify, Way::kPtrace};

const char* way_name(Way w) {
  switch (w) {
    case Way::kNative: return "native";
    case Way::kDunk: return "dunk sandbox";
    case Way::kSeccompBpf: return "seccomp-bpf";
    case Way::kSeccompNotify: return "seccomp notify";
    case Way::kPtrace: return "ptrace";
  }
  return "?";
}

// What one run of the loop gave: its own time and answers, and what the
// whole run cost the host (every process and thread it involved).
struct Run {
  dunk_sandbox_loop_result loop{};
  std::uint64_t host_calls = 0;
  bool host_calls_counted = false;  // false without tracefs or perf events
  // dunk's way only, from `dunk sandbox --stats-json`: returns from KVM_RUN,
  // forwarded calls by name, and the report lines of the denials.
  std::uint64_t exits = 0;
  std::uint64_t forwarded_call = 0;    // of the loop's call
  std::uint64_t forwarded_writes = 0;  // write: the reports go out this way
  std::uint64_t reports = 0;
};

// What the rows share: the policy three ways, where dunk's programs are.
struct Setup {
  std::string policy_text;
  std::optional<sandbox::Policy> policy;  // the supervisors decide with it
  std::vector<sock_filter> bpf;           // seccomp-bpf's program for it
  std::string dunk;                       // this executable
  std::string loop_program;               // dunk-sandbox-loop beside it
  std::string dir;                        // a temporary directory
};

// ---- the child's side ----------------------------------------------------------

// Runs the loop and hands its result to the parent through `fd`.
[[noreturn]] void loop_and_report(int fd, long nr, long n) {
  const dunk_sandbox_loop_result r = dunk_sandbox_loop(nr, n);
  (void)!write(fd, &r, sizeof r);
  _exit(0);
}

// seccomp user notification: the supervisor, a thread of the sandboxed
// process started before the filter (so not under it), decides each call
// with the policy and answers: CONTINUE for an allowed call, the errno for a
// denied one.
struct NotifySupervisor {
  const sandbox::Policy* policy = nullptr;
  std::atomic<int> listener{-1};
};
NotifySupervisor notify_supervisor;

void* answer_every_call(void*) {
  while (notify_supervisor.listener.load() < 0) usleep(100);
  const int fd = notify_supervisor.listener.load();
  for (;;) {
    seccomp_notif req{};
    if (ioctl(fd, SECCOMP_IOCTL_NOTIF_RECV, &req) != 0) {
      if (errno == EINTR || errno == ENOENT) continue;
      return nullptr;
    }
    sandbox::Args args{};
    for (int i = 0; i < 6; ++i) args[i] = req.data.args[i];
    const sandbox::Decision d = notify_supervisor.policy->decide(req.data.nr, args);
    seccomp_notif_resp resp{};
    resp.id = req.id;
    if (!sandbox::denies(d.action)) {
      resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
    } else if (d.action == Action::kErrno) {
      resp.error = -static_cast<int>(d.err);
    } else {
      kill(getpid(), SIGKILL);  // the kill and trap actions: the rows' loop makes none
    }
    (void)ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, &resp);
  }
}

[[noreturn]] void notify_child(const Setup& setup, int fd, long nr, long n) {
  notify_supervisor.policy = &*setup.policy;
  pthread_t supervisor;
  if (pthread_create(&supervisor, nullptr, answer_every_call, nullptr) != 0) _exit(1);
  const long listener = install_bpf(every_call_bpf(SECCOMP_RET_USER_NOTIF), SECCOMP_FILTER_FLAG_NEW_LISTENER);
  if (listener < 0) _exit(1);
  notify_supervisor.listener.store(static_cast<int>(listener));
  loop_and_report(fd, nr, n);
}

// ---- the parent's side -----------------------------------------------------------

// ptrace: every call stops the child (SECCOMP_RET_TRACE, one stop per
// call); the tracer decides it with the policy and denies it by turning the
// call into -1 (none) with the errno as its result.
bool trace_every_call(pid_t pid, const sandbox::Policy& policy) {
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFSTOPPED(status)) return false;
  if (ptrace(PTRACE_SETOPTIONS, pid, nullptr,
             reinterpret_cast<void*>(PTRACE_O_TRACESECCOMP | PTRACE_O_EXITKILL)) != 0) {
    return false;
  }
  int deliver = 0;
  for (;;) {
    if (ptrace(PTRACE_CONT, pid, nullptr, reinterpret_cast<void*>(static_cast<long>(deliver))) != 0) return false;
    deliver = 0;
    if (waitpid(pid, &status, 0) != pid) return false;
    if (WIFEXITED(status) || WIFSIGNALED(status)) return WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!WIFSTOPPED(status)) continue;
    if (status >> 8 != (SIGTRAP | (PTRACE_EVENT_SECCOMP << 8))) {
      deliver = WSTOPSIG(status) == SIGSTOP ? 0 : WSTOPSIG(status);
      continue;
    }
    user_regs_struct regs{};
    if (ptrace(PTRACE_GETREGS, pid, nullptr, &regs) != 0) return false;
    const sandbox::Args args{regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9};
    const sandbox::Decision d = policy.decide(static_cast<int>(regs.orig_rax), args);
    if (!sandbox::denies(d.action)) continue;
    if (d.action != Action::kErrno) {
      kill(pid, SIGKILL);  // the kill and trap actions: the rows' loop makes none
      continue;
    }
    regs.orig_rax = static_cast<unsigned long long>(-1);
    regs.rax = static_cast<unsigned long long>(-static_cast<long long>(d.err));
    if (ptrace(PTRACE_SETREGS, pid, nullptr, &regs) != 0) return false;
  }
}

// Runs the loop `n` times one way in a child process; false with `why` when
// it could not.
bool run_in_child(const Setup& setup, Way way, long nr, long n, Run& run, std::string& why) {
  UniqueFd counter = open_syscall_counter(why, /*inherit=*/true);
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    why = fmt::format("pipe failed: {}", std::strerror(errno));
    return false;
  }
  const std::uint64_t calls_before = read_counter(counter);
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    switch (way) {
      case Way::kSeccompBpf:
        if (install_bpf(setup.bpf, 0) < 0) _exit(1);
        break;
      case Way::kSeccompNotify: notify_child(setup, fds[1], nr, n);
      case Way::kPtrace:
        if (ptrace(PTRACE_TRACEME, 0, nullptr, nullptr) != 0) _exit(1);
        raise(SIGSTOP);
        if (install_bpf(every_call_bpf(SECCOMP_RET_TRACE), 0) < 0) _exit(1);
        break;
      default: break;
    }
    loop_and_report(fds[1], nr, n);
  }
  close(fds[1]);
  bool ok = pid > 0;
  if (ok && way == Way::kPtrace && !trace_every_call(pid, *setup.policy)) {
    kill(pid, SIGKILL);  // stopped, and never to write its result
    ok = false;
  }
  ok = ok && read(fds[0], &run.loop, sizeof run.loop) == sizeof run.loop;
  close(fds[0]);
  int status = 0;
  // The tracer has reaped its child already.
  if (pid > 0 && waitpid(pid, &status, 0) == pid) ok = ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  run.host_calls = read_counter(counter) - calls_before;
  run.host_calls_counted = counter.valid();
  if (!ok) why = fmt::format("the {} child failed (could not install its filter or supervisor)", way_name(way));
  return ok;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// dunk's way: `dunk sandbox --policy P -- dunk-sandbox-loop CALL N`.
bool run_in_dunk_sandbox(const Setup& setup, bool allowed, long n, Run& run, std::string& why) {
  const std::string policy = setup.dir + "/policy.json", stats = setup.dir + "/stats.json",
                    log = setup.dir + "/reports.log", out = setup.dir + "/out.txt";
  const std::string count = std::to_string(n);
  const char* argv[] = {setup.dunk.c_str(), "sandbox", "--policy", policy.c_str(), "--stats-json", stats.c_str(),
                        "--log", log.c_str(), "--", setup.loop_program.c_str(), allowed ? "allowed" : "denied",
                        count.c_str(), nullptr};
  UniqueFd counter = open_syscall_counter(why, /*inherit=*/true);
  const std::uint64_t calls_before = read_counter(counter);
  const pid_t pid = fork();
  if (pid == 0) {
    const int fd = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || dup2(fd, 1) != 1) _exit(126);
    execv(argv[0], const_cast<char* const*>(argv));
    _exit(127);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    why = fmt::format("dunk sandbox -- {} {} {} failed (status {:#x}): {}", setup.loop_program, argv[10], n, status,
                      read_text(log));
    return false;
  }
  run.host_calls = read_counter(counter) - calls_before;
  run.host_calls_counted = counter.valid();
  if (std::sscanf(read_text(out).c_str(), "ns %lld return %ld errno %d mismatches %ld", &run.loop.ns,
                  &run.loop.first_return, &run.loop.first_errno, &run.loop.mismatches) != 4) {
    why = "dunk-sandbox-loop printed no result under dunk sandbox";
    return false;
  }
  const nlohmann::json s = nlohmann::json::parse(read_text(stats), nullptr, /*allow_exceptions=*/false);
  if (s.is_discarded() || !s.contains("totals") || !s.contains("syscalls")) {
    why = "dunk sandbox wrote no statistics";
    return false;
  }
  const nlohmann::json& calls = s["syscalls"];
  const char* name = allowed ? kAllowedName : kDeniedName;
  run.exits = s["totals"].value("exits", std::uint64_t{0});
  run.forwarded_call = calls.value(name, std::uint64_t{0});
  run.forwarded_writes = calls.value("write", std::uint64_t{0});
  const std::string reports = read_text(log), line = fmt::format("dunk sandbox: denied {}()", name);
  for (std::size_t at = reports.find(line); at != std::string::npos; at = reports.find(line, at + 1)) ++run.reports;
  return true;
}

bool run_way(const Setup& setup, Way way, bool allowed, long n, Run& run, std::string& why) {
  if (way == Way::kDunk) return run_in_dunk_sandbox(setup, allowed, n, run, why);
  return run_in_child(setup, way, allowed ? DUNK_SANDBOX_ALLOWED_CALL : DUNK_SANDBOX_DENIED_CALL, n, run, why);
}

// The answer a row's calls got, in words: "-1 EACCES" or "ok".
std::string answer_text(const dunk_sandbox_loop_result& r) {
  if (r.first_return >= 0) return "ok";
  const char* name = strerrorname_np(r.first_errno);
  return fmt::format("-1 {}", name != nullptr ? name : std::to_string(r.first_errno));
}

// Whether the calls got what the way must give: the allowed call (and the
// denied one without a policy) runs; under a policy the denied one fails
// with the policy's errno; every call as the first.
bool answer_right(Way way, bool allowed, const dunk_sandbox_loop_result& r) {
  if (r.mismatches != 0) return false;
  if (allowed || way == Way::kNative) return r.first_return > 0;
  return r.first_return == -1 && r.first_errno == DUNK_SANDBOX_DENIED_ERRNO;
}

Result row(const Setup& setup, Way way, bool allowed, long n, Report& report) {
  Result r;
  r.name = fmt::format("sandbox {} {}", allowed ? "allowed" : "denied", allowed ? kAllowedName : kDeniedName);
  r.mode = way_name(way);
  r.iterations = static_cast<std::uint64_t>(n);
  Run full, empty;
  std::string why;
  if (!run_way(setup, way, allowed, n, full, why) || !run_way(setup, way, allowed, 0, empty, why)) {
    r.ns_per_op = -1;
    r.note = why;
    return r;
  }
  auto per_call = [n](std::uint64_t a, std::uint64_t b) {
    return (static_cast<double>(a) - static_cast<double>(b)) / static_cast<double>(n);
  };
  r.ns_per_op = static_cast<double>(full.loop.ns) / static_cast<double>(n);
  // The whole run's host calls, N calls minus none: a process's start-up
  // varies by a few calls, which can make a difference of none negative.
  r.host_syscalls_per_op =
      full.host_calls_counted ? std::max(0.0, per_call(full.host_calls, empty.host_calls)) : -1;
  r.answer = answer_text(full.loop);
  if (!answer_right(way, allowed, full.loop)) {
    report.failures.push_back(fmt::format("{} ({}): the calls were answered {} ({} of {} differently)", r.name, r.mode,
                                          r.answer, full.loop.mismatches, n));
  }
  if (way != Way::kDunk) {
    r.userspace_exits_per_op = 0;
    r.kvm_exits_per_op = 0;
    r.note = "no VM; host calls: every process and thread of the run, the supervisor's included";
    return r;
  }
  const std::uint64_t exits = full.exits - empty.exits, forwarded = full.forwarded_call - empty.forwarded_call,
                      writes = full.forwarded_writes - empty.forwarded_writes;
  r.userspace_exits_per_op = per_call(full.exits, empty.exits);
  r.counts = {{"calls", static_cast<double>(n)},
              {"vm_exits", static_cast<double>(exits)},
              {"forwarded_calls", static_cast<double>(forwarded)},
              {"report_writes", static_cast<double>(writes)},
              {"reports", static_cast<double>(full.reports)},
              {"host_calls", static_cast<double>(full.host_calls) - static_cast<double>(empty.host_calls)}};
  r.note = fmt::format(
      "{} calls: {} VM exits (dunk sandbox --stats-json), {} of them the call forwarded, {} writes of the "
      "denials' {} report lines; host calls: the whole run's (dunk, the sandbox), less a run of 0 calls; KVM's own "
      "exit count is not collected across processes",
      n, exits, forwarded, writes, full.reports);
  return r;
}

// dunk's executable and dunk-sandbox-loop beside it (the build tree, and
// libexec/dunk/ of an installation, hold both).
bool find_programs(Setup& setup, std::string& why) {
  char exe[4096];
  const ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (len <= 0) {
    why = "cannot read /proc/self/exe";
    return false;
  }
  setup.dunk.assign(exe, static_cast<std::size_t>(len));
  setup.loop_program = setup.dunk.substr(0, setup.dunk.rfind('/')) + "/dunk-sandbox-loop";
  if (access(setup.loop_program.c_str(), X_OK) != 0) {
    why = fmt::format("{}: {} (built with dunk)", setup.loop_program, std::strerror(errno));
    return false;
  }
  return true;
}

bool prepare(Setup& setup, std::string& why) {
  if (!find_programs(setup, why)) return false;
  setup.policy_text = sandbox_rows_policy();
  if (setup.policy_text.empty()) {
    why = "the built-in default policy does not parse";
    return false;
  }
  sandbox::LoadResult loaded =
      sandbox::load_policy_text(setup.policy_text, sandbox::LoadOptions::for_this_process("the rows' policy"));
  if (!loaded) {
    why = loaded.error();
    return false;
  }
  setup.policy.emplace(std::move(loaded).value());
  setup.bpf = policy_bpf(setup.policy_text, why);
  if (setup.bpf.empty()) return false;
  char dir[] = "/tmp/dunk-sandbox-bench-XXXXXX";
  if (mkdtemp(dir) == nullptr) {
    why = fmt::format("mkdtemp failed: {}", std::strerror(errno));
    return false;
  }
  setup.dir = dir;
  std::ofstream(setup.dir + "/policy.json") << setup.policy_text << '\n';
  return true;
}

void clean_up(const Setup& setup) {
  if (setup.dir.empty()) return;
  for (const char* name : {"policy.json", "stats.json", "reports.log", "out.txt"}) {
    std::remove((setup.dir + "/" + name).c_str());
  }
  rmdir(setup.dir.c_str());
}

}  // namespace

std::string sandbox_rows_policy() {
  nlohmann::json policy =
      nlohmann::json::parse(sandbox::default_policy_text(), nullptr, /*allow_exceptions=*/false);
  if (policy.is_discarded() || !policy.contains("syscalls")) return {};
  // getppid leaves the default's allowed calls for a rule of its own.
  for (nlohmann::json& rule : policy["syscalls"]) {
    nlohmann::json& names = rule["names"];
    for (auto it = names.begin(); it != names.end();) {
      it = *it == kDeniedName ? names.erase(it) : it + 1;
    }
  }
  policy["syscalls"].push_back({{"names", {kDeniedName}},
                                {"action", "SCMP_ACT_ERRNO"},
                                {"errnoRet", DUNK_SANDBOX_DENIED_ERRNO},
                                {"comment", "dunk bench's denied call"}});
  return policy.dump(2);
}

void run_sandbox_rows(std::uint64_t iterations, const Options& options, Report& report) {
  // Opt-in: only when --only names them.
  if (options.only.empty() || !(options.wants("sandbox allowed") || options.wants("sandbox denied"))) return;
  Setup setup;
  std::string why;
  const bool ready = prepare(setup, why);
  const long fast = static_cast<long>(std::max<std::uint64_t>(iterations / 10, 100));
  const long slow = static_cast<long>(std::max<std::uint64_t>(iterations / 100, 100));
  for (bool allowed : {true, false}) {
    for (Way way : kWays) {
      const long n = way == Way::kSeccompNotify || way == Way::kPtrace ? slow : fast;
      if (!options.wants(fmt::format("sandbox {} ", allowed ? "allowed" : "denied"))) continue;
      if (!ready) {
        Result r;
        r.name = fmt::format("sandbox {} {}", allowed ? "allowed" : "denied", allowed ? kAllowedName : kDeniedName);
        r.mode = way_name(way);
        r.ns_per_op = -1;
        r.note = why;
        report.results.push_back(r);
        continue;
      }
      report.results.push_back(row(setup, way, allowed, n, report));
    }
  }
  clean_up(setup);
}

}  // namespace dunk::bench
