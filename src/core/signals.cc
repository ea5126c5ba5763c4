#include "core/signals.h"

#include <asm/prctl.h>
#include <signal.h>
#include <sys/syscall.h>

#include <atomic>
#include <cstring>

#include "base/syscall.h"
#include "core/debug_link.h"
#include "core/machine.h"
#include "core/monitor.h"
#include "core/guest_state.h"
#include "core/text.h"
#include "core/thread_start.h"

namespace dunk::core {
namespace {

// A signal the kernel raised because dunk's own host code faulted (not one
// sent by someone): si_code > 0 on a synchronous signal.
bool is_monitor_fault(int sig, const void* info) noexcept {
  if (sig != SIGSEGV && sig != SIGBUS && sig != SIGILL && sig != SIGFPE && sig != SIGTRAP) return false;
  std::int32_t code;
  std::memcpy(&code, static_cast<const std::uint8_t*>(info) + offsetof(siginfo_t, si_code), sizeof code);
  return code > 0;
}

}  // namespace

abi::Sigaction SignalTable::get(int sig) const noexcept {
  const Entry& e = entries_[sig];
  for (;;) {
    std::uint32_t before = e.sequence.load(std::memory_order_acquire);
    if ((before & 1) != 0) continue;  // a writer is mid-way (on another thread)
    abi::Sigaction a{e.handler.load(std::memory_order_relaxed), e.flags.load(std::memory_order_relaxed),
                      e.restorer.load(std::memory_order_relaxed), e.mask.load(std::memory_order_relaxed)};
    std::atomic_thread_fence(std::memory_order_acquire);
    if (e.sequence.load(std::memory_order_relaxed) == before) return a;
  }
}

void SignalTable::set(int sig, const abi::Sigaction& a) noexcept {
  // Writers are serialised by the caller's lock, or are the only thread.
  Entry& e = entries_[sig];
  e.sequence.fetch_add(1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  e.handler.store(a.handler, std::memory_order_relaxed);
  e.flags.store(a.flags, std::memory_order_relaxed);
  e.restorer.store(a.restorer, std::memory_order_relaxed);
  e.mask.store(a.mask, std::memory_order_relaxed);
  e.sequence.fetch_add(1, std::memory_order_release);
}

void CpuSignals::reset() noexcept {
  head.store(0, std::memory_order_relaxed);
  tail.store(0, std::memory_order_relaxed);
  deferred.store(0, std::memory_order_relaxed);
  altstack = abi::kNoSignalStack;
  stepping = false;
  arrived = 0;
}

int signal_number(const PendingSignal& p) noexcept {
  std::int32_t sig;
  std::memcpy(&sig, p.info + offsetof(siginfo_t, si_signo), sizeof sig);
  return sig;
}

SignalTable& signal_table() noexcept {
  static SignalTable table;
  return table;
}

long raw_sigaction(int sig, const abi::Sigaction* action, abi::Sigaction* old) noexcept {
  return sys::call(SYS_rt_sigaction, sig, reinterpret_cast<long>(action), reinterpret_cast<long>(old), 8);
}

abi::Sigaction host_action_for(const abi::Sigaction& program) noexcept {
  if (!abi::is_handler(program.handler)) return program;
  // The program's flags, so that the kernel decides restarts (SA_RESTART)
  // and one-shot handlers (SA_RESETHAND) as it would natively; SA_ONSTACK
  // only matters for threads outside VM mode, since a thread in VM mode has
  // no host alternate stack. Every signal blocked while the host handler
  // runs: host handlers never nest, so each one sees, in its context, the
  // mask the program's handler would have interrupted (the handlers that
  // came before it included) and queues in the order the guest's frames
  // must nest.
  return abi::Sigaction{reinterpret_cast<std::uint64_t>(&dunk_host_signal_handler),
                         program.flags | abi::kSaSiginfo | abi::kSaRestorer,
                         reinterpret_cast<std::uint64_t>(&dunk_host_signal_restorer), ~std::uint64_t{0}};
}

namespace {
// The signal a debugger kicks vCPUs with (0: none).
std::atomic<int> reserved_signal{0};

// dunk's handler, restarting calls: a kick must not end a system call the
// program waits in.
abi::Sigaction reserved_host_action() noexcept {
  return abi::Sigaction{reinterpret_cast<std::uint64_t>(&dunk_host_signal_handler),
                         abi::kSaSiginfo | abi::kSaRestorer | abi::kSaRestart,
                         reinterpret_cast<std::uint64_t>(&dunk_host_signal_restorer), ~std::uint64_t{0}};
}
}  // namespace

abi::Sigaction host_action_for(int sig, const abi::Sigaction& program) noexcept {
  if (sig == reserved_signal.load(std::memory_order_relaxed) && !abi::is_handler(program.handler)) {
    return reserved_host_action();
  }
  return host_action_for(program);
}

void reserve_signal_for_debugger(int sig) noexcept {
  SignalTable& table = signal_table();
  abi::Sigaction current;
  if (raw_sigaction(sig, nullptr, &current) != 0) return;
  if (current.handler != reinterpret_cast<std::uint64_t>(&dunk_host_signal_handler)) table.set(sig, current);
  reserved_signal.store(sig, std::memory_order_relaxed);
  const abi::Sigaction host = host_action_for(sig, table.get(sig));
  raw_sigaction(sig, &host, nullptr);
}

void adopt_signal_handlers() noexcept {
  SignalTable& table = signal_table();
  const auto ours = reinterpret_cast<std::uint64_t>(&dunk_host_signal_handler);
  for (int sig = 1; sig <= abi::kMaxSignal; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    abi::Sigaction current;
    if (raw_sigaction(sig, nullptr, &current) != 0) continue;
    if (current.handler == ours) continue;  // adopted already (an earlier enter, or a fork parent)
    table.set(sig, current);
    if (!abi::is_handler(current.handler)) continue;
    abi::Sigaction host = host_action_for(current);
    raw_sigaction(sig, &host, nullptr);
  }
}

namespace {

[[noreturn]] void resume_in_vm(void* arg) noexcept {
  // Off the stack the kernel delivered on (maybe the alternate stack,
  // handed to the host when the thread left): VM mode takes it back.
  take_altstack_from_host(*static_cast<Cpu*>(arg));
  monitor_main(arg);
}

// The native repetition of a faulting access (see Monitor::handle_host_fault)
// raised `sig` with the kernel's own siginfo: resume the faulting state in
// VM mode and deliver the signal there.
[[noreturn]] void back_to_vm_with(Cpu& cpu, int sig, const void* info, const abi::Ucontext& uc,
                                  const abi::Sigaction& action) noexcept {
  const abi::Sigcontext& sc = uc.mcontext;
  const auto* fpu = reinterpret_cast<const std::byte*>(sc.fpstate);
  cpu.prepare_entry_from_host(from_sigcontext(sc), fpu, fpu != nullptr ? Machine::instance().xsave_size() : 0);
  CpuSignals& s = cpu.signals;
  const std::uint32_t tail = s.tail.load(std::memory_order_relaxed);
  PendingSignal& p = s.queue[tail % CpuSignals::kQueue];
  std::memcpy(p.info, info, sizeof p.info);
  p.action = action;
  p.mask_before = uc.sigmask;
  p.trapno = sc.trapno, p.error_code = sc.err, p.cr2 = sc.cr2;
  p.debugger = PendingSignal::kDebuggerUnasked;
  s.tail.store(tail + 1, std::memory_order_release);
  // The kernel's frame is abandoned, so the mask it would restore is set
  // here: the program handler's (the host handler runs with all blocked).
  const std::uint64_t mask = abi::handler_mask(uc.sigmask, action, sig);
  sys::call(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&mask), 0, 8);
  dunk_run_on_stack(cpu.monitor_stack_top, &resume_in_vm, &cpu);
}

// A forwarded system call not made yet (between its stub's look at
// CpuSignals::arrived and its SYSCALL or INT), or one the kernel has rewound
// for a restart, when a signal interrupted it: it is the guest's to restart
// after its handler. The stub returns as if the call had said so. The
// clone-family stubs are alike (a clone the kernel rewinds has made no
// child: it restarts with -ERESTARTNOINTR for a signal that came meanwhile).
void restart_forwarded_call_in_guest(abi::Ucontext& uc) noexcept {
  struct Stub {
    const char* check;  // the look at CpuSignals::arrived
    const char* insn;   // SYSCALL or INT, not made yet or rewound
    const char* done;   // where the stub goes on with the result in RAX
  };
  static constexpr Stub kStubs[] = {
      {dunk_forward_syscall_check, dunk_forward_syscall_insn, dunk_forward_syscall_done},
      {dunk_int80_check, dunk_int80_insn, dunk_int80_done},
      {dunk_clone_native_check, dunk_clone_native_insn, dunk_clone_native_done},
      {dunk_clone_thread_check, dunk_clone_thread_insn, dunk_clone_thread_done},
  };
  for (const Stub& stub : kStubs) {
    if (uc.mcontext.rip >= reinterpret_cast<std::uint64_t>(stub.check) &&
        uc.mcontext.rip <= reinterpret_cast<std::uint64_t>(stub.insn)) {
      uc.mcontext.rip = reinterpret_cast<std::uint64_t>(stub.done);
      uc.mcontext.rax = static_cast<std::uint64_t>(kRestartGuestSyscall);
      return;
    }
  }
}

// See take_signals_deferred_in_fork_child.
std::atomic<std::uint64_t> deferred_in_fork_child{0};

// A signal that reaches a fork child following the fork before its fixup
// has blocked every signal: one pending when the kernel first returned to
// the child. Its VM does not exist yet, nor has it a vCPU of its own: the
// program's handler would run on the host, on dunk's stack with dunk's
// registers. Instead the signal is sent again to this thread as it came
// (rt_tgsigqueueinfo to itself may carry any siginfo) and stays blocked
// when this handler returns, until the child gives the program its mask
// back in VM mode (Monitor::run).
bool defer_in_fork_child(int sig, const void* info, abi::Ucontext& uc) noexcept {
  if (!Machine::instance().fork_child_before_its_vm()) return false;
  if (sys::call(SYS_rt_tgsigqueueinfo, sys::call(SYS_getpid), sys::call(SYS_gettid), sig,
                reinterpret_cast<long>(info)) != 0) {
    return false;
  }
  uc.sigmask |= abi::sigbit(sig);
  deferred_in_fork_child.fetch_or(abi::sigbit(sig), std::memory_order_relaxed);
  return true;
}

// The calling thread's Cpu, also for a thread made without TLS of its own
// (no CLONE_SETTLS), which finds its creator's Cpu there.
Cpu* calling_threads_cpu() noexcept {
  Cpu* cpu = current_cpu();
  if (cpu == nullptr) return nullptr;
  const auto tid = static_cast<std::int32_t>(sys::call(SYS_gettid));
  return cpu->owner_tid.load(std::memory_order_relaxed) == tid ? cpu : Machine::instance().cpu_of_thread(tid);
}

}  // namespace

// The host side of every signal the program catches. Runs on whatever stack
// the host thread is on: the monitor's for a thread in VM mode.
extern "C" void dunk_host_signal_handler(int sig, void* info, void* context) {
  auto* uc = static_cast<abi::Ucontext*>(context);
  if (is_debugger_kick(sig, info)) {
    // Out of KVM_RUN, to the monitor's checkpoint, where it parks. Nothing
    // for the program. (A kick that interrupts a forwarded call, in the
    // moment between KVM_RUN and the call, restarts it like a signal.)
    if (Cpu* cpu = calling_threads_cpu(); cpu != nullptr && cpu->in_guest) {
      restart_forwarded_call_in_guest(*uc);
      cpu->vcpu.run_page()->immediate_exit = 1;
    }
    return;
  }
  SignalTable& table = signal_table();
  abi::Sigaction action = table.get(sig);
  if (abi::is_handler(action.handler) && (action.flags & abi::kSaResethand) != 0) {
    // The kernel has reset the host disposition already (SA_RESETHAND is
    // part of dunk's host action); the program's view follows.
    table.set(sig, abi::Sigaction{});
  }
  if (action.handler == abi::kSigIgn) return;
  if (action.handler == abi::kSigDfl) {
    // The program reset the action while this signal was on its way: let
    // the kernel apply the default once this handler has returned.
    abi::Sigaction dfl{};
    raw_sigaction(sig, &dfl, nullptr);
    sys::call(SYS_tgkill, sys::call(SYS_getpid), sys::call(SYS_gettid), sig);
    return;
  }
  Cpu* cpu = calling_threads_cpu();
  if (cpu != nullptr && cpu->refaulting && is_monitor_fault(sig, info)) {
    cpu->refaulting = false;
    back_to_vm_with(*cpu, sig, info, *uc, action);
  }
  if (cpu != nullptr) cpu->refaulting = false;
  if (cpu == nullptr && defer_in_fork_child(sig, info, *uc)) return;
  if (cpu == nullptr || !cpu->in_guest) {
    // A thread outside VM mode: the program's handler, right here, with the
    // mask the kernel would have given it.
    const std::uint64_t mask = abi::handler_mask(uc->sigmask, action, sig);
    sys::call(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&mask), 0, 8);
    reinterpret_cast<void (*)(int, void*, void*)>(action.handler)(sig, info, context);
    return;
  }
  if (is_monitor_fault(sig, info)) {
    char line[160];
    TextBuffer text(line, sizeof line);
    text.append("dunk: fatal: signal ").dec(sig).append(" in dunk's monitor at rip=").hex(uc->mcontext.rip);
    die_by_signal(SIGABRT, text.append("\n").c_str());
  }
  // A forwarded call not made yet, or being restarted: the guest restarts
  // it after its handler ran; one the monitor is about to make is not made
  // (CpuSignals::arrived): it would see the handler's mask, set below, as
  // the thread's before the handler has run.
  restart_forwarded_call_in_guest(*uc);
  CpuSignals& s = cpu->signals;
  s.arrived = 1;
  const std::uint32_t tail = s.tail.load(std::memory_order_relaxed);
  if (tail - s.head.load(std::memory_order_acquire) >= CpuSignals::kQueue) {
    s.deferred.fetch_or(abi::sigbit(sig), std::memory_order_relaxed);
    uc->sigmask |= abi::sigbit(sig);
  } else {
    PendingSignal& p = s.queue[tail % CpuSignals::kQueue];
    std::memcpy(p.info, info, sizeof p.info);
    p.action = action;
    p.mask_before = uc->sigmask;
    p.trapno = p.error_code = p.cr2 = 0;
    p.debugger = PendingSignal::kDebuggerUnasked;
    // The guest's handler runs with the mask its action asks for; the
    // kernel installs it when this handler returns.
    uc->sigmask = abi::handler_mask(uc->sigmask, action, sig);
    s.tail.store(tail + 1, std::memory_order_release);
  }
  // Make the next KVM_RUN return at once if the monitor is about to enter.
  cpu->vcpu.run_page()->immediate_exit = 1;
}

std::uint64_t take_signals_deferred_in_fork_child() noexcept {
  return deferred_in_fork_child.exchange(0, std::memory_order_relaxed);
}

}  // namespace dunk::core
