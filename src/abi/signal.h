// Linux's x86-64 signal ABI as a program sees it: the structures rt_sigaction,
// sigaltstack and signal delivery exchange with user space, and the kernel's
// rules for where a signal frame goes and what rt_sigreturn accepts.
//
// Layouts from the kernel's UAPI headers (arch/x86/include/uapi/asm/
// sigcontext.h, ucontext.h, signal.h; include/uapi/asm-generic/signal.h) and
// arch/x86/include/asm/sigframe.h; rules from arch/x86/kernel/signal.c
// (get_sigframe, x64_setup_rt_frame, restore_sigcontext) and kernel/signal.c
// (do_sigaltstack, restore_altstack). Pure: no system calls.
#pragma once

#include <cstddef>
#include <cstdint>

#include "arch/x86_64/registers.h"

namespace dunk::abi {

inline constexpr int kMaxSignal = 64;
inline constexpr int kSigKill = 9;
inline constexpr int kSigStop = 19;

// A signal's bit in a 64-bit sigset_t.
constexpr std::uint64_t sigbit(int sig) noexcept { return std::uint64_t{1} << (sig - 1); }
inline constexpr std::uint64_t kUnblockable = sigbit(kSigKill) | sigbit(kSigStop);

// sa_flags (include/uapi/asm-generic/signal-defs.h; SA_RESTORER from the
// x86 uapi signal.h, which not every libc's <signal.h> has).
inline constexpr std::uint64_t kSaSiginfo = 0x00000004;
inline constexpr std::uint64_t kSaOnstack = 0x08000000;
inline constexpr std::uint64_t kSaRestart = 0x10000000;
inline constexpr std::uint64_t kSaNodefer = 0x40000000;
inline constexpr std::uint64_t kSaResethand = 0x80000000;
inline constexpr std::uint64_t kSaRestorer = 0x04000000;

inline constexpr std::uint64_t kSigDfl = 0;
inline constexpr std::uint64_t kSigIgn = 1;

// The kernel's struct sigaction for rt_sigaction on x86-64: handler, flags,
// restorer, one 64-bit mask.
struct Sigaction {
  std::uint64_t handler = 0;
  std::uint64_t flags = 0;
  std::uint64_t restorer = 0;
  std::uint64_t mask = 0;
};
static_assert(sizeof(Sigaction) == 32);

constexpr bool is_handler(std::uint64_t handler) noexcept { return handler != kSigDfl && handler != kSigIgn; }

// The mask a handler runs with: the interrupted mask, the action's, and the
// signal itself unless SA_NODEFER; never SIGKILL or SIGSTOP.
constexpr std::uint64_t handler_mask(std::uint64_t interrupted, const Sigaction& action, int sig) noexcept {
  const std::uint64_t self = (action.flags & kSaNodefer) != 0 ? 0 : sigbit(sig);
  return (interrupted | action.mask | self) & ~kUnblockable;
}

// stack_t.
struct SignalStack {
  std::uint64_t sp;
  std::int32_t flags;
  std::int32_t pad;
  std::uint64_t size;
};
static_assert(sizeof(SignalStack) == 24);

inline constexpr std::int32_t kSsOnstack = 1;
inline constexpr std::int32_t kSsDisable = 2;
inline constexpr std::int32_t kSsAutodisarm = static_cast<std::int32_t>(1U << 31);
inline constexpr std::uint64_t kMinSigStackSize = 2048;  // MINSIGSTKSZ
inline constexpr SignalStack kNoSignalStack{0, kSsDisable, 0, 0};

// The kernel's on_sig_stack() and sas_ss_flags().
constexpr bool on_signal_stack(const SignalStack& alt, std::uint64_t sp) noexcept {
  if ((alt.flags & kSsAutodisarm) != 0) return false;
  return sp > alt.sp && sp - alt.sp <= alt.size;
}
constexpr std::int32_t signal_stack_state(const SignalStack& alt, std::uint64_t sp) noexcept {
  if (alt.size == 0) return kSsDisable;
  return on_signal_stack(alt, sp) ? kSsOnstack : 0;
}

// What sigaltstack(new, old) does to the thread's alternate stack `alt`
// with the caller's stack pointer `sp` (do_sigaltstack): 0, or the negative
// errno. `want` is the new stack when given.
long change_signal_stack(SignalStack& alt, const SignalStack* want, std::uint64_t sp) noexcept;
// What sigaltstack reports as the old stack.
constexpr SignalStack reported_signal_stack(const SignalStack& alt, std::uint64_t sp) noexcept {
  return SignalStack{alt.sp, signal_stack_state(alt, sp) | (alt.flags & kSsAutodisarm), 0, alt.size};
}

// struct sigcontext, 64-bit.
struct Sigcontext {
  std::uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
  std::uint64_t rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip;
  std::uint64_t eflags;
  std::uint16_t cs, gs, fs, ss;
  std::uint64_t err, trapno, oldmask, cr2;
  std::uint64_t fpstate;  // pointer to the XSAVE image, or 0
  std::uint64_t reserved1[8];
};
static_assert(sizeof(Sigcontext) == 256);

// struct ucontext and its uc_flags.
struct Ucontext {
  std::uint64_t flags;
  std::uint64_t link;
  SignalStack stack;
  Sigcontext mcontext;
  std::uint64_t sigmask;
};
static_assert(sizeof(Ucontext) == 304);
inline constexpr std::uint64_t kUcFpXstate = 0x1;
inline constexpr std::uint64_t kUcSigcontextSs = 0x2;
inline constexpr std::uint64_t kUcStrictRestoreSs = 0x4;

inline constexpr std::size_t kSiginfoSize = 128;

// struct rt_sigframe: the return address the handler's RET pops
// (sa_restorer), the context, the siginfo. The XSAVE image lies above it,
// 64-byte aligned.
struct RtSigframe {
  std::uint64_t pretcode;
  Ucontext uc;
  std::uint8_t info[kSiginfoSize];
};
static_assert(sizeof(RtSigframe) == 440);

// The software-reserved words of the FXSAVE region that mark an XSAVE-format
// image in a signal frame (struct _fpx_sw_bytes), and the magic word after
// the image.
inline constexpr std::uint32_t kFpXstateMagic1 = 0x46505853;
inline constexpr std::uint32_t kFpXstateMagic2 = 0x46505845;
inline constexpr std::size_t kFpxSwBytesOffset = 464;
struct FpxSwBytes {
  std::uint32_t magic1;
  std::uint32_t extended_size;
  std::uint64_t xfeatures;
  std::uint32_t xstate_size;
  std::uint32_t padding[7];
};
static_assert(sizeof(FpxSwBytes) == 48);

// The 128 bytes below RSP that a signal frame must not overwrite.
inline constexpr std::uint64_t kRedZone = 128;

// Where a handler's frame goes (get_sigframe): below the red zone on the
// interrupted stack, or at the top of the alternate stack for an SA_ONSTACK
// action not already on it; the XSAVE image 64-byte aligned above the
// rt_sigframe, which leaves RSP = 8 mod 16 at the handler's first
// instruction, as after a CALL.
struct SigframePlacement {
  std::uint64_t frame = 0;    // the rt_sigframe (the handler's RSP)
  std::uint64_t fpstate = 0;  // the XSAVE image
  bool entering_altstack = false;
  // False when a frame on the alternate stack would not fit in it: the
  // kernel then forces SIGSEGV instead of delivering.
  bool fits = true;
};
SigframePlacement place_sigframe(std::uint64_t sp, std::uint64_t action_flags, const SignalStack& alt,
                                 std::size_t xsave_size) noexcept;

// The RFLAGS bits rt_sigreturn takes from the frame (the kernel's FIX_EFLAGS:
// the arithmetic flags, TF, DF, AC, RF).
inline constexpr std::uint64_t kRestorableFlags =
    arch::rflags::kAC | arch::rflags::kOF | arch::rflags::kDF | arch::rflags::kTF | arch::rflags::kSF |
    arch::rflags::kZF | arch::rflags::kAF | arch::rflags::kPF | arch::rflags::kCF | arch::rflags::kRF;

// Whether rt_sigreturn may install the alternate stack a frame recorded
// (restore_altstack goes through do_sigaltstack's checks; a frame that fails
// them is a bad frame).
bool restorable_signal_stack(const SignalStack& current, const SignalStack& want, std::uint64_t sp) noexcept;

}  // namespace dunk::abi
