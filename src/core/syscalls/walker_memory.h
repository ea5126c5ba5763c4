// The program's memory as the schema's walker reads it (abi/walk.h):
// through the handlers' GuestMemory, a page at a time, stopping at the
// first page the kernel could not read either.
#pragma once

#include "abi/walk.h"
#include "arch/x86_64/paging.h"
#include "core/syscall.h"

namespace dunk::core::syscalls {

class WalkerMemory final : public abi::Memory {
 public:
  explicit WalkerMemory(GuestMemory& memory) noexcept : memory_(memory) {}
  std::size_t read(std::uint64_t address, void* out, std::size_t size) noexcept override {
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

 private:
  GuestMemory& memory_;
};

// The schema's view of a forwarded call.
inline abi::Call walker_call(const Syscall& call) noexcept {
  return abi::Call{call.rax, {call.arg(0), call.arg(1), call.arg(2), call.arg(3), call.arg(4), call.arg(5)}};
}

}  // namespace dunk::core::syscalls
