#include "bench/bench.h"

#include <fcntl.h>
#include <linux/perf_event.h>
#include <sys/syscall.h>
#include <pthread.h>
#include <signal.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "arch/x86_64/cpuid.h"
#include "base/unique_fd.h"
#include "core/machine.h"
#include "dunk/dunk.h"
#include "kvm/kvm.h"

namespace dunk::bench {
namespace {

std::uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

// Counts the system calls this thread makes, via the raw_syscalls:sys_enter
// tracepoint (perf_event_open(2), PERF_TYPE_TRACEPOINT). Needs tracefs and
// permission to use tracepoints; `why` says what was missing.
UniqueFd open_syscall_counter(std::string& why) {
  const char* paths[] = {"/sys/kernel/tracing/events/raw_syscalls/sys_enter/id",
                         "/sys/kernel/debug/tracing/events/raw_syscalls/sys_enter/id"};
  long id = -1;
  for (const char* path : paths) {
    if (FILE* f = std::fopen(path, "r")) {
      if (std::fscanf(f, "%ld", &id) != 1) id = -1;
      std::fclose(f);
      if (id >= 0) break;
    }
  }
  if (id < 0) {
    why = "tracefs not mounted (raw_syscalls:sys_enter id unreadable)";
    return UniqueFd();
  }
  perf_event_attr attr{};
  attr.type = PERF_TYPE_TRACEPOINT;
  attr.size = sizeof attr;
  attr.config = static_cast<std::uint64_t>(id);
  long fd = syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
  if (fd < 0) {
    why = fmt::format("perf_event_open(raw_syscalls:sys_enter) failed: {}", std::strerror(errno));
    return UniqueFd();
  }
  return UniqueFd(static_cast<int>(fd));
}

struct Counters {
  std::uint64_t userspace_exits = 0;
  std::uint64_t kvm_exits = 0;
  std::uint64_t host_syscalls = 0;
};

struct Probes {
  UniqueFd syscalls;  // invalid when unavailable
  UniqueFd kvm_stats;
  std::string syscalls_note;
  std::string kvm_note;

  Counters read() const {
    Counters c;
    c.userspace_exits = core::Machine::instance().created() ? core::Machine::instance().stats().kvm_runs.load() : 0;
    if (kvm_stats.valid()) {
      if (auto v = kvm::read_stat(kvm_stats.get(), "exits")) c.kvm_exits = *v;
    }
    if (syscalls.valid()) {
      std::uint64_t n = 0;
      if (::read(syscalls.get(), &n, sizeof n) == sizeof n) c.host_syscalls = n;
    }
    return c;
  }
};

using Operation = void (*)();

void getpid_op() { syscall(SYS_getpid); }

// A signal sent to this thread and handled: raise(), the handler, and the
// return through rt_sigreturn.
volatile sig_atomic_t signals_handled = 0;
void count_signal(int) { signals_handled = signals_handled + 1; }
void signal_op() { raise(SIGUSR1); }

void* thread_body(void*) { return nullptr; }
void thread_op() {
  pthread_t t;
  if (pthread_create(&t, nullptr, thread_body, nullptr) == 0) pthread_join(t, nullptr);
}

// In VM mode the child enters a VM of its own (EnterOptions::follow_fork,
// as under dunk exec); it exits at once.
void fork_op() {
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  if (pid > 0) waitpid(pid, nullptr, 0);
}

struct Benchmark {
  const char* name;
  Operation op;
  std::uint64_t divisor;  // of --iterations: the costly operations run fewer times
};

constexpr Benchmark kBenchmarks[] = {
    {"getpid", getpid_op, 1},
    {"signal", signal_op, 10},
    {"thread", thread_op, 100},
    {"fork", fork_op, 1000},
};

// Times `iterations` runs of `op` on this thread, in VM mode or not.
std::uint64_t timed_loop(Operation op, std::uint64_t iterations) {
  std::uint64_t t0 = now_ns();
  for (std::uint64_t i = 0; i < iterations; ++i) op();
  return now_ns() - t0;
}

Result measure_native(const char* name, Operation op, std::uint64_t iterations, const Probes& probes) {
  Result r;
  r.name = name, r.mode = "native", r.iterations = iterations;
  Counters before = probes.read();
  std::uint64_t ns = timed_loop(op, iterations);
  Counters after = probes.read();
  Counters empty_before = probes.read();
  timed_loop(op, 0);
  Counters empty_after = probes.read();
  r.ns_per_op = static_cast<double>(ns) / static_cast<double>(iterations);
  if (probes.syscalls.valid()) {
    double loop = static_cast<double>(after.host_syscalls - before.host_syscalls);
    double empty = static_cast<double>(empty_after.host_syscalls - empty_before.host_syscalls);
    r.host_syscalls_per_op = (loop - empty) / static_cast<double>(iterations);
  } else {
    r.note = probes.syscalls_note;
  }
  r.userspace_exits_per_op = 0;
  r.kvm_exits_per_op = 0;
  return r;
}

// Enter, loop, leave; the same with an empty loop; the difference of the
// counters over the two is what the operations cost.
Result measure_vm(const char* name, Operation op, std::uint64_t iterations, const Probes& probes) {
  Result r;
  r.name = name, r.mode = "vm", r.iterations = iterations;
  auto run = [&](std::uint64_t n, std::uint64_t& ns) {
    Counters before = probes.read();
    if (!enter(EnterOptions{.follow_fork = true})) return Counters{};
    ns = timed_loop(op, n);
    leave();
    Counters after = probes.read();
    return Counters{after.userspace_exits - before.userspace_exits, after.kvm_exits - before.kvm_exits,
                    after.host_syscalls - before.host_syscalls};
  };
  std::uint64_t ns = 0, empty_ns = 0;
  Counters loop = run(iterations, ns);
  Counters empty = run(0, empty_ns);
  auto per_op = [&](std::uint64_t a, std::uint64_t b) {
    return (static_cast<double>(a) - static_cast<double>(b)) / static_cast<double>(iterations);
  };
  r.ns_per_op = static_cast<double>(ns) / static_cast<double>(iterations);
  r.userspace_exits_per_op = per_op(loop.userspace_exits, empty.userspace_exits);
  if (probes.kvm_stats.valid()) {
    r.kvm_exits_per_op = per_op(loop.kvm_exits, empty.kvm_exits);
  } else {
    r.note = probes.kvm_note;
  }
  if (probes.syscalls.valid()) {
    r.host_syscalls_per_op = per_op(loop.host_syscalls, empty.host_syscalls);
  } else {
    r.note += (r.note.empty() ? "" : "; ") + probes.syscalls_note;
  }
  return r;
}

std::string describe_environment() {
  utsname u{};
  uname(&u);
  arch::CpuidEntry leaf1 = arch::host_cpuid(1, 0);
  bool nested = (leaf1.ecx >> 31) & 1;  // CPUID.1:ECX.31, "hypervisor present"
  return fmt::format("Linux {} {}; {}", u.release, u.machine,
                     nested ? "this host is itself a virtual machine (nested KVM: times are emulated or "
                              "nested; read ratios and counts, not absolute times)"
                            : "bare-metal host");
}

}  // namespace

bool run(const Options& options, Report& report) {
  report.environment = describe_environment();
  // Create the VM and this thread's vCPU before measuring anything.
  if (Status s = enter(); !s) {
    char buf[512];
    std::fprintf(stderr, "dunk: %s\n", describe(s.error(), buf, sizeof buf));
    return false;
  }
  leave();

  Probes probes;
  probes.syscalls = open_syscall_counter(probes.syscalls_note);
  if (core::Cpu* cpu = core::current_cpu()) {
    if (auto fd = cpu->vcpu.stats_fd()) {
      probes.kvm_stats = std::move(*fd);
    } else {
      probes.kvm_note = "KVM_GET_STATS_FD unavailable (Linux 5.14+)";
    }
  }

  struct sigaction sa {};
  sa.sa_handler = count_signal;
  sigaction(SIGUSR1, &sa, nullptr);
  for (const Benchmark& b : kBenchmarks) {
    const std::uint64_t n = std::max<std::uint64_t>(options.iterations / b.divisor, 20);
    report.results.push_back(measure_native(b.name, b.op, n, probes));
    report.results.push_back(measure_vm(b.name, b.op, n, probes));
  }
  return true;
}

namespace {

std::string count_text(double v) { return v < 0 ? "n/a" : fmt::format("{:.3f}", v); }

const Result* find(const Report& report, const std::string& name, const char* mode) {
  for (const Result& r : report.results) {
    if (r.name == name && r.mode == mode) return &r;
  }
  return nullptr;
}

}  // namespace

void print(const Report& report) {
  fmt::print("dunk bench — {}\n\n", report.environment);
  fmt::print("{:<12} {:<7} {:>12} {:>13} {:>14} {:>12} {:>14}\n", "operation", "mode", "iterations", "ns/op",
             "user exits/op", "VM exits/op", "host calls/op");
  for (const Result& r : report.results) {
    fmt::print("{:<12} {:<7} {:>12} {:>13.1f} {:>14} {:>12} {:>14}\n", r.name, r.mode, r.iterations, r.ns_per_op,
               count_text(r.userspace_exits_per_op), count_text(r.kvm_exits_per_op),
               count_text(r.host_syscalls_per_op));
  }
  fmt::print("\n");
  for (const Result& r : report.results) {
    if (r.mode != "vm") continue;
    if (const Result* native = find(report, r.name, "native")) {
      fmt::print("{}: VM mode / native = {:.1f}x\n", r.name, r.ns_per_op / native->ns_per_op);
    }
    if (!r.note.empty()) fmt::print("{} ({}): {}\n", r.name, r.mode, r.note);
  }
  fmt::print(
      "\nuser exits: KVM_RUN returns to dunk's monitors (all threads of this process); VM exits: every exit\n"
      "KVM counted on this thread's vCPU, host interrupts included; host calls: system calls this thread made\n"
      "on the host (KVM_RUN and the forwarded call). A new thread's or a fork child's own exits and calls\n"
      "count only where they land in this process's vCPUs or this thread: read those rows for times.\n");
}

bool write_json(const Report& report, const std::string& path) {
  nlohmann::json results = nlohmann::json::array();
  for (const Result& r : report.results) {
    nlohmann::json j = {{"operation", r.name}, {"mode", r.mode}, {"iterations", r.iterations},
                        {"ns_per_op", r.ns_per_op}};
    auto count = [&](const char* key, double v) { j[key] = v < 0 ? nlohmann::json(nullptr) : nlohmann::json(v); };
    count("userspace_exits_per_op", r.userspace_exits_per_op);
    count("kvm_exits_per_op", r.kvm_exits_per_op);
    count("host_syscalls_per_op", r.host_syscalls_per_op);
    if (!r.note.empty()) j["note"] = r.note;
    results.push_back(std::move(j));
  }
  nlohmann::json doc = {{"environment", report.environment}, {"results", std::move(results)}};
  std::ofstream out(path);
  out << doc.dump(2) << '\n';
  return static_cast<bool>(out);
}

}  // namespace dunk::bench
