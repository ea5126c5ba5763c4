// dunk's own memory: page tables, vCPU areas, monitor stacks, the IDT, the
// GPA directory. It all lives in one reserved, chunk-aligned region of the
// host address space, so that it needs a single guest-physical chunk and a
// single memory slot, and so that a table's GPA is a fixed offset from its
// host address. Pages are committed on demand with raw system calls: the
// monitor allocates here (a new thread's vCPU, a page table) without libc.
#pragma once

#include <cstddef>
#include <cstdint>

#include "arch/x86_64/paging.h"
#include "base/lock.h"
#include "dunk/address.h"
#include "dunk/result.h"

namespace dunk::core {

class Arena {
 public:
  static constexpr std::uint64_t kSize = std::uint64_t{1} << 30;
  static constexpr std::size_t kPage = arch::kPageSize4K;
  // The top of the region, which allocate() never hands out and recycle()
  // leaves as it is: where a fork child waits while it builds a VM of its
  // own over the rest (transit()).
  static constexpr std::size_t kTransitSize = 512 * 1024;

  // Reserves the region (inaccessible, no memory committed).
  Status reserve() noexcept;
  // Reserves it at the first free, size-aligned address in [from, limit),
  // or wherever reserve() puts it when none is free (EnterOptions::
  // identity_physical: an arena below 2^MAXPHYADDR can have the guest-
  // physical address of its host address).
  Status reserve_between(Hva from, Hva limit) noexcept;
  bool reserved() const noexcept { return base_ != 0; }
  // Replaces the region but its transit part with fresh, inaccessible
  // memory and forgets everything handed out. For a fork child building a
  // VM of its own: the copy it inherited describes the parent's VM. Must
  // not run on memory it replaces (a monitor stack); transit() is outside.
  Status recycle() noexcept;
  // `bytes` (at most kTransitSize) of readable, writable memory at the top
  // of the region, which recycle() keeps: for a fork child, a stack that
  // is neither the parent's VM's (recycled) nor in the program's address
  // space (where the program may expect nothing, and fault).
  Result<std::byte*> transit(std::size_t bytes) noexcept;
  // Gives the region back to the kernel and forgets it (after
  // dunk::shutdown, for a VM that needs its arena elsewhere).
  void release() noexcept;

  Hva base() const noexcept { return Hva(base_); }
  Hva end() const noexcept { return Hva(base_ + kSize); }
  bool contains(Hva address) const noexcept {
    return address.value() >= base_ && address.value() < base_ + kSize;
  }

  // `bytes` of zeroed, readable and writable memory aligned to `alignment`
  // (a power of two, at least a page). With `guard`, the page below the
  // allocation stays inaccessible (for stacks).
  Result<std::byte*> allocate(std::size_t bytes, std::size_t alignment = kPage, bool guard = false) noexcept;

  // 4 KiB pages for page tables, recycled through a free list.
  Result<std::byte*> allocate_page() noexcept;
  void free_page(std::byte* page) noexcept;
  // A page from the free list only: never a system call (which, from guest
  // code holding the mirror's lock, would deadlock on the monitor's side).
  // Fails with kReserveEmpty when the list is empty.
  Result<std::byte*> take_free_page() noexcept;
  static constexpr const char* kReserveEmpty = "dunk arena: no committed page-table page in reserve";
  // Commits pages so that at least `count` wait on the free list (one
  // mprotect at most).
  Status stock_pages(std::size_t count) noexcept;

  // The lock of the allocator's state. A thread that forks holds it across
  // the fork, so that the child's copy of the arena is one no allocation
  // was changing; the child, which has one thread, frees its copy with
  // reset_after_fork().
  Lock& lock() noexcept { return lock_; }
  void reset_after_fork() noexcept { lock_.reset_after_fork(); }

 private:
  Lock lock_;
  std::uint64_t base_ = 0;
  std::uint64_t next_ = 0;  // first unallocated byte
  struct FreePage {
    FreePage* next;
  };
  FreePage* free_pages_ = nullptr;
  std::size_t free_count_ = 0;
};

}  // namespace dunk::core
