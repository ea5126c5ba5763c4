// Stopping for a debugger (`dunk exec --gdb`, src/debug/): where the monitor
// parks its vCPU, and what it makes of the command that releases it. The
// protocol between the two is core/debug_link.h's; without a debugger
// (Machine::debugger() null) every function here returns at once.
//
// A vCPU parks only where the program's registers are its own: at the
// instruction it executes next, or in one of dunk's stubs right after an
// exit (a system call, an exception), with the registers in the stub's frame.
// Between two instructions of dunk's entry code it is first stepped out, as
// the signal path does.
//
// How a step works depends on where the guest stands:
//   - at its own registers (after a step, a debug register, a kick): KVM
//     single-steps it (KVM_GUESTDBG_SINGLESTEP);
//   - in a stub: it resumes through the stub's IRETQ, so the frame gets TF
//     and the trap comes after the program's next instruction; KVM only
//     intercepts that #DB (KVM_GUESTDBG_USE_HW_BP). Single-stepping the stub
//     itself would trap after IRETQ, before the program's instruction ran.
// A step over SYSCALL ends when the call returns, where the monitor stops.
#include <signal.h>
#include <sys/syscall.h>

#include <cstring>

#include "arch/x86_64/debug_registers.h"
#include "arch/x86_64/registers.h"
#include "arch/x86_64/vectors.h"
#include "base/syscall.h"
#include "core/monitor.h"
#include "core/signal_frame.h"

namespace dunk::core {
namespace {

constexpr std::uint64_t kTF = arch::rflags::kTF;

bool attached(const DebugLink* link) noexcept {
  return link != nullptr && link->attached.load(std::memory_order_acquire);
}

// Whether one of the debug registers that fired (DR6) is an instruction
// breakpoint.
bool instruction_breakpoint_fired(const DebugLink& link, std::uint64_t dr6) noexcept {
  for (unsigned slot = 0; slot < arch::dr7::kSlots; ++slot) {
    if ((dr6 >> slot & 1) != 0 && arch::dr7::armed(link.debugreg[7], slot) &&
        arch::dr7::condition(link.debugreg[7], slot) == arch::dr7::Condition::kExecute) {
      return true;
    }
  }
  return false;
}

}  // namespace

Status Monitor::apply_guest_debug() noexcept {
  CpuDebug& d = cpu_.debug;
  std::uint32_t control = 0;
  std::uint64_t debugreg[8] = {};
  // Stepping out of dunk's entry code (for a signal or to park) or the
  // debugger's step from the guest's own registers; not into an interrupt's
  // handler where KVM can avoid it.
  if (cpu_.signals.stepping || d.stepping_out || (d.stepping && !d.frame_step)) {
    control |= KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP |
               (machine_.step_blocks_irq() ? KVM_GUESTDBG_BLOCKIRQ : 0);
  }
  if (DebugLink* link = machine_.debugger()) {
    LockGuard held(link->lock);
    std::memcpy(debugreg, link->debugreg, sizeof debugreg);
    d.debugregs_applied = link->debugreg_generation.load(std::memory_order_acquire);
    // Armed debug registers; or a step through a frame's TF, whose #DB must
    // come here rather than to the guest's IDT.
    if (arch::dr7::armed_slots(debugreg[7]) != 0 || d.frame_step) {
      control |= KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP;
    }
  }
  return cpu_.vcpu.set_guest_debug(control, debugreg);
}

bool Monitor::debug_at_program_instruction() noexcept {
  CpuDebug& d = cpu_.debug;
  if (resume_frame_ == nullptr) {
    kvm_regs r{};
    if (!cpu_.vcpu.get_regs(r)) fatal("cannot read the guest's registers for a debugger");
    if (in_dunk_code(r.rip) || event_in_delivery()) {
      if (!d.stepping_out) {
        d.stepping_out = true;
        if (!apply_guest_debug()) fatal("cannot single-step the guest to stop it for a debugger");
      }
      return false;
    }
  }
  d.stepping_out = false;  // the stop's resume loads the debug state again
  return true;
}

void Monitor::debug_checkpoint() noexcept {
  DebugLink* link = machine_.debugger();
  if (link == nullptr) return;
  CpuDebug& d = cpu_.debug;
  // A command the debugger gave while this vCPU served a system call.
  if (const std::uint32_t sequence = d.command_sequence.load(std::memory_order_acquire);
      sequence != d.command_taken) {
    d.command_taken = sequence;
    const DebugCommand command = d.command;
    debug_resume(command, resume_frame_, DebugStop{});
    if (command.signal != 0) debug_inject(command.signal);
  }
  for (;;) {
    // Stored before `hold` is read (see core/debug_link.h).
    d.state.store(DebugState::kGuest, std::memory_order_seq_cst);
    if (d.hold.load(std::memory_order_seq_cst) == 0 || !attached(link)) break;
    if (!debug_at_program_instruction()) break;  // steps there first, then stops
    const DebugCommand command = debug_stop(DebugStop{}, resume_frame_);
    if (command.signal != 0) debug_inject(command.signal);
  }
  if (d.debugregs_applied != link->debugreg_generation.load(std::memory_order_acquire) && !apply_guest_debug()) {
    fatal("cannot load a debugger's debug registers");
  }
}

DebugCommand Monitor::debug_stop(const DebugStop& stop, TrapFrame* frame) noexcept {
  CpuDebug& d = cpu_.debug;
  // A TF the debugger's own step left in the frame is not the program's.
  if (frame != nullptr && (d.stepping || d.frame_step)) frame->rflags &= ~kTF;
  const bool gs_in_msr = frame != nullptr && frame == reinterpret_cast<TrapFrame*>(cpu_.area->syscall_frame);
  const DebugCommand command = debug_park(*machine_.debugger(), cpu_, stop, frame, gs_in_msr);
  debug_resume(command, frame, stop);
  return command;
}

void Monitor::debug_resume(const DebugCommand& command, TrapFrame* frame, const DebugStop& stop) noexcept {
  CpuDebug& d = cpu_.debug;
  const bool step = command.how == DebugResume::kStep;
  d.stepping = step;
  d.frame_step = step && frame != nullptr;
  d.stepping_out = false;
  if (frame != nullptr) {
    frame->rflags = step ? frame->rflags | kTF : frame->rflags & ~kTF;
  } else if (stop.kind == DebugStopKind::kHardware && instruction_breakpoint_fired(*machine_.debugger(), stop.dr6)) {
    // An instruction breakpoint is a fault, taken before the instruction:
    // RF lets the instruction run once.
    kvm_regs r{};
    if (!cpu_.vcpu.get_regs(r)) fatal("cannot read the guest's registers for a debugger");
    r.rflags |= arch::rflags::kRF;
    if (!cpu_.vcpu.set_regs(r)) fatal("cannot resume the guest past a hardware breakpoint");
  }
  // After any register change: a step starts from the RIP the vCPU has now.
  if (!apply_guest_debug()) fatal("cannot set the guest's debug state for a debugger");
}

void Monitor::debug_inject(int sig) noexcept {
  // As a signal the program gets from outside, without a stop for it again.
  cpu_.debug.inject = sig;
  sys::call(SYS_tgkill, process_.pid, cpu_.owner_tid.load(std::memory_order_relaxed), sig);
}

void Monitor::debug_serve_syscall(TrapFrame& frame) noexcept {
  DebugLink* link = machine_.debugger();
  CpuDebug& d = cpu_.debug;
  // A step over SYSCALL: R11, and so the frame's flags, got the step's TF.
  const bool stepped = d.stepping && attached(link);
  if (d.stepping || d.frame_step) frame.rflags &= ~kTF;
  const Syscall call = Syscall::from_frame(frame);
  if (call.nr() == SYS_exit_group || (call.nr() == SYS_exit && machine_.live_cpus() == 1)) {
    debug_process_ends(DebugStopKind::kExited, call.int_arg(0) & 0xff);
  }
  d.frame = &frame;
  d.gs_in_msr = true;
  d.state.store(DebugState::kCall, std::memory_order_seq_cst);
  serve_syscall(frame);
  d.state.store(DebugState::kHost, std::memory_order_seq_cst);
  // The step is done, unless the debugger has given another command since
  // (the call blocked while it stopped everything).
  if (stepped && d.command_sequence.load(std::memory_order_acquire) == d.command_taken) {
    const DebugCommand command = debug_stop(DebugStop{DebugStopKind::kStep}, &frame);
    if (command.signal != 0) debug_inject(command.signal);
  }
}

bool Monitor::debug_breakpoint(TrapFrame& f) noexcept {
  DebugLink* link = machine_.debugger();
  if (!attached(link) || f.vector != static_cast<std::uint64_t>(arch::Vector::kBreakpoint)) return false;
  const std::uint64_t at = f.rip - 1;  // int3 is one byte, and a trap
  if (!link->has_breakpoint(at)) return false;
  // The program resumes at the breakpoint's address: the debugger puts the
  // original instruction back before it steps over it.
  f.rip = at;
  const DebugCommand command = debug_stop(DebugStop{DebugStopKind::kBreakpoint}, &f);
  if (command.signal != 0) debug_inject(command.signal);
  return true;
}

bool Monitor::debug_exception(TrapFrame& f) noexcept {
  DebugLink* link = machine_.debugger();
  if (!attached(link)) return false;
  const auto signal = signal_for_exception(f, false);
  if (!signal || link->passes(signal->sig)) return false;
  CpuDebug& d = cpu_.debug;
  if (d.stepping || d.frame_step) f.rflags &= ~kTF;
  const DebugCommand command = debug_park(*link, cpu_, DebugStop{DebugStopKind::kSignal, signal->sig}, &f, false);
  if (command.signal == signal->sig) {
    // Delivered as it came (or the program dies of it): a step stops at its
    // handler's first instruction (debug_after_delivery).
    d.step_into_handler = command.how == DebugResume::kStep;
    d.stepping = d.frame_step = false;
    if (!apply_guest_debug()) fatal("cannot set the guest's debug state for a debugger");
    return false;
  }
  // Discarded: the guest resumes where it stands (a fault is taken again).
  debug_resume(command, &f, DebugStop{});
  if (command.signal != 0) debug_inject(command.signal);
  return true;
}

void Monitor::debug_trap() noexcept {
  DebugLink* link = machine_.debugger();
  if (link == nullptr) return;  // the signal path's step: the loop delivers
  CpuDebug& d = cpu_.debug;
  const kvm_debug_exit_arch& e = cpu_.vcpu.run_page()->debug.arch;
  // The debug registers change only while this vCPU is held: no lock needed.
  const unsigned armed = arch::dr7::armed_slots(link->debugreg[7]);
  if ((e.dr6 & arch::dr6::kBreakpoints & armed) != 0 && attached(link)) {
    const DebugCommand command = debug_stop(DebugStop{DebugStopKind::kHardware, 0, e.dr6}, nullptr);
    if (command.signal != 0) debug_inject(command.signal);
    return;
  }
  // Stepping out of dunk's code (for a signal, or to park), or a #DB of the
  // program's own while the debug registers catch every #DB: the loop goes on.
  if (!d.stepping) return;
  // Inside dunk's entry code, or KVM is delivering an event: on to the
  // program's next instruction.
  if (in_dunk_code(e.pc) || event_in_delivery()) return;
  if (d.frame_step) {
    // The frame's TF is in RFLAGS now; KVM did not set it and hides nothing.
    kvm_regs r{};
    if (!cpu_.vcpu.get_regs(r)) fatal("cannot read the guest's registers after a step");
    r.rflags &= ~kTF;
    if (!cpu_.vcpu.set_regs(r)) fatal("cannot clear the step's trap flag");
    d.frame_step = false;
  }
  if (!attached(link)) {
    d.stepping = false;
    if (!apply_guest_debug()) fatal("cannot stop single-stepping the guest");
    return;
  }
  const DebugCommand command = debug_stop(DebugStop{DebugStopKind::kStep}, nullptr);
  if (command.signal != 0) debug_inject(command.signal);
}

void Monitor::debug_filter_signals(TrapFrame& f) noexcept {
  DebugLink* link = machine_.debugger();
  if (!attached(link)) return;
  CpuDebug& d = cpu_.debug;
  CpuSignals& s = cpu_.signals;
  const bool gs_in_msr = &f == reinterpret_cast<TrapFrame*>(cpu_.area->syscall_frame);
  int replacement = 0;
  bool asked = false;
  const std::uint32_t tail = s.tail.load(std::memory_order_acquire);
  for (std::uint32_t i = s.head.load(std::memory_order_relaxed); i != tail; ++i) {
    PendingSignal& p = s.queue[i % CpuSignals::kQueue];
    if (p.debugger != PendingSignal::kDebuggerUnasked) continue;
    const int sig = signal_number(p);
    if (sig == d.inject || link->passes(sig)) {
      if (sig == d.inject) d.inject = 0;
      p.debugger = PendingSignal::kDebuggerDelivers;
      continue;
    }
    if (d.stepping || d.frame_step) f.rflags &= ~kTF;
    const DebugCommand command = debug_park(*link, cpu_, DebugStop{DebugStopKind::kSignal, sig}, &f, gs_in_msr);
    asked = true;
    p.debugger = command.signal == sig ? PendingSignal::kDebuggerDelivers : PendingSignal::kDebuggerDrops;
    if (command.signal != 0 && command.signal != sig) replacement = command.signal;
    // A step goes into the handler: it stops there once the frames are
    // built (debug_after_delivery).
    d.step_into_handler = command.how == DebugResume::kStep;
    d.stepping = d.frame_step = false;
  }
  if (asked && !apply_guest_debug()) fatal("cannot set the guest's debug state for a debugger");
  if (replacement != 0) debug_inject(replacement);
}

void Monitor::debug_after_delivery(TrapFrame& f) noexcept {
  CpuDebug& d = cpu_.debug;
  if (!d.step_into_handler) return;
  d.step_into_handler = false;
  if (!attached(machine_.debugger())) return;
  const DebugCommand command = debug_stop(DebugStop{DebugStopKind::kStep}, &f);
  if (command.signal != 0) debug_inject(command.signal);
}

void Monitor::debug_process_ends(DebugStopKind kind, int value) noexcept {
  DebugLink* link = machine_.debugger();
  if (!attached(link)) return;
  TrapFrame* frame = resume_frame_;
  const bool gs_in_msr = frame != nullptr && frame == reinterpret_cast<TrapFrame*>(cpu_.area->syscall_frame);
  debug_park(*link, cpu_, DebugStop{kind, value, 0}, frame, gs_in_msr);
}

}  // namespace dunk::core
