// What the GDB stub debugs, as the protocol (debug/gdb_session.h) needs it:
// threads, registers, memory, breakpoints, resuming and stopping. The
// process in VM mode implements it over its vCPUs (debug/vm_target.h); the
// unit tests with a fake (tests/unit/debug_gdb_session_test.cc).
//
// Signals here are Linux's numbers; the session converts GDB's.
#pragma once

#include <cstddef>
#include <cstdint>

#include "debug/x86_registers.h"
#include "dunk/result.h"

namespace dunk::debug {

// A thread's ID on the wire: its host thread ID (a vCPU's owner thread).
using ThreadId = std::int64_t;

enum class StopReason : std::uint8_t {
  kSignal,              // `signal` (SIGTRAP after a step, SIGINT after an interrupt)
  kSoftwareBreakpoint,  // an int3 of the stub's; the thread's PC is its address
  kHardwareBreakpoint,
  kWatch,               // a watchpoint at `address` fired (write)
  kReadWatch,
  kAccessWatch,
  kExited,              // the process exits with status `signal`
  kKilled,              // the process dies of `signal`
};

struct StopEvent {
  StopReason reason = StopReason::kSignal;
  ThreadId thread = 0;
  int signal = 0;
  std::uint64_t address = 0;
};

enum class ResumeKind : std::uint8_t { kStay, kContinue, kStep };

struct ResumeAction {
  ResumeKind kind = ResumeKind::kStay;
  int signal = 0;  // delivered as the thread resumes (0: none)
};

// A vCont request: actions for some threads, and one for all others.
struct ResumeRequest {
  static constexpr std::size_t kMaxEntries = 64;
  struct Entry {
    ThreadId thread;
    ResumeAction action;
  };
  Entry entries[kMaxEntries] = {};
  std::size_t count = 0;
  ResumeAction others{};

  ResumeAction action_for(ThreadId thread) const noexcept {
    for (std::size_t i = 0; i < count; ++i) {
      if (entries[i].thread == thread) return entries[i].action;
    }
    return others;
  }
};

enum class BreakpointType : std::uint8_t { kSoftware, kHardware, kWrite, kRead, kAccess };

class Target {
 public:
  // The threads, at most `max` of them into `out`; returns how many there are.
  virtual std::size_t threads(ThreadId* out, std::size_t max) noexcept = 0;
  virtual bool thread_alive(ThreadId thread) noexcept = 0;
  // What `info threads` shows beside it (its vCPU, say); the text's length.
  virtual std::size_t describe_thread(ThreadId thread, char* out, std::size_t size) noexcept = 0;
  // Whether the guest has AVX (the registers GDB is shown).
  virtual bool has_avx() noexcept = 0;

  // Registers of a stopped thread. `state.xsave` points into the target's
  // own buffer, valid until the next call.
  virtual Status read_registers(ThreadId thread, X86State& state) noexcept = 0;
  // Writes back what read_registers gave (edited).
  virtual Status write_registers(ThreadId thread, const X86State& state) noexcept = 0;

  // Memory, as the program sees it (the stub's own int3 hidden). Returns
  // the bytes read, from the start: fewer at an inaccessible page.
  virtual std::size_t read_memory(std::uint64_t address, void* out, std::size_t size) noexcept = 0;
  virtual bool write_memory(std::uint64_t address, const void* data, std::size_t size) noexcept = 0;

  virtual Status insert_breakpoint(BreakpointType type, std::uint64_t address, std::uint64_t length) noexcept = 0;
  virtual Status remove_breakpoint(BreakpointType type, std::uint64_t address, std::uint64_t length) noexcept = 0;

  // Signals (bit sig-1) delivered without a stop.
  virtual void pass_signals(std::uint64_t mask) noexcept = 0;

  // Stops every thread (if it runs) and says why the process stands where it
  // stands: the pending stop, or SIGINT for `thread` 0 after an interrupt.
  virtual StopEvent halt() noexcept = 0;
  // Resumes per `request`. False: a stop was pending already and is in
  // `pending` (nothing resumed); true: the program runs until wait_stop.
  virtual bool resume(const ResumeRequest& request, StopEvent& pending) noexcept = 0;

  // The auxiliary vector and the executable's path, as /proc shows them.
  // Bytes from `offset`, -1 on error.
  virtual long read_auxv(std::uint64_t offset, void* out, std::size_t size) noexcept = 0;
  virtual long exec_file(char* out, std::size_t size) noexcept = 0;

  virtual void kill() noexcept = 0;
  // Removes every breakpoint and lets the program run on, undebugged.
  virtual void detach() noexcept = 0;

 protected:
  ~Target() = default;
};

}  // namespace dunk::debug
