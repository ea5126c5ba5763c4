// Threads and processes. The kernel creates them; dunk decides where the
// child runs: a thread (CLONE_VM) on a vCPU of its own in this VM, any other
// child on the host or in a VM of its own (ThreadOps, core/thread_start.h).
// And the thread's FS/GS bases, which live in the vCPU as well as on the host.
#include <asm/prctl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>

#include "core/ldt_mirror.h"
#include "core/syscalls/handlers.h"

namespace dunk::core::syscalls {

static_assert(CloneRequest::kCloneVm == CLONE_VM && CloneRequest::kCloneVfork == CLONE_VFORK);

Result<CloneRequest> decode_clone(const Syscall& call, GuestMemory& memory) noexcept {
  CloneRequest r;
  switch (call.nr()) {
    case SYS_fork:
      r.flags = SIGCHLD;
      return r;
    case SYS_vfork:
      r.flags = CLONE_VM | CLONE_VFORK | SIGCHLD;
      return r;
    case SYS_clone:
      // clone(flags, stack, parent_tid, child_tid, tls) on x86-64.
      r.flags = call.arg(0);
      r.stack = call.arg(1);
      r.tls = call.arg(4);
      return r;
    case SYS_clone3: {
      // The first version of struct clone_args (CLONE_ARGS_SIZE_VER0) is as
      // far as dunk reads; the kernel checks the rest.
      clone_args args{};
      r.args3 = call.arg(0);
      r.args3_size = call.arg(1);
      if (r.args3_size < CLONE_ARGS_SIZE_VER0) return Error{"clone3: argument block too small", EINVAL};
      if (!memory.read(&args, r.args3, CLONE_ARGS_SIZE_VER0)) return Error{"clone3: bad argument block", EFAULT};
      r.flags = args.flags | args.exit_signal;
      // The kernel's stack pointer is the top of [stack, stack + stack_size).
      if (args.stack != 0) r.stack = args.stack + args.stack_size;
      r.tls = args.tls;
      return r;
    }
    default:
      return Error{"not a clone-family call", ENOSYS};
  }
}

Outcome clone_family(SyscallContext& ctx, const Syscall& call) noexcept {
  auto request = decode_clone(call, ctx.memory);
  if (!request) return Outcome::result(-request.error().err);
  // What the child's registers would be natively: the parent's at the
  // SYSCALL, RAX = 0, RSP = its new stack if it has one.
  TrapFrame child = ctx.frame;
  child.rax = 0;
  if (request->stack != 0) child.rsp = request->stack;
  if (request->is_thread()) {
    // A thread needs a stack of its own; dunk does not emulate sharing one.
    if (request->stack == 0) return Outcome::result(-EINVAL);
    return Outcome::result(ctx.threads.start_thread(call, *request, child));
  }
  return Outcome::result(ctx.threads.start_process(call, *request, child));
}

Outcome exit(SyscallContext& ctx, const Syscall& call) noexcept {
  // The thread ends here; its vCPU serves a later thread. The last thread's
  // exit ends the process (glibc's clone() child returns through here).
  // Made whatever signal arrives meanwhile (HostKernel::finish): the
  // vCPU is let go of already.
  if (ctx.threads.thread_exits()) ctx.threads.process_exits();
  return Outcome::result(ctx.host.finish(call));
}

Outcome exit_group(SyscallContext& ctx, const Syscall& call) noexcept {
  ctx.threads.process_exits();
  return Outcome::result(ctx.host.finish(call));
}

Outcome ptrace(SyscallContext& ctx, const Syscall& call) noexcept {
  // A thread that asks to be traced leaves VM mode for good: its tracer's
  // stops and register reads would be the monitor's (the KVM_RUN ioctl, the
  // host thread's registers), never the program's. Natively traced, it
  // behaves natively under the tracer.
  constexpr long kTraceMe = 0;  // PTRACE_TRACEME
  const long ret = ctx.host.forward(call);
  if (call.long_arg(0) == kTraceMe && ret == 0) return Outcome::leave();
  return Outcome::result(ret);
}

Outcome modify_ldt(SyscallContext& ctx, const Syscall& call) noexcept {
  // After a write (func 1 or 0x11) the vCPUs load the new table at their
  // next entry (ldt_mirror.h).
  constexpr int kWrite = 1, kWriteNew = 0x11;
  const int func = call.int_arg(0);
  const long ret = ctx.host.forward(call);
  if (ret >= 0 && (func == kWrite || func == kWriteNew) && ctx.process.ldt != nullptr) {
    if (Status s = ctx.process.ldt->reload(ctx.host); !s) return Outcome::result(-ENOMEM);
  }
  return Outcome::result(ret);
}

Outcome arch_prctl(SyscallContext& ctx, const Syscall& call) noexcept {
  const int code = call.int_arg(0);
  const std::uint64_t address = call.arg(1);
  auto store = [&](Result<std::uint64_t> base) {
    if (!base) return Outcome::result(-EIO);
    return Outcome::result(ctx.memory.write(address, &*base, sizeof *base) ? 0 : -EFAULT);
  };
  switch (code) {
    case ARCH_GET_FS:
      return store(ctx.vcpu.fs_base());
    case ARCH_GET_GS:
      return store(ctx.vcpu.user_gs_base());
    case ARCH_SET_FS:
    case ARCH_SET_GS: {
      // The host thread follows, so that the monitor, a fork child and a
      // thread leaving VM mode all see the program's TLS.
      const long ret = ctx.host.forward(call);
      if (ret != 0) return Outcome::result(ret);
      const Status set = code == ARCH_SET_FS ? ctx.vcpu.set_fs_base(address) : ctx.vcpu.set_user_gs_base(address);
      return Outcome::result(set ? 0 : -EIO);
    }
    default:
      return Outcome::result(ctx.host.forward(call));
  }
}

}  // namespace dunk::core::syscalls
