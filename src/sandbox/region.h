// The untrusted region: the one range of the address space the sandboxed
// program's memory lives in, and that holds nothing of dunk's.
//
//   0      64 KiB                                          end (≤ 64 TiB)         128 TiB
//   │ ---- │ program: ELF, brk, mmaps, stack, interpreter  │ dunk: its binary, libraries,
//   │      │ (everything else stays reserved PROT_NONE)    │ heap, stacks, arena, vDSO
//
// The region is reserved (PROT_NONE, MAP_NORESERVE) before dunk maps
// anything else, so dunk's own memory — whatever libc or the kernel places
// later — lands above it; the program's mappings replace pieces of the
// reservation and go back to it when unmapped, so that no hole ever opens
// for anything of dunk's. Only the region (and a read-only view of the
// vDSO) is user-accessible in the guest page tables (Mirror::
// set_user_ranges): ring 3 reaches nothing else, and the supervisor hands
// the kernel no pointer outside it.
//
// The region keeps the program's mappings itself, since every change to
// them is a call the supervisor serves (memory_calls.cc): mmap(NULL) is
// placed here, top-down below the stack, as Linux places it; MAP_FIXED and
// every other range must lie inside.
#pragma once

#include <cstdint>
#include <map>
#include <optional>

#include "base/lock.h"
#include "dunk/result.h"

namespace dunk::sandbox {

inline constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t page_down(std::uint64_t v) noexcept { return v & ~(kPage - 1); }
constexpr std::uint64_t page_up(std::uint64_t v) noexcept { return (v + kPage - 1) & ~(kPage - 1); }

// Where the region goes: [kRegionStart, at most kRegionEnd).
inline constexpr std::uint64_t kRegionStart = 64 * 1024;
inline constexpr std::uint64_t kRegionEnd = std::uint64_t{64} << 40;  // 64 TiB
// The region must hold at least this much, or the sandbox refuses to start.
inline constexpr std::uint64_t kRegionMinimum = std::uint64_t{64} << 30;

class Region {
 public:
  Region() noexcept = default;
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;

  // Reserves the region: [kRegionStart, the lower of kRegionEnd and the
  // first mapping above kRegionStart), rounded down to 1 GiB. Call before
  // anything maps memory that must stay dunk's.
  Status reserve() noexcept;

  std::uint64_t start() const noexcept { return start_; }
  std::uint64_t end() const noexcept { return end_; }
  // Whether [address, address + size) lies inside (size 0: whether the
  // address does, or is the end).
  bool contains(std::uint64_t address, std::uint64_t size) const noexcept {
    return address >= start_ && address <= end_ && size <= end_ - address;
  }

  // ---- The program's mappings (callers hold lock()) ----
  Lock& lock() noexcept { return lock_; }
  // Whether every page of [start, end) is one of the program's mappings /
  // none is.
  bool all_mapped(std::uint64_t start, std::uint64_t end) const noexcept;
  bool none_mapped(std::uint64_t start, std::uint64_t end) const noexcept;
  void note_mapped(std::uint64_t start, std::uint64_t end) noexcept;
  void note_unmapped(std::uint64_t start, std::uint64_t end) noexcept;
  // A free range of `size` bytes (page-aligned): the highest below `below`
  // and at or above `floor`, or nullopt.
  std::optional<std::uint64_t> find_free(std::uint64_t size, std::uint64_t below,
                                         std::uint64_t floor = 0) const noexcept;
  // Where mmap(NULL) places mappings: top-down from here.
  std::uint64_t mmap_top() const noexcept { return mmap_top_; }
  void set_mmap_top(std::uint64_t top) noexcept { mmap_top_ = top; }

  // Host mappings: the kernel's mmap at a fixed address inside the region
  // (-ENOMEM, without a host call, past the RLIMIT_AS below), and the way
  // back to the reservation. Both keep the bookkeeping.
  long map(std::uint64_t address, std::uint64_t size, int prot, int flags, int fd, std::uint64_t offset) noexcept;
  Status unmap(std::uint64_t address, std::uint64_t size) noexcept;
  // Re-reads [start, end) from /proc/self/maps after a host call that failed
  // midway: holes go back to the reservation, and the bookkeeping follows
  // what is there.
  void heal(std::uint64_t start, std::uint64_t end) noexcept;
  // Everything back to the reservation (execve).
  void clear() noexcept;

  // ---- RLIMIT_AS (limits.h): the program's mappings, counted ----
  // The bytes of the program's mappings; the most they may take.
  std::uint64_t mapped_bytes() const noexcept { return mapped_bytes_; }
  void set_address_space_limit(std::uint64_t bytes) noexcept { as_limit_ = bytes; }
  // Whether mapping [start, end) (parts already mapped count once) keeps the
  // program within its RLIMIT_AS. map() checks it itself.
  bool fits(std::uint64_t start, std::uint64_t end) const noexcept;
  // Whether `bytes` more keep it within.
  bool may_grow(std::uint64_t bytes) const noexcept { return bytes <= as_limit_ && mapped_bytes_ <= as_limit_ - bytes; }

 private:
  Status reserve_range(std::uint64_t address, std::uint64_t size) noexcept;

  std::uint64_t start_ = 0;
  std::uint64_t end_ = 0;
  std::uint64_t mmap_top_ = 0;
  Lock lock_;
  // The program's mappings, merged: start -> end.
  std::map<std::uint64_t, std::uint64_t> used_;
  std::uint64_t mapped_bytes_ = 0;  // their total
  std::uint64_t as_limit_ = ~std::uint64_t{0};
  // The bytes of [start, end) that are the program's.
  std::uint64_t mapped_within(std::uint64_t start, std::uint64_t end) const noexcept;
};

}  // namespace dunk::sandbox
