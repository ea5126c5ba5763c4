// dunk's private system calls (guest/abi.h, DUNK_SYSCALL_*): numbers far
// above Linux's, made with SYSCALL like any other. Outside VM mode the
// kernel answers them with ENOSYS.
#include <sys/syscall.h>

#include <cerrno>

#include "core/syscalls/handlers.h"

namespace dunk::core::syscalls {

Outcome dunk_call(SyscallContext& ctx, const Syscall& call) noexcept {
  ctx.process.stats.add(ctx.process.stats.dunk_calls);
  switch (static_cast<long>(call.rax)) {
    case DUNK_SYSCALL_LEAVE:
      // Signals that arrived in VM mode have their handlers run there
      // first; then the guest asks again.
      if (ctx.thread.signals.pending()) return Outcome::restart();
      return Outcome::leave();
    case DUNK_SYSCALL_PING:
      return Outcome::result(DUNK_SYSCALL_PING);
    case DUNK_SYSCALL_RESOLVE_FAULT: {
      // From a handler that takes every page fault (dunk/traps.h,
      // resolve_fault): the fault the monitor would have resolved first, on
      // the tables the faulting code ran on.
      const FaultResolution r = ctx.mirror.resolve_fault(Hva(call.arg(0)), (call.arg(1) & 1) != 0,
                                                         (call.arg(1) & 2) != 0, Gpa(ctx.thread.page_table_root));
      ctx.process.stats.chunks_assigned.fetch_add(r.chunks_assigned, std::memory_order_relaxed);
      ctx.process.stats.chunks_reclaimed.fetch_add(r.chunks_reclaimed, std::memory_order_relaxed);
      if (r.resolved) ctx.process.stats.add(ctx.process.stats.faults_resolved);
      return Outcome::result(r.resolved ? 1 : 0);
    }
    case DUNK_SYSCALL_GUEST_PHYSICAL: {
      Result<Gpa> gpa = ctx.mirror.assign(Hva(call.arg(0)));
      return Outcome::result(gpa ? static_cast<long>(gpa->value()) : -gpa.error().err);
    }
    case DUNK_SYSCALL_OWN_IOCTL: {
      // Forwarded as the plain ioctl would be, past the descriptor guard.
      if (!ctx.process.dunk_fds.contains(call.int_arg(0))) return Outcome::result(-EBADF);
      return Outcome::result(ctx.host.forward(Syscall::make(SYS_ioctl, {call.arg(0), call.arg(1), call.arg(2)})));
    }
    case DUNK_SYSCALL_ASSIGN_EAGERLY:
      ctx.mirror.assign_eagerly();
      return Outcome::result(0);
    default:
      return Outcome::result(-ENOSYS);
  }
}

}  // namespace dunk::core::syscalls
