#include "core/signal_frame.h"

#include <signal.h>
#include <sys/syscall.h>

#include <cstring>

#include "arch/x86_64/paging.h"
#include "arch/x86_64/registers.h"
#include "arch/x86_64/vectors.h"
#include "core/guest_state.h"

namespace dunk::core {
namespace {

void fill_siginfo(std::uint8_t (&info)[abi::kSiginfoSize], int sig, int code, std::uint64_t address) noexcept {
  std::memset(info, 0, sizeof info);
  const std::int32_t signo = sig, errno_value = 0, code_value = code;
  std::memcpy(info + offsetof(siginfo_t, si_signo), &signo, 4);
  std::memcpy(info + offsetof(siginfo_t, si_errno), &errno_value, 4);
  std::memcpy(info + offsetof(siginfo_t, si_code), &code_value, 4);
  std::memcpy(info + offsetof(siginfo_t, si_addr), &address, 8);
}

}  // namespace

std::optional<ExceptionSignal> signal_for_exception(const TrapFrame& f, bool host_mapped) noexcept {
  using arch::Vector;
  switch (static_cast<Vector>(f.vector)) {
    case Vector::kDivideError:
      return ExceptionSignal{SIGFPE, FPE_INTDIV, f.rip};
    case Vector::kDebug: {
      // The entry stub saves DR6 in the frame's CR2 slot for #DB. si_code
      // as the kernel's get_si_code: a single step, a hardware breakpoint,
      // or else a breakpoint.
      const std::uint64_t dr6 = f.cr2;
      const int code = (dr6 & arch::dr6::kSingleStep) != 0 ? TRAP_TRACE
                       : (dr6 & arch::dr6::kBreakpoints) != 0 ? TRAP_HWBKPT
                                                               : TRAP_BRKPT;
      return ExceptionSignal{SIGTRAP, code, f.rip};
    }
    case Vector::kBreakpoint:
      return ExceptionSignal{SIGTRAP, SI_KERNEL, 0};
    case Vector::kOverflow:
      return ExceptionSignal{SIGSEGV, SI_KERNEL, 0};
    case Vector::kInvalidOpcode:
      return ExceptionSignal{SIGILL, ILL_ILLOPN, f.rip};
    case Vector::kGeneralProtection:
      return ExceptionSignal{SIGSEGV, SI_KERNEL, 0};
    case Vector::kStackFault:
      return ExceptionSignal{SIGBUS, SI_KERNEL, 0};
    case Vector::kAlignmentCheck:
      return ExceptionSignal{SIGBUS, BUS_ADRALN, f.cr2};
    case Vector::kPageFault:
      return ExceptionSignal{SIGSEGV, host_mapped ? SEGV_ACCERR : SEGV_MAPERR, f.cr2};
    default:
      return std::nullopt;
  }
}

std::uint64_t user_page_fault_error(const TrapFrame& f) noexcept {
  constexpr std::uint64_t kTaskSizeMax = (std::uint64_t{1} << 47) - arch::kPageSize4K;
  arch::PageFaultError e = arch::decode_page_fault_error(f.error_code);
  e.user = true;
  if (f.cr2 >= kTaskSizeMax) e.present = true;
  return arch::encode_page_fault_error(e);
}

bool take_synchronous_signal(SignalTable& actions, HostKernel& host, PendingSignal& p, int sig, int code,
                             std::uint64_t address) noexcept {
  const abi::Sigaction action = actions.get(sig);
  if (!abi::is_handler(action.handler)) return false;
  std::uint64_t mask = 0;
  host.call(SYS_rt_sigprocmask, SIG_BLOCK, 0, reinterpret_cast<long>(&mask), 8);
  if ((mask & abi::sigbit(sig)) != 0) return false;
  if ((action.flags & abi::kSaResethand) != 0) {
    const abi::Sigaction dfl{};
    actions.set(sig, dfl);
    host.call(SYS_rt_sigaction, sig, reinterpret_cast<long>(&dfl), 0, 8);
  }
  const std::uint64_t during = abi::handler_mask(mask, action, sig);
  host.call(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&during), 0, 8);
  fill_siginfo(p.info, sig, code, address);
  p.action = action;
  p.mask_before = mask;
  p.trapno = p.error_code = p.cr2 = 0;
  return true;
}

bool push_signal_frame(GuestMemory& memory, TrapFrame& f, const PendingSignal& p, const std::byte* fpu,
                       const FpuFormat& format, abi::SignalStack& alt) noexcept {
  std::int32_t sig;
  std::memcpy(&sig, p.info + offsetof(siginfo_t, si_signo), sizeof sig);
  const abi::SigframePlacement at = abi::place_sigframe(f.rsp, p.action.flags, alt, format.size);
  if (!at.fits || (p.action.flags & abi::kSaRestorer) == 0) return false;

  abi::RtSigframe frame{};
  frame.pretcode = p.action.restorer;
  frame.uc.flags = abi::kUcFpXstate | abi::kUcSigcontextSs | abi::kUcStrictRestoreSs;
  frame.uc.stack = alt;
  abi::Sigcontext& sc = frame.uc.mcontext;
  sc = to_sigcontext(f);
  // The program runs at CPL 0 on dunk's selectors; its frames show the
  // user selectors it would have natively (rt_sigreturn maps them back).
  // At CPL 0 its SS may also be the null selector: in 64-bit mode an
  // interrupt or exception that comes from ring 3 loads it (a ring-3 run of
  // the privileged API that an event ended leaves it so until the next
  // system call), and ring-0 code may load it itself. Natively SS is always
  // the user data segment; a null one in the frame would make the frame's
  // own rt_sigreturn a bad frame (UC_STRICT_RESTORE_SS).
  if (f.cs == DUNK_KERNEL_CS) sc.cs = DUNK_USER_CS;
  if (f.ss == DUNK_KERNEL_DS || (f.cs == DUNK_KERNEL_CS && (f.ss & ~std::uint64_t{3}) == 0)) sc.ss = DUNK_USER_DS;
  sc.err = p.error_code, sc.trapno = p.trapno, sc.cr2 = p.cr2;
  sc.oldmask = p.mask_before;
  sc.fpstate = at.fpstate;
  frame.uc.sigmask = p.mask_before;
  std::memcpy(frame.info, p.info, sizeof frame.info);

  // The FPU image with the words that mark it as XSAVE-format.
  const abi::FpxSwBytes sw{abi::kFpXstateMagic1,
                           static_cast<std::uint32_t>(format.size + sizeof abi::kFpXstateMagic2), format.xcr0,
                           static_cast<std::uint32_t>(format.size), {}};
  const bool written = memory.write(at.fpstate, fpu, format.size) &&
                       memory.write(at.fpstate + abi::kFpxSwBytesOffset, &sw, sizeof sw) &&
                       memory.write(at.fpstate + format.size, &abi::kFpXstateMagic2, sizeof abi::kFpXstateMagic2) &&
                       memory.write(at.frame, &frame, sizeof frame);
  if (!written) return false;
  if (at.entering_altstack && (alt.flags & abi::kSsAutodisarm) != 0) alt = abi::SignalStack{0, abi::kSsDisable, 0, 0};

  f.rdi = static_cast<std::uint64_t>(sig);
  f.rsi = at.frame + offsetof(abi::RtSigframe, info);
  f.rdx = at.frame + offsetof(abi::RtSigframe, uc);
  f.rax = 0;
  f.rip = p.action.handler;
  f.rsp = at.frame;
  f.rflags &= ~(arch::rflags::kDF | arch::rflags::kRF | arch::rflags::kTF);
  return true;
}

}  // namespace dunk::core
