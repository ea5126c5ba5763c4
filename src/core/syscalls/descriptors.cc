// dunk's own descriptors (the KVM device, the VM, the vCPUs, the mirror's
// probe) are not the program's: it cannot close them, and does not see them
// in a listing of its /proc/PID/fd. Placement above the program's numbers is
// src/base/fd_placement.h.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include <optional>

#include "base/fd_listing.h"
#include "base/syscall.h"
#include "core/syscalls/handlers.h"
#include "core/text.h"

namespace dunk::core::syscalls {

Outcome close(SyscallContext& ctx, const Syscall& call) noexcept {
  // Not open as far as the program knows (it never opened it).
  if (ctx.process.dunk_fds.contains(call.int_arg(0))) return Outcome::result(-EBADF);
  return Outcome::result(ctx.host.forward(call));
}

Outcome close_range(SyscallContext& ctx, const Syscall& call) noexcept {
  // close_range(first, last, flags) around dunk's own descriptors: the
  // pieces between them are closed; CLOSE_RANGE_CLOEXEC alone closes
  // nothing (and dunk's descriptors are close-on-exec already).
  constexpr std::uint64_t kCloexec = 1U << 2;  // CLOSE_RANGE_CLOEXEC
  const auto first = static_cast<std::uint32_t>(call.arg(0)), last = static_cast<std::uint32_t>(call.arg(1));
  const auto flags = static_cast<std::uint32_t>(call.arg(2));
  if ((flags & kCloexec) != 0 || first > last) return Outcome::result(ctx.host.forward(call));
  std::uint64_t from = first;
  const std::uint64_t scan_end = last < FdSet::kLimit ? std::uint64_t{last} + 1 : FdSet::kLimit;
  for (std::uint64_t fd = first; fd < scan_end; ++fd) {
    if (!ctx.process.dunk_fds.contains(static_cast<int>(fd))) continue;
    if (fd > from) {
      long ret = ctx.host.call(SYS_close_range, static_cast<long>(from), static_cast<long>(fd - 1), flags);
      if (ret != 0) return Outcome::result(ret);
    }
    from = fd + 1;
  }
  if (from > last) return Outcome::result(0);
  return Outcome::result(ctx.host.call(SYS_close_range, static_cast<long>(from), last, flags));
}

Outcome getdents64(SyscallContext& ctx, const Syscall& call) noexcept {
  // Only a listing of this process's /proc/PID/fd holds dunk's descriptors
  // (src/base/fd_listing.h); everything else goes straight through.
  const int fd = call.int_arg(0);
  char link[64];
  char path[96];
  TextBuffer(link, sizeof link).append("/proc/self/fd/").dec(fd);
  const long length = ctx.host.call(SYS_readlinkat, AT_FDCWD, reinterpret_cast<long>(link),
                                    reinterpret_cast<long>(path), sizeof path);
  if (length <= 0 || length >= static_cast<long>(sizeof path) ||
      !is_fd_directory_of({path, static_cast<std::size_t>(length)}, ctx.process.pid)) {
    return Outcome::result(ctx.host.forward(call));
  }
  // Read into the monitor's buffer, drop dunk's entries, hand over the rest;
  // a chunk that held only dunk's entries must not read as the end.
  alignas(8) std::byte entries[16384];
  const std::uint64_t buffer = call.arg(1);
  const std::size_t room = call.arg(2) < sizeof entries ? call.arg(2) : sizeof entries;
  for (;;) {
    const long got = ctx.host.call(SYS_getdents64, fd, reinterpret_cast<long>(entries), static_cast<long>(room));
    if (got <= 0) return Outcome::result(got);
    const std::size_t kept = drop_fd_entries(entries, static_cast<std::size_t>(got),
                                             [&](int n) { return ctx.process.dunk_fds.contains(n); });
    if (kept == 0) continue;
    return Outcome::result(ctx.memory.write(buffer, entries, kept) ? static_cast<long>(kept) : -EFAULT);
  }
}

Outcome rlimit(SyscallContext& ctx, const Syscall& call) noexcept {
  // RLIMIT_NOFILE of this process: not while dunk lifts it to place a
  // descriptor (src/base/fd_placement.h), so the program neither sees the
  // lifted limit nor loses a change.
  const bool prlimit = call.nr() == SYS_prlimit64;
  const long pid = prlimit ? call.int_arg(0) : 0;
  const bool own_process = pid == 0 || pid == ctx.process.pid;
  const std::uint64_t resource = prlimit ? call.arg(1) : call.arg(0);
  std::optional<LockGuard> hold;
  if (own_process && resource == RLIMIT_NOFILE) hold.emplace(ctx.process.rlimit_lock);
  return Outcome::result(ctx.host.forward(call));
}

}  // namespace dunk::core::syscalls
