// Exception vectors 0-31 and the error codes the CPU pushes for them.
// Intel SDM vol. 3A §6.3.1 (numbering differs between editions), Table
// "Protected-Mode Exceptions and Interrupts"; AMD APM vol. 2 §8.2, Table 8-1
// "Interrupt Vector Source and Cause" (AMD-only vectors 28-30).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

#include "arch/x86_64/bits.h"
#include "arch/x86_64/vectors_asm.h"

namespace dunk::arch {

enum class Vector : std::uint8_t {
  kDivideError = 0,
  kDebug = 1,
  kNmi = 2,
  kBreakpoint = 3,
  kOverflow = 4,
  kBoundRange = 5,
  kInvalidOpcode = 6,
  kDeviceNotAvailable = 7,
  kDoubleFault = 8,
  kCoprocessorSegmentOverrun = 9,
  kInvalidTss = 10,
  kSegmentNotPresent = 11,
  kStackFault = 12,
  kGeneralProtection = 13,
  kPageFault = 14,
  kReserved15 = 15,
  kX87FloatingPoint = 16,
  kAlignmentCheck = 17,
  kMachineCheck = 18,
  kSimdFloatingPoint = 19,
  kVirtualization = 20,
  kControlProtection = 21,
  kHypervisorInjection = 28,  // AMD
  kVmmCommunication = 29,     // AMD SEV-ES
  kSecurity = 30,             // AMD
};

inline constexpr unsigned kExceptionVectors = 32;
inline constexpr unsigned kIdtVectors = 256;

enum class ExceptionClass : std::uint8_t {
  kFault,        // reported before the instruction; RIP points at it
  kTrap,         // reported after the instruction; RIP points past it
  kFaultOrTrap,  // #DB: depends on the condition (DR6 tells which)
  kAbort,        // no reliable RIP; the program cannot continue
  kInterrupt,    // NMI
  kReserved,
};

struct ExceptionInfo {
  std::string_view mnemonic;  // "#PF"; empty for reserved vectors
  std::string_view name;
  ExceptionClass kind;
  bool error_code;  // the CPU pushes an error code for it
};

namespace detail {
using EC = ExceptionClass;
inline constexpr ExceptionInfo kReservedInfo{"", "Reserved", EC::kReserved, false};

inline constexpr std::array<ExceptionInfo, kExceptionVectors> kExceptionTable = {{
    {"#DE", "Divide Error", EC::kFault, false},
    {"#DB", "Debug", EC::kFaultOrTrap, false},
    {"NMI", "Non-Maskable Interrupt", EC::kInterrupt, false},
    {"#BP", "Breakpoint", EC::kTrap, false},
    {"#OF", "Overflow", EC::kTrap, false},
    {"#BR", "BOUND Range Exceeded", EC::kFault, false},
    {"#UD", "Invalid Opcode", EC::kFault, false},
    {"#NM", "Device Not Available", EC::kFault, false},
    {"#DF", "Double Fault", EC::kAbort, true},
    {"", "Coprocessor Segment Overrun", EC::kFault, false},
    {"#TS", "Invalid TSS", EC::kFault, true},
    {"#NP", "Segment Not Present", EC::kFault, true},
    {"#SS", "Stack-Segment Fault", EC::kFault, true},
    {"#GP", "General Protection", EC::kFault, true},
    {"#PF", "Page Fault", EC::kFault, true},
    kReservedInfo,
    {"#MF", "x87 FPU Floating-Point Error", EC::kFault, false},
    {"#AC", "Alignment Check", EC::kFault, true},
    {"#MC", "Machine Check", EC::kAbort, false},
    {"#XM", "SIMD Floating-Point Exception", EC::kFault, false},
    {"#VE", "Virtualization Exception", EC::kFault, false},
    {"#CP", "Control Protection Exception", EC::kFault, true},
    kReservedInfo, kReservedInfo, kReservedInfo, kReservedInfo, kReservedInfo, kReservedInfo,
    {"#HV", "Hypervisor Injection Exception", EC::kFault, false},
    {"#VC", "VMM Communication Exception", EC::kFault, true},
    {"#SX", "Security Exception", EC::kFault, true},
    kReservedInfo,
}};
}  // namespace detail

// Vectors 32-255 are external or software interrupts: no error code.
constexpr ExceptionInfo exception_info(unsigned vector) noexcept {
  if (vector >= kExceptionVectors) return {"", "Interrupt", ExceptionClass::kInterrupt, false};
  return detail::kExceptionTable[vector];
}
constexpr ExceptionInfo exception_info(Vector v) noexcept {
  return exception_info(static_cast<unsigned>(v));
}
constexpr bool pushes_error_code(unsigned vector) noexcept { return exception_info(vector).error_code; }

namespace detail {
constexpr bool error_code_macro_agrees() noexcept {
  for (unsigned v = 0; v < kIdtVectors; ++v) {
    if (pushes_error_code(v) != ARCH_VECTOR_HAS_ERROR_CODE(v)) return false;
  }
  return true;
}
}  // namespace detail
static_assert(detail::error_code_macro_agrees(), "vectors_asm.h disagrees with the exception table");

// #PF error code. Intel SDM vol. 3A §4.7 "Page-Fault Exceptions", Figure 4-12
// "Page-Fault Error Code"; AMD APM vol. 2 §8.4.2 (bit 31 RMP is AMD SEV-SNP).
struct PageFaultError {
  bool present = false;            // P: 0 = page not present, 1 = protection violation
  bool write = false;              // W/R
  bool user = false;               // U/S: the access was made from CPL 3
  bool reserved_bit = false;       // RSVD: a reserved bit was set in a paging entry
  bool instruction_fetch = false;  // I/D
  bool protection_key = false;     // PK
  bool shadow_stack = false;       // SS
  bool hlat = false;               // HLAT paging (Intel)
  bool sgx = false;                // SGX access-control violation
  bool rmp = false;                // AMD RMP violation
  constexpr bool operator==(const PageFaultError&) const noexcept = default;
};

namespace pf_bits {
inline constexpr unsigned kPresent = 0;
inline constexpr unsigned kWrite = 1;
inline constexpr unsigned kUser = 2;
inline constexpr unsigned kReserved = 3;
inline constexpr unsigned kInstructionFetch = 4;
inline constexpr unsigned kProtectionKey = 5;
inline constexpr unsigned kShadowStack = 6;
inline constexpr unsigned kHlat = 7;
inline constexpr unsigned kSgx = 15;
inline constexpr unsigned kRmp = 31;
}  // namespace pf_bits

constexpr PageFaultError decode_page_fault_error(std::uint64_t code) noexcept {
  using namespace pf_bits;
  return PageFaultError{get_bit(code, kPresent),       get_bit(code, kWrite),
                        get_bit(code, kUser),          get_bit(code, kReserved),
                        get_bit(code, kInstructionFetch), get_bit(code, kProtectionKey),
                        get_bit(code, kShadowStack),   get_bit(code, kHlat),
                        get_bit(code, kSgx),           get_bit(code, kRmp)};
}

constexpr std::uint64_t encode_page_fault_error(const PageFaultError& e) noexcept {
  using namespace pf_bits;
  std::uint64_t code = 0;
  code = with_bit(code, kPresent, e.present);
  code = with_bit(code, kWrite, e.write);
  code = with_bit(code, kUser, e.user);
  code = with_bit(code, kReserved, e.reserved_bit);
  code = with_bit(code, kInstructionFetch, e.instruction_fetch);
  code = with_bit(code, kProtectionKey, e.protection_key);
  code = with_bit(code, kShadowStack, e.shadow_stack);
  code = with_bit(code, kHlat, e.hlat);
  code = with_bit(code, kSgx, e.sgx);
  return with_bit(code, kRmp, e.rmp);
}

// Error code of #TS, #NP, #SS and #GP when it names a segment or a gate.
// Intel SDM vol. 3A §6.13 "Error Code", Figure "Error Code".
struct SelectorErrorCode {
  bool external = false;  // EXT: raised while delivering an external event
  bool idt = false;       // IDT: index refers to an IDT gate
  bool ldt = false;       // TI: index refers to the LDT (meaningful when !idt)
  std::uint16_t index = 0;
  constexpr bool operator==(const SelectorErrorCode&) const noexcept = default;
};

constexpr SelectorErrorCode decode_selector_error(std::uint64_t code) noexcept {
  return SelectorErrorCode{get_bit(code, 0), get_bit(code, 1), get_bit(code, 2),
                           static_cast<std::uint16_t>(get_field(code, 15, 3))};
}

constexpr std::uint64_t encode_selector_error(const SelectorErrorCode& e) noexcept {
  std::uint64_t code = with_bit(0, 0, e.external);
  code = with_bit(code, 1, e.idt);
  code = with_bit(code, 2, e.ldt);
  return with_field(code, 15, 3, e.index);
}

}  // namespace dunk::arch
