// Dirty tracking's process-wide half: what the monitor reports, what dunk
// cannot see, and the protocol that makes cleaning dirty bits safe while
// other vCPUs keep writing. Its readers are the privileged API's
// DirtyTracker (src/priv/dirty.cc, guest code) and the monitor's soft-dirty
// view of /proc/self/pagemap (core/soft_dirty.h); docs/GC.md explains the
// whole design.
//
// A page is dirty when
//   - a leaf that maps it has its dirty bit set (in any address space of
//     the process): the CPU set it on a store, or note_kernel_write() on a
//     write the kernel made for the program, or the mirror created the leaf
//     (memory that appeared since the last look: EditOptions::
//     new_leaves_dirty); or
//   - it lies in a range dunk cannot watch: memory shared with another
//     process (a MAP_SHARED mapping), a range registered with
//     add_always_dirty() (the kernel writes it asynchronously); or
//   - some thread of the process ran outside VM mode since the reader last
//     cleaned (its stores went through the host's page tables): then every
//     page is.
//
// Everything here works from guest code and from the monitor alike: it
// touches page-table memory (mapped at the same address in both), raw
// system calls (forwarded when made in the guest), no allocation and no
// libc lock.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "arch/x86_64/page_table.h"
#include "base/lock.h"
#include "dunk/address.h"
#include "dunk/result.h"

namespace dunk::core {

class Cpu;
class Mirror;

// ---- What the monitor reports ----------------------------------------------

// The host kernel (a forwarded read(), recvmsg(), ...) or dunk's monitor
// wrote [start, start + length) of the program's memory on its behalf:
// marks those pages written in every address space, exactly as stores by
// the guest would have (PageTable::mark_written). From any thread, at any
// time, without allocation or lock (compare-and-exchange on the entries);
// cost: one walk per 4 KiB page. Call it after the write has happened: a
// clean between the write and the mark is then followed by the mark, and
// the next read reports the page. A no-op before the VM exists.
void note_kernel_write(Hva start, std::uint64_t length) noexcept;

// Whether some reader has ever cleaned dirty bits in this process. Until
// then every leaf is dirty (the mirror creates them dirty), so a write need
// not be marked: the monitor skips the work of finding what a forwarded
// call wrote (syscalls/kernel_writes.cc) while this is false. Set before
// the first clean reads a bit, so a write the monitor finished before it
// saw false is reported by that clean.
bool dirty_bits_cleaned() noexcept;

// Ranges the kernel writes asynchronously, with no system call to mark it
// (an io_submit buffer, the rseq area, a child's tid word): reported dirty
// by every read until removed. A range inside one already registered adds
// nothing (glibc registers the same thread-control blocks again as it
// reuses thread stacks). At most kAlwaysDirtyRanges at once; beyond that,
// ENOSPC, and every page of the process is reported dirty until enough are
// removed.
inline constexpr unsigned kAlwaysDirtyRanges = 512;
Status add_always_dirty(Hva start, std::uint64_t length) noexcept;
void remove_always_dirty(Hva start, std::uint64_t length) noexcept;

// A thread leaves VM mode (Monitor::leave_to_host), or exits (the kernel
// writes for it on its way out: the futex words of its robust list, its
// clear_child_tid word): what is stored for it from now on, on the host,
// sets no dirty bit. Every reader reports everything dirty until it has
// cleaned while every thread of the process was in VM mode.
void note_left_vm_mode() noexcept;

// Writes dunk saw happen but cannot bound, now finished (a vfork child,
// which wrote the shared memory from outside this VM until its exec; a
// forwarded call the schema cannot fully describe): every reader's next
// pass reports everything dirty.
void note_unseen_writes() noexcept;

// A writer dunk can neither see nor bound, for the rest of the process's
// life (an io_uring or AIO context, whose requests name buffers the kernel
// fills later): every pass from now on reports everything dirty.
void note_unbounded_writer() noexcept;

// ---- Reading and cleaning ---------------------------------------------------

// Why a pass could not tell dirty from clean and reported every page.
enum class Blind : std::uint8_t {
  kNo = 0,
  kThreadOutside,    // a thread is (or was, since the reader's last clean) outside VM mode
  kRegistryFull,     // add_always_dirty overflowed
  kUnseenWrites,     // note_unseen_writes since the reader's last clean
  kUnboundedWriter,  // note_unbounded_writer
};

// One reader's view of the protocol (a tracker, or the pagemap view): what
// it needs to remember between its passes.
struct ReaderState {
  std::uint64_t left_seen = 0;          // note_left_vm_mode() count at its last clean
  std::uint64_t unseen_seen = 0;        // note_unseen_writes() count at its last clean
  bool cleaned_once = false;            // left_seen is meaningful
  // Its last clean saw a thread outside VM mode: that thread may have
  // written until it came back, after that clean, so the next pass is blind
  // too (and only a clean with every thread inside ends it).
  bool blind_next = false;
  std::uint64_t sticky_generation = 0;  // the clean that made its sticky pages (0: none)
  // The oldest TLB generation every other vCPU had flushed when a pass of
  // this reader last reported: sticky pages older than that have been
  // reported after every vCPU stopped using stale entries for them.
  std::uint64_t reported_caught_up = 0;
};

// A new reader's history starts now: threads that left VM mode before do
// not make its first pass blind.
void start_reader(ReaderState& reader) noexcept;

// One pass of a reader over some ranges: read the dirty bits (and clean
// them when `clean`), then finish().
//
// Cleaning while other vCPUs run. A vCPU may hold a TLB entry that already
// has the dirty bit: its stores through it set nothing in memory (SDM vol.
// 3A §4.8), and a paging-structure-cache entry lets it reach a leaf without
// setting accessed above it. Every vCPU flushes at its next return from the
// host after finish() (dunk's TLB generation, src/guest/syscall_entry.S),
// or at once when the reader sends a shootdown (dunk/interrupts.h); until
// then, what it stores through such entries is invisible. So:
//   - finish() tells whether the clean was quiet: every other vCPU was in
//     the host for the whole pass (blocked in a system call, as a stopped
//     world is) and will flush before its next instruction, or has no
//     thread. A quiet clean is exact.
//   - After a clean that was not quiet, the pages it cleaned may be written
//     invisibly (only pages whose dirty bit was set can have such TLB
//     entries): the reader keeps them ("sticky") and reports them again at
//     every pass until sticky_expired() says every vCPU has flushed since.
//   - Until then no pass prunes by upper-level accessed bits either.
class DirtyPass {
 public:
  // Takes the snapshot the protocol compares against; decides blindness and
  // pruning. `clean`: the pass cleans what it reads; `reports`: the reader
  // hands what it reads to its user (a collect does both; a pagemap read
  // only reports, a clear_refs only cleans).
  DirtyPass(ReaderState& reader, bool clean, bool reports) noexcept;
  DirtyPass(const DirtyPass&) = delete;
  DirtyPass& operator=(const DirtyPass&) = delete;

  // Every page is to be reported dirty (and why).
  Blind blind() const noexcept { return blind_; }
  // Whether this pass skips subtrees whose accessed bit is clear.
  bool prunes() const noexcept { return prune_; }

  // Calls visit(page, size) for every dirty leaf overlapping [start, start +
  // size) in every address space of the process (cleaning it when the pass
  // cleans). dunk's own memory (the arena) is never visited.
  void scan(Hva start, std::uint64_t size, arch::LeafVisitor visit) noexcept;
  // Calls visit(lo, hi) for the parts of [start, end) that are always dirty:
  // shared mappings and the always-dirty registry. (Not the sticky pages:
  // the reader keeps those.)
  template <class F>
  void always_dirty(Hva start, Hva end, F&& visit) noexcept {
    always_dirty_impl(start, end, [](void* f, Hva lo, Hva hi) { (*static_cast<F*>(f))(lo, hi); }, &visit);
  }

  // Whether the reader's sticky pages may be forgotten after this pass:
  // every vCPU had flushed since the clean that made them when some pass of
  // the reader (this one, if it reports) reported them.
  bool sticky_expired() const noexcept;

  // After a cleaning pass: publishes a new TLB generation (every vCPU
  // flushes before it runs again, at the latest on its way back from the
  // host), unless `published` says the caller did it already (a shootdown
  // with flush_tlb_all_cpus publishes its own), then tells whether the
  // clean was quiet. When it was not, the reader must make what it found
  // sticky and call keep_sticky().
  bool finish(std::uint64_t published = 0) noexcept;
  void keep_sticky() noexcept;

  const arch::DirtyScanCounts& counts() const noexcept { return counts_; }
  // The TLB generation finish() published.
  std::uint64_t generation() const noexcept { return generation_; }

 private:
  void always_dirty_impl(Hva start, Hva end, void (*call)(void*, Hva, Hva), void* f) noexcept;

  ReaderState& reader_;
  Mirror* mirror_;
  Cpu* self_;
  bool clean_;
  bool reports_;
  bool prune_ = false;
  Blind blind_ = Blind::kNo;
  bool outside_ = false;  // a thread is outside VM mode now
  std::uint64_t caught_up_ = 0;   // the oldest TLB generation a live vCPU has flushed
  std::uint64_t generation_ = 0;  // what finish() published
  std::uint64_t left_seen_ = 0;
  std::uint64_t unseen_seen_ = 0;
  arch::DirtyScanCounts counts_;
  // The other vCPUs' host entries at the start (for finish's quiet test).
  static constexpr unsigned kMaxTracked = 1024;
  std::uint64_t entries_at_start_[kMaxTracked];
  std::uint64_t in_host_at_start_[kMaxTracked / 64];
  unsigned cpus_at_start_ = 0;
};

// How many threads the kernel counts in this process (/proc/self/stat's
// num_threads); 0 when it cannot tell. Raw system calls.
long kernel_thread_count() noexcept;

}  // namespace dunk::core
