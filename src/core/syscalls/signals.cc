// The signal state the monitor keeps on the guest's behalf: the program's
// actions (the host gets dunk's handler with the program's flags, see
// core/signals.h), its alternate stacks (a thread in VM mode has none on the
// host), and the return from its handlers. Frames follow the kernel's rules
// (abi/signal.h); delivery itself is core/signal_delivery.cc.
#include <signal.h>
#include <sys/syscall.h>

#include <optional>

#include "arch/x86_64/xsave.h"
#include "core/guest_state.h"
#include "core/syscalls/handlers.h"

namespace dunk::core::syscalls {

Outcome rt_sigaction(SyscallContext& ctx, const Syscall& call) noexcept {
  const int sig = call.int_arg(0);
  const std::uint64_t act_ptr = call.arg(1), old_ptr = call.arg(2);
  if (call.arg(3) != sizeof(std::uint64_t) || sig < 1 || sig > abi::kMaxSignal) return Outcome::result(-EINVAL);
  if (sig == SIGKILL || sig == SIGSTOP) return Outcome::result(ctx.host.forward(call));
  abi::Sigaction act{};
  if (act_ptr != 0 && !ctx.memory.read(&act, act_ptr, sizeof act)) return Outcome::result(-EFAULT);
  SignalTable& table = ctx.process.actions;
  LockGuard hold(ctx.process.action_lock);
  const abi::Sigaction old = table.get(sig);
  if (act_ptr != 0) {
    act.mask &= ~abi::kUnblockable;
    // The table first: a signal arriving in between finds the new action
    // in it whichever host action caught it.
    table.set(sig, act);
    const abi::Sigaction host = host_action_for(sig, act);
    if (long ret = ctx.host.call(SYS_rt_sigaction, sig, reinterpret_cast<long>(&host), 0, 8); ret != 0) {
      table.set(sig, old);
      return Outcome::result(ret);
    }
  }
  if (old_ptr != 0 && !ctx.memory.write(old_ptr, &old, sizeof old)) return Outcome::result(-EFAULT);
  return Outcome::result(0);
}

Outcome sigaltstack(SyscallContext& ctx, const Syscall& call) noexcept {
  // The kernel's do_sigaltstack, on the guest's alternate stack.
  abi::SignalStack& alt = ctx.thread.signals.altstack;
  const std::uint64_t new_ptr = call.arg(0), old_ptr = call.arg(1);
  const abi::SignalStack old = abi::reported_signal_stack(alt, ctx.frame.rsp);
  abi::SignalStack want{};
  if (new_ptr != 0 && !ctx.memory.read(&want, new_ptr, sizeof want)) return Outcome::result(-EFAULT);
  if (long err = abi::change_signal_stack(alt, new_ptr != 0 ? &want : nullptr, ctx.frame.rsp); err != 0) {
    return Outcome::result(err);
  }
  if (old_ptr != 0 && !ctx.memory.write(old_ptr, &old, sizeof old)) return Outcome::result(-EFAULT);
  return Outcome::result(0);
}

std::optional<ForcedSignal> return_selectors_fault(const abi::Sigcontext& context, std::uint64_t uc_flags) noexcept {
  // The kernel's restore_sigcontext: the frame's selectors with RPL 3, and
  // the IRET back checks them. In VM mode the program runs at CPL 0 on
  // dunk's selectors, which frames show as the user's (push_signal_frame):
  // 0x33 and 0x2b mean "as before"; so do dunk's own 0x10 and 0x18, which a
  // program that read CS or SS itself may have written.
  const auto cs = static_cast<std::uint16_t>(context.cs | 3), ss = static_cast<std::uint16_t>(context.ss | 3);
  constexpr std::uint16_t kUserCs = DUNK_USER_CS, kUserSs = DUNK_USER_DS;
  constexpr std::uint16_t kRing0Cs = DUNK_KERNEL_CS | 3, kRing0Ss = DUNK_KERNEL_DS | 3;
  constexpr std::uint64_t kGeneralProtection = 13;
  if (cs != kUserCs && cs != kRing0Cs) {
    // Another code segment the IRET would load: dunk's guest has no
    // 32-bit or LDT code to run at CPL 0 (docs/compat/x86-selftests.md),
    // and anything else faults natively too: #GP with the selector.
    return ForcedSignal{SIGSEGV, SI_KERNEL, kGeneralProtection, static_cast<std::uint64_t>(cs & ~3)};
  }
  // Without UC_STRICT_RESTORE_SS the kernel replaces an unusable SS with
  // the user data segment (force_valid_ss); with it, the IRET checks it.
  if ((uc_flags & abi::kUcStrictRestoreSs) != 0 && ss != kUserSs && ss != kRing0Ss) {
    return ForcedSignal{SIGSEGV, SI_KERNEL, kGeneralProtection, static_cast<std::uint64_t>(ss & ~3)};
  }
  return std::nullopt;
}

namespace {

// The frame's mask becomes the thread's. In the kernel nothing comes
// between the handler's end and that; here a host signal may, while the
// monitor serves this call: its host handler took the handler's mask, about
// to go, for the one its own handler interrupts (PendingSignal::mask_before)
// and left the host mask at that plus its action's. Its frame is built on
// the state this call restores, so its mask is chained again from the
// restored one, with every host signal held off meanwhile, and the host
// mask ends as the chain's last, as the host handlers would have left it.
// (Left as it was, a SIGUSR1 handler's mask came back after a SIGALRM that
// arrived here: Signals.SimultaneousSignalsLeaveTheMaskAsItWas, about one
// run in 20.)
void restore_mask(SyscallContext& ctx, std::uint64_t mask) noexcept {
  const std::uint64_t all = ~std::uint64_t{0};
  ctx.host.call(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&all), 0, 8);
  CpuSignals& s = ctx.thread.signals;
  std::uint64_t current = mask;
  const std::uint32_t tail = s.tail.load(std::memory_order_acquire);
  for (std::uint32_t i = s.head.load(std::memory_order_relaxed); i != tail; ++i) {
    PendingSignal& p = s.queue[i % CpuSignals::kQueue];
    p.mask_before = current;
    current = abi::handler_mask(current, p.action, signal_number(p));
  }
  // Signals the host handler could not queue stay blocked until the monitor
  // has drained the queue (CpuSignals::deferred).
  current |= s.deferred.load(std::memory_order_relaxed);
  ctx.host.call(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&current), 0, 8);
}

}  // namespace

Outcome rt_sigreturn(SyscallContext& ctx, const Syscall&) noexcept {
  // The kernel's order (arch/x86/kernel/signal.c, rt_sigreturn and
  // restore_sigcontext): the mask, the registers, the FPU state, the
  // alternate stack. A frame that fails on the way is a bad frame: the
  // call returns 0 with what was restored so far, and the kernel forces
  // SIGSEGV (signal_fault).
  constexpr ForcedSignal kBadFrame{SIGSEGV};
  abi::RtSigframe frame;
  if (!ctx.memory.read(&frame, ctx.frame.rsp - 8, sizeof frame)) return Outcome::signal(0, kBadFrame);
  const abi::Sigcontext& sc = frame.uc.mcontext;
  restore_mask(ctx, frame.uc.sigmask & ~abi::kUnblockable);
  restore_from_sigcontext(sc, ctx.frame);

  const FpuFormat& fpu = ctx.process.fpu;
  bool fpu_restored = false;
  if (sc.fpstate == 0) {
    fpu_restored = static_cast<bool>(ctx.vcpu.load_fpu(fpu.initial));
  } else if (std::byte* image = ctx.thread.fpu_scratch; ctx.memory.read(image, sc.fpstate, fpu.size)) {
    arch::xsave::Image(image).normalize_for(fpu.xcr0);
    // An image the CPU would refuse (reserved header bytes, reserved MXCSR
    // bits) is a bad frame, as natively.
    fpu_restored = static_cast<bool>(ctx.vcpu.load_fpu(image));
  }
  if (!fpu_restored) {
    // The kernel resets the FPU state it could not restore.
    (void)ctx.vcpu.load_fpu(fpu.initial);
    return Outcome::signal(0, kBadFrame);
  }

  // The alternate stack as the frame recorded it (restore_altstack).
  abi::SignalStack& alt = ctx.thread.signals.altstack;
  const abi::SignalStack& want = frame.uc.stack;
  if (!abi::restorable_signal_stack(alt, want, sc.rsp)) return Outcome::signal(0, kBadFrame);
  const std::int32_t mode = want.flags & ~abi::kSsAutodisarm;
  alt = mode == abi::kSsDisable ? abi::SignalStack{0, want.flags, 0, 0} : abi::SignalStack{want.sp, want.flags, 0, want.size};

  // The return itself: an IRET to the frame's selectors.
  if (auto fault = return_selectors_fault(sc, frame.uc.flags)) return Outcome::signal(static_cast<long>(sc.rax), *fault);
  return Outcome::result(static_cast<long>(sc.rax));
}

}  // namespace dunk::core::syscalls
