#include "arch/x86_64/registers.h"

#include <gtest/gtest.h>

namespace dunk::arch {
namespace {

// The values docs/ARCHITECTURE.md ("The guest's machine") records as accepted
// by KVM_SET_SREGS and run in the nested test VM.
TEST(Registers, ControlRegisterValuesFromTheVerifiedPrototype) {
  EXPECT_EQ(cr0::kPG | cr0::kWP | cr0::kNE | cr0::kET | cr0::kMP | cr0::kPE, 0x80010033u);
  EXPECT_EQ(cr4::kPAE | cr4::kPGE | cr4::kOSFXSR | cr4::kOSXMMEXCPT | cr4::kFSGSBASE | cr4::kOSXSAVE,
            0x506a0u);
  EXPECT_EQ(efer::kSCE | efer::kLME | efer::kLMA | efer::kNXE, 0xd01u);
  EXPECT_EQ(rflags::kFixed1, 0x2u);
}

TEST(Registers, IndividualBitsMatchTheManual) {
  EXPECT_EQ(cr4::kLA57, 1u << 12);
  EXPECT_EQ(cr4::kPCIDE, 1u << 17);
  EXPECT_EQ(cr4::kSMEP, 1u << 20);
  EXPECT_EQ(cr4::kSMAP, 1u << 21);
  EXPECT_EQ(cr4::kPKE, 1u << 22);
  EXPECT_EQ(rflags::kIF, 0x200u);
  EXPECT_EQ(rflags::kAC, 0x40000u);
  EXPECT_EQ(rflags::kIOPL, 0x3000u);
  EXPECT_EQ(xfeature::kPKRU, 0x200u);
  // SFMASK as docs/ARCHITECTURE.md describes it: IF, TF, DF, AC, NT.
  EXPECT_EQ(kSyscallFlagMask, 0x44700u);
}

TEST(Registers, MsrIndices) {
  EXPECT_EQ(msr::kEfer, 0xc0000080u);
  EXPECT_EQ(msr::kStar, 0xc0000081u);
  EXPECT_EQ(msr::kLstar, 0xc0000082u);
  EXPECT_EQ(msr::kCstar, 0xc0000083u);
  EXPECT_EQ(msr::kSfmask, 0xc0000084u);
  EXPECT_EQ(msr::kFsBase, 0xc0000100u);
  EXPECT_EQ(msr::kGsBase, 0xc0000101u);
  EXPECT_EQ(msr::kKernelGsBase, 0xc0000102u);
  EXPECT_EQ(msr::kTscAux, 0xc0000103u);
  EXPECT_EQ(msr::kApicBase, 0x1bu);
  EXPECT_EQ(msr::kPat, 0x277u);
  EXPECT_EQ(msr::kTsc, 0x10u);
}

TEST(Registers, Xcr0Validity) {
  using namespace xfeature;
  EXPECT_TRUE(valid_xcr0(0x207));  // what KVM reports in the nested VM
  EXPECT_FALSE(valid_xcr0(kSSE | kAVX));           // no x87
  EXPECT_FALSE(valid_xcr0(kX87 | kAVX));           // AVX without SSE
  EXPECT_FALSE(valid_xcr0(kX87 | kSSE | kAVX | kOpmask));  // partial AVX-512
  EXPECT_TRUE(valid_xcr0(kX87 | kSSE | kAVX | kAvx512));
  EXPECT_FALSE(valid_xcr0(kX87 | kSSE | kAvx512));  // AVX-512 without AVX
  EXPECT_FALSE(valid_xcr0(kX87 | kSSE | kCetUser));  // supervisor state
  EXPECT_FALSE(valid_xcr0(kX87 | kTileCfg));
  EXPECT_TRUE(valid_xcr0(kX87 | kAmx));
}

TEST(Selector, EncodeDecodeRoundTrip) {
  for (unsigned index = 0; index < 8192; index += 37) {
    for (unsigned rpl = 0; rpl < 4; ++rpl) {
      for (bool ldt : {false, true}) {
        const Selector s = Selector::make(index, rpl, ldt);
        EXPECT_EQ(s.index(), index);
        EXPECT_EQ(s.rpl(), rpl);
        EXPECT_EQ(s.ldt(), ldt);
        EXPECT_EQ(Selector(s.raw()), s);
      }
    }
  }
}

TEST(Selector, KnownLinuxSelectors) {
  EXPECT_EQ(Selector::make(2, 0).raw(), 0x10);
  EXPECT_EQ(Selector::make(6, 3).raw(), 0x33);
  EXPECT_EQ(Selector::make(15, 3).raw(), 0x7b);
  const Selector user_ss(0x2b);
  EXPECT_EQ(user_ss.index(), 5u);
  EXPECT_EQ(user_ss.rpl(), 3u);
  EXPECT_FALSE(user_ss.ldt());
  EXPECT_EQ(user_ss.offset(), 0x28u);
  EXPECT_EQ(Selector(0x0c).ldt(), true);
  EXPECT_EQ(user_ss.with_rpl(0).raw(), 0x28);
}

TEST(Star, LinuxLayoutEncodesAndDecodes) {
  const auto star = make_star(Selector(0x10), Selector(0x18), Selector(0x23), Selector(0x2b),
                              Selector(0x33));
  ASSERT_TRUE(star.has_value());
  // Linux: STAR = (__USER32_CS << 48) | (__KERNEL_CS << 32).
  EXPECT_EQ(*star, 0x0023001000000000u);
  const StarSelectors s = decode_star(*star);
  EXPECT_EQ(s.syscall_cs.raw(), 0x10);
  EXPECT_EQ(s.syscall_ss.raw(), 0x18);
  EXPECT_EQ(s.sysret_cs32.raw(), 0x23);
  EXPECT_EQ(s.sysret_ss.raw(), 0x2b);
  EXPECT_EQ(s.sysret_cs64.raw(), 0x33);
}

TEST(Star, RejectsLayoutsSyscallCannotUse) {
  // Kernel SS not right after kernel CS.
  EXPECT_FALSE(make_star(Selector(0x10), Selector(0x20), Selector(0x23), Selector(0x2b),
                         Selector(0x33)));
  // 64-bit user CS before user SS (the order a naive GDT would use).
  EXPECT_FALSE(make_star(Selector(0x10), Selector(0x18), Selector(0x23), Selector(0x33),
                         Selector(0x2b)));
}

TEST(Star, SyscallClearsRplOfCsOnly) {
  const StarSelectors s = decode_star(encode_star(Selector(0x13), Selector(0x20)));
  EXPECT_EQ(s.syscall_cs.raw(), 0x10);
  EXPECT_EQ(s.syscall_ss.raw(), 0x1b);
  EXPECT_EQ(s.sysret_cs32.raw(), 0x23);
  EXPECT_EQ(s.sysret_cs64.raw(), 0x33);
}

}  // namespace
}  // namespace dunk::arch
