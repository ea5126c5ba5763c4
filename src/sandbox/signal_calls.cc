// Signals for the program in ring 3. The supervisor owns every host
// disposition the program sets to a handler: its own handler takes the
// signal (in guest ring 0, where the monitor delivers it) and queues it for
// the program thread; the loop then builds the native frame on the
// program's ring-3 stack and points ring 3 at the program's handler, whose
// rt_sigreturn the supervisor serves — restoring only what ring 3 may hold
// (user selectors, no IOPL, a canonical RIP, an FPU image XRSTOR accepts).
// SIG_DFL and SIG_IGN go to the host as they are: default actions are the
// kernel's own. Masks are the host thread's: rt_sigprocmask, sigsuspend,
// signalfd are plain forwarded calls (the signals a sigsuspend's mask let
// in are delivered whatever mask it put back: deliver_signals).
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include <cstdio>
#include <cstring>

#include "abi/names.h"
#include "arch/x86_64/registers.h"
#include "arch/x86_64/vectors.h"
#include "arch/x86_64/xsave.h"
#include "base/syscall.h"
#include "core/guest_state.h"
#include "core/machine.h"
#include "core/signal_frame.h"
#include "dunk/paging.h"
#include "dunk/traps.h"
#include "sandbox/supervisor.h"
#include "sandbox/user_access.h"

extern "C" void dunk_sandbox_restorer();

namespace dunk::sandbox {
namespace {

void answer(ProgramThread& t, long value) noexcept { t.frame.rax = static_cast<std::uint64_t>(value); }

// The flags of the program's action that the host's must carry: restart and
// nesting decisions, and SIGCHLD's.
constexpr std::uint64_t kHostFlags = abi::kSaRestart | abi::kSaNodefer | abi::kSaResethand | SA_NOCLDSTOP |
                                     SA_NOCLDWAIT;

class ProgramWriter final : public core::GuestMemory {
 public:
  bool read(void* to, std::uint64_t from, std::size_t size) noexcept override { return read_program(to, from, size); }
  bool write(std::uint64_t to, const void* from, std::size_t size) noexcept override {
    return write_program(to, from, size);
  }
};

core::FpuFormat fpu_format() noexcept {
  const Sandbox& s = sandbox();
  return core::FpuFormat{s.fpu_size, s.xcr0, core::Machine::instance().fpu_init_image()};
}

// Builds the program's frame for one signal on its ring-3 stack, with its
// handler's mask applied; false when the frame cannot be written.
bool push_frame(ProgramThread& t, const std::uint8_t* info, const abi::Sigaction& action, std::uint64_t trapno,
                std::uint64_t error, std::uint64_t cr2) noexcept {
  const int sig = signal_of(info);
  core::PendingSignal p{};
  std::memcpy(p.info, info, sizeof p.info);
  p.action = action;
  p.trapno = trapno;
  p.error_code = error;
  p.cr2 = cr2;
  const std::uint64_t self = (action.flags & abi::kSaNodefer) != 0 ? 0 : abi::sigbit(sig);
  p.mask_before = block_signals((action.mask | self) & ~abi::kUnblockable);
  const core::FpuFormat format = fpu_format();
  const std::byte* image = t.fpu_live ? t.fpu : format.initial;
  ProgramWriter memory;
  if (!core::push_signal_frame(memory, t.frame, p, image, format, t.altstack)) {
    set_signal_mask(p.mask_before);
    return false;
  }
  // The handler starts with the FPU's initial state, as natively.
  t.fpu_live = false;
  core::Machine::instance().stats().add(core::Machine::instance().stats().signals_delivered);
  return true;
}

void fill_siginfo(std::uint8_t (&info)[abi::kSiginfoSize], int sig, int code, std::uint64_t address) noexcept {
  std::memset(info, 0, sizeof info);
  const std::int32_t signo = sig, code_value = code;
  std::memcpy(info + offsetof(siginfo_t, si_signo), &signo, 4);
  std::memcpy(info + offsetof(siginfo_t, si_code), &code_value, 4);
  std::memcpy(info + offsetof(siginfo_t, si_addr), &address, 8);
}

}  // namespace

std::uint64_t block_signals(std::uint64_t add) noexcept {
  std::uint64_t old = 0;
  sys::call(SYS_rt_sigprocmask, SIG_BLOCK, reinterpret_cast<long>(&add), reinterpret_cast<long>(&old), 8);
  return old;
}

void set_signal_mask(std::uint64_t mask) noexcept {
  mask &= ~abi::kUnblockable;
  sys::call(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&mask), 0, 8);
}

int signal_of(const std::uint8_t* info) noexcept {
  std::int32_t sig;
  std::memcpy(&sig, info + offsetof(siginfo_t, si_signo), sizeof sig);
  return sig;
}

// The supervisor's handler for every signal the program handles. Runs in
// guest ring 0 on the supervisor's stack, delivered by the monitor.
extern "C" void dunk_sandbox_signal(int sig, siginfo_t* info, void* context) {
  auto* uc = static_cast<abi::Ucontext*>(context);
  ProgramThread* t = current_thread();
  if (t == nullptr) return;
  Sandbox& s = sandbox();
  const abi::Sigaction action = s.actions.get(sig);
  const std::uint64_t rip = uc->mcontext.rip;
  // The program's call is about to be made, or was interrupted and the
  // kernel would run it again.
  const bool call_to_make = rip >= reinterpret_cast<std::uint64_t>(dunk_sandbox_forward_check) &&
                            rip <= reinterpret_cast<std::uint64_t>(dunk_sandbox_forward_insn);
  if (sig == kStopSignal && is_stop_kick(*info)) {
    // Another thread's execve asks this one to park (thread_stop.cc): a
    // forwarded call it interrupted is made again if the thread goes on,
    // whatever the restart rules of the program's own action for the
    // signal (an EINTR here is this signal's).
    const bool interrupted = rip == reinterpret_cast<std::uint64_t>(dunk_sandbox_forward_done) &&
                             static_cast<long>(uc->mcontext.rax) == -EINTR;
    if (interrupted || call_to_make) {
      uc->mcontext.rip = reinterpret_cast<std::uint64_t>(dunk_sandbox_forward_done);
      uc->mcontext.rax = static_cast<std::uint64_t>(kRestartForSignal);
    }
    return;
  }
  if (sig == kStopSignal && !abi::is_handler(action.handler)) {
    // The program's own: its action applied here, since the host's is
    // always the supervisor's handler.
    if (action.handler == abi::kSigIgn) return;
    // This thread may have been interrupted in the reporter's (not
    // reentrant) lock: no report line, and the buffer written only if the
    // lock is free or soon is.
    die_by_signal_in_handler(sig);
  }
  if (call_to_make) {
    // The program's handler must run first, so the call returns without
    // running, and the loop points ring 3 at its SYSCALL again under the
    // handler's frame (forward.S).
    uc->mcontext.rip = reinterpret_cast<std::uint64_t>(dunk_sandbox_forward_done);
    uc->mcontext.rax = static_cast<std::uint64_t>(kRestartForSignal);
  }
  if ((action.flags & abi::kSaResethand) != 0) s.actions.set(sig, abi::Sigaction{});
  SignalQueue& q = t->signals;
  const std::uint32_t tail = q.tail.load(std::memory_order_relaxed);
  if (tail - q.head.load(std::memory_order_acquire) >= SignalQueue::kSize) return;  // as a full queue drops
  ProgramSignal& slot = q.slots[tail % SignalQueue::kSize];
  std::memcpy(slot.info, info, sizeof slot.info);
  slot.action = action;
  q.tail.store(tail + 1, std::memory_order_release);
}

long install_host_action(int sig, const abi::Sigaction& program) noexcept {
  if (sig == SIGKILL || sig == SIGSTOP) return 0;
  abi::Sigaction host{};
  if (sig == kStopSignal && !abi::is_handler(program.handler)) {
    // The supervisor's whatever the program's action (supervisor.h).
    host.handler = reinterpret_cast<std::uint64_t>(&dunk_sandbox_signal);
    host.flags = abi::kSaRestart | abi::kSaSiginfo | abi::kSaRestorer;
    host.restorer = reinterpret_cast<std::uint64_t>(&dunk_sandbox_restorer);
  } else if (abi::is_handler(program.handler)) {
    host.handler = reinterpret_cast<std::uint64_t>(&dunk_sandbox_signal);
    host.flags = (program.flags & kHostFlags) | abi::kSaSiginfo | abi::kSaRestorer;
    // kStopSignal's host action must outlive a SA_RESETHAND, which the
    // handler applies to the table; SA_NODEFER is the program frame's
    // business (deliver_signals), the host handler is not nested.
    if (sig == kStopSignal) host.flags &= ~(abi::kSaResethand | abi::kSaNodefer);
    host.restorer = reinterpret_cast<std::uint64_t>(&dunk_sandbox_restorer);
    host.mask = program.mask;
  } else {
    host.handler = program.handler;
    host.flags = (program.flags & kHostFlags) | abi::kSaRestorer;
    host.restorer = reinterpret_cast<std::uint64_t>(&dunk_sandbox_restorer);
  }
  return sys::call(SYS_rt_sigaction, sig, reinterpret_cast<long>(&host), 0, 8);
}

void sys_rt_sigaction(ProgramThread& t, const abi::Call& call) noexcept {
  const int sig = static_cast<int>(call.args[0]);
  const std::uint64_t act = call.args[1], oldact = call.args[2];
  if (call.args[3] != 8 || sig < 1 || sig > abi::kMaxSignal) return answer(t, -EINVAL);
  if (refuse_outside(t, call, act, sizeof(abi::Sigaction)) || refuse_outside(t, call, oldact, sizeof(abi::Sigaction))) {
    return;
  }
  abi::Sigaction want{};
  if (act != 0) {
    if (!read_program(&want, act, sizeof want)) return answer(t, -EFAULT);
    if (sig == SIGKILL || sig == SIGSTOP) return answer(t, -EINVAL);
  }
  Sandbox& s = sandbox();
  LockGuard hold(s.signal_lock);
  const abi::Sigaction old = s.actions.get(sig);
  if (act != 0) {
    want.mask &= ~abi::kUnblockable;
    // The table first: a signal arriving meanwhile finds the new action.
    s.actions.set(sig, want);
    if (long ret = install_host_action(sig, want); ret != 0) {
      s.actions.set(sig, old);
      return answer(t, ret);
    }
  }
  if (oldact != 0 && !write_program(oldact, &old, sizeof old)) return answer(t, -EFAULT);
  answer(t, 0);
}

void sys_sigaltstack(ProgramThread& t, const abi::Call& call) noexcept {
  const std::uint64_t want_at = call.args[0], old_at = call.args[1];
  const abi::SignalStack old = abi::reported_signal_stack(t.altstack, t.frame.rsp);
  abi::SignalStack want{};
  if (refuse_outside(t, call, want_at, sizeof want) || refuse_outside(t, call, old_at, sizeof old)) return;
  if (want_at != 0 && !read_program(&want, want_at, sizeof want)) return answer(t, -EFAULT);
  // A stack dunk would write signal frames on: natively never checked,
  // here refused outside the program's memory (frames are written through
  // write_program, which would refuse them anyway, one SIGSEGV later).
  if (want_at != 0 && (want.flags & SS_DISABLE) == 0 && want.size != 0 &&
      !sandbox().region.contains(want.sp, want.size)) {
    return refuse(t, call, -EFAULT, "an alternate signal stack outside the program's memory");
  }
  if (long err = abi::change_signal_stack(t.altstack, want_at != 0 ? &want : nullptr, t.frame.rsp); err != 0) {
    return answer(t, err);
  }
  if (old_at != 0 && !write_program(old_at, &old, sizeof old)) return answer(t, -EFAULT);
  answer(t, 0);
}

void sys_rt_sigreturn(ProgramThread& t, const abi::Call&) noexcept {
  // The kernel's order: mask, registers, FPU state, alternate stack; a
  // frame that fails on the way forces SIGSEGV. What it may restore is
  // what ring 3 may hold: user selectors only (run_in_ring3 sets CS and SS
  // itself, and keeps IOPL 0 whatever the flags say), a canonical RIP.
  abi::RtSigframe frame;
  if (!read_program(&frame, t.frame.rsp - 8, sizeof frame)) {
    return force_signal(t, SIGSEGV, SI_KERNEL, 0, 0, 0);
  }
  const abi::Sigcontext& sc = frame.uc.mcontext;
  set_signal_mask(frame.uc.sigmask);
  core::restore_from_sigcontext(sc, t.frame);
  const auto cs = static_cast<std::uint16_t>(sc.cs | 3), ss = static_cast<std::uint16_t>(sc.ss | 3);
  constexpr std::uint64_t kGeneralProtection = 13;
  if (cs != DUNK_USER_CS) return force_signal(t, SIGSEGV, SI_KERNEL, 0, kGeneralProtection, cs & ~3u);
  if ((frame.uc.flags & abi::kUcStrictRestoreSs) != 0 && ss != DUNK_USER_DS) {
    return force_signal(t, SIGSEGV, SI_KERNEL, 0, kGeneralProtection, ss & ~3u);
  }
  Sandbox& s = sandbox();
  if (sc.fpstate == 0) {
    t.fpu_live = false;
  } else if (read_program(t.fpu_scratch, sc.fpstate, s.fpu_size)) {
    arch::xsave::Image(t.fpu_scratch).normalize_for(s.xcr0);
    // An image XRSTOR refuses (reserved header bytes, reserved MXCSR bits)
    // is a bad frame, as natively; tried here, not in ring 0's entry path.
    if (!xrstor_accepts(t.fpu_scratch, t.fpu, s.fpu_size)) {
      t.fpu_live = false;
      return force_signal(t, SIGSEGV, SI_KERNEL, 0, 0, 0);
    }
    std::memcpy(t.fpu, t.fpu_scratch, s.fpu_size);
    t.fpu_live = true;
  } else {
    t.fpu_live = false;
    return force_signal(t, SIGSEGV, SI_KERNEL, 0, 0, 0);
  }
  const abi::SignalStack& want = frame.uc.stack;
  if (!abi::restorable_signal_stack(t.altstack, want, sc.rsp)) return force_signal(t, SIGSEGV, SI_KERNEL, 0, 0, 0);
  const std::int32_t mode = want.flags & ~abi::kSsAutodisarm;
  t.altstack = mode == abi::kSsDisable ? abi::SignalStack{0, want.flags, 0, 0}
                                       : abi::SignalStack{want.sp, want.flags, 0, want.size};
  t.frame.rax = sc.rax;
}

void deliver_signals(ProgramThread& t) noexcept {
  SignalQueue& q = t.signals;
  // What the frames pushed by this loop blocked.
  std::uint64_t blocked_by_frames = 0;
  while (!q.empty()) {
    const std::uint32_t head = q.head.load(std::memory_order_relaxed);
    const ProgramSignal p = q.slots[head % SignalQueue::kSize];
    q.head.store(head + 1, std::memory_order_release);
    const int sig = signal_of(p.info);
    // A handler taken before an earlier frame's mask blocked the signal:
    // back to the kernel, which delivers it once it is unblocked. A signal
    // taken inside sigsuspend & co. was unblocked by the call's mask, which
    // the kernel has replaced by the thread's own when the call returned:
    // natively its handler runs before the thread's mask comes back (the
    // frame carries that mask), so only this loop's frames hold it back.
    // Sent back instead, it would stay pending, blocked, and sigsuspend
    // would return EINTR for ever without the handler (dash's `wait`).
    std::uint64_t mask = 0;
    sys::call(SYS_rt_sigprocmask, SIG_BLOCK, 0, reinterpret_cast<long>(&mask), 8);
    const bool under_call_mask = static_cast<std::int32_t>(q.taken_under_call_mask - head) > 0;
    if (under_call_mask) mask = blocked_by_frames;
    if ((mask & abi::sigbit(sig)) != 0) {
      sys::call(SYS_rt_tgsigqueueinfo, sys::call(SYS_getpid), t.tid, sig, reinterpret_cast<long>(p.info));
      continue;
    }
    if (!abi::is_handler(p.action.handler)) continue;
    const std::uint64_t self = (p.action.flags & abi::kSaNodefer) != 0 ? 0 : abi::sigbit(sig);
    blocked_by_frames |= (p.action.mask | self) & ~abi::kUnblockable;
    if (!push_frame(t, p.info, p.action, 0, 0, 0)) {
      if (sig == SIGSEGV) die_by_signal(SIGSEGV, "the program's SIGSEGV frame could not be written");
      force_signal(t, SIGSEGV, SI_KERNEL, 0, 0, 0);
    }
  }
}

void force_signal(ProgramThread& t, int sig, int code, std::uint64_t address, std::uint64_t trapno,
                  std::uint64_t error, const std::uint8_t* info) noexcept {
  Sandbox& s = sandbox();
  const abi::Sigaction action = s.actions.get(sig);
  std::uint64_t mask = 0;
  sys::call(SYS_rt_sigprocmask, SIG_BLOCK, 0, reinterpret_cast<long>(&mask), 8);
  if (!abi::is_handler(action.handler) || (mask & abi::sigbit(sig)) != 0) {
    char why[200];
    const char* name = abi::signal_name(sig);
    // The exception's name when an exception of ring 3's raised it.
    const bool from_exception = trapno < 32 && t.frame.vector == trapno;
    const std::string_view exception = from_exception ? arch::exception_info(static_cast<unsigned>(trapno)).mnemonic : "";
    std::snprintf(why, sizeof why, "%s at rip %#llx (%.*s, error %#llx, address %#llx)", name != nullptr ? name : "a signal",
                  static_cast<unsigned long long>(t.frame.rip), static_cast<int>(exception.empty() ? 12 : exception.size()),
                  exception.empty() ? "no exception" : exception.data(),
                  static_cast<unsigned long long>(error), static_cast<unsigned long long>(address));
    die_by_signal(sig, why);
  }
  if ((action.flags & abi::kSaResethand) != 0) {
    LockGuard hold(s.signal_lock);
    s.actions.set(sig, abi::Sigaction{});
    install_host_action(sig, abi::Sigaction{});
  }
  std::uint8_t made[abi::kSiginfoSize];
  if (info == nullptr) {
    fill_siginfo(made, sig, code, address);
    info = made;
  }
  const bool page_fault = trapno == static_cast<std::uint64_t>(arch::Vector::kPageFault);
  if (!push_frame(t, info, action, trapno, error, page_fault ? address : 0)) {
    if (sig == SIGSEGV) die_by_signal(SIGSEGV, "the program's SIGSEGV frame could not be written");
    force_signal(t, SIGSEGV, SI_KERNEL, 0, 0, 0);
  }
}

void serve_fault(ProgramThread& t) noexcept {
  TrapFrame& f = t.frame;
  const auto vector = static_cast<unsigned>(f.vector);
  if (vector >= 32) return;  // an interrupt: nothing of the program's
  if (vector == static_cast<unsigned>(arch::Vector::kPageFault)) {
    // A TLB entry older than a permission upgrade another thread made: the
    // tables allow the access now, and the fault evicted the entry.
    const PageFault pf = page_fault(f);
    if (sandbox().region.contains(f.cr2, 1)) {
      auto info = AddressSpace::current().lookup(pf.address);
      const bool allowed = info && (info->access & kUser) != 0 && (!pf.write || (info->access & kWrite) != 0) &&
                           (!pf.fetch || (info->access & kExec) != 0);
      if (allowed && (t.last_fault_rip != f.rip || t.last_fault_address != f.cr2)) {
        t.last_fault_rip = f.rip;
        t.last_fault_address = f.cr2;
        return;
      }
    }
  }
  t.last_fault_rip = t.last_fault_address = 0;
  const bool mapped = sandbox().region.contains(f.cr2, 1) && sandbox().region.all_mapped(page_down(f.cr2), page_down(f.cr2) + kPage);
  auto signal = core::signal_for_exception(f, mapped);
  if (!signal) {
    // x87 and SIMD floating-point exceptions, and the rest: what the kernel
    // sends for them.
    const bool fp = vector == 16 || vector == 19;
    signal = core::ExceptionSignal{fp ? SIGFPE : SIGSEGV, fp ? static_cast<int>(FPE_FLTINV) : static_cast<int>(SI_KERNEL),
                                   fp ? f.rip : 0};
  }
  force_signal(t, signal->sig, signal->code, signal->address, vector, f.error_code);
}

namespace {

[[noreturn]] void die_now(int sig) noexcept {
  // No core dump of the supervisor's state in the program's name. prlimit64,
  // not setrlimit: the host filter lets dunk's own prlimit64 through
  // whatever the policy says (host_layer.cc), and setrlimit only when the
  // policy allows the program's, which the supervisor serves itself.
  const rlimit no_core{0, 0};
  sys::call(SYS_prlimit64, 0, RLIMIT_CORE, reinterpret_cast<long>(&no_core), 0);
  const abi::Sigaction dfl{0, abi::kSaRestorer, reinterpret_cast<std::uint64_t>(&dunk_sandbox_restorer), 0};
  sys::call(SYS_rt_sigaction, sig, reinterpret_cast<long>(&dfl), 0, 8);
  const std::uint64_t only = abi::sigbit(sig);
  sys::call(SYS_rt_sigprocmask, SIG_UNBLOCK, reinterpret_cast<long>(&only), 0, 8);
  sys::call(SYS_tgkill, sys::call(SYS_getpid), sys::call(SYS_gettid), sig);
  // A signal whose default action does not end the process.
  sys::call(SYS_exit_group, 128 + sig);
  __builtin_unreachable();
}

}  // namespace

[[noreturn]] void die_by_signal(int sig, const char* why) noexcept {
  Sandbox& s = sandbox();
  ProgramThread* t = current_thread();
  ReportLine line;
  line.event = "killed";
  line.detail = why;
  line.tid = t != nullptr ? t->tid : 0;
  line.rip = t != nullptr ? t->frame.rip : 0;
  if (why != nullptr) s.reporter.add(line);
  s.reporter.flush();
  die_now(sig);
}

[[noreturn]] void die_by_signal_in_handler(int sig) noexcept {
  sandbox().reporter.flush_if_free(100);
  die_now(sig);
}

}  // namespace dunk::sandbox
