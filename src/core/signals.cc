#include "core/signals.h"

#include <asm/prctl.h>
#include <signal.h>
#include <sys/syscall.h>

#include <cstring>

#include "base/syscall.h"
#include "core/machine.h"
#include "core/monitor.h"
#include "core/text.h"

namespace dunk::core {
namespace {

// Not in every libc's <signal.h>; the kernel's value (asm/signal.h).
constexpr std::uint64_t kSaRestorer = 0x04000000;

constexpr std::uint64_t bit(int sig) noexcept { return std::uint64_t{1} << (sig - 1); }
constexpr std::uint64_t kUnblockable = bit(SIGKILL) | bit(SIGSTOP);

bool is_handler(std::uint64_t handler) noexcept {
  return handler != reinterpret_cast<std::uint64_t>(SIG_DFL) && handler != reinterpret_cast<std::uint64_t>(SIG_IGN);
}

// A signal the kernel raised because dunk's own host code faulted (not one
// sent by someone): si_code > 0 on a synchronous signal.
bool is_monitor_fault(int sig, const void* info) noexcept {
  if (sig != SIGSEGV && sig != SIGBUS && sig != SIGILL && sig != SIGFPE && sig != SIGTRAP) return false;
  std::int32_t code;
  std::memcpy(&code, static_cast<const std::uint8_t*>(info) + offsetof(siginfo_t, si_code), sizeof code);
  return code > 0;
}

}  // namespace

KernelSigaction SignalTable::get(int sig) const noexcept {
  const Entry& e = entries_[sig];
  for (;;) {
    std::uint32_t before = e.sequence.load(std::memory_order_acquire);
    if ((before & 1) != 0) continue;  // a writer is mid-way (on another thread)
    KernelSigaction a{e.handler.load(std::memory_order_relaxed), e.flags.load(std::memory_order_relaxed),
                      e.restorer.load(std::memory_order_relaxed), e.mask.load(std::memory_order_relaxed)};
    std::atomic_thread_fence(std::memory_order_acquire);
    if (e.sequence.load(std::memory_order_relaxed) == before) return a;
  }
}

void SignalTable::set(int sig, const KernelSigaction& a) noexcept {
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
  altstack = KernelStack{0, SS_DISABLE, 0, 0};
  stepping = false;
}

SignalTable& signal_table() noexcept {
  static SignalTable table;
  return table;
}

long raw_sigaction(int sig, const KernelSigaction* action, KernelSigaction* old) noexcept {
  return sys::call(SYS_rt_sigaction, sig, reinterpret_cast<long>(action), reinterpret_cast<long>(old), 8);
}

KernelSigaction host_action_for(const KernelSigaction& program) noexcept {
  if (!is_handler(program.handler)) return program;
  // The program's flags, so that the kernel decides restarts (SA_RESTART)
  // and one-shot handlers (SA_RESETHAND) as it would natively; SA_ONSTACK
  // only matters for threads outside VM mode, since a thread in VM mode has
  // no host alternate stack. Every signal blocked while the host handler
  // runs: host handlers never nest, so each one sees, in its context, the
  // mask the program's handler would have interrupted (the handlers that
  // came before it included) and queues in the order the guest's frames
  // must nest.
  return KernelSigaction{reinterpret_cast<std::uint64_t>(&dunk_host_signal_handler),
                         program.flags | SA_SIGINFO | kSaRestorer,
                         reinterpret_cast<std::uint64_t>(&dunk_host_signal_restorer), ~std::uint64_t{0}};
}

void adopt_signal_handlers() noexcept {
  SignalTable& table = signal_table();
  const auto ours = reinterpret_cast<std::uint64_t>(&dunk_host_signal_handler);
  for (int sig = 1; sig <= kMaxSignal; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    KernelSigaction current;
    if (raw_sigaction(sig, nullptr, &current) != 0) continue;
    if (current.handler == ours) continue;  // adopted already (an earlier enter, or a fork parent)
    table.set(sig, current);
    if (!is_handler(current.handler)) continue;
    KernelSigaction host = host_action_for(current);
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
[[noreturn]] void back_to_vm_with(Cpu& cpu, int sig, const void* info, const KernelUcontext& uc,
                                  const KernelSigaction& action) noexcept {
  const KernelSigcontext& sc = uc.mcontext;
  guest::TrapFrame& f = cpu.entry_frame;
  f.r8 = sc.r8, f.r9 = sc.r9, f.r10 = sc.r10, f.r11 = sc.r11, f.r12 = sc.r12, f.r13 = sc.r13;
  f.r14 = sc.r14, f.r15 = sc.r15, f.rdi = sc.rdi, f.rsi = sc.rsi, f.rbp = sc.rbp, f.rbx = sc.rbx;
  f.rdx = sc.rdx, f.rax = sc.rax, f.rcx = sc.rcx, f.rsp = sc.rsp, f.rip = sc.rip, f.rflags = sc.eflags;
  sys::call(SYS_arch_prctl, ARCH_GET_FS, reinterpret_cast<long>(&cpu.entry_fs_base));
  sys::call(SYS_arch_prctl, ARCH_GET_GS, reinterpret_cast<long>(&cpu.entry_gs_base));
  const std::size_t size = Machine::instance().xsave_size();
  if (sc.fpstate != 0) std::memcpy(cpu.xsave, reinterpret_cast<const void*>(sc.fpstate), size);
  CpuSignals& s = cpu.signals;
  const std::uint32_t tail = s.tail.load(std::memory_order_relaxed);
  PendingSignal& p = s.queue[tail % CpuSignals::kQueue];
  std::memcpy(p.info, info, sizeof p.info);
  p.action = action;
  p.mask_before = uc.sigmask;
  p.trapno = sc.trapno, p.error_code = sc.err, p.cr2 = sc.cr2;
  s.tail.store(tail + 1, std::memory_order_release);
  // The kernel's frame is abandoned, so the mask it would restore is set
  // here: the program handler's (the host handler runs with all blocked).
  std::uint64_t mask = uc.sigmask | action.mask | ((action.flags & SA_NODEFER) != 0 ? 0 : bit(sig));
  mask &= ~kUnblockable;
  sys::call(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&mask), 0, 8);
  dunk_run_on_stack(cpu.monitor_stack_top, &resume_in_vm, &cpu);
}

}  // namespace

// The host side of every signal the program catches. Runs on whatever stack
// the host thread is on: the monitor's for a thread in VM mode.
extern "C" void dunk_host_signal_handler(int sig, void* info, void* context) {
  auto* uc = static_cast<KernelUcontext*>(context);
  SignalTable& table = signal_table();
  KernelSigaction action = table.get(sig);
  if (is_handler(action.handler) && (action.flags & SA_RESETHAND) != 0) {
    // The kernel has reset the host disposition already (SA_RESETHAND is
    // part of dunk's host action); the program's view follows.
    table.set(sig, KernelSigaction{});
  }
  if (action.handler == reinterpret_cast<std::uint64_t>(SIG_IGN)) return;
  if (action.handler == reinterpret_cast<std::uint64_t>(SIG_DFL)) {
    // The program reset the action while this signal was on its way: let
    // the kernel apply the default once this handler has returned.
    KernelSigaction dfl{};
    raw_sigaction(sig, &dfl, nullptr);
    sys::call(SYS_tgkill, sys::call(SYS_getpid), sys::call(SYS_gettid), sig);
    return;
  }
  Cpu* cpu = current_cpu();
  if (cpu != nullptr) {
    // A thread made without TLS of its own (no CLONE_SETTLS) finds its
    // creator's Cpu there.
    const auto tid = static_cast<std::int32_t>(sys::call(SYS_gettid));
    if (cpu->owner_tid.load(std::memory_order_relaxed) != tid) cpu = Machine::instance().cpu_of_thread(tid);
  }
  if (cpu != nullptr && cpu->refaulting && is_monitor_fault(sig, info)) {
    cpu->refaulting = false;
    back_to_vm_with(*cpu, sig, info, *uc, action);
  }
  if (cpu != nullptr) cpu->refaulting = false;
  if (cpu == nullptr || !cpu->in_guest) {
    // A thread outside VM mode: the program's handler, right here, with the
    // mask the kernel would have given it.
    std::uint64_t mask = uc->sigmask | action.mask | ((action.flags & SA_NODEFER) != 0 ? 0 : bit(sig));
    mask &= ~kUnblockable;
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
  if (uc->mcontext.rip == reinterpret_cast<std::uint64_t>(dunk_forward_syscall_insn)) {
    // A forwarded system call the kernel has rewound for a restart, or has
    // not started: it is the guest's to restart, after its handler ran.
    uc->mcontext.rip = reinterpret_cast<std::uint64_t>(dunk_forward_syscall_done);
    uc->mcontext.rax = static_cast<std::uint64_t>(kRestartGuestSyscall);
  }
  CpuSignals& s = cpu->signals;
  const std::uint32_t tail = s.tail.load(std::memory_order_relaxed);
  if (tail - s.head.load(std::memory_order_acquire) >= CpuSignals::kQueue) {
    s.deferred.fetch_or(bit(sig), std::memory_order_relaxed);
    uc->sigmask |= bit(sig);
  } else {
    PendingSignal& p = s.queue[tail % CpuSignals::kQueue];
    std::memcpy(p.info, info, sizeof p.info);
    p.action = action;
    p.mask_before = uc->sigmask;
    p.trapno = p.error_code = p.cr2 = 0;
    // The guest's handler runs with the mask its action asks for; the
    // kernel installs it when this handler returns.
    std::uint64_t during = action.mask | ((action.flags & SA_NODEFER) != 0 ? 0 : bit(sig));
    uc->sigmask |= during & ~kUnblockable;
    s.tail.store(tail + 1, std::memory_order_release);
  }
  // Make the next KVM_RUN return at once if the monitor is about to enter.
  cpu->vcpu.run_page()->immediate_exit = 1;
}

}  // namespace dunk::core
