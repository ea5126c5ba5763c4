// The link between the monitors and a debugger that serves the program to
// gdb (`dunk exec --gdb`, src/debug/). The debugger runs in a host thread of
// its own, outside VM mode; the monitors never call it. They meet in shared
// memory: one DebugLink per process and one CpuDebug per vCPU.
//
// The protocol. A vCPU runs guest code only while its `hold` is clear:
//
//   monitor (each vCPU thread)                 debugger thread
//   ───────────────────────────                ───────────────
//   loop: state = kGuest; reads hold           stop all: hold_new = 1, then
//         hold set → state = kParked,            hold = 1 on every vCPU; kicks
//           sleeps on hold (futex)               those in kGuest (a signal that
//         KVM_RUN; state = kHost                 makes KVM_RUN return); waits
//   an event (breakpoint, step, watchpoint,      until each is kParked or kCall
//     signal, exit): records `stop`, sets      reads/writes registers of kParked
//     its own hold, state = kParked, writes      vCPUs (KVM ioctls from this
//     the event fd, sleeps                       thread, or the published frame)
//   a system call: state = kCall around it     resume: writes each vCPU's
//     (it may block; its frame is readable)      `command`, bumps its sequence,
//   released: takes `command` (continue or       clears hold, wakes it
//     step, a signal), resumes
//
// `state` and `hold` are stored and loaded sequentially consistently, so that
// a monitor entering the guest and a debugger stopping it cannot miss each
// other: either the monitor sees hold and parks, or the debugger sees kGuest
// and kicks. The breakpoint table and the debug registers change only under
// `lock`, and only while every vCPU is held. Everything here is monitor-safe:
// raw system calls, no allocation, dunk's own futex lock.
#pragma once

#include <atomic>
#include <cstdint>

#include "base/lock.h"
#include "guest/abi.h"

namespace dunk::core {

class Cpu;
class Machine;

// Where a vCPU's thread is, as the debugger needs to know it.
enum class DebugState : std::uint32_t {
  kIdle,    // not serving a guest (not started yet)
  kHost,    // handling an exit: short, and ends at the loop's checkpoint
  kGuest,   // entering or in KVM_RUN: guest code may run (kick it)
  kCall,    // serving a system call, which may block: the registers are the
            // published frame's, readable but not to be written
  kParked,  // stopped for the debugger: registers readable and writable
};

// Why a vCPU parked.
enum class DebugStopKind : std::uint8_t {
  kNone,        // it was told to stop (hold), nothing happened to it
  kBreakpoint,  // it executed one of the debugger's int3 (RIP is set back to it)
  kStep,        // a single step the debugger asked for is done
  kHardware,    // a debug register fired (`dr6` says which)
  kSignal,      // a signal is about to be delivered (`value`): the debugger
                // decides whether it is (see DebugCommand::signal)
  kExited,      // the process is exiting with status `value` (exit_group)
  kKilled,      // the process is about to die of signal `value`
};

struct DebugStop {
  DebugStopKind kind = DebugStopKind::kNone;
  int value = 0;
  std::uint64_t dr6 = 0;
};

enum class DebugResume : std::uint8_t { kContinue, kStep };

// What a released vCPU does. `signal`: for a kSignal stop, the signal to
// deliver instead (0: none, the one reported: as it was); after any other
// stop, a signal to send the thread (0: none).
struct DebugCommand {
  DebugResume how = DebugResume::kContinue;
  int signal = 0;
};

// Per vCPU (a member of Cpu).
struct CpuDebug {
  // Written by the debugger.
  std::atomic<std::uint32_t> hold{0};  // 1: run no guest code (futex word)
  DebugCommand command{};
  std::atomic<std::uint32_t> command_sequence{0};  // bumped with each command
  bool stop_reported = false;  // the debugger has told gdb about `stop`

  // Written by the monitor.
  std::atomic<DebugState> state{DebugState::kIdle};
  DebugStop stop{};
  // While kParked or kCall: where the guest's registers are. A frame the
  // guest resumes through (a stub's, or the monitor's copy while it
  // delivers a signal), or null: the vCPU's own (KVM_GET_REGS).
  guest::TrapFrame* frame = nullptr;
  // The frame is the SYSCALL path's: the program's GS base is parked in
  // KERNEL_GS_BASE.
  bool gs_in_msr = false;

  // The monitor's own.
  std::uint32_t command_taken = 0;
  bool stepping = false;       // the debugger single-steps this vCPU
  bool frame_step = false;     // ...through the frame's TF (resuming from a stub)
  bool stepping_out = false;   // stepping out of dunk's entry code to park
  bool step_into_handler = false;  // a step from a signal stop: stop at its handler
  int inject = 0;              // a signal the debugger sent: delivered without a stop
  std::uint32_t debugregs_applied = 0;

  // For a thread starting on this vCPU: nothing pending.
  void reset(bool held) noexcept;
};

class DebugLink {
 public:
  // The signal that kicks a vCPU out of KVM_RUN: SIGCANCEL, glibc's own
  // signal for thread cancellation, which glibc never lets a program block
  // (sigprocmask, pthread_sigmask and sigfillset leave it out). A kick is
  // told apart from a real SIGCANCEL by its siginfo (SI_QUEUE from this
  // process, this link's address as its value).
  static constexpr int kKickSignal = 32;
  static constexpr unsigned kMaxBreakpoints = 256;

  struct Breakpoint {
    std::uint64_t address;
    std::uint8_t original;  // the byte the int3 replaced
  };

  Lock lock;
  // Serving: monitors park for the debugger. Cleared when it detaches.
  std::atomic<bool> attached{false};
  // New threads start held (the debugger holds every vCPU).
  std::atomic<std::uint32_t> hold_new{0};
  // Host signals delivered to the program without a stop (bit sig-1).
  std::atomic<std::uint64_t> pass_signals{0};
  int event_fd = -1;  // an eventfd the debugger polls: a vCPU parked with an event
  long pid = 0;

  // Under `lock`.
  Breakpoint breakpoints[kMaxBreakpoints] = {};
  unsigned breakpoint_count = 0;
  std::uint64_t debugreg[8] = {};  // DR0-DR3, -, -, -, DR7 (KVM's layout)
  std::atomic<std::uint32_t> debugreg_generation{0};

  // Whether `address` holds one of the debugger's int3. Takes the lock.
  bool has_breakpoint(std::uint64_t address) noexcept;
  // Writes the event fd (monitor-safe).
  void notify() noexcept;
  bool passes(int sig) const noexcept;
};

// The monitor's side: parks `cpu` with `stop` until the debugger releases
// it, with its registers in `frame` (see CpuDebug::frame). Returns the
// command it was released with.
DebugCommand debug_park(DebugLink& link, Cpu& cpu, const DebugStop& stop, guest::TrapFrame* frame,
                        bool gs_in_msr) noexcept;

// Whether a signal the host handler took is a debugger's kick. Async-signal-
// safe.
bool is_debugger_kick(int sig, const void* siginfo) noexcept;

// The process is about to die of `sig` (die_by_signal): a debugger is told
// first, from the calling thread's vCPU (if it has one).
void debug_report_death(int sig) noexcept;

// In a fork child: the parent's int3 are in this copy of its memory, where
// nothing serves them. Puts the original bytes back. Raw system calls only.
void remove_breakpoints_in_fork_child(DebugLink& link) noexcept;

}  // namespace dunk::core
