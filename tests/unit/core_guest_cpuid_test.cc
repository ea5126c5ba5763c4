#include "core/guest_cpuid.h"

#include <gtest/gtest.h>

#include <vector>

namespace dunk::core {
namespace {

// A host with SSE4.2, XSAVE, AVX (leaf 1 ECX bits 20, 26, 28), AVX2 and BMI2
// (leaf 7 EBX bits 5, 8) and XSAVEC (leaf 0Dh.1 EAX bit 1), plus bits dunk
// does not care about (the hypervisor bit, leaf 1 ECX 31).
arch::CpuidEntry fake_host(std::uint32_t function, std::uint32_t index) {
  switch (function) {
    case 0x1: return {0x1, 0, 0, 0, 0, (1u << 20) | (1u << 26) | (1u << 28) | (1u << 31), 0};
    case 0x7: return index == 0 ? arch::CpuidEntry{0x7, 0, 1, 0, (1u << 5) | (1u << 8), 0, 0} : arch::CpuidEntry{};
    case 0xd: return index == 1 ? arch::CpuidEntry{0xd, 1, 1, 1u << 1, 0, 0, 0} : arch::CpuidEntry{};
    default: return {};
  }
}

std::vector<arch::CpuidEntry> kvm_offering(std::uint32_t leaf1_ecx, std::uint32_t leaf7_ebx, std::uint32_t leafd1_eax) {
  return {
      {0x1, 0, 0, 0, 0, leaf1_ecx, 0},
      {0x7, 0, arch::kCpuidSignificantIndex, 0, leaf7_ebx, 0, 0},
      {0xd, 1, arch::kCpuidSignificantIndex, leafd1_eax, 0, 0, 0},
  };
}

TEST(GuestCpuid, NothingMissingWhenKvmOffersWhatTheHostHas) {
  auto kvm = kvm_offering((1u << 20) | (1u << 26) | (1u << 28), (1u << 5) | (1u << 8), 1u << 1);
  EXPECT_FALSE(missing_isa_features(kvm, fake_host));
}

TEST(GuestCpuid, ReportsXsaveAndAvxMissingFromLeafOne) {
  // What a KVM without hardware virtualization reported on a development
  // machine: leaf 1 ECX without SSE4.2, XSAVE or AVX.
  auto kvm = kvm_offering(1u << 31, (1u << 5) | (1u << 8), 1u << 1);
  MissingFeatures missing = missing_isa_features(kvm, fake_host);
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing.function, 0x1u);
  EXPECT_EQ(missing.reg, 'c');
  EXPECT_EQ(missing.bits, (1u << 20) | (1u << 26) | (1u << 28));
}

TEST(GuestCpuid, ReportsSubleafFeatures) {
  auto kvm = kvm_offering((1u << 20) | (1u << 26) | (1u << 28), (1u << 5) | (1u << 8), 0);
  MissingFeatures missing = missing_isa_features(kvm, fake_host);
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing.function, 0xdu);
  EXPECT_EQ(missing.index, 1u);
  EXPECT_EQ(missing.reg, 'a');
  EXPECT_EQ(missing.bits, 1u << 1);
}

TEST(GuestCpuid, ALeafKvmDoesNotReportCountsAsMissing) {
  std::vector<arch::CpuidEntry> kvm = {{0x1, 0, 0, 0, 0, (1u << 20) | (1u << 26) | (1u << 28), 0}};
  MissingFeatures missing = missing_isa_features(kvm, fake_host);
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing.function, 0x7u);
  EXPECT_EQ(missing.bits, (1u << 5) | (1u << 8));
}

}  // namespace
}  // namespace dunk::core
