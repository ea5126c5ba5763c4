// Where each system call is handled: one row per call dunk does more for
// than forward it. Every other number goes to forward_unchanged. What dunk
// knows about each call's arguments is the schema (src/abi/).
#include <sys/syscall.h>

#include <array>

#include "core/syscalls/handlers.h"

namespace dunk::core {
namespace {

// Linux's x86-64 numbers are below 512 (asm/unistd_64.h).
constexpr unsigned kTableSize = 512;

struct Row {
  long nr;
  SyscallHandler handler;
};

constexpr Row kRows[] = {
    // memory (syscalls/memory.cc)
    {SYS_mmap, &syscalls::mmap},
    {SYS_mprotect, &syscalls::mprotect},
    {SYS_munmap, &syscalls::munmap},
    {SYS_brk, &syscalls::brk},
    {SYS_mremap, &syscalls::mremap},
    {SYS_madvise, &syscalls::madvise},
    {SYS_shmat, &syscalls::remap_by_host},
    {SYS_shmdt, &syscalls::remap_by_host},
    {SYS_pkey_mprotect, &syscalls::mprotect},
    // descriptors (syscalls/descriptors.cc)
    {SYS_close, &syscalls::close},
    {SYS_getrlimit, &syscalls::rlimit},
    {SYS_setrlimit, &syscalls::rlimit},
    {SYS_getdents64, &syscalls::getdents64},
    {SYS_prlimit64, &syscalls::rlimit},
    {SYS_close_range, &syscalls::close_range},
    {SYS_poll, &syscalls::poll},
    {SYS_ppoll, &syscalls::poll},
    // signals (syscalls/signals.cc)
    {SYS_rt_sigaction, &syscalls::rt_sigaction},
    {SYS_rt_sigreturn, &syscalls::rt_sigreturn},
    {SYS_sigaltstack, &syscalls::sigaltstack},
    // processes and threads (syscalls/process.cc)
    {SYS_clone, &syscalls::clone_family},
    {SYS_fork, &syscalls::clone_family},
    {SYS_vfork, &syscalls::clone_family},
    {SYS_exit, &syscalls::exit},
    {SYS_arch_prctl, &syscalls::arch_prctl},
    {SYS_modify_ldt, &syscalls::modify_ldt},
    {SYS_ptrace, &syscalls::ptrace},
    {SYS_exit_group, &syscalls::exit_group},
    {SYS_clone3, &syscalls::clone_family},
    // the soft-dirty files of /proc (syscalls/pagemap.cc)
    {SYS_read, &syscalls::read_served},
    {SYS_write, &syscalls::write_served},
    {SYS_open, &syscalls::open_proc_file},
    {SYS_pread64, &syscalls::read_served},
    {SYS_pwrite64, &syscalls::write_served},
    {SYS_openat, &syscalls::open_proc_file},
    {SYS_openat2, &syscalls::open_proc_file},
};

constexpr std::array<SyscallHandler, kTableSize> build_table() noexcept {
  std::array<SyscallHandler, kTableSize> table{};
  for (auto& entry : table) entry = &forward_unchanged;
  for (const Row& row : kRows) table[static_cast<unsigned>(row.nr)] = row.handler;
  return table;
}

constexpr std::array<SyscallHandler, kTableSize> kTable = build_table();

constexpr bool is_dunk_call(std::uint64_t rax) noexcept {
  return rax >= static_cast<std::uint64_t>(DUNK_SYSCALL_BASE) && rax < static_cast<std::uint64_t>(DUNK_SYSCALL_BASE + 256);
}

}  // namespace

SyscallHandler syscall_handler(const Syscall& call) noexcept {
  if (is_dunk_call(call.rax)) return &syscalls::dunk_call;
  const auto nr = static_cast<unsigned>(call.nr());
  return nr < kTableSize ? kTable[nr] : &forward_unchanged;
}

Outcome dispatch_syscall(SyscallContext& ctx, const Syscall& call) noexcept {
  if (std::optional<Outcome> refused = syscalls::refuse_dunk_descriptors(ctx, call)) return *refused;
  const Outcome outcome = syscall_handler(call)(ctx, call);
  // Whoever made it (forwarded as it is, or by a handler), what the kernel
  // wrote for the call is the program's write (core/dirty.h).
  syscalls::record_kernel_writes(ctx, call, outcome);
  return outcome;
}

Outcome forward_unchanged(SyscallContext& ctx, const Syscall& call) noexcept {
  return Outcome::result(ctx.host.forward(call));
}

}  // namespace dunk::core
