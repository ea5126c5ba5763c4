#include "core/dirty.h"

#include <fcntl.h>
#include <sys/syscall.h>

#include <algorithm>

#include "base/proc_maps.h"
#include "base/syscall.h"
#include "core/machine.h"
#include "guest/dispatch.h"

namespace dunk::core {
namespace {

constexpr std::uint64_t kPage = arch::kPageSize4K;

// ---- Process-wide state -------------------------------------------------------

// note_left_vm_mode() calls, and whether some thread may be outside VM mode
// without dunk knowing (one that never entered: it must be counted).
std::atomic<std::uint64_t> g_left{0};
std::atomic<bool> g_foreign_possible{true};
// note_unseen_writes() calls; note_unbounded_writer() was called; some
// reader has cleaned (dirty_bits_cleaned).
std::atomic<std::uint64_t> g_unseen{0};
std::atomic<bool> g_unbounded{false};
std::atomic<bool> g_cleaned{false};

// The last clean of any reader: its TLB generation, and whether it was
// quiet (then nothing from before it can be stale in any vCPU). One word,
// so that readers see the two together: generation << 1 | quiet.
std::atomic<std::uint64_t> g_last_clean{1};  // "generation 0, quiet": nothing to wait for

struct Range {
  std::uint64_t start, end;
};

// Ranges the kernel writes asynchronously (add_always_dirty).
struct Registry {
  Lock lock;
  Range ranges[kAlwaysDirtyRanges];
  unsigned count = 0;
  std::atomic<unsigned> overflowed{0};  // adds refused since the last remove made room
};
Registry g_registry;

// The process's MAP_SHARED mappings as /proc/self/maps last showed them,
// valid while the mirror's generation has not moved.
struct SharedMappings {
  static constexpr unsigned kMax = 256;
  Lock lock;
  bool valid = false;
  bool overflow = false;
  std::uint64_t generation = 0;
  Range ranges[kMax];
  unsigned count = 0;
};
SharedMappings g_shared;

Machine* machine_if_created() noexcept {
  Machine& m = Machine::instance();
  return m.created() ? &m : nullptr;
}

std::uint64_t load(const std::uint64_t& field) noexcept {
  return std::atomic_ref<std::uint64_t>(const_cast<std::uint64_t&>(field)).load(std::memory_order_seq_cst);
}

// A vCPU some live thread owns (it may be in the guest, in the host, or
// outside VM mode).
bool owned(const Cpu& cpu) noexcept {
  return cpu.owner_tid.load(std::memory_order_acquire) != 0 && !cpu.owner_exited.load(std::memory_order_acquire);
}

void refresh_shared(Mirror& mirror) noexcept {
  const std::uint64_t generation = mirror.generation();
  if (g_shared.valid && g_shared.generation == generation) return;
  char buffer[1024];
  MapsReader reader(buffer, sizeof buffer);
  g_shared.count = 0;
  g_shared.overflow = false;
  g_shared.valid = false;
  if (!reader.open()) return;
  MapEntry entry;
  while (reader.next(entry)) {
    if (!entry.shared) continue;
    if (g_shared.count == SharedMappings::kMax) {
      g_shared.overflow = true;
      break;
    }
    g_shared.ranges[g_shared.count++] = {entry.start.value(), entry.end.value()};
  }
  if (!reader.status()) return;
  g_shared.generation = generation;
  g_shared.valid = true;
}

}  // namespace

// ---- What the monitor reports ---------------------------------------------------

void note_kernel_write(Hva start, std::uint64_t length) noexcept {
  Machine* machine = machine_if_created();
  if (machine == nullptr || length == 0) return;
  Mirror& mirror = machine->mirror();
  for (unsigned id = 0; id < mirror.tree_end(); ++id) {
    if (arch::PageTable* tree = mirror.tree_as_is(id)) (void)tree->mark_written(identity_gva(start), length);
  }
}

bool dirty_bits_cleaned() noexcept { return g_cleaned.load(std::memory_order_seq_cst); }

Status add_always_dirty(Hva start, std::uint64_t length) noexcept {
  if (length == 0) return {};
  LockGuard hold(g_registry.lock);
  for (unsigned i = 0; i < g_registry.count; ++i) {
    const Range r = g_registry.ranges[i];
    if (r.start <= start.value() && start.value() + length <= r.end) return {};
  }
  if (g_registry.count == kAlwaysDirtyRanges) {
    g_registry.overflowed.fetch_add(1, std::memory_order_acq_rel);
    return Error{"add_always_dirty: too many always-dirty ranges; every page is reported dirty until some go", ENOSPC};
  }
  g_registry.ranges[g_registry.count++] = {start.value(), start.value() + length};
  return {};
}

void remove_always_dirty(Hva start, std::uint64_t length) noexcept {
  LockGuard hold(g_registry.lock);
  const Range gone{start.value(), start.value() + length};
  unsigned kept = 0;
  for (unsigned i = 0; i < g_registry.count; ++i) {
    const Range r = g_registry.ranges[i];
    if (r.start >= gone.start && r.end <= gone.end) continue;
    g_registry.ranges[kept++] = r;
  }
  if (kept < g_registry.count) g_registry.overflowed.store(0, std::memory_order_release);
  g_registry.count = kept;
}

void note_left_vm_mode() noexcept {
  g_left.fetch_add(1, std::memory_order_acq_rel);
  // It may start threads out there, which never enter.
  g_foreign_possible.store(true, std::memory_order_release);
}

void note_unseen_writes() noexcept { g_unseen.fetch_add(1, std::memory_order_acq_rel); }

void note_unbounded_writer() noexcept { g_unbounded.store(true, std::memory_order_release); }

void start_reader(ReaderState& reader) noexcept {
  reader.left_seen = g_left.load(std::memory_order_acquire);
  reader.unseen_seen = g_unseen.load(std::memory_order_acquire);
  reader.cleaned_once = true;
}

long kernel_thread_count() noexcept {
  const long fd = sys::call(SYS_openat, AT_FDCWD, reinterpret_cast<long>("/proc/self/stat"), O_RDONLY | O_CLOEXEC);
  if (sys::failed(fd)) return 0;
  char text[1024];
  const long n = sys::call(SYS_read, fd, reinterpret_cast<long>(text), sizeof text - 1);
  sys::call(SYS_close, fd);
  if (n <= 0) return 0;
  // "pid (comm) state ppid ...": the name may hold anything, so fields
  // count from its last ')'. num_threads is field 20 (proc(5)), the 18th
  // after the name.
  long at = n - 1;
  while (at >= 0 && text[at] != ')') --at;
  if (at < 0) return 0;
  unsigned field = 0;
  long value = 0;
  bool in_number = false;
  for (long i = at + 1; i < n; ++i) {
    const char c = text[i];
    if (c == ' ') {
      if (in_number && field == 18) return value;
      in_number = false;
      continue;
    }
    if (!in_number) {
      in_number = true;
      ++field;
      value = 0;
    }
    if (field == 18) {
      if (c < '0' || c > '9') return 0;
      value = value * 10 + (c - '0');
    }
  }
  return 0;
}

// ---- DirtyPass -----------------------------------------------------------------------

DirtyPass::DirtyPass(ReaderState& reader, bool clean, bool reports) noexcept
    : reader_(reader), self_(current_cpu()), clean_(clean), reports_(reports) {
  Machine* machine = machine_if_created();
  mirror_ = machine != nullptr ? &machine->mirror() : nullptr;
  left_seen_ = g_left.load(std::memory_order_acquire);
  if (machine == nullptr) return;
  // Before any bit is read: a write the monitor finished without marking
  // it (it saw no clean yet) left its leaf dirty for this pass to find.
  if (clean) g_cleaned.store(true, std::memory_order_seq_cst);

  if (g_registry.overflowed.load(std::memory_order_acquire) != 0) blind_ = Blind::kRegistryFull;
  // Unseen writes are reported until the reader's next clean.
  unseen_seen_ = g_unseen.load(std::memory_order_acquire);
  if (unseen_seen_ != reader.unseen_seen) blind_ = Blind::kUnseenWrites;
  if (g_unbounded.load(std::memory_order_acquire)) blind_ = Blind::kUnboundedWriter;
  if (reader.blind_next || (reader.cleaned_once && reader.left_seen != left_seen_)) blind_ = Blind::kThreadOutside;

  // Threads: which live ones are in VM mode, and the other vCPUs' state
  // (in the host since when) for finish()'s quiet test.
  const std::uint64_t last = g_last_clean.load(std::memory_order_acquire);
  const std::uint64_t last_generation = last >> 1;
  bool caught_up_with_last = true;
  long in_vm_mode = 0;
  caught_up_ = ~std::uint64_t{0};
  const unsigned n = machine->cpu_count();
  cpus_at_start_ = n < kMaxTracked ? n : kMaxTracked;
  for (unsigned i = 0; i < kMaxTracked / 64; ++i) in_host_at_start_[i] = 0;
  for (unsigned i = 0; i < n; ++i) {
    Cpu& cpu = *machine->cpu_at(i);
    if (!owned(cpu)) continue;
    if (!cpu.in_guest) {
      blind_ = Blind::kThreadOutside;  // left VM mode, or not yet in it
      outside_ = true;
      continue;
    }
    ++in_vm_mode;
    if (&cpu == self_) continue;
    const std::uint64_t flushed = load(cpu.area->tlb_generation);
    caught_up_ = std::min(caught_up_, flushed);
    if (flushed < last_generation) caught_up_with_last = false;
    if (i < kMaxTracked) {
      // The count first: finish() reads them the other way round.
      entries_at_start_[i] = load(cpu.area->host_entries);
      if (load(cpu.area->in_host) != 0) in_host_at_start_[i / 64] |= std::uint64_t{1} << (i % 64);
    }
  }
  if (g_foreign_possible.load(std::memory_order_acquire) && !outside_) {
    // A thread dunk never saw (started before the first enter(), or by a
    // thread outside VM mode) shows only in the kernel's count.
    const long threads = kernel_thread_count();
    if (threads == in_vm_mode) {
      g_foreign_possible.store(false, std::memory_order_release);
    } else {
      blind_ = Blind::kThreadOutside;
      outside_ = true;
    }
  }
  if (blind_ != Blind::kNo) {
    // What dunk knew of the mappings may be stale too (a thread outside VM
    // mode maps and unmaps behind the monitor).
    LockGuard hold(g_shared.lock);
    g_shared.valid = false;
  }
  prune_ = (last & 1) != 0 || caught_up_with_last;
  if (reports_ && caught_up_ > reader_.reported_caught_up) reader_.reported_caught_up = caught_up_;
}

void DirtyPass::scan(Hva start, std::uint64_t size, arch::LeafVisitor visit) noexcept {
  if (mirror_ == nullptr || size == 0) return;
  const Hva end = start + size;
  const Arena& arena = Machine::instance().arena();
  // dunk's own memory is not the program's: the pieces around the arena.
  const Range pieces[2] = {{start.value(), std::min(end, arena.base()).value()},
                           {std::max(start, arena.end()).value(), end.value()}};
  const arch::DirtyScanOptions options{.clean = clean_, .prune = prune_};
  for (const Range& piece : pieces) {
    if (piece.start >= piece.end) continue;
    for (unsigned id = 0; id < mirror_->tree_end(); ++id) {
      arch::PageTable* tree = mirror_->tree_as_is(id);
      if (tree == nullptr) continue;
      tree->scan_dirty(Gva(piece.start), piece.end - piece.start, options, visit, &counts_);
    }
  }
}

void DirtyPass::always_dirty_impl(Hva start, Hva end, void (*call)(void*, Hva, Hva), void* f) noexcept {
  if (mirror_ == nullptr || start >= end) return;
  auto clip = [&](std::uint64_t lo, std::uint64_t hi) {
    lo = std::max(lo, start.value()) & ~(kPage - 1);
    hi = std::min(hi, end.value());
    if (lo < hi) call(f, Hva(lo), Hva(hi));
  };
  {
    LockGuard hold(g_registry.lock);
    for (unsigned i = 0; i < g_registry.count; ++i) clip(g_registry.ranges[i].start, g_registry.ranges[i].end);
  }
  LockGuard hold(g_shared.lock);
  refresh_shared(*mirror_);
  if (g_shared.valid && !g_shared.overflow) {
    for (unsigned i = 0; i < g_shared.count; ++i) clip(g_shared.ranges[i].start, g_shared.ranges[i].end);
    return;
  }
  // Too many shared mappings to keep, or no cache: read them again, only
  // for this range.
  char buffer[1024];
  MapsReader reader(buffer, sizeof buffer);
  if (!reader.open()) {
    clip(start.value(), end.value());  // cannot tell: all of it
    return;
  }
  MapEntry entry;
  while (reader.next(entry)) {
    if (entry.shared) clip(entry.start.value(), entry.end.value());
  }
  if (!reader.status()) clip(start.value(), end.value());
}

bool DirtyPass::sticky_expired() const noexcept {
  return reader_.sticky_generation != 0 && reader_.reported_caught_up >= reader_.sticky_generation;
}

bool DirtyPass::finish(std::uint64_t published) noexcept {
  if (!clean_) return true;
  reader_.left_seen = left_seen_;
  reader_.unseen_seen = unseen_seen_;
  reader_.cleaned_once = true;
  reader_.blind_next = outside_;
  Machine* machine = machine_if_created();
  if (machine == nullptr) return true;
  // Every vCPU flushes before it runs again once it sees this (at the
  // latest on its way back from the host: src/guest/syscall_entry.S).
  std::atomic_ref<std::uint64_t> tlb(guest::dunk_tlb_generation);
  generation_ = published != 0 ? published : tlb.fetch_add(1, std::memory_order_seq_cst) + 1;
  std::atomic_thread_fence(std::memory_order_seq_cst);
  bool quiet = true;
  const unsigned n = machine->cpu_count();
  for (unsigned i = 0; i < n && quiet; ++i) {
    Cpu& cpu = *machine->cpu_at(i);
    if (&cpu == self_ || !owned(cpu)) continue;
    if (i >= cpus_at_start_) {
      quiet = false;  // came during the pass
      continue;
    }
    // In the host at the start, in the host now, and never out in between
    // (the entry count did not move): it ran nothing during the pass, and
    // flushes before it does (it will see the new generation).
    const bool was_in_host = (in_host_at_start_[i / 64] >> (i % 64)) & 1;
    const bool in_host = load(cpu.area->in_host) != 0;
    const bool stayed = load(cpu.area->host_entries) == entries_at_start_[i];
    quiet = was_in_host && in_host && stayed;
  }
  // Publish the clean for the next passes' pruning decision (the newest
  // generation wins).
  std::uint64_t last = g_last_clean.load(std::memory_order_acquire);
  const std::uint64_t mine = generation_ << 1 | (quiet ? 1 : 0);
  while ((last >> 1) <= generation_ && !g_last_clean.compare_exchange_weak(last, mine, std::memory_order_acq_rel)) {
  }
  return quiet;
}

void DirtyPass::keep_sticky() noexcept { reader_.sticky_generation = generation_; }

}  // namespace dunk::core
