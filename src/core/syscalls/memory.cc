// The mapping calls: forwarded, then the guest page tables follow what the
// host did (core/mirror.h), so that a bad access in the guest is a guest
// page fault with the native address and error code.
#include <sys/mman.h>
#include <sys/syscall.h>

#include "arch/x86_64/paging.h"
#include "base/syscall.h"
#include "core/syscalls/handlers.h"
#include "core/text.h"

namespace dunk::core::syscalls {
namespace {

constexpr std::uint64_t page_up(std::uint64_t v) noexcept {
  return (v + arch::kPageSize4K - 1) & ~(arch::kPageSize4K - 1);
}
constexpr int kProtMask = PROT_READ | PROT_WRITE | PROT_EXEC;

// MADV_GUARD_INSTALL / MADV_GUARD_REMOVE (Linux 6.13+): the mapping stays,
// its pages become inaccessible / accessible again.
constexpr std::uint64_t kMadvGuardInstall = 102, kMadvGuardRemove = 103;

// A mirror update that failed leaves the guest unable to use memory the host
// mapped: say so (the access will fault). During the process's exit another
// thread may have closed the VM already: this thread just ends.
void report(SyscallContext& ctx, Status status, std::uint64_t address) noexcept {
  if (status) return;
  if (ctx.threads.process_exiting()) ctx.host.call(SYS_exit, 0);
  char line[256];
  TextBuffer text(line, sizeof line);
  text.append("dunk: cannot mirror new mapping at ").hex(address).append(": ").append(status.error().what);
  if (status.error().err != 0) text.append(" (errno ").dec(status.error().err).append(")");
  text.append("\n");
  ctx.host.call(SYS_write, 2, reinterpret_cast<long>(text.c_str()), static_cast<long>(text.length()));
}

}  // namespace

Outcome mmap(SyscallContext& ctx, const Syscall& call) noexcept {
  const std::uint64_t length = call.arg(1);
  const int prot = call.int_arg(2) & kProtMask;
  const long ret = ctx.host.forward(call);
  if (sys::failed(ret)) return Outcome::result(ret);
  const auto start = static_cast<std::uint64_t>(ret);
  if (Status s = ctx.mirror.set(Hva(start), Hva(start + page_up(length)), prot); !s) {
    // The program could not use the memory in VM mode: undo and fail the
    // call rather than let a later access fault mysteriously.
    report(ctx, s, start);
    ctx.host.call(SYS_munmap, ret, static_cast<long>(length));
    return Outcome::result(-ENOMEM);
  }
  return Outcome::result(ret);
}

Outcome munmap(SyscallContext& ctx, const Syscall& call) noexcept {
  const std::uint64_t start = call.arg(0), length = call.arg(1);
  const long ret = ctx.host.forward(call);
  if (ret == 0) (void)ctx.mirror.set(Hva(start), Hva(start + page_up(length)), PROT_NONE);
  return Outcome::result(ret);
}

Outcome mprotect(SyscallContext& ctx, const Syscall& call) noexcept {
  const std::uint64_t start = call.arg(0), length = call.arg(1);
  const int prot = call.int_arg(2);
  const long ret = ctx.host.forward(call);
  if (ret != 0) return Outcome::result(ret);
  if ((prot & (PROT_GROWSDOWN | PROT_GROWSUP)) != 0) {
    // The change extends to the end of the mapping: ask the host.
    report(ctx, ctx.mirror.sync_all(), start);
  } else {
    report(ctx, ctx.mirror.set(Hva(start), Hva(start + page_up(length)), prot & kProtMask), start);
  }
  return Outcome::result(ret);
}

Outcome mremap(SyscallContext& ctx, const Syscall& call) noexcept {
  const std::uint64_t old_start = call.arg(0), old_size = call.arg(1), new_size = call.arg(2);
  const std::uint64_t flags = call.arg(3);
  const int prot = ctx.mirror.protection(Hva(old_start)).value_or(PROT_NONE);
  const long ret = ctx.host.forward(call);
  if (sys::failed(ret)) return Outcome::result(ret);
  const auto start = static_cast<std::uint64_t>(ret);
  if (start != old_start && (flags & MREMAP_DONTUNMAP) == 0 && old_size != 0) {
    (void)ctx.mirror.set(Hva(old_start), Hva(old_start + page_up(old_size)), PROT_NONE);
  } else if (start == old_start && new_size < old_size) {
    (void)ctx.mirror.set(Hva(old_start + page_up(new_size)), Hva(old_start + page_up(old_size)), PROT_NONE);
  }
  report(ctx, ctx.mirror.set(Hva(start), Hva(start + page_up(new_size)), prot), start);
  return Outcome::result(ret);
}

Outcome brk(SyscallContext& ctx, const Syscall& call) noexcept {
  const long ret = ctx.host.forward(call);
  if (ret == kRestartGuestSyscall) return Outcome::result(ret);
  const auto now = static_cast<std::uint64_t>(ret);
  const std::uint64_t before = ctx.process.brk.exchange(now, std::memory_order_relaxed);
  if (now > before) {
    report(ctx, ctx.mirror.set(Hva(page_up(before)), Hva(page_up(now)), PROT_READ | PROT_WRITE), before);
  } else if (now < before) {
    (void)ctx.mirror.set(Hva(page_up(now)), Hva(page_up(before)), PROT_NONE);
  }
  return Outcome::result(ret);
}

Outcome madvise(SyscallContext& ctx, const Syscall& call) noexcept {
  const std::uint64_t start = call.arg(0), length = call.arg(1), advice = call.arg(2);
  const long ret = ctx.host.forward(call);
  if (sys::failed(ret)) return Outcome::result(ret);
  if (advice == kMadvGuardInstall) (void)ctx.mirror.set(Hva(start), Hva(start + page_up(length)), PROT_NONE);
  if (advice == kMadvGuardRemove) report(ctx, ctx.mirror.sync(Hva(start), Hva(start + page_up(length))), start);
  return Outcome::result(ret);
}

Outcome remap_by_host(SyscallContext& ctx, const Syscall& call) noexcept {
  // Rare calls whose effect on the address space is easiest to read back
  // from the host: System V shared-memory attach and detach.
  const long ret = ctx.host.forward(call);
  if (sys::failed(ret)) return Outcome::result(ret);
  report(ctx, ctx.mirror.sync_all(), static_cast<std::uint64_t>(ret));
  return Outcome::result(ret);
}

}  // namespace dunk::core::syscalls
