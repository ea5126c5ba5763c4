// The monitor: the host face of a thread in VM mode. It runs on its own stack
// (the guest face keeps using the thread's), calls KVM_RUN, and serves what
// the guest exits for — system calls, exceptions, faults — following the
// monitor rules: raw system calls only, no allocation, no libc locks, errno
// and the program's TLS untouched.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/exit.h"
#include "core/machine.h"
#include "core/signals.h"
#include "guest/abi.h"

namespace dunk::core {

// The argument block of dunk_clone_native (context_switch.S).
struct CloneCall {
  long nr;
  long args[5];
  const guest::TrapFrame* frame;
  const void* xsave;
  std::uint64_t xsave_size;
  volatile std::uint32_t* ready;
  void (*child_fixup)(const guest::TrapFrame* frame, const void* xsave, std::uint64_t clone_flags);
  std::uint64_t clone_flags;  // passed to child_fixup
};
static_assert(offsetof(CloneCall, args) == 8);
static_assert(offsetof(CloneCall, frame) == 48);
static_assert(offsetof(CloneCall, xsave) == 56);
static_assert(offsetof(CloneCall, xsave_size) == 64);
static_assert(offsetof(CloneCall, ready) == 72);
static_assert(offsetof(CloneCall, child_fixup) == 80);
static_assert(offsetof(CloneCall, clone_flags) == 88);

extern "C" {
long dunk_capture_and_switch(guest::TrapFrame* frame, void* xsave, void* stack_top, void (*run)(void*),
                             void* arg);
[[noreturn]] void dunk_restore_frame(const guest::TrapFrame* frame, const void* xsave);
long dunk_clone_native(const CloneCall* call);
long dunk_clone_thread(const CloneCall* call, void* cpu, void (*start)(void*));
[[noreturn]] void dunk_run_on_stack(void* stack_top, void (*run)(void*), void* arg);
}

class Monitor {
 public:
  Monitor(Machine& machine, Cpu& cpu) noexcept : machine_(machine), cpu_(cpu) {}

  // Puts the state enter() captured into the vCPU and serves the guest until
  // it leaves. Never returns: leaving resumes the host face elsewhere.
  [[noreturn]] void run() noexcept;

 private:
  Status load_entry_state() noexcept;
  void handle(const Exit& exit) noexcept;
  void trace(const Exit& exit) noexcept;
  void remember(const Exit& exit) noexcept;
  void handle_syscall(guest::TrapFrame& frame) noexcept;
  void handle_exception(guest::TrapFrame& frame) noexcept;
  void handle_host_fault(const Exit& exit) noexcept;
  void fault_in_handler(guest::TrapFrame& frame) noexcept;

  long forward(const guest::TrapFrame& frame) noexcept;

  // Signals (monitor_signals.cc).
  bool signals_pending() const noexcept;
  // Delivers what the host handler queued, at the state the guest resumes.
  void deliver_pending() noexcept;
  // Delivers into a guest that is not stopped in a stub; `synchronous`
  // first if given, with RIP moved back `rewind` bytes.
  void deliver_at_vcpu(const PendingSignal* synchronous, unsigned rewind) noexcept;
  void deliver_signals(guest::TrapFrame& frame, const PendingSignal* synchronous) noexcept;
  void build_signal_frame(guest::TrapFrame& frame, const PendingSignal& signal, const std::byte* fpu) noexcept;
  void stop_stepping() noexcept;
  // Whether KVM is in the middle of delivering an exception or interrupt.
  bool event_in_delivery() noexcept;
  // An exception as the signal Linux would send, to the program's handler.
  // False when the program has none (or blocks the signal).
  bool deliver_exception(guest::TrapFrame& frame) noexcept;
  bool deliver_halt_as_signal() noexcept;
  // Whether the guest is inside the program's trap or interrupt handler.
  bool in_program_trap_handler() const noexcept { return cpu_.area->dispatching != 0; }
  bool take_synchronous_signal(PendingSignal& p, int sig, int code, std::uint64_t address) noexcept;
  long close_range(guest::TrapFrame& frame) noexcept;
  long getdents64(guest::TrapFrame& frame) noexcept;
  long rt_sigaction(guest::TrapFrame& frame) noexcept;
  long rt_sigreturn(guest::TrapFrame& frame) noexcept;
  long sigaltstack(guest::TrapFrame& frame) noexcept;
  // Leaving VM mode: the guest's alternate stack becomes the host thread's.
  void hand_altstack_to_host() noexcept;
  long mmap_family(long nr, guest::TrapFrame& frame) noexcept;
  long arch_prctl(guest::TrapFrame& frame) noexcept;
  long clone_family(long nr, guest::TrapFrame& frame) noexcept;
  long clone_thread(long nr, guest::TrapFrame& frame, std::uint64_t flags, std::uint64_t stack,
                    std::uint64_t tls) noexcept;
  void mirror_or_warn(Status status, std::uint64_t address) noexcept;

  // Resumes `frame` on the host, outside VM mode, with the guest's FPU
  // state and FS/GS bases. `user_gs_in_msr`: the frame comes from the
  // SYSCALL path, whose SWAPGS parked the program's GS base in
  // KERNEL_GS_BASE.
  [[noreturn]] void leave_to_host(const guest::TrapFrame& frame, bool user_gs_in_msr) noexcept;
  // The guest's registers as a frame, for exits that are not through a stub.
  Status frame_from_vcpu(guest::TrapFrame& frame) noexcept;
  bool in_dunk_code(std::uint64_t rip) const noexcept;

  [[noreturn]] void fatal(const char* what, const Exit* exit = nullptr, const guest::TrapFrame* frame = nullptr) noexcept;

  Machine& machine_;
  Cpu& cpu_;
  // The frame the guest resumes through when it is stopped in one of dunk's
  // stubs right after its exit (a system call or exception being served);
  // null when it is stopped anywhere else.
  guest::TrapFrame* resume_frame_ = nullptr;
};

// The entry point enter() switches to, on the monitor's stack.
[[noreturn]] void monitor_main(void* cpu) noexcept;
// The first function of a thread created in VM mode, on its monitor stack.
[[noreturn]] void thread_main(void* cpu) noexcept;

// Entering VM mode: the host thread's alternate signal stack becomes the
// guest's (a thread in VM mode has none on the host).
void take_altstack_from_host(Cpu& cpu) noexcept;

// Terminates the process as if by `signal` (its default action), after a
// one-line message on stderr when `message` is not null.
[[noreturn]] void die_by_signal(int signal, const char* message) noexcept;

}  // namespace dunk::core
