// Errors as values. dunk's guest and monitor paths never throw and never
// allocate, so an Error carries a static description of the failing operation
// plus the errno it produced; whoever reports it adds the dynamic context.
#pragma once

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>
#include <type_traits>
#include <utility>

namespace dunk {

struct Error {
  // Names the failing call and what it was for, e.g.
  // "ioctl(KVM_CREATE_VCPU) failed". Always a string literal.
  const char* what = "unknown error";
  // The errno the call produced, or 0 when the failure is not an errno.
  int err = 0;

  // "what: strerror(err)" into buf; returns buf. Usable without allocation.
  const char* format(char* buf, std::size_t size) const noexcept {
    if (err != 0) {
      std::snprintf(buf, size, "%s: %s", what, strerrorname(err));
    } else {
      std::snprintf(buf, size, "%s", what);
    }
    return buf;
  }

 private:
  static const char* strerrorname(int e) noexcept {
    // strerror() is not async-signal-safe in general; glibc's table lookup
    // is, for valid numbers, and that is all we use it for.
    return std::strerror(e);
  }
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) noexcept(std::is_nothrow_move_constructible_v<T>)  // NOLINT: implicit by design
      : ok_(true) {
    new (&storage_.value) T(std::move(value));
  }
  Result(Error error) noexcept : ok_(false) {  // NOLINT: implicit by design
    new (&storage_.error) Error(error);
  }
  Result(Result&& other) noexcept(std::is_nothrow_move_constructible_v<T>) : ok_(other.ok_) {
    if (ok_) {
      new (&storage_.value) T(std::move(other.storage_.value));
    } else {
      new (&storage_.error) Error(other.storage_.error);
    }
  }
  Result(const Result&) = delete;
  Result& operator=(const Result&) = delete;
  Result& operator=(Result&&) = delete;
  ~Result() {
    if (ok_) storage_.value.~T();
  }

  bool ok() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }

  T& value() & noexcept { return storage_.value; }
  const T& value() const& noexcept { return storage_.value; }
  T&& value() && noexcept { return std::move(storage_.value); }
  T* operator->() noexcept { return &storage_.value; }
  T& operator*() & noexcept { return storage_.value; }

  const Error& error() const noexcept { return storage_.error; }

 private:
  union Storage {
    Storage() {}
    ~Storage() {}
    T value;
    Error error;
  } storage_;
  bool ok_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() noexcept = default;
  Result(Error error) noexcept : ok_(false), error_(error) {}  // NOLINT: implicit by design

  bool ok() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  const Error& error() const noexcept { return error_; }

 private:
  bool ok_ = true;
  Error error_{};
};

using Status = Result<void>;

// Builds an Error from a raw system call's negative return value.
constexpr Error errno_error(const char* what, long negative_errno) noexcept {
  return Error{what, static_cast<int>(-negative_errno)};
}

}  // namespace dunk

// Propagates the error of an expression returning Result<...>.
#define DUNK_TRY(expr)                             \
  do {                                             \
    auto dunk_try_result_ = (expr);                \
    if (!dunk_try_result_) return dunk_try_result_.error(); \
  } while (0)

#define DUNK_CONCAT_INNER(a, b) a##b
#define DUNK_CONCAT(a, b) DUNK_CONCAT_INNER(a, b)

// `DUNK_ASSIGN_OR_RETURN(auto x, make())` declares x from a Result's value.
#define DUNK_ASSIGN_OR_RETURN(decl, expr)                          \
  auto DUNK_CONCAT(dunk_result_, __LINE__) = (expr);               \
  if (!DUNK_CONCAT(dunk_result_, __LINE__))                        \
    return DUNK_CONCAT(dunk_result_, __LINE__).error();            \
  decl = std::move(DUNK_CONCAT(dunk_result_, __LINE__)).value()
