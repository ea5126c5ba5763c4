// Signal delivery's decisions, apart from the vCPU: which signal an
// exception becomes, whether a synchronous signal reaches a handler, and the
// frame a handler starts with. The monitor (signal_delivery.cc) calls these
// with its KVM-backed guest; unit tests with fakes
// (tests/unit/core_signal_frame_test.cc).
#pragma once

#include <cstdint>
#include <optional>

#include "core/signals.h"
#include "core/syscall.h"

namespace dunk::core {

// The signal Linux sends for an exception (arch/x86/kernel/traps.c,
// arch/x86/mm/fault.c), when the program's handler may take it in VM mode.
struct ExceptionSignal {
  int sig = 0;
  int code = 0;            // si_code
  std::uint64_t address = 0;  // si_addr
};
// nullopt: an exception dunk does not turn into a signal itself (the native
// re-execution reports it). `host_mapped`: whether any host mapping holds
// a page fault's address (SEGV_ACCERR rather than SEGV_MAPERR).
std::optional<ExceptionSignal> signal_for_exception(const TrapFrame& frame, bool host_mapped) noexcept;

// The page-fault error code a signal context shows for `frame`'s fault. The
// program's code runs at CPL 0, where the CPU leaves the user bit clear;
// natively its faults are user faults, and the kernel adds the protection
// bit for addresses beyond user space (sanitize_error_code,
// arch/x86/mm/fault.c).
std::uint64_t user_page_fault_error(const TrapFrame& frame) noexcept;

// A synchronous signal (from an exception, or forced like the kernel's
// force_sig) for the calling thread: fills `p` and applies the handler's mask
// when the program has a handler that is not blocked; SA_RESETHAND resets
// the action. False when the program cannot handle it: then it dies of it.
bool take_synchronous_signal(SignalTable& actions, HostKernel& host, PendingSignal& p, int sig, int code,
                             std::uint64_t address) noexcept;

// Writes the frame for `signal` (rt_sigframe, its ucontext and siginfo, the
// FPU image `fpu` in the signal-frame XSAVE format) on the guest's stack or
// alternate stack, and points `frame` at the handler: RDI, RSI, RDX its
// arguments, RSP the frame, the flags the kernel clears. False, with `frame`
// unchanged, when the frame cannot be written (no room on the alternate
// stack, no SA_RESTORER, memory the kernel cannot write): the kernel then
// forces SIGSEGV.
bool push_signal_frame(GuestMemory& memory, TrapFrame& frame, const PendingSignal& signal, const std::byte* fpu,
                       const FpuFormat& format, abi::SignalStack& altstack) noexcept;

}  // namespace dunk::core
