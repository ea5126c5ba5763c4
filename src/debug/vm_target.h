// The process in VM mode as a GDB target: its vCPUs are the threads, which
// the monitors park at the debugger's request (core/debug_link.h). A parked
// vCPU's registers are in the frame its monitor published, or in the vCPU
// (KVM ioctls from this thread, while the monitor sleeps); memory is read
// and written through /proc/self/mem, whose writes reach read-only code
// pages as ptrace's do (the kernel copies the page for this process), where
// process_vm_writev fails.
//
// Runs on the stub's own thread, outside VM mode, while the program may be
// stopped holding any lock: raw system calls, no allocation.
#pragma once

#include <cstddef>
#include <cstdint>

#include "arch/x86_64/debug_registers.h"
#include "core/debug_link.h"
#include "core/machine.h"
#include "debug/target.h"

namespace dunk::debug {

class VmTarget final : public Target {
 public:
  // `memory_fd`: /proc/self/mem, open for reading and writing.
  VmTarget(core::Machine& machine, core::DebugLink& link, int memory_fd) noexcept
      : machine_(machine), link_(link), memory_fd_(memory_fd) {}

  std::size_t threads(ThreadId* out, std::size_t max) noexcept override;
  bool thread_alive(ThreadId thread) noexcept override;
  std::size_t describe_thread(ThreadId thread, char* out, std::size_t size) noexcept override;
  bool has_avx() noexcept override;
  Status read_registers(ThreadId thread, X86State& state) noexcept override;
  Status write_registers(ThreadId thread, const X86State& state) noexcept override;
  std::size_t read_memory(std::uint64_t address, void* out, std::size_t size) noexcept override;
  bool write_memory(std::uint64_t address, const void* data, std::size_t size) noexcept override;
  Status insert_breakpoint(BreakpointType type, std::uint64_t address, std::uint64_t length) noexcept override;
  Status remove_breakpoint(BreakpointType type, std::uint64_t address, std::uint64_t length) noexcept override;
  void pass_signals(std::uint64_t mask) noexcept override;
  StopEvent halt() noexcept override;
  bool resume(const ResumeRequest& request, StopEvent& pending) noexcept override;
  long read_auxv(std::uint64_t offset, void* out, std::size_t size) noexcept override;
  long exec_file(char* out, std::size_t size) noexcept override;
  void kill() noexcept override;
  void detach() noexcept override;

  // While running: a vCPU wrote the event fd. Stops everything and returns
  // the stop to report (false: none after all; the program runs on).
  bool collect_stop(StopEvent& stop) noexcept;
  // gdb's interrupt (^C): stops everything.
  StopEvent interrupt() noexcept;
  // After the process's exit or death was reported: lets it go.
  void release_ending() noexcept { detach(); }

 private:
  // A watchpoint or hardware breakpoint gdb asked for, in the debug
  // registers it took (bit n: DR n).
  struct HardwareBreakpoint {
    BreakpointType type;
    std::uint64_t address;
    std::uint64_t length;
    unsigned slots;
  };

  // The vCPUs whose threads run in VM mode.
  bool listed(const core::Cpu& cpu) const noexcept;
  core::Cpu* cpu_of(ThreadId thread) noexcept;
  // Holds every vCPU and waits until none runs guest code (at least one
  // listed, with `require_one`).
  void stop_all(bool require_one) noexcept;
  void kick(const core::Cpu& cpu) noexcept;
  // A stop a parked vCPU has not reported yet; stale ones (a breakpoint
  // removed since) are dropped. With `running_only`, only of vCPUs `request`
  // resumes.
  bool pending_stop(StopEvent& stop, const ResumeRequest* request) noexcept;
  bool to_event(core::Cpu& cpu, StopEvent& event) noexcept;
  void release(core::Cpu& cpu, const ResumeAction& action) noexcept;
  void load_debug_registers() noexcept;  // under link_.lock
  bool write_raw(std::uint64_t address, const void* data, std::size_t size) noexcept;

  core::Machine& machine_;
  core::DebugLink& link_;
  int memory_fd_;
  bool stopped_ = false;
  bool initial_ = true;
  StopEvent last_{};
  ResumeRequest last_request_{};  // what runs now: again after a stop that came to nothing
  HardwareBreakpoint hardware_[arch::dr7::kSlots] = {};
  unsigned hardware_count_ = 0;
  alignas(64) std::byte xsave_[16384];
};

}  // namespace dunk::debug
