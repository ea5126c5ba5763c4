#include "core/monitor.h"

#include <asm/prctl.h>
#include <signal.h>
#include <sys/syscall.h>

#include <cstring>

#include "arch/x86_64/registers.h"
#include "arch/x86_64/xsave.h"
#include "base/fd_placement.h"
#include "base/proc_maps.h"
#include "base/syscall.h"
#include "core/dirty.h"
#include "core/guest_state.h"
#include "core/soft_dirty.h"
#include "core/text.h"
#include "guest/dispatch.h"

namespace dunk::core {

// SYSCALL's length: a restarted call re-executes the instruction.
inline constexpr std::uint64_t kSyscallInsnLength = 2;

void die_by_signal(int signal, const char* message) noexcept {
  if (message != nullptr) write_stderr(message);
  debug_report_death(signal);
  const abi::Sigaction dfl{};
  sys::call(SYS_rt_sigaction, signal, reinterpret_cast<long>(&dfl), 0, 8);
  const std::uint64_t set = abi::sigbit(signal);
  sys::call(SYS_rt_sigprocmask, SIG_UNBLOCK, reinterpret_cast<long>(&set), 0, 8);
  sys::call(SYS_tgkill, sys::call(SYS_getpid), sys::call(SYS_gettid), signal);
  // A signal whose default action is not to terminate: leave anyway.
  sys::call(SYS_exit_group, 128 + signal);
  __builtin_unreachable();
}

[[noreturn]] void monitor_main(void* arg) noexcept {
  auto* cpu = static_cast<Cpu*>(arg);
  Monitor monitor(Machine::instance(), *cpu);
  monitor.run();
}

Monitor::Monitor(Machine& machine, Cpu& cpu) noexcept
    : machine_(machine),
      cpu_(cpu),
      registers_(cpu.vcpu, machine.xsave_size()),
      host_(&cpu.signals.arrived),
      threads_(machine, cpu),
      tracer_(machine.strace_fd()),
      process_{.dunk_fds = machine.dunk_fds(),
               .actions = signal_table(),
               .action_lock = machine.signal_lock(),
               .rlimit_lock = fd_placement_lock(),
               .brk = machine.brk,
               .stats = machine.stats(),
               .fpu = {machine.xsave_size(), machine.xcr0(), machine.fpu_init_image()},
               .pid = memory_.pid(),
               .ldt = &machine.ldt()},
      thread_{.signals = cpu.signals, .fpu_scratch = cpu.xsave, .page_table_root = cpu.area->root} {}

Status Monitor::load_entry_state() noexcept {
  guest::VcpuArea& area = *cpu_.area;
  // A thread may have left from the middle of a stub; start the area afresh.
  area.exception_depth = 0;
  guest::reset_trap_state(area);
  area.tss.set_ist_stack(1, reinterpret_cast<std::uint64_t>(area.exception_stack + sizeof area.exception_stack));
  area.origin_cs = DUNK_KERNEL_CS;
  area.origin_ss = DUNK_KERNEL_DS;
  // TLB shootdowns from now on wait for this vCPU. Earlier ones did not (it
  // was not in the guest); their IPIs wait in its local APIC and flush it
  // before its first instruction (Cpu::reset_interrupts for a reused vCPU).
  area.in_host = 0;
  std::atomic_ref<std::uint64_t>(area.tlb_generation)
      .store(std::atomic_ref<std::uint64_t>(guest::dunk_tlb_generation).load(std::memory_order_acquire),
             std::memory_order_release);

  // RAX is 0 for enter() (what dunk_capture_and_switch returns in the
  // guest) and for a new thread's or fork child's clone.
  kvm_regs regs = to_kvm_regs(cpu_.entry_frame);
  regs.rflags = (regs.rflags | arch::rflags::kFixed1) & ~(arch::rflags::kTF | arch::rflags::kNT);
  kvm_sregs sregs{};
  DUNK_TRY(cpu_.vcpu.get_sregs(sregs));
  set_vcpu_user_segments(sregs, cpu_.entry_segments);
  DUNK_TRY(cpu_.vcpu.set_sregs(sregs));
  const kvm_msr_entry kernel_gs{arch::msr::kKernelGsBase, 0, reinterpret_cast<std::uint64_t>(&area)};
  DUNK_TRY(cpu_.vcpu.set_msrs({&kernel_gs, 1}));
  arch::xsave::Image(cpu_.xsave).normalize_for(machine_.xcr0());
  DUNK_TRY(cpu_.vcpu.set_xsave(cpu_.xsave));
  DUNK_TRY(cpu_.vcpu.set_regs(regs));
  return {};
}

Status Monitor::load_fork_child_state() noexcept {
  guest::VcpuArea& area = *cpu_.area;
  // The area is as the parent's vCPU left it when it exited for the fork
  // (Machine::adopt_after_fork): its trap state — a program handler in
  // progress, a ring-3 run waiting in it — stays, and the SYSCALL entry
  // returns through its frame, which now says what the child's fork returns
  // (RAX 0, its own stack if it has one). The vCPU's special registers are
  // the parent's already (Cpu::setup_vcpu); the general ones are those of
  // the entry code right after its exit: its stack is the frame, and
  // interrupts are off (SFMASK).
  *reinterpret_cast<TrapFrame*>(area.syscall_frame) = cpu_.entry_frame;
  std::atomic_ref<std::uint64_t>(area.tlb_generation)
      .store(std::atomic_ref<std::uint64_t>(guest::dunk_tlb_generation).load(std::memory_order_acquire),
             std::memory_order_release);
  arch::xsave::Image(cpu_.xsave).normalize_for(machine_.xcr0());
  DUNK_TRY(cpu_.vcpu.set_xsave(cpu_.xsave));
  kvm_regs regs{};
  regs.rip = reinterpret_cast<std::uint64_t>(&guest::dunk_syscall_entry_resume);
  regs.rsp = area.syscall_frame;
  regs.rflags = arch::rflags::kFixed1;
  DUNK_TRY(cpu_.vcpu.set_regs(regs));
  cpu_.resumes_fork = false;  // a later enter() of this thread starts afresh
  return {};
}

void Monitor::run() noexcept {
  if (Status s = cpu_.resumes_fork ? load_fork_child_state() : load_entry_state(); !s) {
    if (cpu_.entering_fork_child) {
      char line[256];
      TextBuffer text(line, sizeof line);
      text.append("dunk: a fork child cannot enter VM mode: ").append(s.error().what).append("\n");
      die_by_signal(SIGABRT, text.c_str());
    }
    // Back to the host face, where enter() reports the failure.
    cpu_.entry_error = s.error();
    TrapFrame f = cpu_.entry_frame;
    f.rax = static_cast<std::uint64_t>(-1);
    dunk_restore_frame(&f, cpu_.xsave);
  }
  if (DebugLink* link = machine_.debugger()) cpu_.debug.reset(link->hold_new.load(std::memory_order_seq_cst) != 0);
  cpu_.in_guest = true;
  if (cpu_.unmask_at_entry) {
    // From here dunk's host handler queues what arrives for the guest.
    cpu_.unmask_at_entry = false;
    sys::call(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&cpu_.fork_sigmask), 0, 8);
  }
  Stats& stats = machine_.stats();
  kvm_run& run_page = *cpu_.vcpu.run_page();
  for (;;) {
    // Cleared before looking at the queue: a signal that arrives after the
    // look sets them again, which makes KVM_RUN return at once and the
    // next forwarded call wait for the guest's handler.
    run_page.immediate_exit = 0;
    cpu_.signals.arrived = 0;
    debug_checkpoint();
    deliver_pending();
    // Stepping the guest out of dunk's entry code to deliver: if that code
    // is on its way to a system call, the call waits for the handler too.
    if (cpu_.signals.stepping && !cpu_.signals.empty()) cpu_.signals.arrived = 1;
    follow_host_cpu();
    if (cpu_.ldt_generation != machine_.ldt().generation()) load_ldt();
    stats.add(stats.kvm_runs);
    const long ret = cpu_.vcpu.run();
    if (machine_.debugger() != nullptr) cpu_.debug.state.store(DebugState::kHost, std::memory_order_seq_cst);
    resume_frame_ = nullptr;
    const Exit exit = decode_exit(ret, run_page);
    stats.count_exit(exit.kind);
    remember(exit);
    if (machine_.trace()) trace(exit);
    handle(exit);
  }
}

void Monitor::handle(const Exit& exit) noexcept {
  guest::VcpuArea& area = *cpu_.area;
  switch (exit.kind) {
    case ExitKind::kSyscall:
      resume_frame_ = reinterpret_cast<TrapFrame*>(area.syscall_frame);
      if (machine_.debugger() != nullptr) return debug_serve_syscall(*resume_frame_);
      serve_syscall(*resume_frame_);
      return;
    case ExitKind::kException:
      resume_frame_ = reinterpret_cast<TrapFrame*>(area.exception_frame);
      handle_exception(*resume_frame_);
      return;
    case ExitKind::kDebug:
      debug_trap();  // a debugger's step or debug register; else the signal path's step
      return;
    case ExitKind::kInterrupted:
    case ExitKind::kIrqWindowOpen:
      // A host signal's handler has run (its signal, if it is the guest's,
      // is queued), or a step the monitor asked for: the loop delivers.
      return;
    case ExitKind::kHostFault:
    case ExitKind::kMemoryFault:
      handle_host_fault(exit);
      return;
    case ExitKind::kHalt: {
      // HLT is privileged: natively it raises #GP, i.e. SIGSEGV. Re-execute
      // it on the host to get exactly that.
      if (deliver_halt_as_signal()) return;
      TrapFrame f{};
      if (!frame_from_vcpu(f)) fatal("cannot read the guest's registers after HLT", &exit);
      f.rip -= 1;  // HLT's length
      leave_to_host(f, false);
    }
    case ExitKind::kUnexpectedIo:
      serve_port_io(exit);
      return;
    case ExitKind::kInternalError:
      if (emulation_failed_into_exception(exit)) return;
      fatal("KVM could not run the guest's instruction", &exit);
    case ExitKind::kFatal:
      fatal("double fault, NMI or machine check in the guest", &exit,
            reinterpret_cast<const TrapFrame*>(area.exception_frame));
    default:
      fatal("unexpected VM exit", &exit);
  }
}

void Monitor::serve_syscall(TrapFrame& frame) noexcept {
  const Syscall call = Syscall::from_frame(frame);
  process_.stats.count_syscall(static_cast<std::uint32_t>(call.nr()));
  SyscallContext ctx{frame,    registers_, memory_, host_, machine_.mirror(), threads_, process_, thread_,
                     process_dirty_bits()};
  if (tracer_.on()) tracer_.before(call, memory_);
  Outcome outcome = dispatch_syscall(ctx, call);
  if (tracer_.on()) tracer_.after(call, outcome, memory_);
  if (outcome.kind() == Outcome::Kind::kResult && outcome.value() == kRestartGuestSyscall &&
      call.nr() != SYS_rt_sigreturn) {
    // A signal arrived that the kernel would have delivered before
    // restarting this call: its handler runs first, then the guest executes
    // the same SYSCALL again, as natively. Not rt_sigreturn's: its result is
    // the RAX the frame restored, which a handler may have set to this value
    // (dunk sandbox's supervisor does, to skip its own forwarded call), and
    // the guest resumes where the frame says.
    outcome = Outcome::restart();
  }
  switch (outcome.kind()) {
    case Outcome::Kind::kResult:
      frame.rax = static_cast<std::uint64_t>(outcome.value());
      return;
    case Outcome::Kind::kRestart:
      // The loop delivers pending signals before the guest runs again.
      frame.rip -= kSyscallInsnLength;
      return;
    case Outcome::Kind::kLeave:
      frame.rax = 0;
      leave_to_host(frame, /*user_gs_in_msr=*/true);
    case Outcome::Kind::kSignal:
      frame.rax = static_cast<std::uint64_t>(outcome.value());
      force_signal(frame, outcome.forced());
      return;
  }
}

void Monitor::remember(const Exit& exit) noexcept {
  Cpu::RecentExit& r = cpu_.recent[cpu_.recent_next++ % Cpu::kRecentExits];
  r.kind = static_cast<std::uint8_t>(exit.kind);
  r.rip = 0;
  r.detail = 0;
  const guest::VcpuArea& area = *cpu_.area;
  if (exit.kind == ExitKind::kSyscall) {
    const auto* f = reinterpret_cast<const TrapFrame*>(area.syscall_frame);
    r.rip = f->rip, r.detail = f->rax;
  } else if (exit.kind == ExitKind::kException) {
    const auto* f = reinterpret_cast<const TrapFrame*>(area.exception_frame);
    r.rip = f->rip, r.detail = f->vector;
  }
}

void Monitor::trace(const Exit& exit) noexcept {
  char line[256];
  TextBuffer text(line, sizeof line);
  text.append("dunk: vcpu ").dec(cpu_.vcpu.id()).append(": exit ").append(exit_kind_name(exit.kind));
  if (exit.kind == ExitKind::kSyscall) {
    const auto* f = reinterpret_cast<const TrapFrame*>(cpu_.area->syscall_frame);
    text.append(" nr=").dec(static_cast<std::int64_t>(f->rax)).append(" rip=").hex(f->rip);
  } else if (exit.kind == ExitKind::kException) {
    const auto* f = reinterpret_cast<const TrapFrame*>(cpu_.area->exception_frame);
    text.append(" vector=").dec(static_cast<std::int64_t>(f->vector)).append(" error=").hex(f->error_code);
    text.append(" rip=").hex(f->rip).append(" cr2=").hex(f->cr2);
  } else if (exit.error != 0) {
    text.append(" errno=").dec(exit.error);
  }
  // Where an exit that is not the guest's own (a signal, a failed entry)
  // found the guest.
  if (exit.kind != ExitKind::kSyscall && exit.kind != ExitKind::kException) {
    kvm_regs r{};
    kvm_sregs sr{};
    kvm_vcpu_events events{};
    if (cpu_.vcpu.get_regs(r) && cpu_.vcpu.get_sregs(sr) && cpu_.vcpu.get_events(events)) {
      text.append(" rip=").hex(r.rip).append(" rsp=").hex(r.rsp).append(" rflags=").hex(r.rflags);
      text.append(" cs=").hex(sr.cs.selector).append(" irq-injected=").dec(events.interrupt.injected);
      text.append(" exc-injected=").dec(events.exception.injected);
      if (std::uint32_t mp_state = 0; cpu_.vcpu.get_mp_state(mp_state)) text.append(" mp-state=").dec(mp_state);
    }
  }
  text.append("\n");
  write_stderr(text.c_str());
}

Status Monitor::frame_from_vcpu(TrapFrame& f) noexcept {
  kvm_regs r{};
  kvm_sregs sr{};
  DUNK_TRY(cpu_.vcpu.get_regs(r));
  DUNK_TRY(cpu_.vcpu.get_sregs(sr));
  f = from_kvm_regs(r, sr.cs.selector, sr.ss.selector);
  return {};
}

// The bounds of dunk's ring-0 entry code (src/guest/*.S), which the linker
// provides for a section named like a C identifier.
extern "C" __attribute__((visibility("hidden"))) const char __start_dunk_guest_text[];
extern "C" __attribute__((visibility("hidden"))) const char __stop_dunk_guest_text[];

bool Monitor::in_dunk_code(std::uint64_t rip) const noexcept {
  // The IDT stubs, the SYSCALL entry, the trap dispatch and the ring-3
  // switches: between two of their instructions the guest is on its way to
  // an exit or back to the program, never at a point where a signal handler
  // may interrupt it.
  return rip >= reinterpret_cast<std::uint64_t>(__start_dunk_guest_text) &&
         rip < reinterpret_cast<std::uint64_t>(__stop_dunk_guest_text);
}

void Monitor::leave_to_host(const TrapFrame& frame, bool user_gs_in_msr) noexcept {
  TrapFrame f = frame;
  if (!registers_.save_fpu(cpu_.xsave)) fatal("KVM_GET_XSAVE failed while leaving");
  kvm_sregs sregs{};
  if (!cpu_.vcpu.get_sregs(sregs)) fatal("KVM_GET_SREGS failed while leaving");
  std::uint64_t gs = sregs.gs.base;
  if (user_gs_in_msr) {
    auto parked = registers_.user_gs_base();
    if (!parked) fatal("KVM_GET_MSRS failed while leaving");
    gs = *parked;
  }
  // The selectors too: a tracer, or the program itself, reads them on the
  // host from now on.
  load_host_user_segments(native_view(vcpu_user_segments(sregs, gs)));
  hand_altstack_to_host();
  cpu_.in_guest = false;
  note_left_vm_mode();  // its stores set no dirty bit from now on (core/dirty.h)
  dunk_restore_frame(&f, cpu_.xsave);
}

namespace {

// Appends " in PATH+OFFSET" for the host mapping that holds `address`.
void describe_address(TextBuffer& text, std::uint64_t address) noexcept {
  char buffer[MapsReader::kFullLineBuffer];
  MapsReader reader(buffer, sizeof buffer);
  if (!reader.open()) return;
  MapEntry entry;
  while (reader.next(entry)) {
    if (!entry.contains(Hva(address))) continue;
    char path[256];
    std::size_t n = entry.path.size() < sizeof path - 1 ? entry.path.size() : sizeof path - 1;
    std::memcpy(path, entry.path.data(), n);
    path[n] = '\0';
    text.append(" in ").append(n > 0 ? path : "[anonymous]").append("+").hex(address - entry.start.value() + entry.offset);
    return;
  }
  text.append(" (unmapped)");
}

}  // namespace

void Monitor::fatal(const char* what, const Exit* exit, const TrapFrame* frame) noexcept {
  // Another thread is ending the process and has closed the VM's
  // descriptors under this one: nothing went wrong, the thread just ends.
  if (machine_.exiting()) {
    for (;;) sys::call(SYS_exit, 0);
  }
  char line[1024];
  TextBuffer text(line, sizeof line);
  text.append("dunk: fatal: ").append(what);
  if (exit != nullptr) {
    text.append(" [exit ").append(exit_kind_name(exit->kind)).append(" reason=").dec(exit->reason);
    if (exit->error != 0) text.append(" errno=").dec(exit->error);
    if (exit->address != 0) text.append(" gpa=").hex(exit->address);
    if (exit->hardware_reason != 0) text.append(" hw=").hex(exit->hardware_reason);
    text.append("]");
  }
  if (frame != nullptr) {
    text.append(" [vector=").dec(frame->vector).append(" error=").hex(frame->error_code);
    text.append(" rip=").hex(frame->rip).append(" rsp=").hex(frame->rsp).append(" cr2=").hex(frame->cr2);
    text.append("]");
  } else {
    TrapFrame f{};
    if (frame_from_vcpu(f)) {
      text.append(" [rip=").hex(f.rip).append(" rsp=").hex(f.rsp);
      describe_address(text, f.rip);
      text.append("]");
    }
  }
  if (exit != nullptr && exit->kind == ExitKind::kInternalError) {
    kvm_sregs sregs{};
    if (cpu_.vcpu.get_sregs(sregs)) {
      text.append(" [cr0=").hex(sregs.cr0).append(" cr4=").hex(sregs.cr4).append(" efer=").hex(sregs.efer).append("]");
    }
    const kvm_run& run = *cpu_.vcpu.run_page();
    text.append(" [internal data:");
    for (unsigned i = 0; i < run.internal.ndata && i < 4; ++i) text.append(" ").hex(run.internal.data[i]);
    text.append("]");
  }
  text.append("\n  recent exits of vcpu ").dec(cpu_.vcpu.id()).append(":");
  for (unsigned i = 0; i < Cpu::kRecentExits; ++i) {
    const Cpu::RecentExit& r = cpu_.recent[(cpu_.recent_next + i) % Cpu::kRecentExits];
    if (r.kind == 0 && r.rip == 0) continue;
    text.append(" ").append(exit_kind_name(static_cast<ExitKind>(r.kind))).append("(").hex(r.detail);
    text.append("@").hex(r.rip).append(")");
  }
  text.append("\n");
  die_by_signal(SIGABRT, text.c_str());
}

}  // namespace dunk::core
