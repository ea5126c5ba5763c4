// Signal delivery's decisions without a vCPU (core/signal_frame.h): the
// frame a handler gets, byte for byte where the kernel defines it, where it
// goes, when it cannot be written; which signal an exception becomes; when a
// synchronous signal reaches a handler.
#include "core/signal_frame.h"

#include <signal.h>
#include <sys/syscall.h>

#include <gtest/gtest.h>

#include "arch/x86_64/registers.h"
#include "arch/x86_64/vectors.h"
#include "fake_guest.h"

namespace dunk::core {
namespace {

using test::FakeGuest;

constexpr std::size_t kStackSize = 64 * 1024;

PendingSignal pending(int sig, std::uint64_t flags, std::uint64_t mask_before = 0) {
  PendingSignal p{};
  const std::int32_t signo = sig;
  std::memcpy(p.info + offsetof(siginfo_t, si_signo), &signo, 4);
  p.action = abi::Sigaction{0x401000, flags | abi::kSaRestorer | abi::kSaSiginfo, 0x402000, 0};
  p.mask_before = mask_before;
  return p;
}

struct Delivery : ::testing::Test {
  FakeGuest g;
  std::uint64_t stack = g.memory.add(kStackSize);
  alignas(64) std::byte fpu[FakeGuest::kFpuSize];

  void SetUp() override {
    for (std::size_t i = 0; i < sizeof fpu; ++i) fpu[i] = static_cast<std::byte>(i * 7);
    g.frame.rsp = stack + kStackSize - 256;
    g.frame.rip = 0x400500;
    g.frame.rax = 11, g.frame.rbx = 22, g.frame.r12 = 1212;
    g.frame.cs = DUNK_KERNEL_CS, g.frame.ss = DUNK_KERNEL_DS;
    g.frame.rflags = arch::rflags::kFixed1 | arch::rflags::kIF | arch::rflags::kDF | arch::rflags::kTF;
  }
  bool push(const PendingSignal& p) {
    return push_signal_frame(g.memory, g.frame, p, fpu, g.process.fpu, g.signals.altstack);
  }
};

TEST_F(Delivery, TheFrameIsTheKernelsRtSigframeBelowTheRedZone) {
  const TrapFrame before = g.frame;
  PendingSignal p = pending(SIGUSR1, 0, abi::sigbit(SIGUSR2));
  p.trapno = 14, p.error_code = 6, p.cr2 = 0xdead000;
  ASSERT_TRUE(push(p));

  // The handler is called as after a CALL: RSP = 8 mod 16, the XSAVE image
  // 64-byte aligned above the frame, all of it below the red zone.
  EXPECT_EQ(g.frame.rsp % 16, 8u);
  const auto frame = g.memory.object_at<abi::RtSigframe>(g.frame.rsp);
  EXPECT_EQ(frame.uc.mcontext.fpstate % 64, 0u);
  EXPECT_GE(frame.uc.mcontext.fpstate, g.frame.rsp + sizeof(abi::RtSigframe));
  EXPECT_LE(frame.uc.mcontext.fpstate + FakeGuest::kFpuSize + 4, before.rsp - abi::kRedZone);

  // Registers: the handler's arguments, the frame's context.
  EXPECT_EQ(g.frame.rip, 0x401000u);
  EXPECT_EQ(g.frame.rdi, static_cast<std::uint64_t>(SIGUSR1));
  EXPECT_EQ(g.frame.rsi, g.frame.rsp + offsetof(abi::RtSigframe, info));
  EXPECT_EQ(g.frame.rdx, g.frame.rsp + offsetof(abi::RtSigframe, uc));
  EXPECT_EQ(g.frame.rax, 0u);
  EXPECT_EQ(g.frame.rflags, arch::rflags::kFixed1 | arch::rflags::kIF);  // DF, TF (and RF) cleared

  EXPECT_EQ(frame.pretcode, 0x402000u);
  EXPECT_EQ(frame.uc.flags, abi::kUcFpXstate | abi::kUcSigcontextSs | abi::kUcStrictRestoreSs);
  EXPECT_EQ(frame.uc.sigmask, abi::sigbit(SIGUSR2));
  EXPECT_EQ(frame.uc.stack.flags, abi::kSsDisable);
  const abi::Sigcontext& sc = frame.uc.mcontext;
  EXPECT_EQ(sc.rip, before.rip);
  EXPECT_EQ(sc.rsp, before.rsp);
  EXPECT_EQ(sc.rax, 11u);
  EXPECT_EQ(sc.rbx, 22u);
  EXPECT_EQ(sc.r12, 1212u);
  EXPECT_EQ(sc.eflags, before.rflags);
  // The program runs on dunk's ring-0 selectors; its frame shows the user
  // selectors it has natively.
  EXPECT_EQ(sc.cs, DUNK_USER_CS);
  EXPECT_EQ(sc.ss, DUNK_USER_DS);
  EXPECT_EQ(sc.trapno, 14u);
  EXPECT_EQ(sc.err, 6u);
  EXPECT_EQ(sc.cr2, 0xdead000u);
  EXPECT_EQ(sc.oldmask, abi::sigbit(SIGUSR2));
  std::int32_t signo;
  std::memcpy(&signo, frame.info + offsetof(siginfo_t, si_signo), 4);
  EXPECT_EQ(signo, SIGUSR1);

  // The FPU image, marked as XSAVE format, with the magic word after it.
  const auto* image = reinterpret_cast<const std::byte*>(sc.fpstate);
  EXPECT_EQ(std::memcmp(image, fpu, abi::kFpxSwBytesOffset), 0);
  const auto sw = g.memory.object_at<abi::FpxSwBytes>(sc.fpstate + abi::kFpxSwBytesOffset);
  EXPECT_EQ(sw.magic1, abi::kFpXstateMagic1);
  EXPECT_EQ(sw.xstate_size, FakeGuest::kFpuSize);
  EXPECT_EQ(sw.extended_size, FakeGuest::kFpuSize + 4);
  EXPECT_EQ(sw.xfeatures, g.process.fpu.xcr0);
  EXPECT_EQ(g.memory.object_at<std::uint32_t>(sc.fpstate + FakeGuest::kFpuSize), abi::kFpXstateMagic2);
}

TEST_F(Delivery, SaOnstackMovesToTheAlternateStackAndAutodisarmDisarmsIt) {
  const std::uint64_t alt = g.memory.add(kStackSize);
  g.signals.altstack = abi::SignalStack{alt, abi::kSsAutodisarm, 0, kStackSize};
  ASSERT_TRUE(push(pending(SIGSEGV, abi::kSaOnstack)));
  EXPECT_GT(g.frame.rsp, alt);
  EXPECT_LT(g.frame.rsp, alt + kStackSize);
  const auto frame = g.memory.object_at<abi::RtSigframe>(g.frame.rsp);
  EXPECT_EQ(frame.uc.stack.sp, alt);  // the stack as it was
  EXPECT_EQ(frame.uc.stack.flags, abi::kSsAutodisarm);
  EXPECT_EQ(g.signals.altstack.flags, abi::kSsDisable);  // disarmed while the handler runs
  EXPECT_EQ(g.signals.altstack.size, 0u);
}

TEST_F(Delivery, AFrameThatCannotBeWrittenLeavesTheRegistersAlone) {
  const TrapFrame before = g.frame;
  // An alternate stack made read-only.
  const std::uint64_t alt = g.memory.add(kStackSize, /*writable=*/false);
  g.signals.altstack = abi::SignalStack{alt, 0, 0, kStackSize};
  EXPECT_FALSE(push(pending(SIGHUP, abi::kSaOnstack)));
  EXPECT_EQ(std::memcmp(&g.frame, &before, sizeof before), 0);
  EXPECT_EQ(g.signals.altstack.sp, alt);
  // An alternate stack too small for the frame.
  const std::uint64_t tiny = g.memory.add(512);
  g.signals.altstack = abi::SignalStack{tiny, 0, 0, 512};
  EXPECT_FALSE(push(pending(SIGHUP, abi::kSaOnstack)));
  // No SA_RESTORER: there is nothing for the handler to return to.
  PendingSignal p = pending(SIGHUP, 0);
  p.action.flags &= ~abi::kSaRestorer;
  EXPECT_FALSE(push(p));
  EXPECT_EQ(std::memcmp(&g.frame, &before, sizeof before), 0);
}

TEST(ExceptionSignals, EachExceptionBecomesTheSignalLinuxSends) {
  TrapFrame f{};
  f.rip = 0x1234;
  f.cr2 = 0x5000;
  auto of = [&](arch::Vector v, bool mapped = false) {
    f.vector = static_cast<std::uint64_t>(v);
    return signal_for_exception(f, mapped);
  };
  EXPECT_EQ(of(arch::Vector::kDivideError)->sig, SIGFPE);
  EXPECT_EQ(of(arch::Vector::kDivideError)->code, FPE_INTDIV);
  EXPECT_EQ(of(arch::Vector::kDivideError)->address, 0x1234u);
  EXPECT_EQ(of(arch::Vector::kInvalidOpcode)->sig, SIGILL);
  EXPECT_EQ(of(arch::Vector::kInvalidOpcode)->code, ILL_ILLOPN);
  EXPECT_EQ(of(arch::Vector::kBreakpoint)->sig, SIGTRAP);
  EXPECT_EQ(of(arch::Vector::kGeneralProtection)->code, SI_KERNEL);
  EXPECT_EQ(of(arch::Vector::kStackFault)->sig, SIGBUS);
  EXPECT_EQ(of(arch::Vector::kAlignmentCheck)->code, BUS_ADRALN);
  EXPECT_EQ(of(arch::Vector::kPageFault)->code, SEGV_MAPERR);
  EXPECT_EQ(of(arch::Vector::kPageFault, true)->code, SEGV_ACCERR);
  EXPECT_EQ(of(arch::Vector::kPageFault)->address, 0x5000u);
  EXPECT_EQ(of(arch::Vector::kDebug)->sig, SIGTRAP);
  EXPECT_EQ(of(arch::Vector::kOverflow)->sig, SIGSEGV);
  EXPECT_FALSE(of(arch::Vector::kSimdFloatingPoint));
}

TEST(ExceptionSignals, DebugTrapsSayWhatRaisedThem) {
  TrapFrame f{};
  f.vector = static_cast<std::uint64_t>(arch::Vector::kDebug);
  f.rip = 0x401000;
  f.cr2 = arch::dr6::kReset | arch::dr6::kSingleStep;  // the stub's DR6
  EXPECT_EQ(signal_for_exception(f, false)->code, TRAP_TRACE);
  EXPECT_EQ(signal_for_exception(f, false)->address, 0x401000u);
  f.cr2 = arch::dr6::kReset | 0x2;  // DR1 matched
  EXPECT_EQ(signal_for_exception(f, false)->code, TRAP_HWBKPT);
  f.cr2 = arch::dr6::kReset;
  EXPECT_EQ(signal_for_exception(f, false)->code, TRAP_BRKPT);
  f.vector = static_cast<std::uint64_t>(arch::Vector::kOverflow);
  EXPECT_EQ(signal_for_exception(f, false)->sig, SIGSEGV);
}

TEST(ExceptionSignals, PageFaultErrorCodesAreUserFaults) {
  TrapFrame f{};
  f.vector = static_cast<std::uint64_t>(arch::Vector::kPageFault);
  f.error_code = 0x2;  // a write to a page not present, at CPL 0
  f.cr2 = 0x1000;
  EXPECT_EQ(user_page_fault_error(f), 0x6u);
  f.error_code = 0x10;  // an instruction fetch beyond user space
  f.cr2 = 0xffff'ffff'ff60'0000;
  EXPECT_EQ(user_page_fault_error(f), 0x15u);
}

TEST(SynchronousSignals, AHandlerThatIsNotBlockedTakesItWithItsMask) {
  FakeGuest g;
  g.actions.set(SIGSEGV, abi::Sigaction{0x401000, abi::kSaSiginfo, 0x402000, abi::sigbit(SIGUSR1)});
  g.host.thread_mask = abi::sigbit(SIGUSR2);
  PendingSignal p{};
  ASSERT_TRUE(take_synchronous_signal(g.actions, g.host, p, SIGSEGV, SEGV_MAPERR, 0x1000));
  EXPECT_EQ(p.mask_before, abi::sigbit(SIGUSR2));
  EXPECT_EQ(g.host.thread_mask, abi::sigbit(SIGUSR1) | abi::sigbit(SIGUSR2) | abi::sigbit(SIGSEGV));
  EXPECT_EQ(signal_number(p), SIGSEGV);
  std::int32_t code;
  std::memcpy(&code, p.info + offsetof(siginfo_t, si_code), 4);
  EXPECT_EQ(code, SEGV_MAPERR);
  std::uint64_t address;
  std::memcpy(&address, p.info + offsetof(siginfo_t, si_addr), 8);
  EXPECT_EQ(address, 0x1000u);
}

TEST(SynchronousSignals, NoHandlerABlockedSignalOrAnIgnoredOneMeansDeath) {
  FakeGuest g;
  PendingSignal p{};
  EXPECT_FALSE(take_synchronous_signal(g.actions, g.host, p, SIGSEGV, SI_KERNEL, 0));  // SIG_DFL
  g.actions.set(SIGSEGV, abi::Sigaction{abi::kSigIgn, 0, 0, 0});
  EXPECT_FALSE(take_synchronous_signal(g.actions, g.host, p, SIGSEGV, SI_KERNEL, 0));
  g.actions.set(SIGSEGV, abi::Sigaction{0x401000, abi::kSaSiginfo, 0x402000, 0});
  g.host.thread_mask = abi::sigbit(SIGSEGV);
  EXPECT_FALSE(take_synchronous_signal(g.actions, g.host, p, SIGSEGV, SI_KERNEL, 0));
}

TEST(SynchronousSignals, SaResethandAndSaNodefer) {
  FakeGuest g;
  g.actions.set(SIGILL, abi::Sigaction{0x401000, abi::kSaResethand | abi::kSaNodefer, 0x402000, 0});
  PendingSignal p{};
  ASSERT_TRUE(take_synchronous_signal(g.actions, g.host, p, SIGILL, ILL_ILLOPN, 0));
  EXPECT_EQ(p.action.handler, 0x401000u);
  EXPECT_EQ(g.actions.get(SIGILL).handler, abi::kSigDfl);  // reset, on the host too
  ASSERT_EQ(g.host.calls_of(SYS_rt_sigaction).size(), 1u);
  EXPECT_EQ(g.host.thread_mask, 0u);  // SA_NODEFER: SIGILL not blocked in its handler
}

}  // namespace
}  // namespace dunk::core
