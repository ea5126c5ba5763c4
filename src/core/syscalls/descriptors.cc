// dunk's own descriptors (the KVM device, the VM, the vCPUs, the mirror's
// probe) are not the program's: it cannot close them, and does not see them
// in a listing of its /proc/PID/fd. Placement above the program's numbers is
// src/base/fd_placement.h.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include <cstring>
#include <optional>
#include <string_view>

#include "abi/syscalls.h"
#include "abi/walk.h"
#include "base/fd_listing.h"
#include "base/syscall.h"
#include "core/syscalls/handlers.h"
#include "core/syscalls/walker_memory.h"
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

// ---- dunk's descriptors are closed as far as any call can tell ------------

namespace {

constexpr long kAtFdcwd = -100;
constexpr std::uint64_t kPathProbe = 64;  // enough for /proc/PID/task/TID/fdinfo/N

// Collects whether any descriptor a call uses is one of dunk's.
class DunkFdFinder final : public abi::Visitor {
 public:
  explicit DunkFdFinder(const FdSet& fds) noexcept : fds_(fds) {}
  const void* access(const abi::Access&) noexcept override { return nullptr; }
  void fd(const abi::FdUse& use) noexcept override {
    if (use.role == abi::FdRole::kNew || use.role == abi::FdRole::kRemote) return;
    if (fds_.contains(use.fd)) found_ = true;
  }
  bool found() const noexcept { return found_; }

 private:
  const FdSet& fds_;
  bool found_ = false;
};

// The first bytes of the path at `address`: a NUL-terminated view of at
// most kPathProbe - 1 bytes (shorter when unreadable: the kernel will say).
std::string_view probe_path(GuestMemory& memory, std::uint64_t address, char (&buffer)[kPathProbe]) noexcept {
  WalkerMemory reader(memory);
  const std::size_t got = reader.read(address, buffer, sizeof buffer - 1);
  buffer[got] = '\0';
  return std::string_view(buffer, std::strlen(buffer));
}

// The process a pidfd refers to: the "Pid:" line of its fdinfo (0 when it
// cannot be read: not a pidfd, say, which the kernel will refuse itself).
long pid_of_pidfd(SyscallContext& ctx, int pidfd) noexcept {
  char path[48];
  TextBuffer name(path, sizeof path);
  name.append("/proc/self/fdinfo/").dec(pidfd);
  const long fd = ctx.host.call(SYS_openat, kAtFdcwd, reinterpret_cast<long>(name.c_str()), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char info[512];
  const long got = ctx.host.call(SYS_read, fd, reinterpret_cast<long>(info), sizeof info - 1);
  ctx.host.call(SYS_close, fd);
  if (got <= 0) return 0;
  info[got] = '\0';
  const char* line = std::strstr(info, "\nPid:");
  if (line == nullptr) return 0;
  long pid = 0;
  for (const char* c = line + 5; *c == ' ' || *c == '\t' || (*c >= '0' && *c <= '9'); ++c) {
    if (*c >= '0' && *c <= '9') pid = pid * 10 + (*c - '0');
  }
  return pid;
}

// Whether the table a remote descriptor number is looked up in is this
// process's own: pidfd_getfd with a pidfd of this process, kcmp with its
// pid. Then a number of dunk's would reach dunk's descriptor.
bool remote_table_is_own(SyscallContext& ctx, const Syscall& call, unsigned arg) noexcept {
  switch (call.nr()) {
    case SYS_pidfd_getfd:
      return pid_of_pidfd(ctx, call.int_arg(0)) == ctx.process.pid;
    case SYS_kcmp:  // kcmp(pid1, pid2, type, idx1, idx2): idx1 in pid1's table, idx2 in pid2's
      return call.int_arg(arg == 3 ? 0 : 1) == ctx.process.pid;
    default:
      return false;
  }
}

bool has_nested_descriptors(abi::Shape shape) noexcept {
  switch (shape) {
    case abi::Shape::kFdSet:
    case abi::Shape::kMsghdr:
    case abi::Shape::kMmsghdrs:
    case abi::Shape::kFds:
    case abi::Shape::kIoUringFilesUpdate:
    case abi::Shape::kMountAttr:
    case abi::Shape::kPathBeneath:
    case abi::Shape::kFileCloneRange:
    case abi::Shape::kCloneArgs:
      return true;
    default:
      return false;
  }
}

}  // namespace

std::optional<Outcome> refuse_dunk_descriptors(SyscallContext& ctx, const Syscall& call) noexcept {
  const abi::CallSpec* spec = abi::lookup(call.rax);
  if (spec == nullptr) return std::nullopt;
  const FdSet& fds = ctx.process.dunk_fds;
  const std::uint64_t(&raw)[abi::kMaxArgs] = *reinterpret_cast<const std::uint64_t(*)[abi::kMaxArgs]>(call.args.data());
  // A command gives arguments their meaning (fcntl, ioctl, ...).
  bool has_command = false;
  for (unsigned i = 0; i < spec->arg_count; ++i) has_command |= spec->args[i].kind == abi::Kind::kCommand;
  abi::Resolved resolved;
  const abi::Arg* args = spec->args;
  if (has_command) {
    resolved = abi::resolve(*spec, raw);
    args = resolved.args;
  }
  int path_arg = -1;
  bool dunk_dirfd = false, nested = false;
  for (unsigned i = 0; i < spec->arg_count; ++i) {
    const abi::Arg& arg = args[i];
    const auto value = static_cast<int>(abi::as_signed(call.args[i], abi::Type::kInt));
    switch (arg.kind) {
      case abi::Kind::kFd:
      case abi::Kind::kFdTarget:
        // Not open, as far as the program knows: EBADF, as natively for a
        // number it never opened. (A target number of dunk's is refused the
        // same way: dunk's descriptors sit above the program's soft limit,
        // where natively the call fails with EBADF too, unless the program
        // raised its limit past them.)
        if (fds.contains(value)) return Outcome::result(-EBADF);
        break;
      case abi::Kind::kDirFd:
        if (value == kAtFdcwd || !fds.contains(value)) break;
        // The kernel looks it up only for a relative path (openat2's
        // RESOLVE_IN_ROOT: always).
        if ((arg.flags & abi::kDirFdAlways) != 0) return Outcome::result(-EBADF);
        dunk_dirfd = true;
        break;
      case abi::Kind::kRemoteFd:
        // In another process's table, where dunk's numbers mean nothing to
        // this process; in its own (a pidfd of itself), EBADF as above.
        if (fds.contains(value) && remote_table_is_own(ctx, call, i)) return Outcome::result(-EBADF);
        break;
      case abi::Kind::kPath:
        if (path_arg < 0) path_arg = static_cast<int>(i);
        break;
      case abi::Kind::kMemory:
        nested |= has_nested_descriptors(arg.shape);
        break;
      default:
        break;
    }
  }
  if (path_arg >= 0) {
    // /proc/self/fd/N and its kin name dunk's descriptors too: not there,
    // as natively for a descriptor that is not open. A relative path from
    // a descriptor of dunk's: EBADF (an absolute one ignores the dirfd).
    char buffer[kPathProbe];
    const std::string_view path = probe_path(ctx.memory, call.arg(static_cast<unsigned>(path_arg)), buffer);
    if (auto fd = fd_named_by_path(path, ctx.process.pid); fd && fds.contains(*fd)) return Outcome::result(-ENOENT);
    if (dunk_dirfd && (path.empty() || path.front() != '/')) return Outcome::result(-EBADF);
  }
  if (nested) {
    // Descriptors inside structures: select's sets, SCM_RIGHTS, io_uring's
    // registrations, ... A set of dunk's is EBADF for every such call.
    WalkerMemory memory(ctx.memory);
    DunkFdFinder finder(fds);
    (void)abi::walk(walker_call(call), memory, finder, abi::Phase::kEntry);
    if (finder.found()) return Outcome::result(-EBADF);
  }
  return std::nullopt;
}

Outcome poll(SyscallContext& ctx, const Syscall& call) noexcept {
  // poll(fds, nfds, timeout), ppoll(fds, nfds, tsp, sigmask, size): an
  // entry naming one of dunk's descriptors gets POLLNVAL, as natively for a
  // descriptor that is not open. Such entries are polled as -1 (ignored)
  // in a copy the kernel sees instead.
  struct PollFd {
    std::int32_t fd;
    std::int16_t events, revents;
  };
  constexpr std::size_t kMax = 1024;
  const std::uint64_t array = call.arg(0), count = call.arg(1);
  PollFd copy[kMax];
  if (count == 0 || count > kMax || !ctx.memory.read(copy, array, count * sizeof(PollFd))) {
    return Outcome::result(ctx.host.forward(call));  // the kernel decides (EINVAL, EFAULT, ...)
  }
  bool dunks[kMax];
  std::size_t hidden = 0;
  for (std::size_t i = 0; i < count; ++i) {
    dunks[i] = ctx.process.dunk_fds.contains(copy[i].fd);
    if (dunks[i]) copy[i].fd = -1, ++hidden;
  }
  if (hidden == 0) return Outcome::result(ctx.host.forward(call));
  Syscall on_copy = call;
  on_copy.args[0] = reinterpret_cast<std::uint64_t>(copy);
  long ret = ctx.host.forward(on_copy);
  if (sys::failed(ret) || ret == kRestartGuestSyscall) return Outcome::result(ret);
  constexpr std::int16_t kPollNval = 0x20;
  for (std::size_t i = 0; i < count; ++i) {
    if (!dunks[i]) continue;
    copy[i].revents = kPollNval;
  }
  // Back into the program's array: its own fds, the revents the kernel and
  // dunk gave.
  PollFd mine[kMax];
  if (!ctx.memory.read(mine, array, count * sizeof(PollFd))) return Outcome::result(-EFAULT);
  for (std::size_t i = 0; i < count; ++i) mine[i].revents = copy[i].revents;
  if (!ctx.memory.write(array, mine, count * sizeof(PollFd))) return Outcome::result(-EFAULT);
  return Outcome::result(ret + static_cast<long>(hidden));
}

}  // namespace dunk::core::syscalls
