// The monitor's half of signals in VM mode (see signals.h): delivering the
// signals the host handler queued, turning guest exceptions into signals
// for the program's handlers, and the system calls that manage signal
// state on the guest's behalf (rt_sigaction, rt_sigreturn, sigaltstack).
//
// Frames are laid out as Linux lays them out (arch/x86/kernel/signal.c,
// get_sigframe and x64_setup_rt_frame): below the 128-byte red zone or at
// the top of the alternate stack, the XSAVE image 64-byte aligned, the
// rt_sigframe below it with RSP = 8 mod 16 at the handler's first
// instruction, as after a CALL.
#include <signal.h>
#include <sys/syscall.h>

#include <cstring>

#include "arch/x86_64/registers.h"
#include "arch/x86_64/vectors.h"
#include "base/proc_maps.h"
#include "base/syscall.h"
#include "core/monitor.h"
#include "core/text.h"

namespace dunk::core {
namespace {

using guest::TrapFrame;

constexpr std::uint64_t bit(int sig) noexcept { return std::uint64_t{1} << (sig - 1); }
constexpr std::uint64_t kUnblockable = bit(SIGKILL) | bit(SIGSTOP);
constexpr std::uint64_t kRedZone = 128;
constexpr std::uint64_t kMinSigStackSize = 2048;  // MINSIGSTKSZ
constexpr std::int32_t kSsAutodisarm = static_cast<std::int32_t>(1U << 31);

// uc_flags (arch/x86/include/uapi/asm/ucontext.h).
constexpr std::uint64_t kUcFpXstate = 0x1, kUcSigcontextSs = 0x2, kUcStrictRestoreSs = 0x4;
// The software-reserved words of the FXSAVE area that tell a reader the
// image is an XSAVE one (arch/x86/include/uapi/asm/sigcontext.h,
// struct _fpx_sw_bytes), and the magic word after the image.
constexpr std::uint32_t kFpXstateMagic1 = 0x46505853, kFpXstateMagic2 = 0x46505845;
constexpr std::size_t kSwBytesOffset = 464;
struct FpxSwBytes {
  std::uint32_t magic1;
  std::uint32_t extended_size;
  std::uint64_t xfeatures;
  std::uint32_t xstate_size;
  std::uint32_t padding[7];
};
static_assert(sizeof(FpxSwBytes) == 48);

// The flags rt_sigreturn takes from the frame (the kernel's FIX_EFLAGS).
constexpr std::uint64_t kRestorableFlags = arch::rflags::kAC | arch::rflags::kOF | arch::rflags::kDF |
                                           arch::rflags::kTF | arch::rflags::kSF | arch::rflags::kZF |
                                           arch::rflags::kAF | arch::rflags::kPF | arch::rflags::kCF |
                                           arch::rflags::kRF;

constexpr std::size_t kXstateBvOffset = 512, kXcompBvOffset = 520;

bool is_handler(std::uint64_t handler) noexcept {
  return handler != reinterpret_cast<std::uint64_t>(SIG_DFL) && handler != reinterpret_cast<std::uint64_t>(SIG_IGN);
}

std::uint64_t thread_mask() noexcept {
  std::uint64_t mask = 0;
  sys::call(SYS_rt_sigprocmask, SIG_BLOCK, 0, reinterpret_cast<long>(&mask), 8);
  return mask;
}

void set_thread_mask(std::uint64_t mask) noexcept {
  mask &= ~kUnblockable;
  sys::call(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&mask), 0, 8);
}

// The kernel's on_sig_stack() and sas_ss_flags().
bool on_altstack(const KernelStack& alt, std::uint64_t sp) noexcept {
  if ((alt.flags & kSsAutodisarm) != 0) return false;
  return sp > alt.sp && sp - alt.sp <= alt.size;
}
std::int32_t altstack_state(const KernelStack& alt, std::uint64_t sp) noexcept {
  if (alt.size == 0) return SS_DISABLE;
  return on_altstack(alt, sp) ? SS_ONSTACK : 0;
}

// Whether any host mapping covers `address` (SEGV_ACCERR rather than
// SEGV_MAPERR).
bool host_mapped(std::uint64_t address) noexcept {
  char buffer[MapsReader::kFullLineBuffer];
  MapsReader reader(buffer, sizeof buffer);
  if (!reader.open()) return false;
  MapEntry entry;
  while (reader.next(entry)) {
    if (entry.contains(Hva(address))) return true;
  }
  return false;
}

void fill_fault_info(PendingSignal& p, int sig, int code, std::uint64_t address) noexcept {
  std::memset(p.info, 0, sizeof p.info);
  const std::int32_t signo = sig, errno_value = 0, code_value = code;
  std::memcpy(p.info + offsetof(siginfo_t, si_signo), &signo, 4);
  std::memcpy(p.info + offsetof(siginfo_t, si_errno), &errno_value, 4);
  std::memcpy(p.info + offsetof(siginfo_t, si_code), &code_value, 4);
  std::memcpy(p.info + offsetof(siginfo_t, si_addr), &address, 8);
}

}  // namespace

bool Monitor::signals_pending() const noexcept {
  return !cpu_.signals.empty() || cpu_.signals.deferred.load(std::memory_order_relaxed) != 0;
}

void Monitor::deliver_pending() noexcept {
  CpuSignals& s = cpu_.signals;
  if (!signals_pending()) {
    if (s.stepping) stop_stepping();
    return;
  }
  if (resume_frame_ != nullptr) {
    if (s.stepping) stop_stepping();
    // Code the program runs in ring 3 (the privileged API) is not where its
    // handlers run: the signal waits until the guest is in ring 0 again. Nor
    // is the program's trap or interrupt handler (dunk/traps.h,
    // dunk/interrupts.h), which runs on a trap stack with interrupts off and
    // must return through dunk's dispatch: the signal waits until it has.
    if ((resume_frame_->cs & 3) != 0 || in_program_trap_handler()) return;
    deliver_signals(*resume_frame_, nullptr);
    return;
  }
  deliver_at_vcpu(nullptr, 0);
}

bool Monitor::event_in_delivery() noexcept {
  kvm_vcpu_events events{};
  if (!cpu_.vcpu.get_events(events)) fatal("cannot read the guest's pending events for a signal");
  return events.exception.injected != 0 || events.exception.pending != 0 || events.interrupt.injected != 0 ||
         events.nmi.injected != 0;
}

void Monitor::stop_stepping() noexcept {
  if (!cpu_.vcpu.set_single_step(false)) fatal("cannot stop single-stepping the guest");
  cpu_.signals.stepping = false;
}

void Monitor::deliver_at_vcpu(const PendingSignal* synchronous, unsigned rewind) noexcept {
  kvm_regs r{};
  kvm_sregs sr{};
  if (!cpu_.vcpu.get_regs(r) || !cpu_.vcpu.get_sregs(sr)) fatal("cannot read the guest's registers for a signal");
  if (synchronous == nullptr && ((sr.cs.selector & 3) != 0 || in_program_trap_handler())) {
    // Ring 3 or a trap handler (see deliver_pending): wait for the next exit
    // from ring 0 outside a handler.
    if (cpu_.signals.stepping) stop_stepping();
    return;
  }
  if (synchronous == nullptr && (in_dunk_code(r.rip) || event_in_delivery())) {
    // Between instructions of dunk's entry code, which is on its way to an
    // exit or back to the program: step until either happens, so that the
    // handler interrupts the program at one of its own instructions. Or
    // KVM_RUN returned in the middle of delivering an exception or an
    // interrupt, which KVM completes on the next entry with the RIP it then
    // finds: a signal frame built now would become the event's return
    // address. Step: the event is taken first, then dunk's entry code runs.
    if (!cpu_.signals.stepping) {
      // Not into an interrupt's handler, where the program would be
      // interrupted at an instruction of its handler instead.
      if (!cpu_.vcpu.set_single_step(true, machine_.step_blocks_irq())) {
        fatal("cannot single-step the guest to deliver a signal");
      }
      cpu_.signals.stepping = true;
    }
    return;
  }
  if (cpu_.signals.stepping) stop_stepping();
  TrapFrame f{};
  f.rax = r.rax, f.rbx = r.rbx, f.rcx = r.rcx, f.rdx = r.rdx, f.rsi = r.rsi, f.rdi = r.rdi;
  f.rbp = r.rbp, f.rsp = r.rsp, f.r8 = r.r8, f.r9 = r.r9, f.r10 = r.r10, f.r11 = r.r11;
  f.r12 = r.r12, f.r13 = r.r13, f.r14 = r.r14, f.r15 = r.r15;
  f.rip = r.rip, f.rflags = r.rflags, f.cs = sr.cs.selector, f.ss = sr.ss.selector;
  f.rip -= rewind;
  deliver_signals(f, synchronous);
  r.rax = f.rax, r.rdi = f.rdi, r.rsi = f.rsi, r.rdx = f.rdx;
  r.rip = f.rip, r.rsp = f.rsp, r.rflags = f.rflags;
  if (!cpu_.vcpu.set_regs(r)) fatal("cannot point the guest at a signal handler");
  // With local APICs, KVM serves HLT itself: a vCPU halted there stays
  // halted, whatever its registers say, until an interrupt comes. The
  // handler must run now (and the HLT is over, as an interrupt would end it).
  if (machine_.interrupts() && !cpu_.vcpu.set_mp_state(KVM_MP_STATE_RUNNABLE)) {
    fatal("cannot wake the halted guest for a signal");
  }
}

void Monitor::deliver_signals(TrapFrame& f, const PendingSignal* synchronous) noexcept {
  CpuSignals& s = cpu_.signals;
  const std::size_t size = machine_.xsave_size();
  // The interrupted code's FPU state goes into the first frame; a handler
  // that is itself interrupted before its first instruction had the
  // initial state.
  if (!cpu_.vcpu.get_xsave(cpu_.xsave, size)) fatal("KVM_GET_XSAVE failed while delivering a signal");
  bool delivered = false;
  auto deliver = [&](const PendingSignal& p) {
    build_signal_frame(f, p, delivered ? machine_.fpu_init_image() : cpu_.xsave);
    delivered = true;
  };
  if (synchronous != nullptr) deliver(*synchronous);
  // Deferred signals come back from the kernel once unblocked; a few rounds
  // at most, then the guest runs and the next exit continues.
  for (int round = 0; round < 4; ++round) {
    while (!s.empty()) {
      const std::uint32_t head = s.head.load(std::memory_order_relaxed);
      deliver(s.queue[head % CpuSignals::kQueue]);
      s.head.store(head + 1, std::memory_order_release);
    }
    std::uint64_t deferred = s.deferred.exchange(0, std::memory_order_relaxed);
    if (deferred == 0) break;
    sys::call(SYS_rt_sigprocmask, SIG_UNBLOCK, reinterpret_cast<long>(&deferred), 0, 8);
  }
  if (delivered && !cpu_.vcpu.set_xsave(machine_.fpu_init_image())) {
    fatal("KVM_SET_XSAVE failed while delivering a signal");
  }
}

void Monitor::build_signal_frame(TrapFrame& f, const PendingSignal& p, const std::byte* fpu) noexcept {
  std::int32_t sig;
  std::memcpy(&sig, p.info + offsetof(siginfo_t, si_signo), sizeof sig);
  KernelStack& alt = cpu_.signals.altstack;
  const KernelStack alt_before = alt;
  const bool nested_on_altstack = on_altstack(alt, f.rsp);
  std::uint64_t sp = f.rsp - kRedZone;
  bool entering_altstack = false;
  if ((p.action.flags & SA_ONSTACK) != 0 && altstack_state(alt, sp) == 0) {
    sp = alt.sp + alt.size;
    entering_altstack = true;
  }
  const std::size_t xsave_size = machine_.xsave_size();
  sp = (sp - (xsave_size + sizeof kFpXstateMagic2)) & ~std::uint64_t{63};
  const std::uint64_t fpstate = sp;
  sp = ((sp - sizeof(KernelSigframe)) & ~std::uint64_t{15}) - 8;
  const bool fits = !((nested_on_altstack || entering_altstack) && !(sp > alt.sp && sp - alt.sp <= alt.size));

  KernelSigframe frame{};
  frame.pretcode = p.action.restorer;
  frame.uc.flags = kUcFpXstate | kUcSigcontextSs | kUcStrictRestoreSs;
  frame.uc.stack = alt_before;
  KernelSigcontext& sc = frame.uc.mcontext;
  sc.r8 = f.r8, sc.r9 = f.r9, sc.r10 = f.r10, sc.r11 = f.r11;
  sc.r12 = f.r12, sc.r13 = f.r13, sc.r14 = f.r14, sc.r15 = f.r15;
  sc.rdi = f.rdi, sc.rsi = f.rsi, sc.rbp = f.rbp, sc.rbx = f.rbx;
  sc.rdx = f.rdx, sc.rax = f.rax, sc.rcx = f.rcx, sc.rsp = f.rsp, sc.rip = f.rip;
  sc.eflags = f.rflags;
  sc.cs = static_cast<std::uint16_t>(f.cs);
  sc.ss = static_cast<std::uint16_t>(f.ss);
  sc.err = p.error_code, sc.trapno = p.trapno, sc.cr2 = p.cr2;
  sc.oldmask = p.mask_before;
  sc.fpstate = fpstate;
  frame.uc.sigmask = p.mask_before;
  std::memcpy(frame.info, p.info, sizeof frame.info);

  // The FPU image with the words that mark it as XSAVE-format.
  FpxSwBytes sw{kFpXstateMagic1, static_cast<std::uint32_t>(xsave_size + sizeof kFpXstateMagic2), machine_.xcr0(),
                static_cast<std::uint32_t>(xsave_size), {}};
  const bool written = fits && (p.action.flags & 0x04000000 /*SA_RESTORER*/) != 0 &&
                       copy_to_guest(fpstate, fpu, xsave_size) &&
                       copy_to_guest(fpstate + kSwBytesOffset, &sw, sizeof sw) &&
                       copy_to_guest(fpstate + xsave_size, &kFpXstateMagic2, sizeof kFpXstateMagic2) &&
                       copy_to_guest(sp, &frame, sizeof frame);
  if (!written) {
    // What the kernel does when a frame cannot be written (force_sigsegv):
    // the program dies of SIGSEGV.
    die_by_signal(SIGSEGV, nullptr);
  }
  if (entering_altstack && (alt.flags & kSsAutodisarm) != 0) alt = KernelStack{0, SS_DISABLE, 0, 0};

  f.rdi = static_cast<std::uint64_t>(sig);
  f.rsi = sp + offsetof(KernelSigframe, info);
  f.rdx = sp + offsetof(KernelSigframe, uc);
  f.rax = 0;
  f.rip = p.action.handler;
  f.rsp = sp;
  f.rflags &= ~(arch::rflags::kDF | arch::rflags::kRF | arch::rflags::kTF);
  machine_.stats().add(machine_.stats().signals_delivered);
}

bool Monitor::deliver_exception(TrapFrame& f) noexcept {
  using arch::Vector;
  int sig = 0, code = 0;
  std::uint64_t address = 0;
  // As Linux's trap handlers report them (arch/x86/kernel/traps.c, fault.c).
  switch (static_cast<Vector>(f.vector)) {
    case Vector::kDivideError:
      sig = SIGFPE, code = FPE_INTDIV, address = f.rip;
      break;
    case Vector::kBreakpoint:
      sig = SIGTRAP, code = SI_KERNEL;
      break;
    case Vector::kInvalidOpcode:
      sig = SIGILL, code = ILL_ILLOPN, address = f.rip;
      break;
    case Vector::kGeneralProtection:
      sig = SIGSEGV, code = SI_KERNEL;
      break;
    case Vector::kStackFault:
      sig = SIGBUS, code = SI_KERNEL;
      break;
    case Vector::kAlignmentCheck:
      sig = SIGBUS, code = BUS_ADRALN, address = f.cr2;
      break;
    case Vector::kPageFault:
      sig = SIGSEGV, code = host_mapped(f.cr2) ? SEGV_ACCERR : SEGV_MAPERR, address = f.cr2;
      break;
    default:
      return false;  // the native re-execution reports the others
  }
  PendingSignal p{};
  if (!take_synchronous_signal(p, sig, code, address)) return false;
  p.trapno = f.vector;
  p.error_code = f.error_code;
  p.cr2 = f.vector == static_cast<std::uint64_t>(Vector::kPageFault) ? f.cr2 : 0;
  deliver_signals(f, &p);
  return true;
}

bool Monitor::deliver_halt_as_signal() noexcept {
  // HLT in user mode raises #GP: SIGSEGV, SI_KERNEL, at the HLT.
  PendingSignal p{};
  if (!take_synchronous_signal(p, SIGSEGV, SI_KERNEL, 0)) return false;
  p.trapno = static_cast<std::uint64_t>(arch::Vector::kGeneralProtection);
  deliver_at_vcpu(&p, /*rewind=*/1);  // natively the #GP reports the HLT itself
  return true;
}

bool Monitor::take_synchronous_signal(PendingSignal& p, int sig, int code, std::uint64_t address) noexcept {
  // A fault the program cannot handle (no handler, ignored, or blocked)
  // kills it: the caller lets the host CPU repeat the instruction natively.
  SignalTable& table = signal_table();
  const KernelSigaction action = table.get(sig);
  if (!is_handler(action.handler)) return false;
  const std::uint64_t mask = thread_mask();
  if ((mask & bit(sig)) != 0) return false;
  if ((action.flags & SA_RESETHAND) != 0) {
    KernelSigaction dfl{};
    table.set(sig, dfl);
    raw_sigaction(sig, &dfl, nullptr);
  }
  set_thread_mask(mask | action.mask | ((action.flags & SA_NODEFER) != 0 ? 0 : bit(sig)));
  fill_fault_info(p, sig, code, address);
  p.action = action;
  p.mask_before = mask;
  return true;
}

long Monitor::rt_sigaction(TrapFrame& f) noexcept {
  const int sig = static_cast<int>(f.rdi);
  const std::uint64_t act_ptr = f.rsi, old_ptr = f.rdx;
  if (f.r10 != 8 || sig < 1 || sig > kMaxSignal) return -EINVAL;
  if (sig == SIGKILL || sig == SIGSTOP) return forward(f);
  KernelSigaction act{};
  if (act_ptr != 0 && !copy_from_guest(&act, act_ptr, sizeof act)) return -EFAULT;
  SignalTable& table = signal_table();
  LockGuard hold(machine_.signal_lock());
  const KernelSigaction old = table.get(sig);
  if (act_ptr != 0) {
    act.mask &= ~kUnblockable;
    // The table first: a signal arriving in between finds the new action
    // in it whichever host action caught it.
    table.set(sig, act);
    KernelSigaction host = host_action_for(act);
    if (long ret = raw_sigaction(sig, &host, nullptr); ret != 0) {
      table.set(sig, old);
      return ret;
    }
  }
  if (old_ptr != 0 && !copy_to_guest(old_ptr, &old, sizeof old)) return -EFAULT;
  return 0;
}

long Monitor::sigaltstack(TrapFrame& f) noexcept {
  // The kernel's do_sigaltstack, on the guest's alternate stack.
  KernelStack& alt = cpu_.signals.altstack;
  const std::uint64_t new_ptr = f.rdi, old_ptr = f.rsi;
  KernelStack old{alt.sp, altstack_state(alt, f.rsp) | (alt.flags & kSsAutodisarm), 0, alt.size};
  if (new_ptr != 0) {
    KernelStack want{};
    if (!copy_from_guest(&want, new_ptr, sizeof want)) return -EFAULT;
    const std::int32_t mode = want.flags & ~kSsAutodisarm;
    if (on_altstack(alt, f.rsp)) return -EPERM;
    if (mode != SS_DISABLE && mode != SS_ONSTACK && mode != 0) return -EINVAL;
    if (mode == SS_DISABLE) {
      want.sp = 0, want.size = 0;
    } else if (want.size < kMinSigStackSize) {
      return -ENOMEM;
    }
    alt = KernelStack{want.sp, want.flags, 0, want.size};
  }
  if (old_ptr != 0 && !copy_to_guest(old_ptr, &old, sizeof old)) return -EFAULT;
  return 0;
}

long Monitor::rt_sigreturn(TrapFrame& f) noexcept {
  // The handler's RET popped pretcode: the frame starts 8 bytes below RSP.
  KernelSigframe frame;
  const std::uint64_t at = f.rsp - 8;
  if (!copy_from_guest(&frame, at, sizeof frame)) die_by_signal(SIGSEGV, nullptr);
  const KernelSigcontext& sc = frame.uc.mcontext;
  set_thread_mask(frame.uc.sigmask);

  if (sc.fpstate != 0) {
    const std::size_t size = machine_.xsave_size();
    if (!copy_from_guest(cpu_.xsave, sc.fpstate, size)) die_by_signal(SIGSEGV, nullptr);
    std::uint64_t xstate_bv;
    std::memcpy(&xstate_bv, cpu_.xsave + kXstateBvOffset, sizeof xstate_bv);
    xstate_bv &= machine_.xcr0();
    std::memcpy(cpu_.xsave + kXstateBvOffset, &xstate_bv, sizeof xstate_bv);
    std::memset(cpu_.xsave + kXcompBvOffset, 0, 8);
    // An image the CPU would refuse (reserved MXCSR bits, say) is a bad
    // frame: SIGSEGV, as natively.
    if (!cpu_.vcpu.set_xsave(cpu_.xsave)) die_by_signal(SIGSEGV, nullptr);
  } else if (!cpu_.vcpu.set_xsave(machine_.fpu_init_image())) {
    fatal("KVM_SET_XSAVE failed in rt_sigreturn");
  }

  // The alternate stack as the frame recorded it (restore_altstack).
  KernelStack& alt = cpu_.signals.altstack;
  const KernelStack& want = frame.uc.stack;
  if (want.sp != alt.sp || want.size != alt.size || want.flags != alt.flags) {
    const std::int32_t mode = want.flags & ~kSsAutodisarm;
    if (on_altstack(alt, sc.rsp) || (mode != SS_DISABLE && mode != 0 && mode != SS_ONSTACK) ||
        (mode != SS_DISABLE && want.size < kMinSigStackSize)) {
      die_by_signal(SIGSEGV, nullptr);
    }
    alt = mode == SS_DISABLE ? KernelStack{0, want.flags, 0, 0} : KernelStack{want.sp, want.flags, 0, want.size};
  }

  f.r8 = sc.r8, f.r9 = sc.r9, f.r10 = sc.r10, f.r11 = sc.r11;
  f.r12 = sc.r12, f.r13 = sc.r13, f.r14 = sc.r14, f.r15 = sc.r15;
  f.rdi = sc.rdi, f.rsi = sc.rsi, f.rbp = sc.rbp, f.rbx = sc.rbx;
  f.rdx = sc.rdx, f.rcx = sc.rcx, f.rsp = sc.rsp, f.rip = sc.rip;
  f.rflags = (f.rflags & ~kRestorableFlags) | (sc.eflags & kRestorableFlags);
  return static_cast<long>(sc.rax);
}

void Monitor::hand_altstack_to_host() noexcept {
  const KernelStack& alt = cpu_.signals.altstack;
  if (alt.size == 0) return;
  sys::call(SYS_sigaltstack, reinterpret_cast<long>(&alt), 0);
}

void take_altstack_from_host(Cpu& cpu) noexcept {
  KernelStack host{};
  if (sys::call(SYS_sigaltstack, 0, reinterpret_cast<long>(&host)) != 0) return;
  if (host.size == 0 || (host.flags & SS_ONSTACK) != 0) return;  // none, or in use right now
  cpu.signals.altstack = KernelStack{host.sp, host.flags, 0, host.size};
  const KernelStack off{0, SS_DISABLE, 0, 0};
  sys::call(SYS_sigaltstack, reinterpret_cast<long>(&off), 0);
}

}  // namespace dunk::core
