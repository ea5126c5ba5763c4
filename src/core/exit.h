// Decoding a KVM_RUN result into a value. The monitor handles values, so
// tests can feed it synthetic exits (see tests/unit/core_exit_test.cc).
#pragma once

#include <linux/kvm.h>

#include <cstdint>

namespace dunk::core {

enum class ExitKind : std::uint8_t {
  kSyscall,        // the guest's SYSCALL entry asks for a system call
  kException,      // an exception reached the guest's IDT and wants the monitor
  kFatal,          // double fault, NMI or machine check in the guest
  kInterrupted,    // a host signal interrupted KVM_RUN (EINTR / KVM_EXIT_INTR)
  kHostFault,      // KVM could not reach host memory behind a slot (EFAULT)
  kMemoryFault,    // the same with the address (KVM_EXIT_MEMORY_FAULT, Linux 6.8+)
  kHalt,           // HLT without an in-kernel local APIC
  kIrqWindowOpen,  // the guest can take an interrupt (requested by the monitor)
  kDebug,          // a single step the monitor asked for (KVM_GUESTDBG_SINGLESTEP)
  kShutdown,       // triple fault
  kFailEntry,      // the hardware refused to enter the guest
  kInternalError,  // KVM could not emulate something
  kMmio,           // access to guest-physical memory with no slot: a dunk bug
  kUnexpectedIo,   // port I/O on a port dunk does not own
  kRunFailed,      // KVM_RUN failed with another errno
  kOther,          // any other exit reason
};

struct Exit {
  ExitKind kind = ExitKind::kOther;
  std::uint32_t reason = 0;          // kvm_run::exit_reason
  int error = 0;                     // errno for kRunFailed/kHostFault
  std::uint16_t port = 0;            // kUnexpectedIo
  std::uint64_t address = 0;         // kMmio/kMemoryFault: the GPA
  std::uint64_t hardware_reason = 0; // kFailEntry/kInternalError
};

Exit decode_exit(long run_result, const kvm_run& run) noexcept;

const char* exit_kind_name(ExitKind kind) noexcept;

}  // namespace dunk::core
