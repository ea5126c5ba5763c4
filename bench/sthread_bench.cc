// dunk-sthread-bench: what an sthread costs (include/sthread/sthread.h),
// beside what a program would use instead, in one run with exact counts.
// `dunk bench --only sthread` runs it and shows its rows with the others
// (bench/sthread_rows.cc); it is a program of its own because it links
// libsthread.so and libdunk.so, as sthread programs must, and dunk links
// libdunk statically.
//
//   sthread create+join            fork+wait and pthread_create+join
//                                  natively (in a child that never enters
//                                  VM mode) and in VM mode; an sthread on a
//                                  new compartment (fresh) and on a joined
//                                  one's, reset from dirty bits (recycled)
//   sthread callgate round trip    a pipe round trip to another process and
//                                  a futex hand-off to another thread
//                                  (native); cgate() from an sthread and back
//   sthread switch, N pages        two compartments alternately reading N
//                                  pages each (Dune's apps/wedge `bench 2`):
//                                  in ring 0 with no switch, with CR3 writes
//                                  that flush the TLB, with CR3 writes that
//                                  keep it (PCID); and as sthreads do it, a
//                                  callgate round trip (two switches)
//
// Counts are per operation over the measured loop: VM exits (dunk's
// KVM_RUN returns, every vCPU), copies on write and pages reset. Under
// emulation read the ratios and the counts, not the times.
//
//   dunk-sthread-bench [--json FILE] [--only TEXT] [--quiet] [N [CALLS]]
#include <dirent.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <fstream>
#include <functional>
#include <iterator>
#include <new>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "core/exit.h"
#include "core/machine.h"
#include "core/stats.h"
#include "dunk/paging.h"
#include "dunk/sthread.h"
#include "sthread/sthread.h"

namespace {

namespace st = dunk::sthread;

constexpr std::size_t kPage = 4096;
// The pages touched per switch (Dune's bench 2 sweeps 1..300).
constexpr unsigned kSwitchPages[] = {1, 4, 16, 64, 256};
constexpr unsigned kMaxSwitchPages = 256;

std::uint64_t now_ns() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);  // the vDSO: no exit in VM mode
  return static_cast<std::uint64_t>(t.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(t.tv_nsec);
}

std::uint64_t exits() {
  auto& m = dunk::core::Machine::instance();
  return m.created() ? m.stats().kvm_runs.load() : 0;
}

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "dunk-sthread-bench: %s\n", what);
  std::exit(1);
}

// One row. The names are literals, so that the native child's rows, in
// shared memory, mean the same in the parent.
struct Row {
  const char* name = "";
  const char* mode = "";
  std::uint64_t n = 0;
  double ns_per_op = -1;    // < 0: not measured (note says why)
  double exits_per_op = -1; // < 0: not counted
  double cow_per_op = -1;
  double reset_per_op = -1;
  const char* note = "";
  const char* exit_kinds = "";  // the exits of the whole measurement by kind
  double tables_per_op = -1;    // page-table pages per compartment (the table-pages rows)
};

struct Args {
  std::uint64_t n = 200;
  std::uint64_t calls = 2000;
  std::string json;
  std::string only;
  bool quiet = false;
  bool wants(const char* name) const { return only.empty() || std::string(name).find(only) != std::string::npos; }
};

Args g_args;
std::vector<Row> g_rows;
std::deque<std::string> g_notes;  // notes made at run time, kept for the rows

const char* keep_note(std::string note) { return g_notes.emplace_back(std::move(note)).c_str(); }

std::string count(double v) {
  char b[32];
  if (v < 0) return "-";
  std::snprintf(b, sizeof b, "%.2f", v);
  return b;
}

void add(const Row& r) {
  g_rows.push_back(r);
  if (g_args.quiet) return;
  std::printf("%-30s %-28s %7llu %12s %9s %7s %7s\n", r.name, r.mode, static_cast<unsigned long long>(r.n),
              r.ns_per_op < 0 ? "n/a" : std::to_string(static_cast<std::uint64_t>(r.ns_per_op + 0.5)).c_str(),
              count(r.exits_per_op).c_str(), count(r.cow_per_op).c_str(), count(r.reset_per_op).c_str());
  if (r.note[0] != '\0') std::printf("    %s\n", r.note);
  if (r.exit_kinds[0] != '\0') std::printf("    exits: %s\n", r.exit_kinds);
}

// A window of VM-mode counters: exits on every vCPU, the supervisor's
// copies on write and resets, time.
using Kinds = std::array<std::uint64_t, dunk::core::Stats::kExitKinds>;

struct Window {
  std::uint64_t exits, t;
  st::Stats s;
  Kinds kinds;  // exits by kind
  static Window now() {
    Kinds kinds{};
    auto& m = dunk::core::Machine::instance();
    for (unsigned i = 0; i < kinds.size() && m.created(); ++i) kinds[i] = m.stats().exits[i].load();
    return Window{::exits(), now_ns(), st::stats(), kinds};
  }
};

// "syscall 40, interrupted 1": what the exits of a window were.
const char* kinds_text(const Kinds& a, const Kinds& b) {
  std::string text;
  for (unsigned i = 0; i < a.size(); ++i) {
    if (b[i] == a[i]) continue;
    if (!text.empty()) text += ", ";
    text += dunk::core::exit_kind_name(static_cast<dunk::core::ExitKind>(i));
    text += ' ' + std::to_string(b[i] - a[i]);
  }
  return keep_note(text);
}

Row vm_row(const char* name, const char* mode, std::uint64_t n, const Window& a, const Window& b, double per = 1) {
  const double dn = static_cast<double>(n) * per;
  Row r{name,
        mode,
        n,
        static_cast<double>(b.t - a.t) / dn,
        static_cast<double>(b.exits - a.exits) / dn,
        static_cast<double>(b.s.cow_copies - a.s.cow_copies) / dn,
        static_cast<double>(b.s.pages_reset - a.s.pages_reset) / dn};
  r.exit_kinds = kinds_text(a.kinds, b.kinds);
  return r;
}

// Batches of `rounds` operations (each `per` of the unit): the time of the
// fastest (under emulation on a loaded host a batch now and then takes
// several times as long) and the exits of the batch with the fewest; pages
// copied and reset over all of them. The exits counted are every vCPU's:
// another thread's call (a worker going back to sleep late, say) lands in
// one batch now and then, never in every one, while the operation's own
// exits are in each.
constexpr unsigned kBatches = 5;
using Batch = std::function<std::pair<Window, Window>()>;

Row best_of(const char* name, const char* mode, std::uint64_t rounds, double per, const Batch& batch) {
  std::pair<Window, Window> first = batch();
  std::uint64_t best = first.second.t - first.first.t;
  std::pair<Window, Window> quietest = first;
  Window total_end = first.second;
  Window total_start = first.first;
  for (unsigned i = 1; i < kBatches; ++i) {
    auto [a, b] = batch();
    best = std::min(best, b.t - a.t);
    if (b.exits - a.exits < quietest.second.exits - quietest.first.exits) quietest = {a, b};
    // Pages: sums of the batches' differences, as if one window.
    total_end.s.cow_copies += b.s.cow_copies - a.s.cow_copies;
    total_end.s.pages_reset += b.s.pages_reset - a.s.pages_reset;
  }
  Row r = vm_row(name, mode, rounds * kBatches, total_start, total_end, per);
  const Row q = vm_row(name, mode, rounds, quietest.first, quietest.second, per);
  r.exits_per_op = q.exits_per_op;
  r.exit_kinds = q.exit_kinds;
  r.n = static_cast<std::uint64_t>(static_cast<double>(rounds * kBatches) * per);  // operations, not rounds
  r.ns_per_op = static_cast<double>(best) / (static_cast<double>(rounds) * per);
  return r;
}

// `pages`: the supervisor's copies on write and resets mean something
// (an sthread row).
Row measure_vm(const char* name, const char* mode, std::uint64_t n, const std::function<void()>& op,
               bool pages = true) {
  op();  // warm: workers started, compartments made
  const Window a = Window::now();
  for (std::uint64_t i = 0; i < n; ++i) op();
  const Window b = Window::now();
  Row r = vm_row(name, mode, n, a, b);
  if (!pages) {
    r.cow_per_op = r.reset_per_op = -1;
  } else {
    // A worker started during the loop (none was idle at a hand-off) adds
    // the exits of a new thread.
    r.note = keep_note(std::to_string(b.s.workers - a.s.workers) + " worker threads started during the loop");
  }
  return r;
}

Row measure_native(const char* name, const char* mode, std::uint64_t n, const std::function<void()>& op) {
  op();
  const std::uint64_t t0 = now_ns();
  for (std::uint64_t i = 0; i < n; ++i) op();
  Row r{name, mode, n};
  r.ns_per_op = static_cast<double>(now_ns() - t0) / static_cast<double>(n);
  r.exits_per_op = 0;  // a process that never entered VM mode
  return r;
}

// --- Creation -----------------------------------------------------------------

constexpr const char* kCreate = "sthread create+join";

void* nothing(void*) { return nullptr; }

void sthread_once(bool recycle, bool copy_tables = false) {
  sc_t sc;
  sc_init(&sc);
  auto id = st::create(sc, nothing, nullptr, st::CreateOptions{.recycle = recycle, .copy_tables = copy_tables});
  if (!id || !st::join(*id)) die("sthread create/join failed");
}

void pthread_create_join() {
  pthread_t t;
  if (pthread_create(&t, nullptr, nothing, nullptr) != 0 || pthread_join(t, nullptr) != 0) die("pthread failed");
}

// In VM mode the child continues outside it (sthread_init enters without
// EnterOptions::follow_fork), as a fork-per-request server's children would.
void fork_once() {
  const pid_t pid = fork();
  if (pid < 0) die("fork failed");
  if (pid == 0) _exit(0);
  int status;
  waitpid(pid, &status, 0);
}

// --- Round trips, natively ------------------------------------------------------

constexpr const char* kRoundTrip = "sthread callgate round trip";
constexpr const char* kTables = "sthread table pages";

// --- Page tables per compartment --------------------------------------------------

void* count_done(void* arg) {
  static_cast<std::atomic<std::uint64_t>*>(arg)->fetch_add(1);
  return nullptr;
}

// `live` compartments at once (sthreads that have returned, not joined):
// the page-table pages each links alone and the page tables in use per
// compartment, with the template's tables shared or copied; creation time
// and exits per sthread as the create rows count them.
// The process's resident memory (/proc/self/statm), in bytes.
std::uint64_t resident_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  unsigned long long size = 0, resident = 0;
  if (f != nullptr) {
    if (std::fscanf(f, "%llu %llu", &size, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return resident * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
}

Row tables_row(std::uint64_t live, bool copy_tables) {
  const tag_t tag = tag_new();
  auto* done = new (smalloc(tag, sizeof(std::atomic<std::uint64_t>))) std::atomic<std::uint64_t>(0);
  sc_t sc;
  sc_init(&sc);
  sc_mem_add(&sc, tag, PROT_READ | PROT_WRITE);
  std::vector<sthread_t> ids;
  ids.reserve(live);
  const std::uint64_t resident_before = resident_bytes();
  const Window a = Window::now();
  for (std::uint64_t i = 0; i < live; ++i) {
    auto id = st::create(sc, count_done, done, st::CreateOptions{.recycle = false, .copy_tables = copy_tables});
    if (!id) die("sthread_create failed");
    ids.push_back(*id);
    // One at a time, so that the pool stays small.
    while (done->load() < i + 1) sched_yield();
  }
  const Window b = Window::now();
  const double resident = static_cast<double>(resident_bytes() - resident_before) / static_cast<double>(live);
  Row r = vm_row(kTables, copy_tables ? "dunk sthread, full copy" : "dunk sthread, shared", live, a, b);
  r.tables_per_op = static_cast<double>(b.s.compartment_tables - a.s.compartment_tables) / static_cast<double>(live);
  const double in_use = static_cast<double>(b.s.page_tables - a.s.page_tables) / static_cast<double>(live);
  char note[300];
  std::snprintf(note, sizeof note,
                "%llu live compartments: %.2f table pages each of their own, %.2f pages of tables in use each "
                "(%.1f KiB), %.1f KiB of the process's resident memory each (tables, stack, bookkeeping); time and "
                "exits: a creation and the wait (sched_yield) until its sthread has run",
                static_cast<unsigned long long>(live), r.tables_per_op, in_use, in_use * 4, resident / 1024);
  r.note = keep_note(note);
  for (sthread_t id : ids) {
    if (!st::join(id)) die("sthread_join failed");
  }
  tag_delete(tag);
  return r;
}

Row pipe_row(std::uint64_t n) {
  int to_child[2], to_parent[2];
  if (pipe(to_child) != 0 || pipe(to_parent) != 0) die("pipe failed");
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
  Row r = measure_native(kRoundTrip, "native pipe (process)", n, [&] {
    if (write(to_child[1], &c, 1) != 1 || read(to_parent[0], &c, 1) != 1) die("pipe round trip failed");
  });
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
  if (pthread_create(&t, nullptr, futex_partner, nullptr) != 0) die("pthread_create failed");
  Row r = measure_native(kRoundTrip, "native futex (thread)", n, [] {
    futex_set(1);
    futex_wait_for(0);
  });
  pthread_join(t, nullptr);
  return r;
}

// --- Pages touched per switch ---------------------------------------------------

// 2 × 256 pages, mapped before sthread_init (so in the snapshot every
// compartment reads), each a 4 KiB page: compartment A reads the first N,
// compartment B the next N. Next to each other, not 256 pages apart: a
// direct-mapped TLB of 256 entries (QEMU's, at its smallest) would give A's
// page i and B's page i one entry, and every read would miss.
char* g_pages = nullptr;

void touch(const char* base, unsigned pages) {
  for (unsigned i = 0; i < pages; ++i) (void)*static_cast<const volatile char*>(base + i * kPage);
}
const char* pages_of(int compartment, unsigned pages) { return g_pages + (compartment == 0 ? 0 : pages * kPage); }

const char* switch_name(unsigned pages) {
  static const char* const names[] = {"sthread switch, 1 page", "sthread switch, 4 pages", "sthread switch, 16 pages",
                                      "sthread switch, 64 pages", "sthread switch, 256 pages"};
  for (unsigned i = 0; i < std::size(kSwitchPages); ++i) {
    if (kSwitchPages[i] == pages) return names[i];
  }
  return "sthread switch";
}

void map_pages() {
  const std::size_t size = 2 * kMaxSwitchPages * kPage;
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) die("mmap failed");
  // 4 KiB pages on the host, hence in the guest's tables: one TLB entry
  // per page touched, as the sweep needs.
  madvise(p, size, MADV_NOHUGEPAGE);
  g_pages = static_cast<char*>(p);
  for (std::size_t i = 0; i < size; i += kPage) g_pages[i] = 1;
}

// --- In-VM measurements with a hand-shake -------------------------------------
//
// An sthread's own loop is measured from the outside, exactly: it says it
// has started, waits for "go", runs, says it is done and waits for the
// acknowledgement before returning. The main thread reads the counters
// between "go" and "done", when only the sthread's loop runs (the idle
// workers sleep on the host, in no KVM_RUN), so the hand-off to a worker
// and the join stay out of the count.
struct Handshake {
  std::atomic<std::uint32_t> started{0}, go{0}, done{0}, ack{0};
  std::uint64_t rounds = 0;
  unsigned pages = 0;
};

// How many threads of the process besides the caller are running or
// runnable (state R in /proc/self/task/TID/stat).
unsigned running_threads() {
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return 0;
  const std::string self = std::to_string(gettid());
  unsigned running = 0;
  while (const dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.' || self == e->d_name) continue;
    char path[300], buf[512];
    std::snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    const ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) continue;
    buf[n] = '\0';
    const char* end = std::strrchr(buf, ')');  // the state follows the name
    running += end != nullptr && end[1] == ' ' && end[2] == 'R';
  }
  closedir(dir);
  return running;
}

// Waits (a second at most) until at most `busy` other threads run: a worker
// still on its way to sleep after the last sthread would make its system
// calls (exits) inside the next measurement. A sleeping worker stays
// asleep until an sthread is queued.
void quiesce(unsigned busy) {
  for (int i = 0; i < 1000 && running_threads() > busy; ++i) usleep(1000);
}

void wait_for(const std::atomic<std::uint32_t>& flag) {
  while (flag.load(std::memory_order_acquire) == 0) asm volatile("pause");
}

void* gate_touch(void*, void* arg) {
  const auto pages = static_cast<unsigned>(reinterpret_cast<std::uintptr_t>(arg));
  touch(pages_of(1, pages), pages);
  return arg;
}
cg_t g_gate_touch = gate_touch;

// The sthread: `rounds` times, reads its N pages and calls the callgate,
// which reads its own N.
void* gate_caller(void* arg) {
  auto* h = static_cast<Handshake*>(arg);
  h->started.store(1, std::memory_order_release);
  wait_for(h->go);
  const unsigned pages = h->pages;
  void* const gate_arg = reinterpret_cast<void*>(static_cast<std::uintptr_t>(pages));
  std::uint64_t wrong = 0;
  for (std::uint64_t i = 0; i < h->rounds; ++i) {
    touch(pages_of(0, pages), pages);
    wrong += cgate(g_gate_touch, nullptr, gate_arg) != gate_arg;
  }
  h->done.store(1, std::memory_order_release);
  wait_for(h->ack);
  return reinterpret_cast<void*>(wrong);
}

// One sthread running gate_caller over `rounds`: the window of its loop.
// The handshake lives in a tag the sthread is granted.
std::pair<Window, Window> gate_loop(tag_t tag, Handshake* h, std::uint64_t rounds, unsigned pages) {
  sc_t gate_sc, sc;
  sc_init(&gate_sc);
  sc_init(&sc);
  sc_mem_add(&sc, tag, PROT_READ | PROT_WRITE);
  sc_cgate_add(&sc, gate_touch, &gate_sc, nullptr);
  new (h) Handshake;
  h->rounds = rounds;
  h->pages = pages;
  auto id = st::create(sc, gate_caller, h);
  if (!id) die("sthread_create failed");
  wait_for(h->started);
  quiesce(1);  // the worker that runs the sthread, spinning
  const Window a = Window::now();
  h->go.store(1, std::memory_order_release);
  wait_for(h->done);
  const Window b = Window::now();
  h->ack.store(1, std::memory_order_release);
  auto end = st::join(*id);
  if (!end || end->end != STHREAD_RETURNED || end->value != 0) die("the callgate loop's sthread failed");
  return {a, b};
}

Row callgate_row(tag_t tag, Handshake* h, std::uint64_t calls) {
  (void)gate_loop(tag, h, 1, 0);  // the callgate's compartment made
  Row r = best_of(kRoundTrip, "dunk callgate", calls, 1, [&] { return gate_loop(tag, h, calls, 0); });
  r.note = "the sthread's loop alone, measured between two flags it sets (no hand-off, no join); time: the fastest of "
           "5 batches, exits: the batch with the fewest";
  return r;
}

// A switch in ring 0: the main thread alternates between two clones of the
// process's address space with MOV to CR3, reading N pages in each.
struct Spaces {
  dunk::AddressSpace* a = nullptr;
  dunk::AddressSpace* b = nullptr;
  std::uint64_t cr3_a = 0, cr3_b = 0;  // as activate() writes them
};

std::uint64_t read_cr3() {
  std::uint64_t v;
  asm volatile("movq %%cr3, %0" : "=r"(v));
  return v;
}
void write_cr3(std::uint64_t v) { asm volatile("movq %0, %%cr3" : : "r"(v) : "memory"); }

bool make_spaces(Spaces& s) {
  auto a = dunk::AddressSpace::process().clone(dunk::CloneMode::kCopy);
  auto b = dunk::AddressSpace::process().clone(dunk::CloneMode::kCopy);
  if (!a || !b) return false;
  s.a = *a;
  s.b = *b;
  if (!s.a->activate()) return false;
  s.cr3_a = read_cr3();
  if (!s.b->activate()) return false;
  s.cr3_b = read_cr3();
  return static_cast<bool>(dunk::AddressSpace::process().activate());
}

// CR3 bit 63: do not flush the entries of the PCID being loaded (needs
// CR4.PCIDE; without it the bit is reserved).
constexpr std::uint64_t kCr3KeepTlb = std::uint64_t{1} << 63;

enum class Way { kNoSwitch, kFlush, kKeep };

Row ring0_switch_row(const Spaces& s, Way way, unsigned pages, std::uint64_t rounds) {
  const char* mode = way == Way::kNoSwitch ? "no switch (ring 0)"
                     : way == Way::kFlush  ? "dunk CR3, TLB flushed"
                                           : "dunk CR3, PCID kept";
  // kFlush switches as sthreads do, with activate(). kKeep writes CR3
  // itself, with bit 63, which activate() never sets: the vCPU's idea of its
  // root then stays a's, harmless here because nothing faults (every page
  // read is present in both clones, made after the pages were written).
  auto switch_to = [&](dunk::AddressSpace* space, std::uint64_t cr3) {
    if (way == Way::kFlush) (void)space->activate();
    if (way == Way::kKeep) write_cr3(cr3 | kCr3KeepTlb);
  };
  auto loop = [&](std::uint64_t k) {
    for (std::uint64_t i = 0; i < k; ++i) {
      switch_to(s.a, s.cr3_a);
      touch(pages_of(0, pages), pages);
      switch_to(s.b, s.cr3_b);
      touch(pages_of(1, pages), pages);
    }
    if (way != Way::kNoSwitch) (void)dunk::AddressSpace::process().activate();
  };
  loop(1);
  Row r = best_of(switch_name(pages), mode, rounds, 2, [&] {
    quiesce(0);
    const Window a = Window::now();
    loop(rounds);
    return std::pair{a, Window::now()};
  });
  r.cow_per_op = r.reset_per_op = -1;
  if (way == Way::kNoSwitch) r.note = "reading the pages alone, both halves in one address space; time: the fastest of 5 batches, exits: the batch with the fewest";
  if (way == Way::kFlush) {
    r.note = "what sthreads do: AddressSpace::activate() writes CR3 with the PCID tag (where there are PCIDs) "
             "and bit 63 clear, which flushes the entries of the space it loads; time: the fastest of 5 batches, exits: the batch with the fewest";
  }
  return r;
}

Row callgate_switch_row(tag_t tag, Handshake* h, unsigned pages, std::uint64_t rounds) {
  (void)gate_loop(tag, h, 1, pages);
  Row r = best_of(switch_name(pages), "dunk callgate, ring 3", rounds, 2,
                  [&] { return gate_loop(tag, h, rounds, pages); });
  r.note = "half a callgate round trip: ring 3 to ring 0, two CR3 writes, back to ring 3; the callgate's "
           "reset counted in reset/op; time: the fastest of 5 batches, exits: the batch with the fewest";
  return r;
}

void switch_rows(tag_t tag, Handshake* h, std::uint64_t rounds) {
  Spaces spaces;
  const bool have_spaces = make_spaces(spaces);
  for (unsigned pages : kSwitchPages) {
    const char* name = switch_name(pages);
    if (!g_args.wants(name)) continue;
    if (!have_spaces) die("cannot clone the process's address space");
    // Ring 0's switches are cheaper than callgates: more of them, for times
    // that mean something under emulation.
    add(ring0_switch_row(spaces, Way::kNoSwitch, pages, 4 * rounds));
    add(ring0_switch_row(spaces, Way::kFlush, pages, 4 * rounds));
    if (dunk::pcid_enabled()) {
      add(ring0_switch_row(spaces, Way::kKeep, pages, 4 * rounds));
    } else {
      Row r{name, "dunk CR3, PCID kept", 0};
      r.note = "not measured: this CPU has no PCID (CPUID.01H:ECX.PCID[17] clear), so dunk runs without "
               "CR4.PCIDE and a CR3 write cannot keep TLB entries";
      add(r);
    }
    add(callgate_switch_row(tag, h, pages, rounds));
  }
  if (have_spaces) {
    (void)spaces.a->destroy();
    (void)spaces.b->destroy();
  }
}

// --- Output ---------------------------------------------------------------------

bool write_json(const std::string& path) {
  nlohmann::json rows = nlohmann::json::array();
  auto value = [](double v) { return v < 0 ? nlohmann::json(nullptr) : nlohmann::json(v); };
  for (const Row& r : g_rows) {
    nlohmann::json j = {{"operation", r.name},
                        {"mode", r.mode},
                        {"iterations", r.n},
                        {"ns_per_op", value(r.ns_per_op)},
                        {"userspace_exits_per_op", value(r.exits_per_op)},
                        {"cow_per_op", value(r.cow_per_op)},
                        {"reset_per_op", value(r.reset_per_op)}};
    if (r.note[0] != '\0') j["note"] = r.note;
    if (r.exit_kinds[0] != '\0') j["exits_by_kind"] = r.exit_kinds;
    if (r.tables_per_op >= 0) j["table_pages_per_op"] = r.tables_per_op;
    rows.push_back(std::move(j));
  }
  nlohmann::json doc = {{"pcid", dunk::pcid_enabled()}, {"results", std::move(rows)}};
  std::ofstream out(path);
  out << doc.dump(2) << '\n';
  return static_cast<bool>(out);
}

Args parse(int argc, char** argv) {
  Args a;
  std::vector<std::uint64_t> numbers;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if ((arg == "--json" || arg == "--only") && i + 1 < argc) {
      (arg == "--json" ? a.json : a.only) = argv[++i];
    } else if (arg == "--quiet") {
      a.quiet = true;
    } else if (!arg.empty() && arg[0] != '-' && numbers.size() < 2) {
      numbers.push_back(std::strtoull(arg.c_str(), nullptr, 10));
    } else {
      std::fprintf(stderr, "usage: dunk-sthread-bench [--json FILE] [--only TEXT] [--quiet] [N [CALLS]]\n");
      std::exit(2);
    }
  }
  if (!numbers.empty()) a.n = std::max<std::uint64_t>(numbers[0], 1);
  if (numbers.size() > 1) a.calls = std::max<std::uint64_t>(numbers[1], 1);
  return a;
}

// The native rows, in a child that never enters VM mode (as Wedge's bench
// measures fork and pthread), into shared memory.
void native_rows() {
  const bool create = g_args.wants(kCreate), round_trip = g_args.wants(kRoundTrip);
  if (!create && !round_trip) return;
  constexpr unsigned kMax = 4;
  void* shared = mmap(nullptr, kMax * sizeof(Row) + sizeof(unsigned), PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED) die("mmap failed");
  auto* rows = static_cast<Row*>(shared);
  auto* nrows = reinterpret_cast<unsigned*>(rows + kMax);
  std::fflush(stdout);
  const pid_t child = fork();
  if (child == 0) {
    const std::uint64_t n = g_args.n, calls = g_args.calls;
    if (create) {
      rows[(*nrows)++] = measure_native(kCreate, "native fork+wait", n, fork_once);
      rows[(*nrows)++] = measure_native(kCreate, "native pthread", n, pthread_create_join);
    }
    if (round_trip) {
      rows[(*nrows)++] = pipe_row(calls);
      rows[(*nrows)++] = futex_row(calls);
    }
    _exit(0);
  }
  int status = 0;
  if (child < 0 || waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    die("the native measurements failed");
  }
  for (unsigned i = 0; i < *nrows; ++i) add(rows[i]);
  munmap(shared, kMax * sizeof(Row) + sizeof(unsigned));
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  g_args = parse(argc, argv);
  if (!g_args.quiet) {
    std::printf("%-30s %-28s %7s %12s %9s %7s %7s\n", "operation", "mode", "n", "ns/op", "exits/op", "cow/op",
                "reset/op");
  }
  map_pages();
  native_rows();
  if (auto s = st::init(); !s) {
    std::fprintf(stderr, "dunk-sthread-bench: sthread_init: %s: %s\n", s.error().what, std::strerror(s.error().err));
    return 1;
  }
  st::set_report_fd(2);
  const std::uint64_t n = g_args.n, calls = g_args.calls;
  if (g_args.wants(kCreate)) {
    Row fork_vm = measure_vm(kCreate, "dunk fork+wait", n, fork_once, false);
    fork_vm.note = "fork from a process in VM mode; the child runs outside it (no follow_fork) and exits";
    add(fork_vm);
    Row thread_vm = measure_vm(kCreate, "dunk pthread", n, pthread_create_join, false);
    thread_vm.note = "a thread created in VM mode, which starts on a vCPU of its own";
    add(thread_vm);
    // Warm first (both kinds): the first sthread rows after the pthread
    // rows ran up to 2x slower in the nested test VM, whichever kind came
    // first.
    for (std::uint64_t i = 0; i < n / 4 + 5; ++i) {
      sthread_once(false);
      sthread_once(false, true);
    }
    add(measure_vm(kCreate, "dunk sthread, fresh", n, [] { sthread_once(false); }));
    add(measure_vm(kCreate, "dunk sthread, fresh, tables copied", n, [] { sthread_once(false, true); }));
    add(measure_vm(kCreate, "dunk sthread, recycled", n, [] { sthread_once(true); }));
  }
  // The hand-shake's flags, in a tag the measured sthreads are granted.
  const tag_t tag = tag_new();
  auto* h = static_cast<Handshake*>(smalloc(tag, sizeof(Handshake)));
  if (h == nullptr) die("tag_new/smalloc failed");
  if (g_args.wants(kRoundTrip)) add(callgate_row(tag, h, calls));
  if (g_args.wants(kTables)) {
    add(tables_row(n, false));
    add(tables_row(n, true));
  }
  switch_rows(tag, h, std::max<std::uint64_t>(calls / 20, 10));
  if (!g_args.json.empty() && !write_json(g_args.json)) die("cannot write the JSON file");
  return 0;
}
