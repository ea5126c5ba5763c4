#include "core/exit.h"

#include <cerrno>
#include <cstddef>
#include <cstring>

#include "guest/abi.h"
#include "kvm/kvm.h"

namespace dunk::core {
namespace {

// kvm_run's memory_fault member (Linux 6.8+, api.rst "KVM_EXIT_MEMORY_FAULT"),
// missing from older headers: flags, gpa, size at the start of the exit union.
std::uint64_t memory_fault_gpa(const kvm_run& run) noexcept {
  std::uint64_t gpa;
  std::memcpy(&gpa, reinterpret_cast<const std::byte*>(&run.hw) + 8, sizeof gpa);
  return gpa;
}

Exit decode_io(const kvm_run& run) noexcept {
  Exit exit{.reason = run.exit_reason, .port = run.io.port};
  if (run.io.direction != KVM_EXIT_IO_OUT) {
    exit.kind = ExitKind::kUnexpectedIo;
    return exit;
  }
  switch (run.io.port) {
    case DUNK_PORT_SYSCALL:
      exit.kind = ExitKind::kSyscall;
      break;
    case DUNK_PORT_EXCEPTION:
      exit.kind = ExitKind::kException;
      break;
    case DUNK_PORT_FATAL:
      exit.kind = ExitKind::kFatal;
      break;
    default:
      exit.kind = ExitKind::kUnexpectedIo;
  }
  return exit;
}

}  // namespace

Exit decode_exit(long run_result, const kvm_run& run) noexcept {
  if (run_result < 0) {
    // On failure exit_reason may be stale (api.rst); only errno is reliable,
    // except that 6.8+ reports memory faults with their address.
    if (run_result == -EFAULT && run.exit_reason == KVM_EXIT_MEMORY_FAULT) {
      return Exit{.kind = ExitKind::kMemoryFault, .reason = run.exit_reason, .error = EFAULT,
                  .address = memory_fault_gpa(run)};
    }
    if (run_result == -EINTR || run_result == -EAGAIN) {
      return Exit{.kind = ExitKind::kInterrupted, .reason = KVM_EXIT_INTR, .error = EINTR};
    }
    if (run_result == -EFAULT) return Exit{.kind = ExitKind::kHostFault, .error = EFAULT};
    return Exit{.kind = ExitKind::kRunFailed, .error = static_cast<int>(-run_result)};
  }
  Exit exit{.reason = run.exit_reason};
  switch (run.exit_reason) {
    case KVM_EXIT_IO:
      return decode_io(run);
    case KVM_EXIT_INTR:
      exit.kind = ExitKind::kInterrupted;
      break;
    case KVM_EXIT_HLT:
      exit.kind = ExitKind::kHalt;
      break;
    case KVM_EXIT_IRQ_WINDOW_OPEN:
      exit.kind = ExitKind::kIrqWindowOpen;
      break;
    case KVM_EXIT_DEBUG:
      exit.kind = ExitKind::kDebug;
      break;
    case KVM_EXIT_SHUTDOWN:
      exit.kind = ExitKind::kShutdown;
      break;
    case KVM_EXIT_FAIL_ENTRY:
      exit.kind = ExitKind::kFailEntry;
      exit.hardware_reason = run.fail_entry.hardware_entry_failure_reason;
      break;
    case KVM_EXIT_INTERNAL_ERROR:
      exit.kind = ExitKind::kInternalError;
      exit.hardware_reason = run.internal.suberror;
      break;
    case KVM_EXIT_MMIO:
      exit.kind = ExitKind::kMmio;
      exit.address = run.mmio.phys_addr;
      break;
    default:
      exit.kind = ExitKind::kOther;
  }
  return exit;
}

const char* exit_kind_name(ExitKind kind) noexcept {
  switch (kind) {
    case ExitKind::kSyscall: return "syscall";
    case ExitKind::kException: return "exception";
    case ExitKind::kFatal: return "fatal-exception";
    case ExitKind::kInterrupted: return "host-signal";
    case ExitKind::kHostFault: return "host-fault";
    case ExitKind::kMemoryFault: return "memory-fault";
    case ExitKind::kHalt: return "hlt";
    case ExitKind::kIrqWindowOpen: return "irq-window";
    case ExitKind::kDebug: return "single-step";
    case ExitKind::kShutdown: return "shutdown";
    case ExitKind::kFailEntry: return "fail-entry";
    case ExitKind::kInternalError: return "internal-error";
    case ExitKind::kMmio: return "mmio";
    case ExitKind::kUnexpectedIo: return "unexpected-io";
    case ExitKind::kRunFailed: return "run-failed";
    case ExitKind::kOther: return "other";
  }
  return "?";
}

}  // namespace dunk::core
