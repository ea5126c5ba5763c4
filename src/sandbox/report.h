// What the sandbox tells its user: every denied or refused call, every
// fault that ends the program, one line each, as text or JSON lines.
//
//   dunk sandbox: denied openat(AT_FDCWD, "/etc/shadow", O_RDONLY) -> -1 EPERM
//     by syscalls[3]: openat: SCMP_ACT_ERRNO(1) [pid 41 tid 41 rip 0x7f3a...]
//   {"event":"denied","call":"openat","nr":257,"args":"AT_FDCWD, \"/etc/shadow\", O_RDONLY", ...}
//
// The arguments are decoded by the schema's formatter (abi::format_entry)
// from the program's memory as it was when the call was made.
//
// Lines are collected in memory and written when the program next makes a
// call that touches a descriptor or memory, before a process ends or
// forks, and when the buffer fills: a denied call costs no VM exit, and
// reports still come before the program's own later output.
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/lock.h"

namespace dunk::sandbox {

enum class LogFormat { kText, kJson };

// One report's fields; text fields may be null.
struct ReportLine {
  const char* event = "denied";    // denied, refused, logged, fault, killed
  const char* call = nullptr;      // the call's name
  std::int64_t nr = -1;            // its number (-1: not a call)
  const char* args = nullptr;      // the decoded arguments
  const char* answer = nullptr;    // "-1 EPERM", "killed (SIGSYS)", "allowed"
  const char* action = nullptr;    // SCMP_ACT_...
  const char* rule = nullptr;      // Policy::describe_rule, or dunk's reason
  const char* detail = nullptr;    // anything else ("#GP at ...")
  std::int64_t tid = 0;
  std::uint64_t rip = 0;
};

class Reporter {
 public:
  static constexpr std::size_t kBuffer = 1 << 20;

  // Also notes the process's id, which every line names (asking the host
  // for it would cost each report a VM exit).
  void configure(int fd, LogFormat format, long pid) noexcept {
    fd_ = fd;
    format_ = format;
    pid_ = pid;
  }
  int fd() const noexcept { return fd_; }
  void add(const ReportLine& line) noexcept;
  // Writes what is buffered.
  void flush() noexcept;
  // The same where the caller may have interrupted a holder of the lock (a
  // signal handler): waits for it a bounded time (the attempts, 1 ms
  // apart), and leaves the buffer unwritten when it stays held. Whether
  // it wrote.
  bool flush_if_free(int attempts) noexcept;
  bool empty() const noexcept { return used_ == 0; }
  // After fork: the child has one thread, its own copy of the buffer and
  // its own id.
  void reset_after_fork(long pid) noexcept {
    lock_.reset_after_fork();
    pid_ = pid;
  }

 private:
  void append(const char* text) noexcept;
  void append_json(const char* key, const char* value) noexcept;
  void append_json(const char* key, std::int64_t value) noexcept;
  void flush_locked() noexcept;

  Lock lock_;
  int fd_ = 2;
  long pid_ = 0;
  LogFormat format_ = LogFormat::kText;
  char buffer_[kBuffer];
  std::size_t used_ = 0;
  bool first_field_ = true;
};

}  // namespace dunk::sandbox
