// Delivering signals into the guest: the signals the host handler queued
// (core/signals.cc), and the synchronous ones the monitor raises for
// exceptions and bad frames. Where the guest stands decides how: stopped in
// one of dunk's stubs right after an exit, its frame is edited in place;
// anywhere else its registers are read and written through KVM. The frame
// itself is built by push_signal_frame (core/signal_frame.h).
#include <signal.h>
#include <sys/syscall.h>

#include <cstring>

#include "arch/x86_64/vectors.h"
#include "base/proc_maps.h"
#include "base/syscall.h"
#include "core/guest_state.h"
#include "core/monitor.h"
#include "core/signal_frame.h"

namespace dunk::core {
namespace {

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

}  // namespace

void Monitor::deliver_pending() noexcept {
  CpuSignals& s = cpu_.signals;
  if (!s.pending()) {
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
    if ((resume_frame_->cs & 3) != 0 || in_program_trap_handler()) {
      interrupt_ring3_run();
      return;
    }
    deliver_signals(*resume_frame_, nullptr);
    return;
  }
  deliver_at_vcpu(nullptr, 0);
}

void Monitor::interrupt_ring3_run() noexcept {
  guest::VcpuArea& area = *cpu_.area;
  if (area.ring3_interruptible == 0 || area.user_context == 0 || area.interrupt_ring3 != 0) return;
  area.interrupt_ring3 = 1;
  // In a handler of the run, the dispatcher sees the request when the
  // handler would resume ring 3 (dispatch.cc). In ring 3 itself only an
  // event makes it stop: the NMI (idt_stubs.S), taken before ring 3's next
  // instruction. Ring 3 runs with NMIs unblocked: every way into it is an
  // IRETQ.
  if (area.dispatching != 0) return;
  if (Status s = cpu_.vcpu.inject_nmi(); !s) fatal("cannot interrupt ring 3 for a signal: KVM_NMI failed");
}

bool Monitor::event_in_delivery() noexcept {
  kvm_vcpu_events events{};
  if (!cpu_.vcpu.get_events(events)) fatal("cannot read the guest's pending events for a signal");
  return events.exception.injected != 0 || events.exception.pending != 0 || events.interrupt.injected != 0 ||
         events.nmi.injected != 0;
}

void Monitor::stop_stepping() noexcept {
  cpu_.signals.stepping = false;
  if (!apply_guest_debug()) fatal("cannot stop single-stepping the guest");
}

void Monitor::deliver_at_vcpu(const PendingSignal* synchronous, unsigned rewind) noexcept {
  kvm_regs r{};
  kvm_sregs sr{};
  if (!cpu_.vcpu.get_regs(r) || !cpu_.vcpu.get_sregs(sr)) fatal("cannot read the guest's registers for a signal");
  if (synchronous == nullptr && ((sr.cs.selector & 3) != 0 || in_program_trap_handler())) {
    // Ring 3 or a trap handler (see deliver_pending): wait for the next exit
    // from ring 0 outside a handler.
    if (cpu_.signals.stepping) stop_stepping();
    interrupt_ring3_run();
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
      // interrupted at an instruction of its handler instead (the step
      // blocks interrupts where KVM can: apply_guest_debug).
      cpu_.signals.stepping = true;
      if (!apply_guest_debug()) fatal("cannot single-step the guest to deliver a signal");
    }
    return;
  }
  if (cpu_.signals.stepping) stop_stepping();
  TrapFrame f = from_kvm_regs(r, sr.cs.selector, sr.ss.selector);
  f.rip -= rewind;
  deliver_signals(f, synchronous);
  r = to_kvm_regs(f);
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
  const FpuFormat& fpu = process_.fpu;
  // A debugger decides on the queued signals first (it may change registers).
  debug_filter_signals(f);
  // The interrupted code's FPU state goes into the first frame; a handler
  // that is itself interrupted before its first instruction had the
  // initial state.
  if (!registers_.save_fpu(cpu_.xsave)) fatal("KVM_GET_XSAVE failed while delivering a signal");
  bool delivered = false;
  auto deliver = [&](const PendingSignal& p) {
    if (p.debugger == PendingSignal::kDebuggerDrops) {
      // Discarded by the debugger: as if it had never come, mask included.
      sys::call(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&p.mask_before), 0, 8);
      return;
    }
    const std::byte* image = delivered ? fpu.initial : cpu_.xsave;
    if (!push_signal_frame(memory_, f, p, image, fpu, s.altstack)) {
      // A frame that cannot be written (an alternate stack made read-only,
      // say): the kernel's force_sigsegv. The handler's mask does not apply,
      // and SIGSEGV goes to its own handler, unless SIGSEGV was the signal
      // that failed or cannot be handled either: then the program dies.
      sys::call(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&p.mask_before), 0, 8);
      PendingSignal segv{};
      if (signal_number(p) == SIGSEGV ||
          !take_synchronous_signal(process_.actions, host_, segv, SIGSEGV, SI_KERNEL, 0) ||
          !push_signal_frame(memory_, f, segv, image, fpu, s.altstack)) {
        die_by_signal(SIGSEGV, nullptr);
      }
    }
    process_.stats.add(process_.stats.signals_delivered);
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
  if (delivered && !registers_.load_fpu(fpu.initial)) fatal("KVM_SET_XSAVE failed while delivering a signal");
  debug_after_delivery(f);
}

bool Monitor::deliver_exception(TrapFrame& f) noexcept {
  const bool page_fault = f.vector == static_cast<std::uint64_t>(arch::Vector::kPageFault);
  const auto signal = signal_for_exception(f, page_fault && host_mapped(f.cr2));
  if (!signal) return false;  // the native re-execution reports the others
  PendingSignal p{};
  if (!take_synchronous_signal(process_.actions, host_, p, signal->sig, signal->code, signal->address)) return false;
  p.trapno = f.vector;
  p.error_code = page_fault ? user_page_fault_error(f) : f.error_code;
  p.cr2 = page_fault ? f.cr2 : 0;
  deliver_signals(f, &p);
  return true;
}

bool Monitor::deliver_halt_as_signal() noexcept {
  // HLT in user mode raises #GP: SIGSEGV, SI_KERNEL, at the HLT.
  PendingSignal p{};
  if (!take_synchronous_signal(process_.actions, host_, p, SIGSEGV, SI_KERNEL, 0)) return false;
  p.trapno = static_cast<std::uint64_t>(arch::Vector::kGeneralProtection);
  deliver_at_vcpu(&p, /*rewind=*/1);  // natively the #GP reports the HLT itself
  return true;
}

void Monitor::force_signal(TrapFrame& f, const ForcedSignal& signal) noexcept {
  PendingSignal p{};
  if (!take_synchronous_signal(process_.actions, host_, p, signal.sig, signal.code, 0)) {
    die_by_signal(signal.sig, nullptr);
  }
  p.trapno = signal.trapno;
  p.error_code = signal.err;
  deliver_signals(f, &p);
}

void Monitor::hand_altstack_to_host() noexcept {
  const abi::SignalStack& alt = cpu_.signals.altstack;
  if (alt.size == 0) return;
  sys::call(SYS_sigaltstack, reinterpret_cast<long>(&alt), 0);
}

void take_altstack_from_host(Cpu& cpu) noexcept {
  abi::SignalStack host{};
  if (sys::call(SYS_sigaltstack, 0, reinterpret_cast<long>(&host)) != 0) return;
  if (host.size == 0 || (host.flags & abi::kSsOnstack) != 0) return;  // none, or in use right now
  cpu.signals.altstack = abi::SignalStack{host.sp, host.flags, 0, host.size};
  sys::call(SYS_sigaltstack, reinterpret_cast<long>(&abi::kNoSignalStack), 0);
}

}  // namespace dunk::core
