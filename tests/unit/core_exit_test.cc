// Exit decoding, fed with synthetic kvm_run pages.
#include "core/exit.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>

#include "guest/abi.h"
#include "kvm/kvm.h"

namespace dunk::core {
namespace {

kvm_run io_exit(std::uint16_t port, std::uint8_t direction = KVM_EXIT_IO_OUT) {
  kvm_run run{};
  run.exit_reason = KVM_EXIT_IO;
  run.io.direction = direction;
  run.io.size = 1;
  run.io.port = port;
  run.io.count = 1;
  return run;
}

TEST(DecodeExit, PortsNameTheGuestsRequest) {
  EXPECT_EQ(decode_exit(0, io_exit(DUNK_PORT_SYSCALL)).kind, ExitKind::kSyscall);
  EXPECT_EQ(decode_exit(0, io_exit(DUNK_PORT_EXCEPTION)).kind, ExitKind::kException);
  EXPECT_EQ(decode_exit(0, io_exit(DUNK_PORT_FATAL)).kind, ExitKind::kFatal);
}

TEST(DecodeExit, ForeignPortsAndInputAreUnexpected) {
  Exit e = decode_exit(0, io_exit(0x3f8));
  EXPECT_EQ(e.kind, ExitKind::kUnexpectedIo);
  EXPECT_EQ(e.port, 0x3f8);
  EXPECT_EQ(decode_exit(0, io_exit(DUNK_PORT_SYSCALL, KVM_EXIT_IO_IN)).kind, ExitKind::kUnexpectedIo);
}

TEST(DecodeExit, FailuresOfKvmRunIgnoreTheStaleExitReason) {
  kvm_run stale = io_exit(DUNK_PORT_SYSCALL);
  EXPECT_EQ(decode_exit(-EINTR, stale).kind, ExitKind::kInterrupted);
  Exit fault = decode_exit(-EFAULT, stale);
  EXPECT_EQ(fault.kind, ExitKind::kHostFault);
  EXPECT_EQ(fault.error, EFAULT);
  Exit other = decode_exit(-ENOMEM, stale);
  EXPECT_EQ(other.kind, ExitKind::kRunFailed);
  EXPECT_EQ(other.error, ENOMEM);
}

TEST(DecodeExit, MemoryFaultCarriesTheAddress) {
  kvm_run run{};
  run.exit_reason = KVM_EXIT_MEMORY_FAULT;
  const std::uint64_t fields[3] = {0, 0x1234'5000, 4096};  // flags, gpa, size (api.rst)
  std::memcpy(&run.hw, fields, sizeof fields);
  Exit e = decode_exit(-EFAULT, run);
  EXPECT_EQ(e.kind, ExitKind::kMemoryFault);
  EXPECT_EQ(e.address, 0x1234'5000u);
}

TEST(DecodeExit, HardwareExits) {
  kvm_run run{};
  run.exit_reason = KVM_EXIT_HLT;
  EXPECT_EQ(decode_exit(0, run).kind, ExitKind::kHalt);
  run.exit_reason = KVM_EXIT_SHUTDOWN;
  EXPECT_EQ(decode_exit(0, run).kind, ExitKind::kShutdown);
  run.exit_reason = KVM_EXIT_FAIL_ENTRY;
  run.fail_entry.hardware_entry_failure_reason = 0x21;
  Exit fail = decode_exit(0, run);
  EXPECT_EQ(fail.kind, ExitKind::kFailEntry);
  EXPECT_EQ(fail.hardware_reason, 0x21u);
  run.exit_reason = KVM_EXIT_MMIO;
  run.mmio.phys_addr = 0xfee0'0000;
  Exit mmio = decode_exit(0, run);
  EXPECT_EQ(mmio.kind, ExitKind::kMmio);
  EXPECT_EQ(mmio.address, 0xfee0'0000u);
  run.exit_reason = KVM_EXIT_INTERNAL_ERROR;
  run.internal.suberror = KVM_INTERNAL_ERROR_EMULATION;
  EXPECT_EQ(decode_exit(0, run).kind, ExitKind::kInternalError);
  run.exit_reason = KVM_EXIT_IRQ_WINDOW_OPEN;
  EXPECT_EQ(decode_exit(0, run).kind, ExitKind::kIrqWindowOpen);
  run.exit_reason = 0xffff;
  EXPECT_EQ(decode_exit(0, run).kind, ExitKind::kOther);
}

TEST(DecodeExit, EveryKindHasAName) {
  for (int k = 0; k <= static_cast<int>(ExitKind::kOther); ++k) {
    EXPECT_STRNE(exit_kind_name(static_cast<ExitKind>(k)), "?");
  }
}

}  // namespace
}  // namespace dunk::core
