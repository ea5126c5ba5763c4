// The signal state the monitor keeps on the guest's behalf: the program's
// actions (the host gets dunk's handler with the program's flags, see
// core/signals.h), its alternate stacks (a thread in VM mode has none on the
// host), and the return from its handlers. Frames follow the kernel's rules
// (abi/signal.h); delivery itself is core/signal_delivery.cc.
#include <signal.h>
#include <sys/syscall.h>

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
    const abi::Sigaction host = host_action_for(act);
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

Outcome rt_sigreturn(SyscallContext& ctx, const Syscall&) noexcept {
  // The handler's RET popped pretcode: the frame starts 8 bytes below RSP.
  // A frame that cannot be read or restored is the kernel's signal_fault:
  // SIGSEGV.
  abi::RtSigframe frame;
  if (!ctx.memory.read(&frame, ctx.frame.rsp - 8, sizeof frame)) return Outcome::signal(SIGSEGV);
  const abi::Sigcontext& sc = frame.uc.mcontext;
  const std::uint64_t mask = frame.uc.sigmask & ~abi::kUnblockable;
  ctx.host.call(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&mask), 0, 8);

  const FpuFormat& fpu = ctx.process.fpu;
  if (sc.fpstate != 0) {
    std::byte* image = ctx.thread.fpu_scratch;
    if (!ctx.memory.read(image, sc.fpstate, fpu.size)) return Outcome::signal(SIGSEGV);
    arch::xsave::Image(image).normalize_for(fpu.xcr0);
    // An image the CPU would refuse (reserved MXCSR bits, say) is a bad
    // frame, as natively.
    if (!ctx.vcpu.load_fpu(image)) return Outcome::signal(SIGSEGV);
  } else if (!ctx.vcpu.load_fpu(fpu.initial)) {
    return Outcome::signal(SIGSEGV);
  }

  // The alternate stack as the frame recorded it (restore_altstack).
  abi::SignalStack& alt = ctx.thread.signals.altstack;
  const abi::SignalStack& want = frame.uc.stack;
  if (!abi::restorable_signal_stack(alt, want, sc.rsp)) return Outcome::signal(SIGSEGV);
  const std::int32_t mode = want.flags & ~abi::kSsAutodisarm;
  alt = mode == abi::kSsDisable ? abi::SignalStack{0, want.flags, 0, 0} : abi::SignalStack{want.sp, want.flags, 0, want.size};

  restore_from_sigcontext(sc, ctx.frame);
  return Outcome::result(static_cast<long>(sc.rax));
}

}  // namespace dunk::core::syscalls
