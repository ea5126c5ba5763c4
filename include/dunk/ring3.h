// Ring 3 under a ring-0 supervisor in the same process: run a function or a
// code region with user privileges, on its own stack, seeing only the pages
// the program opened to it (kUser, dunk/paging.h). Every system call it
// makes and every exception it raises comes back to ring 0 — to the
// supervisor's handlers, inside the guest, without an exit — and ends the
// run or resumes it.
//
//   // Code and stack reachable from ring 3:
//   as.protect(code, code_size, dunk::kRead | dunk::kExec | dunk::kUser);
//   as.protect(stack, stack_size, dunk::kRead | dunk::kWrite | dunk::kUser);
//   dunk::Ring3Options options;
//   options.on_syscall = [](dunk::TrapFrame& f, void*) noexcept {
//     if (f.rax == SYS_getpid) { f.rax = dunk::forward_syscall(f); return dunk::Ring3Action::kResume; }
//     f.rax = -EPERM;                         // deny everything else
//     return dunk::Ring3Action::kResume;
//   };
//   auto exit = dunk::run_in_ring3(untrusted_function, 42, stack, stack_size, options);
//   // exit->reason: kReturned (exit->value), kSyscall or kFault (exit->frame)
//
// What ring 3 cannot do: reach supervisor pages (#PF), execute privileged
// instructions — cli, sti, hlt, in/out, lgdt/lidt, mov to CR*, wrmsr/rdmsr,
// invlpg, swapgs, sysret (#GP: IOPL 0, no I/O bitmap) — use interrupt gates
// other than int3/into (#GP), or load kernel selectors. Each of these faults
// to ring 0 and changes nothing. Its FS/GS bases are its own (the
// supervisor's come back on every entry to ring 0), and it starts with
// every FPU/SSE/AVX register in its initial state and leaves none behind.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "dunk/result.h"
#include "dunk/traps.h"

namespace dunk {

enum class Ring3Action {
  kResume,  // back to ring 3 through the (edited) frame
  kStop,    // end the run: run_in_ring3 returns
};

// Called in ring 0 for each system call of the run (frame.vector is 0x100;
// RAX the number, RDI RSI RDX R10 R8 R9 the arguments; set RAX to the result
// and resume to answer it) or each exception (frame.vector 0-31). `cookie`
// is Ring3Options::cookie. Same rules as exception handlers (dunk/traps.h).
using Ring3Handler = Ring3Action (*)(TrapFrame& frame, void* cookie) noexcept;

struct Ring3Options {
  Ring3Handler on_syscall = nullptr;  // nullptr: a system call ends the run
  Ring3Handler on_fault = nullptr;    // nullptr: an exception ends the run
  void* cookie = nullptr;
  // The FS base ring 3 starts with (its TLS); the caller's when absent.
  // Needs CR4.FSGSBASE, without which ring 3 always runs with the caller's.
  std::optional<std::uint64_t> fs_base = std::nullopt;
};

struct Ring3Exit {
  enum Reason {
    kReturned,  // the function returned (value), or ring 3 called ring3_exit
    kSyscall,   // a system call ended the run (frame.rax: its number)
    kFault,     // an exception ended the run (frame.vector, error_code, cr2)
  };
  Reason reason = kReturned;
  std::uint64_t value = 0;
  TrapFrame frame{};  // ring 3's registers when the run ended
};

// Runs fn(arg) in ring 3 with RSP at the top of [stack, stack + stack_size)
// (kUser|kWrite pages, checked); its return ends the run (through a page of
// dunk's code that run_in_ring3 opens to ring 3). VM mode only; not from a
// handler.
Result<Ring3Exit> run_in_ring3(std::uint64_t (*fn)(std::uint64_t), std::uint64_t arg, void* stack,
                               std::size_t stack_size, const Ring3Options& options = {}) noexcept;
// Runs ring 3 from a full register state (rip, rsp and the general
// registers; CS, SS and RFLAGS' privileged bits are dunk's to set).
Result<Ring3Exit> run_in_ring3(const TrapFrame& start, const Ring3Options& options = {}) noexcept;

// Performs the system call a ring-3 frame asks for on the host (from its
// handler, possibly after changing the arguments); returns the result.
long forward_syscall(const TrapFrame& frame) noexcept;

// Ring 3's FS base, from a handler of its run: what ring 3 had when it
// entered ring 0, and what it gets back when resumed (the handler runs with
// its own). Emulating arch_prctl(ARCH_SET_FS) for ring 3 is setting it.
// EPERM outside a handler of a ring-3 run; ENOTSUP without CR4.FSGSBASE.
Result<std::uint64_t> ring3_fs_base() noexcept;
Status set_ring3_fs_base(std::uint64_t base) noexcept;

// The number ring-3 code passes in RAX to SYSCALL to end its run with RDI as
// value (what returning from the function does).
inline constexpr std::uint64_t kRing3ExitSyscall = 0x64756e6b00 + 2;

}  // namespace dunk
