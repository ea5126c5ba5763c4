// Raw system calls. The monitor runs between two instructions of a program
// that may hold any libc lock and whose errno must not change, so it calls the
// kernel directly: no libc wrapper, no errno, the result is the kernel's value
// (negative errno on failure).
#pragma once

#include <cstdint>

namespace dunk::sys {

inline long call(long nr, long a1 = 0, long a2 = 0, long a3 = 0, long a4 = 0, long a5 = 0,
                 long a6 = 0) noexcept {
  long ret;
  register long r10 asm("r10") = a4;
  register long r8 asm("r8") = a5;
  register long r9 asm("r9") = a6;
  asm volatile("syscall"
               : "=a"(ret)
               : "a"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
               : "rcx", "r11", "memory");
  return ret;
}

template <class... Args>
inline long call_args(long nr, Args... args) noexcept {
  return call(nr, static_cast<long>(args)...);
}

constexpr bool failed(long ret) noexcept { return ret < 0 && ret > -4096; }

}  // namespace dunk::sys
