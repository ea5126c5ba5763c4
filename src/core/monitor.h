// The monitor: the host face of a thread in VM mode. It runs on its own stack
// (the guest face keeps using the thread's), calls KVM_RUN, decodes each exit
// and dispatches it: system calls to their handlers (core/syscall.h,
// syscalls/table.cc), exceptions to the mirror or the program's signal
// handlers, signals the host handler queued to the guest. It follows the
// monitor rules: raw system calls only, no allocation, no libc locks, errno
// and the program's TLS untouched.
//
//   monitor.cc          the run loop, dispatch, leaving VM mode, fatal reports
//   exceptions.cc       exceptions and host memory faults
//   instructions.cc     port I/O, software interrupts, SYSENTER, getcpu
//   signal_delivery.cc  delivering signals into the guest
//   debug_stops.cc      stopping for a debugger (core/debug_link.h)
#pragma once

#include <cstdint>

#include "core/exit.h"
#include "core/machine.h"
#include "core/monitor_context.h"
#include "core/signals.h"
#include "core/strace.h"
#include "core/syscall.h"
#include "core/thread_start.h"
#include "guest/abi.h"

namespace dunk::core {

class Monitor {
 public:
  Monitor(Machine& machine, Cpu& cpu) noexcept;

  // Puts the state enter() captured into the vCPU and serves the guest until
  // it leaves. Never returns: leaving resumes the host face elsewhere.
  [[noreturn]] void run() noexcept;

 private:
  // monitor.cc
  Status load_entry_state() noexcept;
  // For a fork child that kept its copy of its parent's state
  // (Cpu::resumes_fork): the vCPU continues where the parent's stopped for
  // the fork, inside dunk's SYSCALL entry, whose frame gets the child's
  // registers.
  Status load_fork_child_state() noexcept;
  void handle(const Exit& exit) noexcept;
  void serve_syscall(TrapFrame& frame) noexcept;
  void trace(const Exit& exit) noexcept;
  void remember(const Exit& exit) noexcept;
  // Resumes `frame` on the host, outside VM mode, with the guest's FPU
  // state and FS/GS bases. `user_gs_in_msr`: the frame comes from the
  // SYSCALL path, whose SWAPGS parked the program's GS base in
  // KERNEL_GS_BASE.
  [[noreturn]] void leave_to_host(const TrapFrame& frame, bool user_gs_in_msr) noexcept;
  // The guest's registers as a frame, for exits that are not through a stub.
  Status frame_from_vcpu(TrapFrame& frame) noexcept;
  bool in_dunk_code(std::uint64_t rip) const noexcept;
  [[noreturn]] void fatal(const char* what, const Exit* exit = nullptr, const TrapFrame* frame = nullptr) noexcept;

  // instructions.cc
  // Whether `int $vector` ends right before `rip` (read safely).
  bool software_interrupt_before(std::uint64_t rip, std::uint64_t vector) noexcept;
  // An exception raised by the program's own `int $n`: natively #GP, or a
  // 32-bit system call for 0x80 (served here: true). Turns the frame into
  // the #GP's, or returns false when it is the exception it looks like.
  bool handle_software_interrupt(TrapFrame& frame) noexcept;
  void serve_int80(TrapFrame& frame) noexcept;
  // A #GP from the program's load of SS with a stack segment of DPL 3 (its
  // LDT's), which natively works and at CPL 0 cannot: the thread says so
  // and leaves VM mode at the instruction, where the host runs it (does
  // not return). False for any other #GP.
  bool leave_for_stack_segment(const TrapFrame& frame) noexcept;
  void serve_port_io(const Exit& exit) noexcept;
  // KVM's emulation error for an instruction it turned into a #UD for the
  // guest (SYSENTER): entering again delivers it.
  bool emulation_failed_into_exception(const Exit& exit) noexcept;
  // Keeps the vCPU's answer to getcpu (its CPUNODE segment and TSC_AUX)
  // equal to the host CPU the thread runs on. Before each entry.
  void follow_host_cpu() noexcept;
  // Loads the program's LDT (the mirror's current table) into this vCPU.
  void load_ldt() noexcept;

  // exceptions.cc
  void handle_exception(TrapFrame& frame) noexcept;
  bool resolve_page_fault(const TrapFrame& frame) noexcept;
  void fault_in_handler(TrapFrame& frame) noexcept;
  void handle_host_fault(const Exit& exit) noexcept;

  // signal_delivery.cc
  // Delivers what the host handler queued, at the state the guest resumes.
  void deliver_pending() noexcept;
  // Delivers into a guest that is not stopped in a stub; `synchronous`
  // first if given, with RIP moved back `rewind` bytes.
  void deliver_at_vcpu(const PendingSignal* synchronous, unsigned rewind) noexcept;
  void deliver_signals(TrapFrame& frame, const PendingSignal* synchronous) noexcept;
  void stop_stepping() noexcept;
  // A signal waits while ring 3 runs or a handler of its run does: a run
  // that allows it (Ring3Options::interruptible) is asked to stop, by an
  // NMI when ring 3 runs, by the area's request alone when a handler does.
  void interrupt_ring3_run() noexcept;
  // Whether KVM is in the middle of delivering an exception or interrupt.
  bool event_in_delivery() noexcept;
  // An exception as the signal Linux would send, to the program's handler.
  // False when the program has none (or blocks the signal).
  bool deliver_exception(TrapFrame& frame) noexcept;
  bool deliver_halt_as_signal() noexcept;
  // The kernel's force_sig for a call that does not return (a bad
  // rt_sigreturn frame, a signal frame that cannot be written): the
  // program's handler if it has one and does not block the signal, else
  // death by it.
  void force_signal(TrapFrame& frame, const ForcedSignal& signal) noexcept;
  // Whether the guest is inside the program's trap or interrupt handler.
  bool in_program_trap_handler() const noexcept { return cpu_.area->dispatching != 0; }
  // Leaving VM mode: the guest's alternate stack becomes the host thread's.
  void hand_altstack_to_host() noexcept;

  // debug_stops.cc: a debugger's stops (dunk exec --gdb). Without one
  // (Machine::debugger() null) each returns at once.
  // At the top of the loop: parks while the debugger holds this vCPU.
  void debug_checkpoint() noexcept;
  // A system call, with this vCPU readable by the debugger while it runs.
  void debug_serve_syscall(TrapFrame& frame) noexcept;
  // An int3 of the debugger's (true: it took the stop).
  bool debug_breakpoint(TrapFrame& frame) noexcept;
  // An exception that becomes a signal: true when the debugger discards it.
  bool debug_exception(TrapFrame& frame) noexcept;
  // KVM_EXIT_DEBUG: a step or a debug register.
  void debug_trap() noexcept;
  // Queued signals the debugger decides on before any is delivered; after
  // delivery, the step it asked for stops at the handler.
  void debug_filter_signals(TrapFrame& frame) noexcept;
  void debug_after_delivery(TrapFrame& frame) noexcept;
  void debug_process_ends(DebugStopKind kind, int value) noexcept;
  DebugCommand debug_stop(const DebugStop& stop, TrapFrame* frame) noexcept;
  void debug_resume(const DebugCommand& command, TrapFrame* frame, const DebugStop& stop) noexcept;
  bool debug_at_program_instruction() noexcept;
  void debug_inject(int sig) noexcept;
  // KVM_SET_GUEST_DEBUG from what the signal path and the debugger want.
  Status apply_guest_debug() noexcept;

  Machine& machine_;
  Cpu& cpu_;
  // The guest as the system-call handlers see it.
  KvmVcpuRegisters registers_;
  ProcessMemory memory_;
  LinuxHost host_;
  MachineThreads threads_;
  SyscallTracer tracer_;
  ProcessState process_;
  ThreadState thread_;
  // The frame the guest resumes through when it is stopped in one of dunk's
  // stubs right after its exit (a system call or exception being served);
  // null when it is stopped anywhere else.
  TrapFrame* resume_frame_ = nullptr;
};

// The entry point enter() switches to, on the monitor's stack.
[[noreturn]] void monitor_main(void* cpu) noexcept;

// Entering VM mode: the host thread's alternate signal stack becomes the
// guest's (a thread in VM mode has none on the host).
void take_altstack_from_host(Cpu& cpu) noexcept;

// Terminates the process as if by `signal` (its default action), after a
// one-line message on stderr when `message` is not null.
[[noreturn]] void die_by_signal(int signal, const char* message) noexcept;

}  // namespace dunk::core
