// `dunk exec --strace`: a line for every system call the program makes,
// strace-style, decoded with the system-call schema (abi/format.h):
//
//   4242 14:03:07.123456 openat(AT_FDCWD, "/etc/passwd", O_RDONLY|O_CLOEXEC) = 3
//
// PID of the thread, the UTC time of the call's end, the call. A call that
// may block (the schema's kBlocks) is shown as it starts too, as strace
// shows an unfinished call:
//
//   4243 14:03:07.200001 read(0,  <unfinished ...>
//   4243 14:03:09.512000 <... read resumed>"hello\n", 4096) = 6
//
// Lines go to a descriptor `dunk exec` opened (O_APPEND) and passed down the
// process tree (DUNK_STRACE_FD); each is one write, so threads and
// processes interleave whole lines. Monitor-safe: raw system calls, no
// allocation.
#pragma once

#include <cstdint>

#include "core/syscall.h"

namespace dunk::core {

class SyscallTracer {
 public:
  // `fd`: where lines go; -1: tracing is off (every call is a no-op).
  explicit SyscallTracer(int fd) noexcept : fd_(fd) {}
  bool on() const noexcept { return fd_ >= 0; }

  // Before the call: the entry part of a call that may block or does not
  // return (execve, exit_group).
  void before(const Syscall& call, GuestMemory& memory) noexcept;
  // After it: the whole line, or the resumed part.
  void after(const Syscall& call, const Outcome& outcome, GuestMemory& memory) noexcept;

 private:
  int fd_;
};

}  // namespace dunk::core
