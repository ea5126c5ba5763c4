// The program's memory as the schema's walker reads it (abi/walk.h):
// through the handlers' GuestMemory, a page at a time, stopping at the
// first page the kernel could not read either.
#pragma once

#include <cstring>

#include "abi/walk.h"
#include "arch/x86_64/paging.h"
#include "core/syscall.h"

namespace dunk::core::syscalls {

class WalkerMemory final : public abi::Memory {
 public:
  explicit WalkerMemory(GuestMemory& memory) noexcept : memory_(memory) {}
  std::size_t read(std::uint64_t address, void* out, std::size_t size) noexcept override {
    // A walk reads a structure whole, then its fields one by one (clone3's
    // clone_args: 64 bytes, then each pointer in it): served from the copy,
    // each read of the program's memory being a host call.
    if (size <= cached_ && address >= cache_at_ && address - cache_at_ <= cached_ - size) {
      std::memcpy(out, cache_ + (address - cache_at_), size);
      return size;
    }
    const std::size_t done = read_through(address, out, size);
    if (done <= sizeof cache_) {
      std::memcpy(cache_, out, done);
      cache_at_ = address;
      cached_ = done;
    }
    return done;
  }

 private:
  std::size_t read_through(std::uint64_t address, void* out, std::size_t size) noexcept {
    std::size_t done = 0;
    while (done < size) {
      const std::uint64_t at = address + done;
      const std::size_t in_page = arch::kPageSize4K - (at & (arch::kPageSize4K - 1));
      const std::size_t piece = size - done < in_page ? size - done : in_page;
      if (!memory_.read(static_cast<std::byte*>(out) + done, at, piece)) break;
      done += piece;
    }
    return done;
  }

  GuestMemory& memory_;
  // The last read, if it was small: the walk's current structure.
  std::byte cache_[256];
  std::uint64_t cache_at_ = 0;
  std::size_t cached_ = 0;
};

// The schema's view of a forwarded call.
inline abi::Call walker_call(const Syscall& call) noexcept {
  return abi::Call{call.rax, {call.arg(0), call.arg(1), call.arg(2), call.arg(3), call.arg(4), call.arg(5)}};
}

}  // namespace dunk::core::syscalls
