// dunk-sthread-bench: what an sthread costs (include/sthread/sthread.h),
// beside what a program would use instead, in one run with exact counts.
//
//   sthread create+join, fresh      a new compartment each time
//   sthread create+join, recycled   a joined sthread's compartment, reset
//                                   from dirty bits
//   pthread create+join (vm)        a thread in VM mode
//   pthread create+join, fork+wait  natively, in a child that never entered
//   callgate round trip             cgate() from an sthread and back
//   pipe round trip                 to another process and back (native)
//   futex hand-off                  to another thread and back (native)
//
// Counts are per operation over the measured loop: VM exits (dunk's
// KVM_RUN returns, every vCPU), copies on write and pages reset. It links
// libsthread.so and libdunk.so (as sthread programs must), so it is a
// program of its own, not a row of `dunk bench`. Under emulation read the
// ratios and the counts, not the times.
#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <string>

#include "core/machine.h"
#include "core/stats.h"
#include "dunk/sthread.h"
#include "sthread/sthread.h"

namespace {

namespace st = dunk::sthread;

std::uint64_t now_ns() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<std::uint64_t>(t.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(t.tv_nsec);
}

std::uint64_t exits() {
  auto& m = dunk::core::Machine::instance();
  return m.created() ? m.stats().kvm_runs.load() : 0;
}

struct Row {
  const char* name;
  const char* mode;
  std::uint64_t n;
  double ns_per_op;
  double exits_per_op;  // < 0: not counted
  double cow_per_op;
  double reset_per_op;
};

void print(const Row& r) {
  std::printf("%-34s %-7s %8llu %14.0f", r.name, r.mode, static_cast<unsigned long long>(r.n), r.ns_per_op);
  if (r.exits_per_op >= 0) {
    std::printf(" %10.2f %8.2f %8.2f\n", r.exits_per_op, r.cow_per_op, r.reset_per_op);
  } else {
    std::printf(" %10s %8s %8s\n", "-", "-", "-");
  }
}

Row measure_vm(const char* name, std::uint64_t n, const std::function<void()>& op) {
  op();  // warm: workers started, compartments made
  const st::Stats s0 = st::stats();
  const std::uint64_t e0 = exits();
  const std::uint64_t t0 = now_ns();
  for (std::uint64_t i = 0; i < n; ++i) op();
  const std::uint64_t t1 = now_ns();
  const std::uint64_t e1 = exits();
  const st::Stats s1 = st::stats();
  const double dn = static_cast<double>(n);
  return Row{name,
             "vm",
             n,
             static_cast<double>(t1 - t0) / dn,
             static_cast<double>(e1 - e0) / dn,
             static_cast<double>(s1.cow_copies - s0.cow_copies) / dn,
             static_cast<double>(s1.pages_reset - s0.pages_reset) / dn};
}

Row measure_native(const char* name, std::uint64_t n, const std::function<void()>& op) {
  op();
  const std::uint64_t t0 = now_ns();
  for (std::uint64_t i = 0; i < n; ++i) op();
  return Row{name, "native", n, static_cast<double>(now_ns() - t0) / static_cast<double>(n), -1, 0, 0};
}

void* nothing(void*) { return nullptr; }

void sthread_once(bool recycle) {
  sc_t sc;
  sc_init(&sc);
  auto id = st::create(sc, nothing, nullptr, st::CreateOptions{.recycle = recycle});
  if (!id || !st::join(*id)) {
    std::fprintf(stderr, "sthread create/join failed\n");
    std::exit(1);
  }
}

void pthread_create_join() {
  pthread_t t;
  if (pthread_create(&t, nullptr, nothing, nullptr) != 0 || pthread_join(t, nullptr) != 0) std::exit(1);
}

void fork_once() {
  const pid_t pid = fork();
  if (pid == 0) _exit(0);
  int status;
  waitpid(pid, &status, 0);
}

// Callgates: an sthread calls the gate `calls` times.
void* gate(void*, void* arg) { return arg; }
cg_t g_gate = gate;
void* call_gate_n(void* arg) {
  const auto calls = reinterpret_cast<std::uint64_t>(arg);
  std::uint64_t sum = 0;
  for (std::uint64_t i = 0; i < calls; ++i) sum += reinterpret_cast<std::uint64_t>(cgate(g_gate, nullptr, reinterpret_cast<void*>(1)));
  return reinterpret_cast<void*>(sum);
}

Row callgate_row(std::uint64_t calls) {
  sc_t gate_sc, sc;
  sc_init(&gate_sc);
  sc_init(&sc);
  sc_cgate_add(&sc, gate, &gate_sc, nullptr);
  auto run = [&](std::uint64_t k) {
    auto id = st::create(sc, call_gate_n, reinterpret_cast<void*>(k));
    auto end = id ? st::join(*id) : dunk::Result<sthread_report>(id.error());
    if (!end || end->value != k) {
      std::fprintf(stderr, "callgate run failed\n");
      std::exit(1);
    }
  };
  run(1);
  // The same sthread with no calls, subtracted: what remains is the calls.
  const std::uint64_t e0 = exits();
  const st::Stats s0 = st::stats();
  std::uint64_t t0 = now_ns();
  run(calls);
  const std::uint64_t t_full = now_ns() - t0;
  const std::uint64_t e_full = exits() - e0;
  const st::Stats s1 = st::stats();
  const std::uint64_t e1 = exits();
  t0 = now_ns();
  run(0);
  const std::uint64_t t_empty = now_ns() - t0;
  const std::uint64_t e_empty = exits() - e1;
  const st::Stats s2 = st::stats();
  const double dn = static_cast<double>(calls);
  return Row{"callgate round trip", "vm", calls,
             (static_cast<double>(t_full) - static_cast<double>(t_empty)) / dn,
             (static_cast<double>(e_full) - static_cast<double>(e_empty)) / dn,
             (static_cast<double>(s1.cow_copies - s0.cow_copies) - static_cast<double>(s2.cow_copies - s1.cow_copies)) / dn,
             (static_cast<double>(s1.pages_reset - s0.pages_reset) - static_cast<double>(s2.pages_reset - s1.pages_reset)) / dn};
}

Row pipe_row(std::uint64_t n) {
  int to_child[2], to_parent[2];
  if (pipe(to_child) != 0 || pipe(to_parent) != 0) std::exit(1);
  const pid_t pid = fork();
  if (pid == 0) {
    close(to_child[1]);  // else its read never sees the end
    close(to_parent[0]);
    char c;
    while (read(to_child[0], &c, 1) == 1) {
      if (write(to_parent[1], &c, 1) != 1) break;
    }
    _exit(0);
  }
  char c = 'x';
  auto op = [&] {
    if (write(to_child[1], &c, 1) != 1 || read(to_parent[0], &c, 1) != 1) std::exit(1);
  };
  Row r = measure_native("pipe round trip (process)", n, op);
  close(to_child[1]);
  int status;
  waitpid(pid, &status, 0);
  close(to_child[0]);
  close(to_parent[0]);
  close(to_parent[1]);
  return r;
}

std::atomic<std::uint32_t> g_turn{0};
void futex_wait_for(std::uint32_t want) {
  for (std::uint32_t v; (v = g_turn.load()) != want;) {
    syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&g_turn), FUTEX_WAIT_PRIVATE, v, nullptr, nullptr, 0);
  }
}
void futex_set(std::uint32_t v) {
  g_turn.store(v);
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&g_turn), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
}
std::uint64_t g_futex_rounds = 0;
void* futex_partner(void*) {
  for (std::uint64_t i = 0; i < g_futex_rounds; ++i) {
    futex_wait_for(1);
    futex_set(0);
  }
  return nullptr;
}

Row futex_row(std::uint64_t n) {
  g_futex_rounds = n + 1;
  g_turn = 0;
  pthread_t t;
  pthread_create(&t, nullptr, futex_partner, nullptr);
  Row r = measure_native("futex hand-off (thread)", n, [] {
    futex_set(1);
    futex_wait_for(0);
  });
  pthread_join(t, nullptr);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const std::uint64_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 200;
  const std::uint64_t calls = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 2000;
  std::printf("%-34s %-7s %8s %14s %10s %8s %8s\n", "operation", "mode", "n", "ns/op", "exits/op", "cow/op",
              "reset/op");
  // Native rows first, in a child that never enters VM mode (as Wedge's
  // bench measures fork and pthread).
  std::fflush(stdout);
  if (const pid_t child = fork(); child == 0) {
    print(measure_native("fork+wait", n, fork_once));
    print(measure_native("pthread_create+join", n, pthread_create_join));
    print(pipe_row(n * 10));
    print(futex_row(n * 10));
    std::fflush(stdout);
    _exit(0);
  } else {
    int status;
    waitpid(child, &status, 0);
  }
  if (auto s = st::init(); !s) {
    std::fprintf(stderr, "sthread_init: %s: %s\n", s.error().what, std::strerror(s.error().err));
    return 1;
  }
  print(measure_vm("pthread_create+join", n, pthread_create_join));
  print(measure_vm("sthread create+join, fresh", n, [] { sthread_once(false); }));
  print(measure_vm("sthread create+join, recycled", n, [] { sthread_once(true); }));
  print(callgate_row(calls));
  return 0;
}
