// The system calls dunk does more for than forward them, by family. Each
// family lives in the file of its name; syscalls/table.cc maps numbers to
// them. Every handler has the SyscallHandler signature (core/syscall.h).
#pragma once

#include <optional>

#include "core/syscall.h"

namespace dunk::core::syscalls {

// memory.cc: the mapping calls, which the guest page tables must follow.
Outcome mmap(SyscallContext& ctx, const Syscall& call) noexcept;
Outcome munmap(SyscallContext& ctx, const Syscall& call) noexcept;
Outcome mprotect(SyscallContext& ctx, const Syscall& call) noexcept;  // and pkey_mprotect
Outcome mremap(SyscallContext& ctx, const Syscall& call) noexcept;
Outcome brk(SyscallContext& ctx, const Syscall& call) noexcept;
Outcome madvise(SyscallContext& ctx, const Syscall& call) noexcept;
Outcome remap_by_host(SyscallContext& ctx, const Syscall& call) noexcept;  // shmat, shmdt

// descriptors.cc: dunk's own descriptors stay out of the program's reach.
Outcome close(SyscallContext& ctx, const Syscall& call) noexcept;
Outcome close_range(SyscallContext& ctx, const Syscall& call) noexcept;
Outcome getdents64(SyscallContext& ctx, const Syscall& call) noexcept;
Outcome rlimit(SyscallContext& ctx, const Syscall& call) noexcept;  // getrlimit, setrlimit, prlimit64
Outcome poll(SyscallContext& ctx, const Syscall& call) noexcept;    // poll, ppoll
// Before any handler: a call that names one of dunk's descriptors — as an
// argument, inside a structure, or through /proc/self/fd/N — fails as it
// would natively for a descriptor that is not open (EBADF, or ENOENT for a
// path). nullopt: the call goes on.
std::optional<Outcome> refuse_dunk_descriptors(SyscallContext& ctx, const Syscall& call) noexcept;

// process.cc: threads, processes, the thread's FS/GS bases.
Outcome clone_family(SyscallContext& ctx, const Syscall& call) noexcept;  // fork, vfork, clone, clone3
Outcome exit(SyscallContext& ctx, const Syscall& call) noexcept;
Outcome exit_group(SyscallContext& ctx, const Syscall& call) noexcept;
Outcome arch_prctl(SyscallContext& ctx, const Syscall& call) noexcept;
Outcome modify_ldt(SyscallContext& ctx, const Syscall& call) noexcept;
Outcome ptrace(SyscallContext& ctx, const Syscall& call) noexcept;

// signals.cc: signal state the monitor keeps on the guest's behalf.
Outcome rt_sigaction(SyscallContext& ctx, const Syscall& call) noexcept;
Outcome rt_sigreturn(SyscallContext& ctx, const Syscall& call) noexcept;
Outcome sigaltstack(SyscallContext& ctx, const Syscall& call) noexcept;

// pagemap.cc: /proc/self/pagemap's soft-dirty bit and clear_refs "4",
// served from dunk's dirty bits.
Outcome open_proc_file(SyscallContext& ctx, const Syscall& call) noexcept;  // open, openat, openat2
Outcome read_served(SyscallContext& ctx, const Syscall& call) noexcept;     // read, pread64
Outcome write_served(SyscallContext& ctx, const Syscall& call) noexcept;    // write, pwrite64

// kernel_writes.cc: after every call, the buffers the kernel wrote into
// the program's memory are reported to the dirty state (ctx.dirty), and so
// are the writers it cannot bound. A single check while no reader has
// cleaned dirty bits, unless the call registers a later writer.
void record_kernel_writes(SyscallContext& ctx, const Syscall& call, const Outcome& outcome) noexcept;

// dunk.cc: dunk's private calls (DUNK_SYSCALL_*).
Outcome dunk_call(SyscallContext& ctx, const Syscall& call) noexcept;

// The decoding the clone family shares with its tests: the child a
// clone-family call asks for (clone3's block read through `memory`), or the
// errno to fail the call with.
Result<CloneRequest> decode_clone(const Syscall& call, GuestMemory& memory) noexcept;

// The fault the IRET back to a signal context's selectors raises, if it
// does: rt_sigreturn's last check (signals.cc).
std::optional<ForcedSignal> return_selectors_fault(const abi::Sigcontext& context, std::uint64_t uc_flags) noexcept;

}  // namespace dunk::core::syscalls
