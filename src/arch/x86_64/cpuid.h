// CPUID: the entries KVM hands out and the features dunk needs from them.
//
// dunk gives its vCPUs exactly what KVM_GET_SUPPORTED_CPUID reports, and
// decides how to build page tables, which XCR0 to load and which
// instructions the guest runtime may use from the same list, so the decoder
// works on a list of entries rather than on the instruction: tests feed it
// synthetic CPUs.
//
// Intel SDM vol. 2A "CPUID—CPU Identification" (Table 3-8 "Information
// Returned by CPUID Instruction"); AMD "CPUID Specification" (pub. 25481) and
// AMD APM vol. 3 Appendix E "Obtaining Processor Information Via the CPUID
// Instruction".
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "arch/x86_64/paging.h"

namespace dunk::arch {

// One CPUID result; the same fields as Linux's struct kvm_cpuid_entry2
// (function = EAX input, index = ECX input).
struct CpuidEntry {
  std::uint32_t function = 0;
  std::uint32_t index = 0;
  std::uint32_t flags = 0;
  std::uint32_t eax = 0;
  std::uint32_t ebx = 0;
  std::uint32_t ecx = 0;
  std::uint32_t edx = 0;
};

// KVM_CPUID_FLAG_SIGNIFCANT_INDEX: the entry answers only for its `index`.
// Without it the entry answers for every ECX.
inline constexpr std::uint32_t kCpuidSignificantIndex = 1;

enum class CpuidReg : std::uint8_t { kEax, kEbx, kEcx, kEdx };

// One feature flag: where CPUID reports it.
struct CpuidBit {
  std::uint32_t function;
  std::uint32_t index;
  CpuidReg reg;
  std::uint8_t bit;
};

// The bit's mask in its register.
constexpr std::uint32_t mask(CpuidBit b) noexcept { return std::uint32_t{1} << b.bit; }

namespace cpuid_bit {
// Leaf 1 (Table 3-10 "Feature Information Returned in the ECX Register",
// Table 3-11 "... in the EDX Register").
inline constexpr CpuidBit kVmx{0x1, 0, CpuidReg::kEcx, 5};
inline constexpr CpuidBit kPcid{0x1, 0, CpuidReg::kEcx, 17};
inline constexpr CpuidBit kX2apic{0x1, 0, CpuidReg::kEcx, 21};
inline constexpr CpuidBit kXsave{0x1, 0, CpuidReg::kEcx, 26};
inline constexpr CpuidBit kOsxsave{0x1, 0, CpuidReg::kEcx, 27};
inline constexpr CpuidBit kAvx{0x1, 0, CpuidReg::kEcx, 28};
inline constexpr CpuidBit kHypervisor{0x1, 0, CpuidReg::kEcx, 31};
inline constexpr CpuidBit kPae{0x1, 0, CpuidReg::kEdx, 6};
inline constexpr CpuidBit kApic{0x1, 0, CpuidReg::kEdx, 9};
inline constexpr CpuidBit kPge{0x1, 0, CpuidReg::kEdx, 13};
inline constexpr CpuidBit kPat{0x1, 0, CpuidReg::kEdx, 16};
inline constexpr CpuidBit kFxsr{0x1, 0, CpuidReg::kEdx, 24};
// Leaf 7 sub-leaf 0 (Table 3-8, "Structured Extended Feature Flags").
inline constexpr CpuidBit kFsgsbase{0x7, 0, CpuidReg::kEbx, 0};
inline constexpr CpuidBit kAvx2{0x7, 0, CpuidReg::kEbx, 5};
inline constexpr CpuidBit kSmep{0x7, 0, CpuidReg::kEbx, 7};
inline constexpr CpuidBit kInvpcid{0x7, 0, CpuidReg::kEbx, 10};
inline constexpr CpuidBit kSmap{0x7, 0, CpuidReg::kEbx, 20};
inline constexpr CpuidBit kUmip{0x7, 0, CpuidReg::kEcx, 2};
inline constexpr CpuidBit kPku{0x7, 0, CpuidReg::kEcx, 3};
inline constexpr CpuidBit kOspke{0x7, 0, CpuidReg::kEcx, 4};
inline constexpr CpuidBit kLa57{0x7, 0, CpuidReg::kEcx, 16};
inline constexpr CpuidBit kRdpid{0x7, 0, CpuidReg::kEcx, 22};
// Leaf 0xD sub-leaf 1 ("Processor Extended State Enumeration").
inline constexpr CpuidBit kXsaveopt{0xd, 1, CpuidReg::kEax, 0};
inline constexpr CpuidBit kXsavec{0xd, 1, CpuidReg::kEax, 1};
inline constexpr CpuidBit kXsaves{0xd, 1, CpuidReg::kEax, 3};
// Leaf 0x80000001 (Intel Table 3-8; AMD CPUID spec "Fn8000_0001").
inline constexpr CpuidBit kLahf{0x80000001, 0, CpuidReg::kEcx, 0};
inline constexpr CpuidBit kSvm{0x80000001, 0, CpuidReg::kEcx, 2};
inline constexpr CpuidBit kSyscall{0x80000001, 0, CpuidReg::kEdx, 11};
inline constexpr CpuidBit kNx{0x80000001, 0, CpuidReg::kEdx, 20};
inline constexpr CpuidBit kGibPages{0x80000001, 0, CpuidReg::kEdx, 26};
inline constexpr CpuidBit kRdtscp{0x80000001, 0, CpuidReg::kEdx, 27};
inline constexpr CpuidBit kLongMode{0x80000001, 0, CpuidReg::kEdx, 29};
}  // namespace cpuid_bit

enum class Vendor : std::uint8_t {
  kIntel,
  kAmd,  // also Hygon: AMD's SVM, MSRs and CPUID layout
  kOther,
};

struct CpuFeatures {
  Vendor vendor = Vendor::kOther;
  std::uint32_t max_basic_leaf = 0;
  std::uint32_t max_extended_leaf = 0;
  unsigned family = 0;  // display family and model (SDM "Processor Signature")
  unsigned model = 0;
  unsigned stepping = 0;

  unsigned phys_bits = 0;    // MAXPHYADDR
  unsigned linear_bits = 0;  // 48, or 57 with LA57

  bool gib_pages = false;
  bool nx = false;
  bool pge = false;
  bool pat = false;
  bool pcid = false;
  bool invpcid = false;
  bool fsgsbase = false;
  bool smep = false;
  bool smap = false;
  bool umip = false;
  bool pku = false;
  bool ospke = false;
  bool la57 = false;
  bool syscall = false;
  bool long_mode = false;
  bool rdpid = false;
  bool rdtscp = false;
  bool x2apic = false;
  bool hypervisor = false;  // running under a hypervisor
  bool vmx = false;
  bool svm = false;

  bool fxsr = false;
  bool xsave = false;
  bool osxsave = false;
  bool xsaveopt = false;
  bool xsavec = false;
  bool xsaves = false;
  bool avx = false;
  bool avx2 = false;
  std::uint64_t xcr0_supported = 0;       // leaf 0xD.0 EDX:EAX
  std::uint32_t xsave_size_enabled = 0;   // leaf 0xD.0 EBX: for the current XCR0
  std::uint32_t xsave_size_max = 0;       // leaf 0xD.0 ECX: for every supported component
};

// The entry CPUID would answer for (function, index), honouring
// kCpuidSignificantIndex; nullptr when the list has none.
const CpuidEntry* find_cpuid(std::span<const CpuidEntry> entries, std::uint32_t function,
                             std::uint32_t index = 0) noexcept;

bool has_feature(std::span<const CpuidEntry> entries, CpuidBit b) noexcept;

CpuFeatures decode_cpu_features(std::span<const CpuidEntry> entries) noexcept;

// What the page-table builder needs to know about this CPU.
constexpr PagingFeatures paging_features(const CpuFeatures& f) noexcept {
  return PagingFeatures{.gib_pages = f.gib_pages, .nx = f.nx, .phys_bits = f.phys_bits};
}

// --- The host's own CPUID (impure) ------------------------------------------

CpuidEntry host_cpuid(std::uint32_t function, std::uint32_t index = 0) noexcept;

// Fills `out` with the host's CPUID leaves, basic and extended: sub-leaf 0
// of every leaf, plus every sub-leaf of leaves 7 and 0xD. For tests and
// diagnostics: what a vCPU gets comes from KVM_GET_SUPPORTED_CPUID instead.
// Returns the number of entries written (at most out.size()).
std::size_t host_cpuid_entries(std::span<CpuidEntry> out) noexcept;

inline constexpr std::size_t kMaxHostCpuidEntries = 192;

}  // namespace dunk::arch
