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
// to ring 0 and changes nothing. Its FS/GS bases are its own (the caller's
// unless the options give others; the supervisor's come back on every entry
// to ring 0),
// and it starts with every FPU/SSE/AVX register in its initial state (or the
// options' image) and leaves none behind.
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
  // Ring 3's FPU/SSE/AVX state at the start: an XSAVE image in the standard
  // format, ring3_fpu_size() bytes, 64-byte aligned (one a run left in
  // fpu_out, say); nullptr: every register in its initial state. An image
  // XRSTOR would refuse is the caller's fault: a #GP in ring 0.
  const void* fpu = nullptr;
  // Where a run that stops leaves ring 3's FPU/SSE/AVX state (same format);
  // nullptr: it is discarded. May be the same buffer as `fpu`.
  void* fpu_out = nullptr;
  // The FS and GS bases ring 3 starts with (its TLS); the caller's when
  // absent. Need CR4.FSGSBASE (ring3_can_set_bases()), without which ring 3
  // always runs with the caller's.
  std::optional<std::uint64_t> fs_base = std::nullopt;
  std::optional<std::uint64_t> gs_base = std::nullopt;
  // Whether a signal for this thread may interrupt the run. A host signal's
  // handler runs in ring 0; while ring 3 runs (or a handler of the run
  // that resumes it) the signal waits, for as long as ring 3 makes no call
  // and takes no fault: without this, a ring-3 loop keeps it waiting for
  // good. With it, the run stops (Ring3Exit::kInterrupted, the frame where
  // ring 3 was) and the signal's handler runs at the caller's next system
  // call or signal_point(); run_in_ring3(exit->frame, ...) goes on.
  bool interruptible = false;
};

struct Ring3Exit {
  enum Reason {
    kReturned,  // the function returned (value), or ring 3 called ring3_exit
    kSyscall,   // a system call ended the run (frame.rax: its number)
    kFault,     // an exception ended the run (frame.vector, error_code, cr2)
    kInterrupted,  // a signal came for the thread (Ring3Options::interruptible)
  };
  Reason reason = kReturned;
  std::uint64_t value = 0;
  TrapFrame frame{};  // ring 3's registers when the run ended
  // Ring 3's FS and GS bases when the run ended (WRFSBASE may have changed
  // them).
  std::uint64_t fs_base = 0;
  std::uint64_t gs_base = 0;
};

// The size of a ring-3 FPU image (Ring3Options::fpu): the XSAVE area of
// every component the guest enables. VM mode only (0 otherwise).
std::size_t ring3_fpu_size() noexcept;
// Whether ring 3 can have FS/GS bases of its own (CR4.FSGSBASE).
bool ring3_can_set_bases() noexcept;

// Runs fn(arg) in ring 3 with RSP at the top of [stack, stack + stack_size)
// (kUser|kWrite pages, checked); its return ends the run (through a page of
// dunk's code that run_in_ring3 opens to ring 3). VM mode only; not from a
// handler.
Result<Ring3Exit> run_in_ring3(std::uint64_t (*fn)(std::uint64_t), std::uint64_t arg, void* stack,
                               std::size_t stack_size, const Ring3Options& options = {}) noexcept;
// Runs ring 3 from a full register state (rip, rsp and the general
// registers; CS, SS and RFLAGS' privileged bits are dunk's to set).
Result<Ring3Exit> run_in_ring3(const TrapFrame& start, const Ring3Options& options = {}) noexcept;

// Lets a signal that waits for this thread (one that interrupted a ring-3
// run, say) reach its handler now, in the caller's context: one call to the
// monitor, which delivers on its way back. Nothing outside VM mode, where
// the kernel delivers signals itself.
void signal_point() noexcept;

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
