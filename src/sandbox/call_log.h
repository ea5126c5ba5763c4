// --learn's record of a run: every system call number the sandboxed
// program made, with the arguments it first made it with, across all the
// processes of the sandbox (learn.cc turns it into a policy).
//
// The record is shared memory (MAP_SHARED, anonymous) that dunk maps before
// it forks the sandbox's process: every process of the sandbox inherits it
// through fork (and keeps it across execve, which the supervisor serves in
// the same process), and dunk reads it when the program has ended. It lies
// outside the untrusted region, so the program can neither reach it nor
// pass it to the kernel; only the supervisor writes it, lock-free: a slot
// per call number, taken once.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "sandbox/policy.h"

namespace dunk::sandbox {

class CallLog {
 public:
  // A new, empty record in shared memory; nullptr when it cannot be mapped.
  static CallLog* create() noexcept;
  CallLog(const CallLog&) = delete;
  CallLog& operator=(const CallLog&) = delete;

  // A call the program made (`nr` as the kernel decodes RAX). Only the first
  // time a number is made are its arguments kept. Lock-free: supervisors of
  // several threads and processes note calls at once.
  void note(int nr, const Args& args) noexcept;

  // What the run made, in number order (call after the run).
  std::vector<ObservedCall> calls() const;

 private:
  CallLog() = default;

  static constexpr int kNumbers = 512;  // x86-64 numbers: 0..kNumbers-1
  static constexpr int kOthers = 64;    // any other number (x32's, unknown ones), the first 64
  enum : std::uint32_t { kEmpty, kWriting, kDone };
  struct Slot {
    std::atomic<std::uint32_t> state{kEmpty};
    int nr = 0;
    Args args{};
  };
  // Takes a free slot for `nr`; false when another thread has it.
  static bool take(Slot& s, int nr, const Args& args) noexcept;

  Slot numbers_[kNumbers];
  Slot others_[kOthers];
};

}  // namespace dunk::sandbox
