#include "bench/bench.h"

#include <fcntl.h>
#include <linux/perf_event.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
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
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "arch/x86_64/cpuid.h"
#include "bench/dirty_scale.h"
#include "bench/privileged.h"
#include "bench/probes.h"
#include "bench/sandbox_bench.h"
#include "bench/sthread_rows.h"
#include "base/unique_fd.h"
#include "core/machine.h"
#include "dunk/dunk.h"
#include "kvm/kvm.h"

namespace dunk::bench {

std::uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

// probes.h. The raw_syscalls:sys_enter tracepoint through perf_event_open(2)
// (PERF_TYPE_TRACEPOINT): needs tracefs and permission to use tracepoints.
UniqueFd open_syscall_counter(std::string& why, bool inherit, const char* filter) {
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
  attr.inherit = inherit ? 1 : 0;
  long fd = syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
  if (fd < 0) {
    why = fmt::format("perf_event_open(raw_syscalls:sys_enter) failed: {}", std::strerror(errno));
    return UniqueFd();
  }
  UniqueFd counter(static_cast<int>(fd));
  if (filter != nullptr && ioctl(counter.get(), PERF_EVENT_IOC_SET_FILTER, filter) != 0) {
    why = fmt::format("PERF_EVENT_IOC_SET_FILTER({}) failed: {}", filter, std::strerror(errno));
    return UniqueFd();
  }
  return counter;
}

std::uint64_t read_counter(const UniqueFd& counter) {
  std::uint64_t n = 0;
  if (!counter.valid() || ::read(counter.get(), &n, sizeof n) != sizeof n) return 0;
  return n;
}

namespace {

void getpid_op(std::uint64_t n) {
  for (std::uint64_t i = 0; i < n; ++i) syscall(SYS_getpid);
}

// A signal sent to this thread and handled: raise(), the handler, and the
// return through rt_sigreturn.
volatile sig_atomic_t signals_handled = 0;
void count_signal(int) { signals_handled = signals_handled + 1; }
void signal_op(std::uint64_t n) {
  for (std::uint64_t i = 0; i < n; ++i) raise(SIGUSR1);
}

void* thread_body(void*) { return nullptr; }
void thread_op(std::uint64_t n) {
  for (std::uint64_t i = 0; i < n; ++i) {
    pthread_t t;
    if (pthread_create(&t, nullptr, thread_body, nullptr) == 0) pthread_join(t, nullptr);
  }
}

// In VM mode the child enters a VM of its own (EnterOptions::follow_fork,
// as under dunk exec); it exits at once.
void fork_op(std::uint64_t n) {
  for (std::uint64_t i = 0; i < n; ++i) {
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid(pid, nullptr, 0);
  }
}

// How long after the parent calls fork() its child runs its first
// instruction after the call (in VM mode: once dunk has built the child's VM
// and entered it), measured by the child itself: it reads CLOCK_MONOTONIC
// (the vDSO, no exit in VM mode) into shared memory and exits. And what the
// child costs the host: its system calls from fork to exit, counted by an
// inherited counter (a child's calls reach it when the child exits).
struct ForkStart {
  std::uint64_t* child_ns = nullptr;  // shared with the children
  std::uint64_t total_ns = 0;
} fork_start;

void fork_start_op(std::uint64_t n) {
  for (std::uint64_t i = 0; i < n; ++i) {
    const std::uint64_t t0 = now_ns();
    const pid_t pid = fork();
    if (pid == 0) {
      *fork_start.child_ns = now_ns();
      _exit(0);
    }
    if (pid < 0) continue;
    waitpid(pid, nullptr, 0);
    fork_start.total_ns += *fork_start.child_ns - t0;
  }
}

Result measure_fork_start(const char* mode, std::uint64_t k, bool vm, const Probes& probes) {
  Result r;
  r.name = "fork child start";
  r.mode = mode;
  r.iterations = k;
  std::string why;
  UniqueFd calls = open_syscall_counter(why, /*inherit=*/true);
  UniqueFd ioctls = open_syscall_counter(why, /*inherit=*/true, "id == 16");
  UniqueFd own_ioctls = open_syscall_counter(why, /*inherit=*/false, "id == 16");
  const Counters before = probes.read();
  const std::uint64_t calls_before = read_counter(calls), ioctls_before = read_counter(ioctls),
                      own_ioctls_before = read_counter(own_ioctls);
  fork_start.total_ns = 0;
  if (vm && !enter()) {
    r.ns_per_op = -1;
    r.note = "cannot enter VM mode";
    return r;
  }
  fork_start_op(k);
  if (vm) leave();
  const Counters after = probes.read();
  const std::uint64_t calls_after = read_counter(calls), ioctls_after = read_counter(ioctls),
                      own_ioctls_after = read_counter(own_ioctls);
  auto per_op = [&](std::uint64_t a, std::uint64_t b) { return (static_cast<double>(a) - static_cast<double>(b)) / k; };
  r.ns_per_op = static_cast<double>(fork_start.total_ns) / static_cast<double>(k);
  r.userspace_exits_per_op = vm ? per_op(after.userspace_exits, before.userspace_exits) : 0;
  r.kvm_exits_per_op = !vm ? 0 : probes.kvm_stats.valid() ? per_op(after.kvm_exits, before.kvm_exits) : -1;
  r.host_syscalls_per_op = probes.syscalls.valid() ? per_op(after.host_syscalls, before.host_syscalls) : -1;
  if (calls.valid() && ioctls.valid() && own_ioctls.valid() && probes.syscalls.valid()) {
    // The inherited counters hold the parent's calls too: take them out.
    r.note = fmt::format(
        "time from the parent's fork() to the child's first instruction after it; the child makes {:.1f} host "
        "system calls from fork to exit, {:.1f} of them ioctls",
        per_op(calls_after, calls_before) - per_op(after.host_syscalls, before.host_syscalls),
        per_op(ioctls_after, ioctls_before) - per_op(own_ioctls_after, own_ioctls_before));
  } else {
    r.note = "time from the parent's fork() to the child's first instruction after it; the child's host calls "
             "not counted: " + why;
  }
  return r;
}

void add_fork_start(std::uint64_t n, const Probes& probes, Report& report) {
  void* shared = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED) return;
  fork_start.child_ns = static_cast<std::uint64_t*>(shared);
  const std::uint64_t k = std::max<std::uint64_t>(n / 1000, 20);
  report.results.push_back(measure_fork_start("native", k, false, probes));
  report.results.push_back(measure_fork_start("vm", k, true, probes));
  munmap(shared, 4096);
}

// Touches a page never touched before, each time in the next of `chunks`
// 1 GiB regions of one reservation, round-robin. With more regions than the
// guest-physical space has chunks, once the space is full every touch in VM
// mode is the first of a chunk without GPA space, which takes a chunk back
// from another (a reclaim: its leaves hidden, its memory slot deleted and
// made anew). Natively each touch is a page fault.
struct FarTouches {
  char* base = nullptr;
  std::uint64_t chunks = 0;
  std::uint64_t next = 0;
} far_touches;

constexpr std::uint64_t kGiB = std::uint64_t{1} << 30;

void far_touch_op(std::uint64_t n) {
  FarTouches& f = far_touches;
  for (std::uint64_t i = 0; i < n; ++i, ++f.next) {
    f.base[(f.next % f.chunks) * kGiB + (f.next / f.chunks) * 4096] = 1;
  }
}

void add_chunk_reclaim(std::uint64_t n, const Probes& probes, Report& report) {
  FarTouches& f = far_touches;
  f.chunks = core::Machine::instance().mirror().chunk_capacity() + 16;
  // Mapped and unmapped in VM mode, where the monitor sees it.
  void* base = MAP_FAILED;
  if (enter()) {
    base = mmap(nullptr, f.chunks * kGiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    leave();
  }
  if (base == MAP_FAILED) {
    Result r;
    r.name = "chunk reclaim";
    r.mode = "vm";
    r.ns_per_op = -1;
    r.note = fmt::format("cannot reserve {} GiB to fill the guest-physical space", f.chunks);
    report.results.push_back(r);
    return;
  }
  f.base = static_cast<char*>(base);
  const std::uint64_t k = std::max<std::uint64_t>(n / 1000, 20);
  report.results.push_back(measure("chunk reclaim", "native", k, false, probes, far_touch_op));
  // Every chunk in use first (not measured): from here each touch reclaims.
  if (enter()) {
    far_touch_op(f.chunks);
    leave();
  }
  Result vm = measure("chunk reclaim", "vm", k, true, probes, far_touch_op);
  vm.note = "VM mode: a page's first touch in a 1 GiB region without guest-physical space, the space full (a fault "
            "and a reclaim); native: a page's first touch";
  report.results.push_back(vm);
  if (enter()) {
    munmap(base, f.chunks * kGiB);
    leave();
  }
}

struct ProcessBenchmark {
  const char* name;
  void (*loop)(std::uint64_t);
  std::uint64_t divisor;  // of --iterations: the costly operations run fewer times
};

constexpr ProcessBenchmark kProcessBenchmarks[] = {
    {"getpid", getpid_op, 1},
    {"signal", signal_op, 10},
    {"thread", thread_op, 100},
    {"fork", fork_op, 1000},
};

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
  // Create the VM and this thread's vCPU before measuring anything; fork
  // children follow into VMs of their own from now on, as under dunk exec.
  if (Status s = enter(EnterOptions{.follow_fork = true}); !s) {
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

  const std::uint64_t n = options.iterations;
  struct sigaction sa {};
  sa.sa_handler = count_signal;
  sigaction(SIGUSR1, &sa, nullptr);
  for (const ProcessBenchmark& b : kProcessBenchmarks) {
    if (!options.wants(b.name)) continue;
    const std::uint64_t k = std::max<std::uint64_t>(n / b.divisor, 20);
    report.results.push_back(measure(b.name, "native", k, false, probes, b.loop));
    report.results.push_back(measure(b.name, "vm", k, true, probes, b.loop));
  }
  if (options.wants("fork child start")) add_fork_start(n, probes, report);
  // Before the privileged benchmarks: a program that uses the privileged
  // paging API keeps every chunk it maps, so nothing is reclaimed after.
  if (options.wants("chunk reclaim")) add_chunk_reclaim(n, probes, report);
  if (options.privileged) {
    run_privileged(n, options, probes, report.results);
    // A few rounds: each writes and finds 2,621 pages of 1 GiB.
    run_dirty_scale(std::max<std::uint64_t>(n / 25'000, 3), options, probes, report);
  }
  // Opt-in (--only "sandbox"): dunk sandbox against seccomp-bpf and the
  // supervisors, each in processes of its own.
  run_sandbox_rows(n, options, report);
  // sthreads, by their own program (libsthread.so): only when asked for.
  if (sthread_rows_wanted(options)) run_sthread_rows(options, report);
  return true;
}

namespace {

std::string count_text(double v) { return v < 0 ? "n/a" : fmt::format("{:.3f}", v); }

// What each result is compared with: the operation's native way if it has
// one, else its first (dunk's).
const Result* baseline(const Report& report, const Result& r) {
  const Result* first = nullptr;
  for (const Result& b : report.results) {
    if (b.name != r.name || b.ns_per_op <= 0) continue;
    if (b.mode == "native") return &b;
    if (first == nullptr) first = &b;
  }
  return first;
}

// A ratio with two significant digits below 10 (0.047x, not 0.0x).
std::string format_ratio(double ratio) {
  return ratio >= 10 ? fmt::format("{:.1f}x", ratio) : fmt::format("{:.2g}x", ratio);
}

std::string ratio_text(const Report& report, const Result& r) {
  const Result* base = baseline(report, r);
  if (base == nullptr || base == &r || r.ns_per_op <= 0) return "";
  return format_ratio(r.ns_per_op / base->ns_per_op);
}

}  // namespace

void print(const Report& report) {
  fmt::print("dunk bench — {}\n\n", report.environment);
  std::size_t width = 15;
  for (const Result& r : report.results) width = std::max(width, r.name.size());
  fmt::print("{:<{}} {:<22} {:>10} {:>13} {:>9} {:>14} {:>12} {:>14}\n", "operation", width, "mode", "iterations",
             "ns/op", "ratio", "user exits/op", "VM exits/op", "host calls/op");
  for (const Result& r : report.results) {
    fmt::print("{:<{}} {:<22} {:>10} {:>13} {:>9} {:>14} {:>12} {:>14}\n", r.name, width, r.mode, r.iterations,
               r.ns_per_op < 0 ? "n/a" : fmt::format("{:.1f}", r.ns_per_op), ratio_text(report, r),
               count_text(r.userspace_exits_per_op), count_text(r.kvm_exits_per_op),
               count_text(r.host_syscalls_per_op));
  }
  fmt::print("\n");
  for (const Result& r : report.results) {
    const Result* base = baseline(report, r);
    if (base != nullptr && base != &r && r.ns_per_op > 0) {
      if (r.mode == "vm" && base->mode == "native") {
        fmt::print("{}: VM mode / native = {}\n", r.name, format_ratio(r.ns_per_op / base->ns_per_op));
      } else {
        fmt::print("{}: {} / {} = {}\n", r.name, r.mode, base->mode, format_ratio(r.ns_per_op / base->ns_per_op));
      }
    }
    if (!r.note.empty()) fmt::print("{} ({}): {}\n", r.name, r.mode, r.note);
    if (!r.answer.empty()) fmt::print("{} ({}): the calls returned {}\n", r.name, r.mode, r.answer);
  }
  fmt::print(
      "\nratio: time per operation over the operation's native way (or, with none, dunk's).\n"
      "user exits: KVM_RUN returns to dunk's monitors (all threads of this process); VM exits: every exit\n"
      "KVM counted on this thread's vCPU, host interrupts included; host calls: system calls this thread\n"
      "made on the host (KVM_RUN and the forwarded call). A new thread's or fork child's own exits and calls\n"
      "count only where they land on this process's vCPUs or this thread: read those rows for times.\n"
      "In a nested or emulated VM (see above) times are emulated: read the ratios and the exact counts.\n");
  for (const std::string& failure : report.failures) fmt::print(stderr, "dunk bench: FAILED: {}\n", failure);
}

bool write_json(const Report& report, const std::string& path) {
  nlohmann::json results = nlohmann::json::array();
  for (const Result& r : report.results) {
    nlohmann::json j = {{"operation", r.name}, {"mode", r.mode}, {"iterations", r.iterations},
                        {"ns_per_op", r.ns_per_op < 0 ? nlohmann::json(nullptr) : nlohmann::json(r.ns_per_op)}};
    auto count = [&](const char* key, double v) { j[key] = v < 0 ? nlohmann::json(nullptr) : nlohmann::json(v); };
    count("userspace_exits_per_op", r.userspace_exits_per_op);
    count("kvm_exits_per_op", r.kvm_exits_per_op);
    count("host_syscalls_per_op", r.host_syscalls_per_op);
    if (!r.note.empty()) j["note"] = r.note;
    if (!r.answer.empty()) j["answer"] = r.answer;
    for (const auto& [key, value] : r.counts) j["counts"][key] = value;
    results.push_back(std::move(j));
  }
  nlohmann::json doc = {{"environment", report.environment}, {"results", std::move(results)}};
  for (std::size_t i = 0; i < report.results.size(); ++i) {
    const Result& r = report.results[i];
    if (const Result* base = baseline(report, r); base != nullptr && base != &r && r.ns_per_op > 0) {
      doc["results"][i]["ratio"] = r.ns_per_op / base->ns_per_op;
      doc["results"][i]["ratio_to"] = base->mode;
    }
  }
  std::ofstream out(path);
  out << doc.dump(2) << '\n';
  return static_cast<bool>(out);
}

bool write_chart(const Report& report, const std::string& path) {
  // gnuplot (Debian: gnuplot-nox) draws it: one bar per way of each
  // operation, on a log scale, labelled with its ratio.
  char dir[] = "/tmp/dunk-chart-XXXXXX";
  if (mkdtemp(dir) == nullptr) return false;
  const std::string data = std::string(dir) + "/data.tsv", script = std::string(dir) + "/chart.gp";
  {
    std::ofstream out(data);
    for (const Result& r : report.results) {
      if (r.ns_per_op <= 0) continue;
      std::string ratio = ratio_text(report, r);
      // Colour: dunk's way (blue) or a native one (grey).
      const bool dunk = r.mode == "vm" || r.mode.rfind("dunk", 0) == 0;
      out << '"' << r.name << ": " << r.mode << "\"\t\"" << (ratio.empty() ? "1x" : ratio) << "\"\t" << r.ns_per_op
          << '\t' << (dunk ? 0x3070c0 : 0x909090) << '\n';
    }
  }
  {
    std::ofstream out(script);
    out << "set terminal pngcairo size 1600,900 noenhanced font ',10'\n"
        << "set output '" << path << "'\n"
        << "set title \"dunk bench: time per operation, native and dunk side by side (log scale; label = ratio to the "
           "operation's native way)\\n"
        << report.environment << "\"\n"
        << "set logscale y\nset ylabel 'ns per operation'\nset grid ytics\n"
        << "set style fill solid 0.85 border -1\nset boxwidth 0.8\nset xtics rotate by -40 left\n"
        << "set bmargin 13\nset rmargin 12\nset yrange [*:*]\n"
        << "set key top left\n"
        << "plot '" << data << "' using 0:3:4:xtic(1) with boxes lc rgb variable notitle, \\\n"
        << "     NaN with boxes lc rgb '#3070c0' title 'dunk (VM mode, privileged API)', \\\n"
        << "     NaN with boxes lc rgb '#909090' title 'native Linux', \\\n"
        << "     '' using 0:($3*1.35):2 with labels notitle\n";
  }
  const std::string command = "gnuplot '" + script + "' 2>&1";
  int status = std::system(command.c_str());
  std::remove(data.c_str());
  std::remove(script.c_str());
  rmdir(dir);
  if (status != 0) {
    std::fprintf(stderr, "dunk bench: gnuplot failed (is gnuplot installed? scripts/setup installs gnuplot-nox)\n");
    return false;
  }
  return true;
}

}  // namespace dunk::bench
