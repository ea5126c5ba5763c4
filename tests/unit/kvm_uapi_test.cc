// dunk's view of KVM structures must match the kernel's (C) layout.
#include <gtest/gtest.h>

#include <cstddef>

#include "kvm/kvm.h"
#include "kvm/uapi.h"

namespace dunk::kvm {
namespace {

TEST(KvmUapi, CpuidAndMsrBuffersMatchTheCLayout) {
  EXPECT_EQ(offsetof(CpuidBuffer, entries), dunk_kvm_cpuid2_entries_offset);
  EXPECT_EQ(dunk_kvm_msrs_entries_offset, 8u);
  EXPECT_EQ(dunk_kvm_xsave_size, 4096u);
}

TEST(KvmUapi, IoctlNumbersEncodeTheCSizes) {
  // _IOC_SIZE is bits 29:16 of the number (asm-generic/ioctl.h).
  auto size_of = [](unsigned long nr) { return (nr >> 16) & 0x3fff; };
  EXPECT_EQ(size_of(dunk_kvm_get_supported_cpuid), 8u);
  EXPECT_EQ(size_of(dunk_kvm_set_cpuid2), 8u);
  EXPECT_EQ(size_of(dunk_kvm_get_msrs), 8u);
  EXPECT_EQ(size_of(dunk_kvm_set_msrs), 8u);
  EXPECT_EQ(size_of(dunk_kvm_get_xsave), 4096u);
  EXPECT_EQ(size_of(dunk_kvm_set_xsave), 4096u);
}

}  // namespace
}  // namespace dunk::kvm
