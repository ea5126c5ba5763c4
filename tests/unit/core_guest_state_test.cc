// The one module that converts register state (core/guest_state.h), and the
// XSAVE image view (arch/x86_64/xsave.h).
#include "core/guest_state.h"

#include <gtest/gtest.h>

#include <cstring>

#include "arch/x86_64/registers.h"
#include "arch/x86_64/xsave.h"

namespace dunk::core {
namespace {

// A frame whose every general register holds a different value.
TrapFrame distinct_frame() {
  TrapFrame f{};
  std::uint64_t v = 0x1000;
  for (std::uint64_t* r : {&f.rax, &f.rbx, &f.rcx, &f.rdx, &f.rsi, &f.rdi, &f.rbp, &f.rsp, &f.r8, &f.r9, &f.r10,
                           &f.r11, &f.r12, &f.r13, &f.r14, &f.r15, &f.rip}) {
    *r = v++;
  }
  f.rflags = arch::rflags::kFixed1 | arch::rflags::kIF | arch::rflags::kCF;
  f.cs = DUNK_KERNEL_CS;
  f.ss = DUNK_KERNEL_DS;
  return f;
}

bool same_registers(const TrapFrame& a, const TrapFrame& b) {
  return a.rax == b.rax && a.rbx == b.rbx && a.rcx == b.rcx && a.rdx == b.rdx && a.rsi == b.rsi && a.rdi == b.rdi &&
         a.rbp == b.rbp && a.rsp == b.rsp && a.r8 == b.r8 && a.r9 == b.r9 && a.r10 == b.r10 && a.r11 == b.r11 &&
         a.r12 == b.r12 && a.r13 == b.r13 && a.r14 == b.r14 && a.r15 == b.r15 && a.rip == b.rip &&
         a.rflags == b.rflags && a.cs == b.cs && a.ss == b.ss;
}

TEST(GuestState, KvmRegsRoundTrip) {
  const TrapFrame f = distinct_frame();
  const kvm_regs regs = to_kvm_regs(f);
  EXPECT_EQ(regs.rax, f.rax);
  EXPECT_EQ(regs.r15, f.r15);
  EXPECT_EQ(regs.rip, f.rip);
  EXPECT_EQ(regs.rflags, f.rflags);
  EXPECT_TRUE(same_registers(from_kvm_regs(regs, DUNK_KERNEL_CS, DUNK_KERNEL_DS), f));
}

TEST(GuestState, SigcontextRoundTrip) {
  const TrapFrame f = distinct_frame();
  const abi::Sigcontext sc = to_sigcontext(f);
  EXPECT_EQ(sc.rsp, f.rsp);
  EXPECT_EQ(sc.eflags, f.rflags);
  EXPECT_EQ(sc.cs, DUNK_KERNEL_CS);
  EXPECT_TRUE(same_registers(from_sigcontext(sc), f));
}

TEST(GuestState, RtSigreturnTakesOnlyTheFlagsAFrameMayChange) {
  TrapFrame f = distinct_frame();
  abi::Sigcontext sc = to_sigcontext(distinct_frame());
  sc.rdi = 0xabc;
  sc.eflags = arch::rflags::kIOPL | arch::rflags::kNT | arch::rflags::kAC | arch::rflags::kTF | arch::rflags::kZF;
  f.rflags = arch::rflags::kFixed1 | arch::rflags::kIF;
  restore_from_sigcontext(sc, f);
  EXPECT_EQ(f.rdi, 0xabcu);
  EXPECT_EQ(f.rflags, arch::rflags::kFixed1 | arch::rflags::kIF | arch::rflags::kAC | arch::rflags::kTF |
                          arch::rflags::kZF);
}

TEST(Xsave, TheInitialImageAndTheFormKvmTakes) {
  alignas(64) std::byte image[1024];
  std::memset(image, 0xab, sizeof image);
  arch::xsave::Image view(image);
  view.fill_initial(sizeof image);
  EXPECT_EQ(view.fcw(), 0x37f);
  EXPECT_EQ(view.mxcsr(), 0x1f80u);
  EXPECT_EQ(view.xstate_bv(), arch::xfeature::kX87 | arch::xfeature::kSSE);
  EXPECT_EQ(image[100], std::byte{0});
  const std::uint64_t everything = ~std::uint64_t{0};
  std::memcpy(image + arch::xsave::kXstateBvOffset, &everything, 8);
  std::memcpy(image + arch::xsave::kXcompBvOffset, &everything, 8);
  view.normalize_for(arch::xfeature::kX87 | arch::xfeature::kSSE | arch::xfeature::kAVX);
  EXPECT_EQ(view.xstate_bv(), arch::xfeature::kX87 | arch::xfeature::kSSE | arch::xfeature::kAVX);
  EXPECT_EQ(view.xcomp_bv(), 0u);
}

}  // namespace
}  // namespace dunk::core
