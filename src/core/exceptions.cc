// Exceptions that reach the monitor (the program's own handlers took the
// others in the guest, src/guest/dispatch.cc), and host memory faults KVM
// reports. A page fault the mirror can resolve is invisible to the program;
// anything else becomes what Linux would make of it: the program's signal
// handler in VM mode, or the native death.
#include <signal.h>

#include "arch/x86_64/vectors.h"
#include "core/monitor.h"
#include "core/signal_frame.h"
#include "core/text.h"

namespace dunk::core {

bool Monitor::resolve_page_fault(const TrapFrame& f) noexcept {
  if (f.vector != static_cast<std::uint64_t>(arch::Vector::kPageFault)) return false;
  const arch::PageFaultError error = arch::decode_page_fault_error(f.error_code);
  const FaultResolution r =
      machine_.mirror().resolve_fault(Hva(f.cr2), error.write, error.instruction_fetch, Gpa(cpu_.area->root));
  Stats& stats = machine_.stats();
  stats.chunks_assigned.fetch_add(r.chunks_assigned, std::memory_order_relaxed);
  stats.chunks_reclaimed.fetch_add(r.chunks_reclaimed, std::memory_order_relaxed);
  if (!r.resolved) return false;
  stats.add(stats.faults_resolved);
  return true;
}

void Monitor::handle_exception(TrapFrame& f) noexcept {
  Stats& stats = machine_.stats();
  if (f.vector < Stats::kVectors) stats.add(stats.exceptions[f.vector]);
  if (cpu_.area->exception_depth > 1) {
    if (cpu_.area->dispatching != 0) return fault_in_handler(f);
    fatal("exception inside dunk's exception path", nullptr, &f);
  }
  // An int3 a debugger put there stops for it, not as SIGTRAP.
  if (debug_breakpoint(f)) return;
  // The program's own `int $n`: a 32-bit system call, or the #GP it is
  // natively. Interrupts are dispatched in the guest (src/guest/dispatch.cc);
  // another that reaches the monitor is ignored.
  if (handle_software_interrupt(f)) return;
  if (f.vector >= DUNK_FIRST_INTERRUPT_VECTOR) return;
  if (in_dunk_code(f.rip)) fatal("exception in dunk's ring-0 entry code", nullptr, &f);
  if (leave_for_stack_segment(f)) return;

  if (resolve_page_fault(f)) return;  // IRETQ retries the access
  // A debugger sees the signal first, and may discard it.
  if (debug_exception(f)) return;
  // The program's signal handler, if it has one, in VM mode.
  if (deliver_exception(f)) return;
  if (f.vector == static_cast<std::uint64_t>(arch::Vector::kPageFault) &&
      machine_.mirror().program_owned(Hva(f.cr2), Gpa(cpu_.area->root))) {
    // A page the program itself unmapped or protected (dunk/paging.h) may
    // well be accessible on the host: re-running the access there would
    // succeed. It is the program's own fault; end it as one.
    char line[160];
    TextBuffer text(line, sizeof line);
    text.append("dunk: page fault at ").hex(f.cr2).append(" (rip ").hex(f.rip);
    text.append(") on a page the program mapped itself, and no handler took it\n");
    die_by_signal(SIGSEGV, text.c_str());
  }
  // An exception the program does not handle ends it as it would natively.
  // The surest way to get exactly the native outcome — signal, si_code,
  // si_addr, a core dump with the right registers, or a handler the program
  // installed — is to let the host CPU run the faulting instruction again,
  // outside VM mode. Traps report the instruction after; step back to it.
  if (f.vector == static_cast<std::uint64_t>(arch::Vector::kBreakpoint)) {
    const auto* code = reinterpret_cast<const std::uint8_t*>(f.rip);
    f.rip -= (code[-1] == 0xcc) ? 1 : 2;  // int3, or int $3 (cd 03)
  }
  if (f.vector == static_cast<std::uint64_t>(arch::Vector::kDebug)) die_by_signal(SIGTRAP, nullptr);
  if (const auto signal = signal_for_exception(f, false)) debug_process_ends(DebugStopKind::kKilled, signal->sig);
  cpu_.refaulting = true;  // a handler for what comes of it runs in VM mode
  leave_to_host(f, false);
}

void Monitor::fault_in_handler(TrapFrame& f) noexcept {
  // A page fault the mirror resolves is invisible to the program, inside a
  // handler as anywhere; anything else ends the program (dunk/traps.h).
  if (resolve_page_fault(f)) return;
  // The event the handler serves: its frame is the first on IST1.
  const guest::VcpuArea& area = *cpu_.area;
  const auto* outer = reinterpret_cast<const TrapFrame*>(area.exception_stack + sizeof area.exception_stack) - 1;
  char what[160];
  TextBuffer text(what, sizeof what);
  text.append("exception in the program's handler for ");
  if (outer->vector == DUNK_VECTOR_SYSCALL) {
    text.append("a ring-3 system call");
  } else {
    text.append("vector ").dec(static_cast<std::int64_t>(outer->vector));
  }
  text.append(" (interrupted rip=").hex(outer->rip).append(")");
  fatal(text.c_str(), nullptr, &f);
}

void Monitor::handle_host_fault(const Exit& exit) noexcept {
  // KVM could not reach the host memory behind a present guest page: a file
  // mapping beyond its end (SIGBUS natively), or a mapping that changed
  // behind the monitor's back. Running the instruction natively gives the
  // native outcome.
  TrapFrame f{};
  if (!frame_from_vcpu(f)) fatal("cannot read the guest's registers after a host fault", &exit);
  if (in_dunk_code(f.rip)) fatal("host memory fault in dunk's ring-0 entry code", &exit, &f);
  cpu_.refaulting = true;  // a handler for the signal runs in VM mode (dunk_host_signal_handler)
  leave_to_host(f, false);
}

}  // namespace dunk::core
