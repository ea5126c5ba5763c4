// Move-only ownership of a file descriptor and of a memory mapping. Both
// release their resource with raw system calls, so they are safe to destroy on
// the monitor's paths, where libc must not be entered.
#pragma once

#include <sys/mman.h>
#include <sys/syscall.h>

#include <cstddef>
#include <utility>

#include "base/syscall.h"
#include "dunk/address.h"
#include "dunk/result.h"

namespace dunk {

class UniqueFd {
 public:
  UniqueFd() noexcept = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const noexcept { return fd_; }
  bool valid() const noexcept { return fd_ >= 0; }
  int release() noexcept { return std::exchange(fd_, -1); }
  void reset(int fd = -1) noexcept {
    int old = std::exchange(fd_, fd);
    if (old >= 0) sys::call(SYS_close, old);
  }

 private:
  int fd_ = -1;
};

class Mapping {
 public:
  Mapping() noexcept = default;
  Mapping(Mapping&& other) noexcept
      : base_(std::exchange(other.base_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  Mapping& operator=(Mapping&& other) noexcept {
    if (this != &other) {
      reset();
      base_ = std::exchange(other.base_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() { reset(); }

  // Anonymous private memory, zero-filled.
  static Result<Mapping> anonymous(std::size_t size, int prot = PROT_READ | PROT_WRITE,
                                   int extra_flags = 0) noexcept {
    return map(nullptr, size, prot, MAP_PRIVATE | MAP_ANONYMOUS | extra_flags, -1, 0);
  }

  static Result<Mapping> map(void* hint, std::size_t size, int prot, int flags, int fd,
                             long offset) noexcept {
    long ret = sys::call(SYS_mmap, reinterpret_cast<long>(hint), static_cast<long>(size), prot,
                         flags, fd, offset);
    if (sys::failed(ret)) return errno_error("mmap failed", ret);
    return Mapping(reinterpret_cast<std::byte*>(ret), size);
  }

  std::byte* data() const noexcept { return base_; }
  std::size_t size() const noexcept { return size_; }
  Hva hva() const noexcept { return hva_of(base_); }
  template <class T>
  T* as() const noexcept {
    return reinterpret_cast<T*>(base_);
  }

  // Gives up ownership; the memory stays mapped.
  void release() noexcept {
    base_ = nullptr;
    size_ = 0;
  }
  void reset() noexcept {
    if (base_ != nullptr) sys::call(SYS_munmap, reinterpret_cast<long>(base_), static_cast<long>(size_));
    base_ = nullptr;
    size_ = 0;
  }

 private:
  Mapping(std::byte* base, std::size_t size) noexcept : base_(base), size_(size) {}
  std::byte* base_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace dunk
