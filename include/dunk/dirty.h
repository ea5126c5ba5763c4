// Dirty-page tracking from the page tables' dirty bits: which pages of a
// range were written since the last reset. For garbage collectors (a write
// barrier without a barrier) and checkpointing (copy only what changed).
//
//   auto tracker = dunk::DirtyTracker::create(heap, heap_size);   // VM mode
//   tracker->reset();                          // start of an epoch
//   ... the program runs, writing wherever it likes ...
//   void* pages[256];
//   std::size_t n = tracker->collect(pages, 256);  // written pages; cleaned again
//
// The CPU sets a page's dirty bit on the first write through a TLB entry
// that lacks it (Intel SDM vol. 3A §4.8 "Accessed and Dirty Flags"; AMD APM
// vol. 2 §5.4.2), so cleaning a bit goes with a TLB flush: collect() and
// reset() flush the calling vCPU's TLB. Writes by other vCPUs are seen only
// if those flush too after a reset (or run on another address space).
// Nothing here makes a system call or leaves the guest.
//
// Granularity is the page size the range is mapped with. create() remaps a
// range mapped with 2 MiB or 1 GiB pages with 4 KiB pages (same memory,
// same rights, still the monitor's to keep current); a later mprotect of the
// range may bring large pages back.
#pragma once

#include <cstddef>

#include "dunk/result.h"

namespace dunk {

class DirtyTracker {
 public:
  // Tracks [start, start + size) (page-aligned) in the calling vCPU's
  // address space. Needs VM mode.
  static Result<DirtyTracker> create(void* start, std::size_t size) noexcept;

  // Cleans every page of the range: the next write to each is reported.
  void reset() noexcept;
  // Writes the first address of each page written since the last reset or
  // collect into pages[0..max), in address order, and returns how many
  // were written in all (more than max: the rest were not listed, but all
  // were cleaned when `clean` is set).
  std::size_t collect(void** pages, std::size_t max, bool clean = true) noexcept;
  // How many pages are dirty now, without cleaning.
  std::size_t count() const noexcept;

  void* start() const noexcept { return start_; }
  std::size_t size() const noexcept { return size_; }

 private:
  DirtyTracker(void* start, std::size_t size) noexcept : start_(start), size_(size) {}
  std::size_t scan(void** pages, std::size_t max, bool clean) const noexcept;
  void* start_;
  std::size_t size_;
};

}  // namespace dunk
