#include "arch/x86_64/cpuid.h"

#include <gtest/gtest.h>

#include <array>
#include <vector>

#include "arch/x86_64/registers.h"

namespace dunk::arch {
namespace {

constexpr std::uint32_t bitv(unsigned n) { return std::uint32_t{1} << n; }

// Vendor strings as the registers hold them (little-endian ASCII).
CpuidEntry amd_leaf0(std::uint32_t max_leaf) {
  return {.function = 0, .eax = max_leaf, .ebx = 0x68747541, .ecx = 0x444d4163, .edx = 0x69746e65};
}
CpuidEntry intel_leaf0(std::uint32_t max_leaf) {
  return {.function = 0, .eax = max_leaf, .ebx = 0x756e6547, .ecx = 0x6c65746e, .edx = 0x49656e69};
}

// An AMD laptop-class part: no 1 GiB pages, 39 physical bits, SVM, no PKU.
std::vector<CpuidEntry> amd_without_gib_pages() {
  return {
      amd_leaf0(0xd),
      // Family 0x17 (0xf + 0x8), model 0x18 (ext 1, base 8), stepping 1.
      {.function = 1, .eax = 0x00810f81, .ecx = bitv(26) | bitv(27) | bitv(28), .edx = bitv(6) | bitv(13) | bitv(16) | bitv(24)},
      {.function = 7, .index = 0, .flags = kCpuidSignificantIndex, .ebx = bitv(0) | bitv(5) | bitv(7) | bitv(20)},
      {.function = 0xd, .index = 0, .flags = kCpuidSignificantIndex, .eax = 0x7, .ebx = 0x340, .ecx = 0x380},
      {.function = 0xd, .index = 1, .flags = kCpuidSignificantIndex, .eax = bitv(0) | bitv(1) | bitv(3)},
      {.function = 0x80000000, .eax = 0x80000008},
      {.function = 0x80000001, .ecx = bitv(0) | bitv(2), .edx = bitv(11) | bitv(20) | bitv(27) | bitv(29)},
      {.function = 0x80000008, .eax = 0x3027},  // 48 linear, 39 physical
  };
}

// An Intel server part: 1 GiB pages, 46 physical bits, PKU, LA57, RDPID,
// AVX-512 in XCR0.
std::vector<CpuidEntry> intel_server() {
  return {
      intel_leaf0(0x1b),
      // Family 6, model 0x55 (ext 5, base 5), stepping 7.
      {.function = 1, .eax = 0x00050657, .ecx = bitv(5) | bitv(17) | bitv(21) | bitv(26) | bitv(27) | bitv(28) | bitv(31),
       .edx = bitv(6) | bitv(9) | bitv(13) | bitv(16) | bitv(24)},
      {.function = 7, .index = 0, .flags = kCpuidSignificantIndex,
       .ebx = bitv(0) | bitv(5) | bitv(7) | bitv(10) | bitv(20), .ecx = bitv(2) | bitv(3) | bitv(4) | bitv(16) | bitv(22)},
      {.function = 7, .index = 1, .flags = kCpuidSignificantIndex, .eax = 0xffffffff},  // must not be read as sub-leaf 0
      {.function = 0xd, .index = 0, .flags = kCpuidSignificantIndex, .eax = 0x2ff, .ebx = 0xa88, .ecx = 0xa88, .edx = 0},
      {.function = 0xd, .index = 1, .flags = kCpuidSignificantIndex, .eax = bitv(0) | bitv(1) | bitv(3)},
      {.function = 0x80000000, .eax = 0x80000008},
      {.function = 0x80000001, .ecx = bitv(0), .edx = bitv(11) | bitv(20) | bitv(26) | bitv(27) | bitv(29)},
      {.function = 0x80000008, .eax = 0x302e},  // 48 linear, 46 physical
  };
}

TEST(Cpuid, DecodesAmdWithoutGibPages) {
  const auto entries = amd_without_gib_pages();
  const CpuFeatures f = decode_cpu_features(entries);
  EXPECT_EQ(f.vendor, Vendor::kAmd);
  EXPECT_EQ(f.family, 0x17u);
  EXPECT_EQ(f.model, 0x18u);
  EXPECT_EQ(f.stepping, 1u);
  EXPECT_EQ(f.phys_bits, 39u);
  EXPECT_EQ(f.linear_bits, 48u);
  EXPECT_FALSE(f.gib_pages);
  EXPECT_TRUE(f.nx);
  EXPECT_TRUE(f.svm);
  EXPECT_FALSE(f.vmx);
  EXPECT_TRUE(f.rdtscp);
  EXPECT_FALSE(f.rdpid);
  EXPECT_FALSE(f.pku);
  EXPECT_FALSE(f.pcid);
  EXPECT_FALSE(f.invpcid);
  EXPECT_TRUE(f.fsgsbase);
  EXPECT_TRUE(f.smep);
  EXPECT_TRUE(f.smap);
  EXPECT_TRUE(f.xsave);
  EXPECT_TRUE(f.osxsave);
  EXPECT_TRUE(f.xsaves);
  EXPECT_TRUE(f.avx2);
  EXPECT_EQ(f.xcr0_supported, 0x7u);
  EXPECT_EQ(f.xsave_size_enabled, 0x340u);
  EXPECT_EQ(f.xsave_size_max, 0x380u);
  EXPECT_FALSE(f.hypervisor);
  EXPECT_TRUE(f.long_mode);
  EXPECT_TRUE(f.syscall);
}

TEST(Cpuid, DecodesIntelServer) {
  const auto entries = intel_server();
  const CpuFeatures f = decode_cpu_features(entries);
  EXPECT_EQ(f.vendor, Vendor::kIntel);
  EXPECT_EQ(f.family, 6u);
  EXPECT_EQ(f.model, 0x55u);
  EXPECT_EQ(f.stepping, 7u);
  EXPECT_EQ(f.max_basic_leaf, 0x1bu);
  EXPECT_EQ(f.max_extended_leaf, 0x80000008u);
  EXPECT_EQ(f.phys_bits, 46u);
  EXPECT_TRUE(f.gib_pages);
  EXPECT_TRUE(f.vmx);
  EXPECT_FALSE(f.svm);
  EXPECT_TRUE(f.pcid);
  EXPECT_TRUE(f.invpcid);
  EXPECT_TRUE(f.pku);
  EXPECT_TRUE(f.ospke);
  EXPECT_TRUE(f.la57);
  EXPECT_TRUE(f.rdpid);
  EXPECT_TRUE(f.umip);
  EXPECT_TRUE(f.x2apic);
  EXPECT_TRUE(f.hypervisor);
  EXPECT_TRUE(f.pge);
  EXPECT_TRUE(f.pat);
  EXPECT_EQ(f.xcr0_supported, 0x2ffu);
  EXPECT_TRUE(xfeature::valid_xcr0(f.xcr0_supported));
}

TEST(Cpuid, PagingFeaturesFollowTheCpu) {
  const PagingFeatures amd = paging_features(decode_cpu_features(amd_without_gib_pages()));
  EXPECT_FALSE(amd.gib_pages);
  EXPECT_TRUE(amd.nx);
  EXPECT_EQ(amd.phys_bits, 39u);
  const PagingFeatures intel = paging_features(decode_cpu_features(intel_server()));
  EXPECT_TRUE(intel.gib_pages);
  EXPECT_EQ(intel.phys_bits, 46u);
}

TEST(Cpuid, SubLeafIndexIsHonoured) {
  const auto entries = intel_server();
  const CpuidEntry* sub1 = find_cpuid(entries, 7, 1);
  ASSERT_NE(sub1, nullptr);
  EXPECT_EQ(sub1->eax, 0xffffffffu);
  EXPECT_EQ(find_cpuid(entries, 7, 0)->eax, 0u);
  EXPECT_EQ(find_cpuid(entries, 7, 2), nullptr);
  // An entry without the significant-index flag answers every index.
  EXPECT_EQ(find_cpuid(entries, 0x80000008, 5)->eax, 0x302eu);
  EXPECT_EQ(find_cpuid(entries, 0x40000000), nullptr);
}

TEST(Cpuid, SupervisorStateIsNotReportedForXcr0) {
  std::vector<CpuidEntry> entries = amd_without_gib_pages();
  for (CpuidEntry& e : entries) {
    if (e.function == 0xd && e.index == 0) e.eax = 0x7 | xfeature::kCetUser;
  }
  EXPECT_EQ(decode_cpu_features(entries).xcr0_supported, 0x7u);
}

TEST(Cpuid, AddressSizesDefaultWithoutLeaf80000008) {
  std::vector<CpuidEntry> entries = amd_without_gib_pages();
  entries.pop_back();
  entries[5].eax = 0x80000001;
  const CpuFeatures f = decode_cpu_features(entries);
  EXPECT_EQ(f.phys_bits, 36u);  // PAE present
  EXPECT_EQ(f.linear_bits, 48u);
}

TEST(Cpuid, UnknownVendorAndEmptyList) {
  const CpuFeatures empty = decode_cpu_features({});
  EXPECT_EQ(empty.vendor, Vendor::kOther);
  EXPECT_FALSE(empty.nx);
  EXPECT_EQ(empty.phys_bits, 32u);
  const std::array<CpuidEntry, 1> other = {CpuidEntry{.function = 0, .ebx = 0x41414141}};
  EXPECT_EQ(decode_cpu_features(other).vendor, Vendor::kOther);
}

TEST(Cpuid, HostSmokeTest) {
  std::array<CpuidEntry, kMaxHostCpuidEntries> buf;
  const std::size_t n = host_cpuid_entries(buf);
  ASSERT_GT(n, 2u);
  ASSERT_LE(n, buf.size());
  const CpuFeatures f = decode_cpu_features(std::span(buf.data(), n));
  EXPECT_GE(f.phys_bits, 32u);
  EXPECT_LE(f.phys_bits, 52u);
  EXPECT_TRUE(f.linear_bits == 48 || f.linear_bits == 57) << f.linear_bits;
  EXPECT_TRUE(f.long_mode);
  EXPECT_TRUE(f.nx);
  EXPECT_TRUE(f.syscall);
  EXPECT_NE(f.vendor, Vendor::kOther);
  EXPECT_EQ(host_cpuid(0).eax, f.max_basic_leaf);
  if (f.osxsave) {
    // The host kernel's XCR0 is a subset of what CPUID says XCR0 may hold.
    std::uint32_t lo, hi;
    asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    const std::uint64_t xcr0 = (std::uint64_t{hi} << 32) | lo;
    EXPECT_EQ(xcr0 & ~f.xcr0_supported, 0u);
    EXPECT_TRUE(xfeature::valid_xcr0(xcr0));
    EXPECT_GE(f.xsave_size_max, 576u);  // legacy area + XSAVE header
  }
}

}  // namespace
}  // namespace dunk::arch
