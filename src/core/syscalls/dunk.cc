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
    case DUNK_SYSCALL_OWN_IOCTL: {
      // Forwarded as the plain ioctl would be, past the descriptor guard.
      if (!ctx.process.dunk_fds.contains(call.int_arg(0))) return Outcome::result(-EBADF);
      return Outcome::result(ctx.host.forward(Syscall::make(SYS_ioctl, {call.arg(0), call.arg(1), call.arg(2)})));
    }
    default:
      return Outcome::result(-ENOSYS);
  }
}

}  // namespace dunk::core::syscalls
