// Whether the guest's CPU can run the code the host has chosen.
//
// The guest gets the CPUID KVM_GET_SUPPORTED_CPUID reports. But the program
// entering VM mode has already chosen its code paths from the host's CPUID
// (glibc's memcpy/strlen variants, ld.so's XSAVEC trampoline, libm, crypto
// libraries), and KVM refuses XSAVE-managed state (CR4.OSXSAVE, XCR0) to a
// guest whose CPUID lacks it: AVX code chosen on the host would then fault in
// the guest. Hardware-virtualization KVMs report every instruction-set
// extension the host has; a KVM that does not (one without VT-x/AMD-V, such
// as a paravirtual backend) cannot run dunk, and this check says so instead
// of letting the program die on its first AVX instruction.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "arch/x86_64/cpuid.h"

namespace dunk::core {

// The instruction-set extensions, register by register, whose absence from
// KVM's CPUID would break host-chosen code in the guest.
struct IsaFeatureMask {
  std::uint32_t function;
  std::uint32_t index;
  std::uint32_t eax, ebx, ecx, edx;
};
std::span<const IsaFeatureMask> isa_feature_masks() noexcept;

struct MissingFeatures {
  std::uint32_t function = 0;
  std::uint32_t index = 0;
  char reg = 0;            // 'a', 'b', 'c', 'd'; 0 when nothing is missing
  std::uint32_t bits = 0;  // the host's bits KVM does not offer
  explicit operator bool() const noexcept { return reg != 0; }
};

// The first register whose instruction-set bits the host has and `kvm` lacks.
// `host(function, index)` reads the host's CPUID.
template <class HostCpuid>
MissingFeatures missing_isa_features(std::span<const arch::CpuidEntry> kvm, HostCpuid&& host) noexcept {
  for (const IsaFeatureMask& mask : isa_feature_masks()) {
    const arch::CpuidEntry* k = arch::find_cpuid(kvm, mask.function, mask.index);
    arch::CpuidEntry h = host(mask.function, mask.index);
    arch::CpuidEntry none{};
    if (k == nullptr) k = &none;
    const std::uint32_t missing[4] = {h.eax & mask.eax & ~k->eax, h.ebx & mask.ebx & ~k->ebx,
                                      h.ecx & mask.ecx & ~k->ecx, h.edx & mask.edx & ~k->edx};
    for (int r = 0; r < 4; ++r) {
      if (missing[r] != 0) return MissingFeatures{mask.function, mask.index, "abcd"[r], missing[r]};
    }
  }
  return {};
}

}  // namespace dunk::core
