#include "arch/x86_64/vectors.h"

#include <gtest/gtest.h>

namespace dunk::arch {
namespace {

TEST(Vectors, ErrorCodeVectorsAreExactlyTheManualsList) {
  // SDM Table "Protected-Mode Exceptions and Interrupts" plus AMD's #VC, #SX.
  const unsigned with_code[] = {8, 10, 11, 12, 13, 14, 17, 21, 29, 30};
  for (unsigned v = 0; v < 256; ++v) {
    bool expected = false;
    for (unsigned w : with_code) expected |= (w == v);
    EXPECT_EQ(pushes_error_code(v), expected) << "vector " << v;
  }
}

TEST(Vectors, MnemonicsNamesAndClasses) {
  EXPECT_EQ(exception_info(Vector::kDivideError).mnemonic, "#DE");
  EXPECT_EQ(exception_info(Vector::kPageFault).mnemonic, "#PF");
  EXPECT_EQ(exception_info(Vector::kPageFault).name, "Page Fault");
  EXPECT_EQ(exception_info(Vector::kGeneralProtection).mnemonic, "#GP");
  EXPECT_EQ(exception_info(Vector::kSimdFloatingPoint).mnemonic, "#XM");
  EXPECT_EQ(exception_info(Vector::kControlProtection).mnemonic, "#CP");
  EXPECT_EQ(exception_info(Vector::kBreakpoint).kind, ExceptionClass::kTrap);
  EXPECT_EQ(exception_info(Vector::kOverflow).kind, ExceptionClass::kTrap);
  EXPECT_EQ(exception_info(Vector::kDebug).kind, ExceptionClass::kFaultOrTrap);
  EXPECT_EQ(exception_info(Vector::kDoubleFault).kind, ExceptionClass::kAbort);
  EXPECT_EQ(exception_info(Vector::kMachineCheck).kind, ExceptionClass::kAbort);
  EXPECT_EQ(exception_info(Vector::kNmi).kind, ExceptionClass::kInterrupt);
  EXPECT_EQ(exception_info(15).kind, ExceptionClass::kReserved);
  EXPECT_EQ(exception_info(22).kind, ExceptionClass::kReserved);
  EXPECT_EQ(exception_info(31).kind, ExceptionClass::kReserved);
  EXPECT_EQ(exception_info(32).kind, ExceptionClass::kInterrupt);
  EXPECT_EQ(exception_info(255).kind, ExceptionClass::kInterrupt);
  for (unsigned v = 0; v < kExceptionVectors; ++v) {
    EXPECT_FALSE(exception_info(v).name.empty()) << v;
  }
}

TEST(PageFaultError, DecodesTheManualsBits) {
  // User-mode write to a present read-only page.
  PageFaultError e = decode_page_fault_error(0x7);
  EXPECT_TRUE(e.present);
  EXPECT_TRUE(e.write);
  EXPECT_TRUE(e.user);
  EXPECT_FALSE(e.reserved_bit);
  EXPECT_FALSE(e.instruction_fetch);
  // Kernel instruction fetch from a non-present page.
  e = decode_page_fault_error(0x10);
  EXPECT_FALSE(e.present);
  EXPECT_FALSE(e.write);
  EXPECT_FALSE(e.user);
  EXPECT_TRUE(e.instruction_fetch);
  EXPECT_TRUE(decode_page_fault_error(0x8).reserved_bit);
  EXPECT_TRUE(decode_page_fault_error(0x20).protection_key);
  EXPECT_TRUE(decode_page_fault_error(0x40).shadow_stack);
  EXPECT_TRUE(decode_page_fault_error(0x8000).sgx);
  EXPECT_TRUE(decode_page_fault_error(0x80000000u).rmp);
  EXPECT_EQ(decode_page_fault_error(0), PageFaultError{});
}

TEST(PageFaultError, RoundTripsEveryDefinedBit) {
  const std::uint64_t defined = 0x800080ffu;
  for (unsigned b = 0; b < 32; ++b) {
    const std::uint64_t code = std::uint64_t{1} << b;
    const std::uint64_t back = encode_page_fault_error(decode_page_fault_error(code));
    EXPECT_EQ(back, code & defined) << "bit " << b;
  }
  EXPECT_EQ(encode_page_fault_error(decode_page_fault_error(defined)), defined);
}

TEST(SelectorErrorCode, RoundTrip) {
  const SelectorErrorCode e{.external = false, .idt = true, .ldt = false, .index = 0x80};
  EXPECT_EQ(encode_selector_error(e), 0x402u);  // IDT vector 0x80, as #GP reports it
  EXPECT_EQ(decode_selector_error(0x402), e);
  for (std::uint64_t code = 0; code < 0x10000; code += 13) {
    EXPECT_EQ(encode_selector_error(decode_selector_error(code)), code);
  }
}

}  // namespace
}  // namespace dunk::arch
