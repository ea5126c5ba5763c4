#include "sandbox/region.h"

#include <sys/mman.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cerrno>

#include "base/proc_maps.h"
#include "base/syscall.h"

namespace dunk::sandbox {
namespace {

constexpr std::uint64_t kGiB = std::uint64_t{1} << 30;
constexpr int kReservationFlags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;

// The lowest address at or above `from` that some mapping covers, or
// `limit` when none below it does.
Result<std::uint64_t> first_mapping_above(std::uint64_t from, std::uint64_t limit) noexcept {
  char buffer[MapsReader::kFullLineBuffer];
  MapsReader reader(buffer, sizeof buffer);
  DUNK_TRY(reader.open());
  MapEntry entry;
  std::uint64_t lowest = limit;
  while (reader.next(entry)) {
    if (entry.end.value() > from) lowest = std::min(lowest, std::max(entry.start.value(), from));
  }
  DUNK_TRY(reader.status());
  return lowest;
}

}  // namespace

Status Region::reserve() noexcept {
  DUNK_ASSIGN_OR_RETURN(std::uint64_t limit, first_mapping_above(kRegionStart, kRegionEnd));
  const std::uint64_t end = limit & ~(kGiB - 1);
  if (end < kRegionStart + kRegionMinimum) {
    return Error{"the address space below 64 TiB is taken: no room for the untrusted region", ENOMEM};
  }
  const long ret = sys::call(SYS_mmap, static_cast<long>(kRegionStart), static_cast<long>(end - kRegionStart),
                             PROT_NONE, kReservationFlags | MAP_FIXED_NOREPLACE, -1, 0);
  if (sys::failed(ret)) return errno_error("mmap(the untrusted region's reservation) failed", ret);
  if (static_cast<std::uint64_t>(ret) != kRegionStart) {
    // A kernel before 4.17 takes MAP_FIXED_NOREPLACE for a hint.
    sys::call(SYS_munmap, ret, static_cast<long>(end - kRegionStart));
    return Error{"the untrusted region could not be reserved where it must be (MAP_FIXED_NOREPLACE)", EEXIST};
  }
  start_ = kRegionStart;
  end_ = end;
  mmap_top_ = end;
  return {};
}

bool Region::all_mapped(std::uint64_t start, std::uint64_t end) const noexcept {
  std::uint64_t at = start;
  auto it = used_.upper_bound(at);
  if (it != used_.begin()) --it;
  for (; it != used_.end() && at < end; ++it) {
    if (it->first > at) return false;
    if (it->second > at) at = it->second;
  }
  return at >= end;
}

bool Region::none_mapped(std::uint64_t start, std::uint64_t end) const noexcept {
  auto it = used_.upper_bound(start);
  if (it != used_.begin() && std::prev(it)->second > start) return false;
  return it == used_.end() || it->first >= end;
}

std::uint64_t Region::mapped_within(std::uint64_t start, std::uint64_t end) const noexcept {
  std::uint64_t bytes = 0;
  auto it = used_.upper_bound(start);
  if (it != used_.begin()) --it;
  for (; it != used_.end() && it->first < end; ++it) {
    const std::uint64_t a = std::max(it->first, start), b = std::min(it->second, end);
    if (a < b) bytes += b - a;
  }
  return bytes;
}

bool Region::fits(std::uint64_t start, std::uint64_t end) const noexcept {
  if (start >= end) return true;
  return may_grow((end - start) - mapped_within(start, end));
}

void Region::note_mapped(std::uint64_t start, std::uint64_t end) noexcept {
  if (start >= end) return;
  // Merge with every range it touches.
  auto it = used_.upper_bound(start);
  if (it != used_.begin() && std::prev(it)->second >= start) --it;
  while (it != used_.end() && it->first <= end) {
    start = std::min(start, it->first);
    end = std::max(end, it->second);
    mapped_bytes_ -= it->second - it->first;
    it = used_.erase(it);
  }
  used_.emplace(start, end);
  mapped_bytes_ += end - start;
}

void Region::note_unmapped(std::uint64_t start, std::uint64_t end) noexcept {
  if (start >= end) return;
  auto it = used_.upper_bound(start);
  if (it != used_.begin()) --it;
  while (it != used_.end() && it->first < end) {
    const std::uint64_t a = it->first, b = it->second;
    if (b <= start) {
      ++it;
      continue;
    }
    it = used_.erase(it);
    mapped_bytes_ -= b - a;
    if (a < start) {
      used_.emplace(a, start);
      mapped_bytes_ += start - a;
    }
    if (b > end) {
      used_.emplace(end, b);
      mapped_bytes_ += b - end;
    }
  }
}

std::optional<std::uint64_t> Region::find_free(std::uint64_t size, std::uint64_t below,
                                               std::uint64_t floor) const noexcept {
  floor = std::max(floor, start_);
  below = std::min(below, end_);
  if (size == 0 || below < floor || below - floor < size) return std::nullopt;
  // The gaps between the mappings, from the top down.
  std::uint64_t gap_end = below;
  auto it = used_.lower_bound(below);
  while (it != used_.begin()) {
    --it;
    if (it->second < gap_end) {
      const std::uint64_t gap_start = std::max(it->second, floor);
      if (gap_end >= gap_start && gap_end - gap_start >= size) return gap_end - size;
    }
    gap_end = std::min(gap_end, it->first);
    if (gap_end <= floor) return std::nullopt;
  }
  if (gap_end - floor >= size) return gap_end - size;
  return std::nullopt;
}

Status Region::reserve_range(std::uint64_t address, std::uint64_t size) noexcept {
  const long ret = sys::call(SYS_mmap, static_cast<long>(address), static_cast<long>(size), PROT_NONE,
                             kReservationFlags | MAP_FIXED, -1, 0);
  if (sys::failed(ret)) return errno_error("mmap(back to the untrusted region's reservation) failed", ret);
  return {};
}

long Region::map(std::uint64_t address, std::uint64_t size, int prot, int flags, int fd,
                 std::uint64_t offset) noexcept {
  if (!fits(address, address + size)) return -ENOMEM;
  const long ret = sys::call(SYS_mmap, static_cast<long>(address), static_cast<long>(size), prot,
                             (flags & ~MAP_FIXED_NOREPLACE) | MAP_FIXED, fd, static_cast<long>(offset));
  if (sys::failed(ret)) {
    // MAP_FIXED may have removed what was there before failing.
    heal(address, address + size);
    return ret;
  }
  note_mapped(address, address + size);
  return ret;
}

Status Region::unmap(std::uint64_t address, std::uint64_t size) noexcept {
  DUNK_TRY(reserve_range(address, size));
  note_unmapped(address, address + size);
  return {};
}

void Region::heal(std::uint64_t start, std::uint64_t end) noexcept {
  char buffer[MapsReader::kFullLineBuffer];
  MapsReader reader(buffer, sizeof buffer);
  if (!reader.open()) return;
  std::uint64_t cursor = start;
  MapEntry entry;
  auto hole = [&](std::uint64_t a, std::uint64_t b) {
    if (a < b && reserve_range(a, b - a)) note_unmapped(a, b);
  };
  while (reader.next(entry) && cursor < end) {
    const std::uint64_t a = std::max(entry.start.value(), start), b = std::min(entry.end.value(), end);
    if (b <= cursor || a >= end) continue;
    hole(cursor, a);
    // A reservation is PROT_NONE, private, anonymous; anything else is the program's.
    const bool reservation = !entry.read && !entry.write && !entry.exec && !entry.shared && entry.inode == 0;
    if (reservation) {
      note_unmapped(std::max(a, cursor), b);
    } else {
      note_mapped(std::max(a, cursor), b);
    }
    cursor = b;
  }
  hole(cursor, end);
}

void Region::clear() noexcept {
  (void)reserve_range(start_, end_ - start_);
  used_.clear();
  mapped_bytes_ = 0;
  mmap_top_ = end_;
}

}  // namespace dunk::sandbox
