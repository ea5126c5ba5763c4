// Starting the children of clone-family calls, and the assembly that runs on
// their first instructions (context_switch.S).
//
// A thread (CLONE_VM) gets a vCPU of this VM and starts on its monitor's
// stack; its guest face resumes the parent's frame with its own stack. Any
// other child — a fork child with memory of its own, a vfork child sharing
// the parent's until it executes — resumes the frame on the host, where a
// fork child following the fork (EnterOptions::follow_fork) builds a VM of
// its own first (enter.cc, dunk_fork_child_fixup).
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/asm_offsets.h"
#include "core/syscall.h"

namespace dunk::core {

class Machine;
class Cpu;

// The argument block of dunk_clone_native and dunk_clone_thread.
struct CloneCall {
  long nr;
  long args[5];
  const TrapFrame* frame;
  const void* xsave;
  std::uint64_t xsave_size;
  volatile std::uint32_t* ready;
  void (*child_fixup)(const TrapFrame* frame, const void* xsave, std::uint64_t clone_flags);
  std::uint64_t clone_flags;  // passed to child_fixup
  // The calling thread's CpuSignals::arrived: set, the call is not made and
  // the stub returns kRestartGuestSyscall, as dunk_forward_syscall does.
  const volatile std::uint32_t* signal_arrived;
};
static_assert(offsetof(CloneCall, nr) == CALL_NR);
static_assert(offsetof(CloneCall, args) == CALL_ARGS);
static_assert(offsetof(CloneCall, frame) == CALL_FRAME);
static_assert(offsetof(CloneCall, xsave) == CALL_XSAVE);
static_assert(offsetof(CloneCall, xsave_size) == CALL_XSAVE_SIZE);
static_assert(offsetof(CloneCall, ready) == CALL_READY);
static_assert(offsetof(CloneCall, child_fixup) == CALL_CHILD_FIXUP);
static_assert(offsetof(CloneCall, clone_flags) == CALL_CLONE_FLAGS);
static_assert(offsetof(CloneCall, signal_arrived) == CALL_SIGNAL_ARRIVED);

extern "C" {
long dunk_capture_and_switch(TrapFrame* frame, void* xsave, void* stack_top, void (*run)(void*), void* arg);
[[noreturn]] void dunk_restore_frame(const TrapFrame* frame, const void* xsave);
long dunk_clone_native(const CloneCall* call);
long dunk_clone_thread(const CloneCall* call, void* cpu, void (*start)(void*));
[[noreturn]] void dunk_run_on_stack(void* stack_top, void (*run)(void*), void* arg);
// Runs in a fork child (enter.cc) before it resumes the program.
void dunk_fork_child_fixup(const TrapFrame* frame, const void* xsave, std::uint64_t clone_flags);
}

// ThreadOps over the machine, for the thread of `cpu`.
class MachineThreads final : public ThreadOps {
 public:
  MachineThreads(Machine& machine, Cpu& cpu) noexcept : machine_(machine), cpu_(cpu) {}

  long start_thread(const Syscall& call, const CloneRequest& request, const TrapFrame& child) noexcept override;
  long start_process(const Syscall& call, const CloneRequest& request, const TrapFrame& child) noexcept override;
  bool thread_exits() noexcept override;
  void process_exits() noexcept override;
  bool process_exiting() const noexcept override;

 private:
  Machine& machine_;
  Cpu& cpu_;
};

// The first function of a thread created in VM mode, on its monitor stack.
[[noreturn]] void thread_main(void* cpu) noexcept;

}  // namespace dunk::core
