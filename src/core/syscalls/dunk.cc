// dunk's private system calls (guest/abi.h, DUNK_SYSCALL_*): numbers far
// above Linux's, made with SYSCALL like any other. Outside VM mode the
// kernel answers them with ENOSYS.
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
    default:
      return Outcome::result(-ENOSYS);
  }
}

}  // namespace dunk::core::syscalls
