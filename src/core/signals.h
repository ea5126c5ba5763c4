// Signals in VM mode: the program's handlers run in the guest, in ring 0, on
// the program's own stack (or its alternate stack), in a signal frame laid
// out exactly as the host kernel lays it out, and return through
// rt_sigreturn like natively.
//
// How a signal reaches the guest:
//
//   host kernel ──> dunk's host handler (on the monitor's stack)
//                     records siginfo + the action in the Cpu's queue,
//                     applies the handler's mask to the thread,
//                     kicks KVM_RUN (immediate_exit), marks a system call
//                     the kernel wants restarted
//                   monitor, at the next exit ──> builds the frame on the
//                     guest's stack, points the guest at the handler
//
// dunk owns the host-side disposition of every signal the program catches
// (with the program's flags and mask, so the kernel makes the native
// restart and nesting decisions); signals the program leaves at SIG_DFL or
// SIG_IGN keep that disposition on the host, so default actions (stop,
// terminate, core dump, ignore) are the kernel's own.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "abi/signal.h"
#include "core/asm_offsets.h"

namespace dunk::core {

// The per-signal actions the program set, read by the host handler at any
// moment: each entry is guarded by a sequence counter (odd while written).
class SignalTable {
 public:
  abi::Sigaction get(int sig) const noexcept;
  void set(int sig, const abi::Sigaction& action) noexcept;

 private:
  struct Entry {
    std::atomic<std::uint32_t> sequence{0};
    std::atomic<std::uint64_t> handler{0}, flags{0}, restorer{0}, mask{0};
  };
  Entry entries_[abi::kMaxSignal + 1];
};

// One signal the host handler took for the guest, waiting to be delivered.
struct PendingSignal {
  std::uint8_t info[abi::kSiginfoSize];  // the siginfo, as the kernel gave it
  abi::Sigaction action;   // the action at the moment the signal arrived
  std::uint64_t mask_before;  // the thread's mask before the handler's
  // For a signal from an exception: what the kernel puts into sigcontext.
  std::uint64_t trapno = 0, error_code = 0, cr2 = 0;
  // A debugger's decision on a queued signal (core/debug_link.h): not asked
  // yet, deliver, or drop. The host handler queues it as kDebuggerUnasked.
  static constexpr std::uint8_t kDebuggerUnasked = 0, kDebuggerDelivers = 1, kDebuggerDrops = 2;
  std::uint8_t debugger = kDebuggerUnasked;
};

// The signal's number, from its siginfo.
int signal_number(const PendingSignal& p) noexcept;

// A Cpu's signal state. The queue has one producer (the host handler) and
// one consumer (the monitor), both on the Cpu's own host thread: the handler
// can interrupt the monitor, never the other way round.
struct CpuSignals {
  static constexpr unsigned kQueue = 32;
  PendingSignal queue[kQueue];
  std::atomic<std::uint32_t> head{0};  // next to deliver (monitor)
  std::atomic<std::uint32_t> tail{0};  // next free (host handler)
  // Signals the host handler could not queue (queue full): it blocked them
  // on the thread, so the kernel keeps them pending; the monitor unblocks
  // them once it has drained the queue.
  std::atomic<std::uint64_t> deferred{0};
  // The guest's alternate signal stack (sigaltstack is served here: the
  // host thread's own is the monitor's business).
  abi::SignalStack altstack = abi::kNoSignalStack;
  // The monitor is single-stepping the guest out of dunk's entry code to
  // deliver a signal at an instruction boundary of the program.
  bool stepping = false;
  // Set by the host handler when it queues (or defers) a signal; cleared
  // by the monitor before it delivers what is queued. A forwarded call
  // finds it set and is not made: the guest restarts it after its handler
  // (dunk_forward_syscall). Written by a signal handler on this thread,
  // read on the same thread: volatile is the whole protocol.
  volatile std::uint32_t arrived = 0;

  bool empty() const noexcept {
    return head.load(std::memory_order_acquire) == tail.load(std::memory_order_acquire);
  }
  // Whether anything waits for delivery, queued or deferred.
  bool pending() const noexcept { return !empty() || deferred.load(std::memory_order_relaxed) != 0; }
  // For a thread starting on this Cpu (a new thread, or a fork child on
  // its copy of the forking thread's): nothing pending, nothing arrived
  // (a copy may hold a signal the parent's handler queued), no alternate
  // stack.
  void reset() noexcept;
};

// The process's table. Actions are process-wide, like the kernel's.
SignalTable& signal_table() noexcept;

// Takes over the host dispositions of the signals the program has handlers
// for (those installed before entering VM mode). Idempotent.
void adopt_signal_handlers() noexcept;

// The host-side action dunk installs for a program action.
abi::Sigaction host_action_for(const abi::Sigaction& program) noexcept;
// The same for signal `sig`: the signal a debugger reserved keeps dunk's
// handler whatever the program's action (core/debug_link.h).
abi::Sigaction host_action_for(int sig, const abi::Sigaction& program) noexcept;
// A debugger's kick signal: dunk's handler from now on, the program's action
// kept in the table (rt_sigaction goes on seeing it).
void reserve_signal_for_debugger(int sig) noexcept;

// rt_sigaction(2) without libc.
long raw_sigaction(int sig, const abi::Sigaction* action, abi::Sigaction* old) noexcept;

// Signals that reached a fork child following the fork before it had
// blocked them to build its VM (Machine::fork_child_before_its_vm): sent
// again to its thread and kept blocked; the child's fixup takes their bits
// out of the program's mask, which it gives back in VM mode. Read and
// cleared once.
std::uint64_t take_signals_deferred_in_fork_child() noexcept;

extern "C" {
// The host handler and its restorer (signals.cc, context_switch.S).
void dunk_host_signal_handler(int sig, void* info, void* ucontext);
void dunk_host_signal_restorer();
// A forwarded system call, a struct Syscall (core/syscall.h): RAX, then the
// six arguments — made only if `*signal_arrived` (CpuSignals::arrived) is
// clear when the stub looks, at dunk_forward_syscall_check. Between that
// look and the SYSCALL instruction (dunk_forward_syscall_insn; the one
// after it is dunk_forward_syscall_done) the call is not made yet, so the
// host handler can turn it into a restart (restart_forwarded_call_in_guest).
long dunk_forward_syscall(const void* call, const volatile std::uint32_t* signal_arrived);
extern const char dunk_forward_syscall_check[];
extern const char dunk_forward_syscall_insn[];
extern const char dunk_forward_syscall_done[];
// The same for a 32-bit call the guest made with `int $0x80`.
long dunk_int80(const void* call, const volatile std::uint32_t* signal_arrived);
extern const char dunk_int80_check[];
extern const char dunk_int80_insn[];
extern const char dunk_int80_done[];
// And for the clone-family calls the monitor makes itself (core/thread_start.h).
extern const char dunk_clone_native_check[];
extern const char dunk_clone_native_insn[];
extern const char dunk_clone_native_done[];
extern const char dunk_clone_thread_check[];
extern const char dunk_clone_thread_insn[];
extern const char dunk_clone_thread_done[];
}

// What dunk_forward_syscall returns when the call is the guest's to restart
// after a handler: a signal came first, or the kernel would restart it
// after the signal's handler. ERESTARTSYS, which never reaches user space
// natively.
inline constexpr long kRestartGuestSyscall = RESTART_GUEST_SYSCALL;

}  // namespace dunk::core
