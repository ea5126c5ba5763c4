// Linux's signal rules as abi/signal.h encodes them.
#include "abi/signal.h"

#include <signal.h>

#include <gtest/gtest.h>

namespace dunk::abi {
namespace {

TEST(SignalAbi, LayoutsMatchTheKernels) {
  EXPECT_EQ(sizeof(Sigaction), 32u);
  EXPECT_EQ(offsetof(Ucontext, mcontext), 40u);
  EXPECT_EQ(offsetof(Ucontext, sigmask), 296u);
  EXPECT_EQ(offsetof(RtSigframe, info), 312u);
  EXPECT_EQ(offsetof(Sigcontext, rip), 128u);
  EXPECT_EQ(offsetof(Sigcontext, cs), 144u);
  EXPECT_EQ(offsetof(Sigcontext, fpstate), 184u);
  // glibc's view of the same structures.
  EXPECT_EQ(offsetof(ucontext_t, uc_mcontext), offsetof(Ucontext, mcontext));
  EXPECT_EQ(offsetof(ucontext_t, uc_stack), offsetof(Ucontext, stack));
  EXPECT_EQ(sizeof(stack_t), sizeof(SignalStack));
  EXPECT_EQ(SS_ONSTACK, kSsOnstack);
  EXPECT_EQ(SS_DISABLE, kSsDisable);
  EXPECT_EQ(static_cast<std::uint64_t>(SA_ONSTACK), kSaOnstack);
  EXPECT_EQ(static_cast<std::uint64_t>(SA_RESETHAND), kSaResethand);
  EXPECT_EQ(static_cast<std::uint64_t>(SA_NODEFER), kSaNodefer);
  EXPECT_EQ(static_cast<std::uint64_t>(SA_SIGINFO), kSaSiginfo);
}

TEST(SignalAbi, AHandlersMaskAddsItsOwnAndItselfButNeverKillOrStop) {
  const Sigaction plain{0x1000, 0, 0, sigbit(SIGUSR2) | sigbit(SIGKILL)};
  EXPECT_EQ(handler_mask(sigbit(SIGHUP), plain, SIGUSR1), sigbit(SIGHUP) | sigbit(SIGUSR2) | sigbit(SIGUSR1));
  const Sigaction nodefer{0x1000, kSaNodefer, 0, 0};
  EXPECT_EQ(handler_mask(sigbit(SIGSTOP), nodefer, SIGUSR1), 0u);
}

TEST(SignalAbi, ChangingTheAlternateStack) {
  SignalStack alt = kNoSignalStack;
  const SignalStack want{0x10000, 0, 0, 8192};
  EXPECT_EQ(change_signal_stack(alt, &want, 0x7fff0000), 0);
  EXPECT_EQ(alt.sp, 0x10000u);
  EXPECT_EQ(signal_stack_state(alt, 0x7fff0000), 0);
  EXPECT_EQ(signal_stack_state(alt, 0x11000), kSsOnstack);
  EXPECT_EQ(change_signal_stack(alt, &want, 0x11000), -EPERM);
  const SignalStack disable{0x1234, kSsDisable, 0, 5};
  EXPECT_EQ(change_signal_stack(alt, &disable, 0x7fff0000), 0);
  EXPECT_EQ(alt.sp, 0u);
  EXPECT_EQ(alt.size, 0u);
  EXPECT_EQ(signal_stack_state(alt, 0), kSsDisable);
  const SignalStack small{0x10000, 0, 0, kMinSigStackSize - 1};
  EXPECT_EQ(change_signal_stack(alt, &small, 0x7fff0000), -ENOMEM);
  const SignalStack odd{0x10000, 4, 0, 8192};
  EXPECT_EQ(change_signal_stack(alt, &odd, 0x7fff0000), -EINVAL);
  EXPECT_EQ(change_signal_stack(alt, nullptr, 0), 0);
}

TEST(SignalAbi, FramePlacement) {
  const SignalStack none = kNoSignalStack;
  const SigframePlacement p = place_sigframe(0x7fff'1000, 0, none, 832);
  EXPECT_FALSE(p.entering_altstack);
  EXPECT_TRUE(p.fits);
  EXPECT_EQ(p.fpstate % 64, 0u);
  EXPECT_LE(p.fpstate + 832 + 4, 0x7fff'1000u - kRedZone);
  EXPECT_EQ(p.frame % 16, 8u);
  EXPECT_LE(p.frame + sizeof(RtSigframe), p.fpstate);

  const SignalStack alt{0x10000, 0, 0, 0x4000};
  const SigframePlacement on = place_sigframe(0x7fff'1000, kSaOnstack, alt, 832);
  EXPECT_TRUE(on.entering_altstack);
  EXPECT_TRUE(on.fits);
  EXPECT_LT(on.fpstate + 832, 0x14000u + 1);
  // Already on the alternate stack: the frame goes below, and must still fit.
  const SigframePlacement nested = place_sigframe(0x10000 + 1200, kSaOnstack, alt, 832);
  EXPECT_FALSE(nested.entering_altstack);
  EXPECT_FALSE(nested.fits);
}

TEST(SignalAbi, WhatRtSigreturnMayInstall) {
  const SignalStack alt{0x10000, 0, 0, 8192};
  EXPECT_TRUE(restorable_signal_stack(alt, alt, 0x11000));  // unchanged: always
  const SignalStack other{0x20000, 0, 0, 8192};
  EXPECT_TRUE(restorable_signal_stack(alt, other, 0x7fff0000));
  EXPECT_FALSE(restorable_signal_stack(alt, other, 0x11000));  // on the current one
  EXPECT_FALSE(restorable_signal_stack(alt, SignalStack{0x20000, 0, 0, 10}, 0x7fff0000));
  EXPECT_TRUE(restorable_signal_stack(alt, SignalStack{0, kSsDisable, 0, 0}, 0x7fff0000));
  EXPECT_FALSE(restorable_signal_stack(alt, SignalStack{0x20000, 9, 0, 8192}, 0x7fff0000));
}

}  // namespace
}  // namespace dunk::abi
