#include "core/arena.h"

#include <sys/mman.h>
#include <sys/syscall.h>

#include <cstring>

#include "base/syscall.h"

namespace dunk::core {

Status Arena::reserve() noexcept {
  // Reserve twice the size and trim to an aligned region.
  long raw = sys::call(SYS_mmap, 0, static_cast<long>(2 * kSize), PROT_NONE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (sys::failed(raw)) return errno_error("mmap(dunk arena reservation) failed", raw);
  auto start = static_cast<std::uint64_t>(raw);
  std::uint64_t aligned = (start + kSize - 1) & ~(kSize - 1);
  if (aligned > start) sys::call(SYS_munmap, static_cast<long>(start), static_cast<long>(aligned - start));
  std::uint64_t tail = start + 2 * kSize - (aligned + kSize);
  if (tail > 0) sys::call(SYS_munmap, static_cast<long>(aligned + kSize), static_cast<long>(tail));
  base_ = aligned;
  next_ = aligned;
  return {};
}

Status Arena::reserve_between(Hva from, Hva limit) noexcept {
  for (std::uint64_t at = from.align_up(kSize).value(); at + kSize <= limit.value(); at += kSize) {
    long raw = sys::call(SYS_mmap, static_cast<long>(at), static_cast<long>(kSize), PROT_NONE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
    if (sys::failed(raw)) continue;  // EEXIST: something lives there
    if (static_cast<std::uint64_t>(raw) != at) {
      // A kernel without MAP_FIXED_NOREPLACE took it as a hint.
      sys::call(SYS_munmap, raw, static_cast<long>(kSize));
      break;
    }
    base_ = at;
    next_ = at;
    return {};
  }
  return reserve();
}

Status Arena::recycle() noexcept {
  lock_.reset_after_fork();
  long ret = sys::call(SYS_mmap, static_cast<long>(base_), static_cast<long>(kSize - kTransitSize), PROT_NONE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  if (sys::failed(ret)) return errno_error("mmap(dunk arena recycle) failed", ret);
  next_ = base_;
  free_pages_ = nullptr;
  free_count_ = 0;
  return {};
}

void Arena::release() noexcept {
  if (base_ != 0) sys::call(SYS_munmap, static_cast<long>(base_), static_cast<long>(kSize));
  base_ = 0;
  next_ = 0;
  free_pages_ = nullptr;
  free_count_ = 0;
}

Result<std::byte*> Arena::allocate(std::size_t bytes, std::size_t alignment, bool guard) noexcept {
  bytes = (bytes + kPage - 1) & ~(kPage - 1);
  std::uint64_t start;
  {
    LockGuard hold(lock_);
    start = next_ + (guard ? kPage : 0);
    start = (start + alignment - 1) & ~(std::uint64_t{alignment} - 1);
    if (start + bytes > base_ + kSize - kTransitSize) return Error{"dunk arena exhausted", ENOMEM};
    next_ = start + bytes;  // reserved: the next allocation goes past it
  }
  // The commit outside the lock: from guest code (stock_pages before a
  // page-table edit through the API) the mprotect goes to the monitor,
  // which takes the mirror's lock, while another guest thread may hold the
  // mirror's lock and wait for this one (Mirror::user_map ->
  // take_free_page): holding it here deadlocked both. A range whose commit
  // fails stays reserved and is never handed out.
  long ret = sys::call(SYS_mprotect, static_cast<long>(start), static_cast<long>(bytes),
                       PROT_READ | PROT_WRITE);
  if (sys::failed(ret)) return errno_error("mprotect(dunk arena commit) failed", ret);
  return reinterpret_cast<std::byte*>(start);
}

Result<std::byte*> Arena::transit(std::size_t bytes) noexcept {
  if (bytes > kTransitSize) return Error{"dunk arena: the transit region is too small", ENOMEM};
  const std::uint64_t start = base_ + kSize - kTransitSize;
  long ret = sys::call(SYS_mprotect, static_cast<long>(start), static_cast<long>(kTransitSize), PROT_READ | PROT_WRITE);
  if (sys::failed(ret)) return errno_error("mprotect(dunk arena transit) failed", ret);
  return reinterpret_cast<std::byte*>(start);
}

Result<std::byte*> Arena::allocate_page() noexcept {
  if (auto page = take_free_page()) return page;
  return allocate(kPage);
}

Result<std::byte*> Arena::take_free_page() noexcept {
  LockGuard hold(lock_);
  FreePage* page = free_pages_;
  if (page == nullptr) return Error{kReserveEmpty, ENOMEM};
  free_pages_ = page->next;
  --free_count_;
  std::memset(page, 0, kPage);
  return reinterpret_cast<std::byte*>(page);
}

void Arena::free_page(std::byte* page) noexcept {
  LockGuard hold(lock_);
  auto* node = reinterpret_cast<FreePage*>(page);
  node->next = free_pages_;
  free_pages_ = node;
  ++free_count_;
}

Status Arena::stock_pages(std::size_t count) noexcept {
  std::size_t missing;
  {
    LockGuard hold(lock_);
    if (free_count_ >= count) return {};
    missing = count - free_count_;
  }
  DUNK_ASSIGN_OR_RETURN(std::byte* pages, allocate(missing * kPage));
  for (std::size_t i = 0; i < missing; ++i) free_page(pages + i * kPage);
  return {};
}

}  // namespace dunk::core
