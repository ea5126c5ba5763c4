// Dirty-page tracking from the page tables' dirty bits: which pages of some
// ranges were written since the last clean, for garbage collectors (a write
// barrier without a barrier) and checkpointing (copy only what changed).
//
//   auto tracker = dunk::DirtyTracker::create(heap, heap_size);   // VM mode
//   tracker->reset();                          // start of an epoch
//   ... the program runs, writing wherever it likes, on any thread ...
//   void* pages[256];
//   std::size_t n = tracker->collect(pages, 256);  // written pages; cleaned again
//   tracker->add(more_heap, more_size);        // the heap grew
//   tracker->remove(old_heap, old_size);       // or shrank
//
// What is reported (docs/GC.md has the whole design):
// - every page written since the last clean by any thread in VM mode, on any
//   vCPU: the CPU sets the page's dirty bit (Intel SDM vol. 3A §4.8
//   "Accessed and Dirty Flags"; AMD APM vol. 2 §5.4.2); cleaning is safe
//   while other threads keep writing (a protocol over dunk's TLB
//   generations: a page cleaned while another vCPU may still hold a TLB
//   entry that lets stores through without setting the bit is reported
//   again until that vCPU has flushed). Threads blocked in system calls —
//   a stopped world — make a collect exact;
// - every page the kernel or dunk's monitor wrote for the program: after
//   every system call the monitor reports the buffers the kernel wrote (the
//   system-call schema's exit walk), and its own writes (signal frames);
// - memory that appeared in a range since (mapped after tracking began, or
//   unmapped and mapped again): new memory starts dirty;
// - conservatively, what dunk cannot see: every page of a MAP_SHARED
//   mapping (another process may write it), ranges the kernel writes
//   asynchronously (io_submit buffers, rseq areas, tid words), and every
//   page while a thread of the process runs outside VM mode or is exiting,
//   or did since the last collect (its stores go through the host's page
//   tables), after a vfork or a call the schema cannot describe, and for
//   good once an io_uring or AIO context exists.
// A page that is not reported was not written, except by another process
// through ptrace, process_vm_writev or /proc/PID/mem, or by a device.
//
// Cost: no system call and no exit in the common case (one to three the
// first time, to count the process's threads, and when the mappings changed,
// to find shared ones); a read of the page-table entries that cover what was
// used since the last clean, which upper-level accessed bits bound (a 2 MiB
// region nobody touched costs one entry).
//
// Granularity is 4 KiB: create() and add() remap large pages of the range
// with 4 KiB pages (same memory, same rights, still the monitor's). A range
// the monitor maps again with a large page later (a new 2 MiB-aligned
// mapping, an mprotect of one) is reported a whole large page at a time
// once, and split again by that collect.
//
// Several trackers share the dirty bits: a clean by one cleans the pages
// for the others too (track each range with one tracker). Not
// async-signal-safe. Needs VM mode; outside it, collect() reports every
// page and cleans nothing.
#pragma once

#include <cstddef>
#include <cstdint>

#include "dunk/result.h"

namespace dunk {

class DirtyTracker {
 public:
  // A tracker with no range yet, or tracking [start, start + size)
  // (page-aligned). Needs VM mode.
  static Result<DirtyTracker> create() noexcept;
  static Result<DirtyTracker> create(void* start, std::size_t size) noexcept;

  DirtyTracker(DirtyTracker&& other) noexcept;
  DirtyTracker& operator=(DirtyTracker&& other) noexcept;
  DirtyTracker(const DirtyTracker&) = delete;
  DirtyTracker& operator=(const DirtyTracker&) = delete;
  ~DirtyTracker();

  // Tracks [start, start + size) too: page-aligned, mapped or not, not
  // overlapping a tracked range (EEXIST) nor dunk's own memory (EPERM). The
  // next collect reports what its dirty bits say (memory mapped recently
  // is dirty); reset() to start clean.
  Status add(void* start, std::size_t size) noexcept;
  // Stops tracking [start, start + size) (page-aligned; parts of ranges are
  // cut off; untracked parts are ignored).
  Status remove(void* start, std::size_t size) noexcept;

  // Cleans every page of the ranges: the next write to each is reported.
  void reset() noexcept;
  // Writes the first address of each page written since the last clean
  // (reset, or a collect with `clean`) into pages[0..max), in address
  // order, and returns how many there were in all (more than max: the rest
  // were not listed, but all were cleaned when `clean` is set).
  std::size_t collect(void** pages, std::size_t max, bool clean = true) noexcept;
  // The same, calling on_page(void* page) for each, without a limit.
  template <class F>
  std::size_t collect_each(F&& on_page, bool clean = true) noexcept {
    return collect_impl([](void* f, void* page) { (*static_cast<F*>(f))(page); }, &on_page, clean);
  }
  // How many pages are dirty now, without cleaning.
  std::size_t count() noexcept;

  // What the last collect, reset or count did, counted exactly.
  struct Pass {
    std::uint64_t entries_read = 0;    // page-table entries loaded (all levels, all address spaces)
    std::uint64_t tables_skipped = 0;  // subtrees skipped: their accessed bit said untouched
    std::uint64_t dirty_leaves = 0;    // leaves with the dirty bit
    std::uint64_t reported = 0;        // pages reported
    std::uint64_t sticky = 0;          // pages kept for the next pass (see above)
    bool pruned = false;               // skipping by accessed bits was sound
    bool quiet = true;                 // no other vCPU ran during the clean: exact
    bool blind = false;                // every page reported (a thread outside VM mode...)
  };
  const Pass& last_pass() const noexcept;

  // The tracked ranges, in address order.
  std::size_t range_count() const noexcept;
  void* range_start(std::size_t i) const noexcept;
  std::size_t range_size(std::size_t i) const noexcept;

 private:
  struct State;
  explicit DirtyTracker(State* state) noexcept : state_(state) {}
  std::size_t collect_impl(void (*call)(void*, void*), void* f, bool clean) noexcept;
  State* state_;
};

}  // namespace dunk
