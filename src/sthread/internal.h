// The sthread supervisor's data, shared by its files. All of it lives in
// libsthread.so's own memory or in memory it maps after sthread_init: never
// in the snapshot sthreads see (supervisor.cc checks that at init).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "base/lock.h"
#include "dunk/paging.h"
#include "dunk/result.h"
#include "dunk/sthread.h"
#include "dunk/trap_frame.h"
#include "sthread/sthread.h"

namespace dunk::sthread {

inline constexpr std::size_t kPage = 4096;
inline constexpr std::size_t kStackSize = 128 * 1024;
inline constexpr std::size_t kTagSize = std::size_t{2} << 20;  // one 2 MiB page
inline constexpr unsigned kMaxTags = 4096;
inline constexpr unsigned kMaxSthreads = 4096;
inline constexpr unsigned kMaxContexts = 1024;  // callgates' frozen contexts
inline constexpr unsigned kMaxSnapshotRanges = 512;
inline constexpr unsigned kMaxCallgateDepth = 8;
inline constexpr std::size_t kBounceSize = std::size_t{4} << 20;

// The system-call numbers of ring-3 code in the supervisor's page
// (ring3_page.S): they never reach the host.
inline constexpr std::uint64_t kCallBase = 0x7374687200ull;  // "sthr"
inline constexpr std::uint64_t kCallReturn = kCallBase + 1;       // the sthread returned (RDI)
inline constexpr std::uint64_t kCallGate = kCallBase + 2;         // cgate(RDI, RSI, RDX)
inline constexpr std::uint64_t kCallGateReturn = kCallBase + 3;   // a callgate returned (RDI)

extern "C" {
// ring3_page.S: one page of the library's code that ring 3 may run.
extern const char sthread_ring3_page[];
extern const char sthread_ring3_return[];
extern const char sthread_ring3_cgate_return[];
}

// A range of the snapshot: `size` bytes at `va` as they were at init,
// copied to `copy`.
struct SnapshotRange {
  std::uint64_t va = 0;
  std::uint64_t size = 0;
  char* copy = nullptr;
};

// A page an sthread wrote: its own copy of a snapshot page.
struct PrivatePage {
  std::uint64_t va = 0;
  char* page = nullptr;
  bool written_by_supervisor = false;  // a system call's result copied in
};

struct Policy {
  unsigned char sys[STHREAD_MAX_SYSCALL / 8]{};
  sc_fd_grant fds[STHREAD_MAX_FD]{};
  unsigned nfd = 0;
  sc_mem_grant mem[STHREAD_MAX_MEM]{};
  unsigned nmem = 0;
  sc_cgate_grant cgates[STHREAD_MAX_CGATE]{};
  unsigned ncgate = 0;

  bool allows_call(unsigned nr) const noexcept {
    return nr < STHREAD_MAX_SYSCALL && (sys[nr / 8] & (1u << (nr % 8))) != 0;
  }
  int fd_rights(int fd) const noexcept;  // -1: not granted
  void add_fd(int fd, int prot) noexcept;
  void remove_fd(int fd) noexcept;
};

// A compartment: an address space, a stack, the pages it owns, its policy.
// An sthread or a callgate invocation runs on one; a joined sthread's goes
// back to the pool, reset.
struct Compartment {
  AddressSpace* view = nullptr;
  char* stack = nullptr;
  PrivatePage* pages = nullptr;  // mmap'd array
  std::size_t npages = 0;
  std::size_t page_capacity = 0;
  std::uint64_t stack_written[(kStackSize / kPage + 63) / 64]{};  // pages the kernel wrote
  Policy policy;
  tag_t granted[STHREAD_MAX_MEM]{};
  unsigned ngranted = 0;
  // Callgate compartments of this one, made on first call (index: cgate).
  Compartment* gates[STHREAD_MAX_CGATE]{};
  Compartment* next_free = nullptr;
  bool recycled = false;
  // Every compartment that exists, linked (stats walk it).
  Compartment* next_all = nullptr;
  Compartment* prev_all = nullptr;
};

// One system-call refusal or fault, for the report.
struct Violation {
  long call = -1;
  std::uint64_t address = 0;
  int fd = -1;
  int err = 0;
  const char* why = nullptr;
};

enum class State : std::uint32_t { kFree, kQueued, kRunning, kDone };

struct Sthread {
  std::atomic<std::uint32_t> state{static_cast<std::uint32_t>(State::kFree)};
  stcb_t fn = nullptr;
  void* arg = nullptr;
  Compartment* compartment = nullptr;
  bool recycle = true;
  sthread_report report{};
};

// One callgate call in progress: the caller to come back to.
struct GateFrame {
  TrapFrame caller{};
  Compartment* caller_compartment = nullptr;
  Compartment* gate = nullptr;
  // The callgate's own policy, to go back to after the call (perms lend
  // descriptors and tags for one call only).
  Policy kept;
};

// A ring-3 run on a worker: an sthread and the callgates it calls.
struct Run {
  Sthread* sthread = nullptr;
  Compartment* current = nullptr;
  GateFrame gates[kMaxCallgateDepth];
  unsigned depth = 0;
  char* bounce = nullptr;  // the worker's buffer for copies of arguments
};

struct Tag {
  char* base = nullptr;
  bool alive = false;
  bool doomed = false;  // deleted while granted
  unsigned grants = 0;
  // Blocks (supervisor memory, out of the sthreads' reach): offset | size
  // pairs, allocated ones flagged.
  struct Block {
    std::uint32_t offset;
    std::uint32_t size;
    bool used;
  };
  Block* blocks = nullptr;
  unsigned nblocks = 0;
};

struct Counters {
  std::atomic<std::uint64_t> fresh{0}, recycled{0}, cow{0}, reset{0}, checked{0}, refused{0}, gates{0},
      workers{0}, destroyed{0};
};

// The supervisor.
struct Supervisor {
  bool ready = false;
  Lock lock;  // everything below but the counters
  AddressSpace* tmpl = nullptr;
  SnapshotRange snapshot[kMaxSnapshotRanges];
  unsigned nsnapshot = 0;
  std::uint64_t fs_base = 0;  // ring 3's TLS: the init thread's, in the snapshot
  Tag tags[kMaxTags];
  Sthread sthreads[kMaxSthreads];
  Policy contexts[kMaxContexts];
  unsigned ncontexts = 0;
  Compartment* free_compartments = nullptr;
  Compartment* all_compartments = nullptr;
  // Pages for copies on write.
  char** free_pages = nullptr;
  std::size_t nfree_pages = 0;
  std::size_t free_page_capacity = 0;
  // Work for the pool.
  int queue[kMaxSthreads];
  unsigned queue_head = 0;
  unsigned queue_count = 0;
  std::atomic<std::uint32_t> wake{0};
  unsigned idle_workers = 0;
  std::atomic<int> report_fd{2};
  Counters counters;
  // Page-table edits through dunk's API (clone, map, release, destroy), one
  // at a time. Each edit first stocks the tables it needs and then takes
  // them under the mirror's lock; two threads editing at once take each
  // other's stock, and the second fails with ENOMEM (retried, below).
  // Taken after `lock` when both are held, never the other way round.
  Lock edit_lock;
};

Supervisor& supervisor() noexcept;

// Runs a page-table edit (returning Status or Result) under edit_lock,
// again while the tables it stocked went to dunk's monitor meanwhile
// (ENOMEM), a few times.
template <class F>
auto page_table_edit(F&& edit) noexcept -> decltype(edit()) {
  for (int attempt = 0;; ++attempt) {
    auto result = [&] {
      LockGuard guard(supervisor().edit_lock);
      return edit();
    }();
    if (result || result.error().err != ENOMEM || attempt == 3) return result;
  }
}

// supervisor.cc
const SnapshotRange* snapshot_at(std::uint64_t va) noexcept;
// Gives the compartment its own copy of the snapshot page at `va` (mapped
// writable); false when `va` is not a snapshot page.
bool copy_on_write(Compartment& c, std::uint64_t va) noexcept;
void report_line(const Sthread& st, const char* text) noexcept;
// Reads or writes memory as the compartment sees it (rights of ring 3; a
// write copies snapshot pages first and is remembered for the reset).
bool read_view(Compartment& c, std::uint64_t va, void* out, std::size_t size) noexcept;
bool write_to_view(Compartment& c, std::uint64_t va, const void* data, std::size_t size) noexcept;
// The kernel wrote [va, va + size) of identity-mapped memory (the stack's
// pages must be cleared at the reset).
void note_kernel_write(Compartment& c, std::uint64_t va, std::uint64_t size) noexcept;
// errno as ring 3 sees it.
void set_errno_in_view(Run& run, int err) noexcept;
// A context frozen for a callgate (sc_cgate_add); -1 when full.
int register_context(const sc_t& sc) noexcept;

// checks.cc: a system call of ring 3, checked against the running
// compartment and passed on (or refused); the frame's RAX gets the result.
void serve_call(Run& run, TrapFrame& frame) noexcept;

// tags.cc
Status tag_grant(Compartment& c, tag_t t, int prot) noexcept;
void tag_revoke_all(Compartment& c) noexcept;
tag_t tag_holding(std::uint64_t address) noexcept;
bool tag_alive(tag_t t) noexcept;

// Records a refusal in the run's report and says so on the report fd.
void note_violation(Run& run, const Violation& v) noexcept;

}  // namespace dunk::sthread
