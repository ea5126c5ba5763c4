// Formatting for the monitor's few messages: no allocation, no locale, no
// stdio (the program may hold stdio's locks when the monitor runs).
#pragma once

#include <sys/syscall.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "base/syscall.h"

namespace dunk::core {

class TextBuffer {
 public:
  TextBuffer(char* buffer, std::size_t size) noexcept : buffer_(buffer), size_(size) { buffer_[0] = '\0'; }

  TextBuffer& append(const char* text) noexcept {
    while (*text != '\0' && length_ + 1 < size_) buffer_[length_++] = *text++;
    buffer_[length_] = '\0';
    return *this;
  }
  TextBuffer& hex(std::uint64_t value) noexcept {
    char digits[19] = "0x";
    int n = 0;
    char reversed[16];
    do {
      reversed[n++] = "0123456789abcdef"[value & 0xf];
      value >>= 4;
    } while (value != 0);
    for (int i = 0; i < n; ++i) digits[2 + i] = reversed[n - 1 - i];
    digits[2 + n] = '\0';
    return append(digits);
  }
  TextBuffer& dec(std::int64_t value) noexcept {
    char digits[21];
    char reversed[20];
    int n = 0;
    bool negative = value < 0;
    std::uint64_t magnitude = negative ? 0 - static_cast<std::uint64_t>(value) : static_cast<std::uint64_t>(value);
    do {
      reversed[n++] = static_cast<char>('0' + magnitude % 10);
      magnitude /= 10;
    } while (magnitude != 0);
    int i = 0;
    if (negative) digits[i++] = '-';
    while (n > 0) digits[i++] = reversed[--n];
    digits[i] = '\0';
    return append(digits);
  }
  const char* c_str() const noexcept { return buffer_; }
  std::size_t length() const noexcept { return length_; }

 private:
  char* buffer_;
  std::size_t size_;
  std::size_t length_ = 0;
};

inline void write_stderr(const char* text) noexcept {
  sys::call(SYS_write, 2, reinterpret_cast<long>(text), static_cast<long>(std::strlen(text)));
}

// Copies between the monitor and guest-supplied pointers without faulting
// the monitor: the kernel checks the guest's address (EFAULT when bad).
// `pid`: a live thread of this process (process_vm_readv/writev on
// itself), best the caller's own: the first thread may have exited.
inline bool copy_from_guest(long pid, void* dst, std::uint64_t src, std::size_t size) noexcept {
  struct iovec_raw {
    std::uint64_t base, len;
  } local{reinterpret_cast<std::uint64_t>(dst), size}, remote{src, size};
  long ret = sys::call(SYS_process_vm_readv, pid, reinterpret_cast<long>(&local), 1, reinterpret_cast<long>(&remote), 1, 0);
  return ret == static_cast<long>(size);
}

inline bool copy_to_guest(long pid, std::uint64_t dst, const void* src, std::size_t size) noexcept {
  struct iovec_raw {
    std::uint64_t base, len;
  } local{reinterpret_cast<std::uint64_t>(src), size}, remote{dst, size};
  long ret = sys::call(SYS_process_vm_writev, pid, reinterpret_cast<long>(&local), 1, reinterpret_cast<long>(&remote), 1, 0);
  return ret == static_cast<long>(size);
}

}  // namespace dunk::core
