#include "debug/vm_target.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>

#include <cerrno>
#include <cstring>

#include "abi/signal.h"
#include "arch/x86_64/registers.h"
#include "arch/x86_64/xsave.h"
#include "base/lock.h"
#include "base/syscall.h"
#include "core/guest_state.h"
#include "core/monitor_context.h"
#include "core/text.h"
#include "guest/abi.h"

namespace dunk::debug {
namespace {

using core::Cpu;
using core::CpuDebug;
using core::DebugState;
using core::DebugStopKind;

constexpr std::uint8_t kInt3 = 0xcc;
// How often a vCPU that has not stopped yet is kicked again (a kick can
// land where the monitor had looked already), in rounds of a millisecond.
constexpr unsigned kKickRounds = 50;

void sleep_one_ms() noexcept {
  const timespec t{0, 1000 * 1000};
  sys::call(SYS_nanosleep, reinterpret_cast<long>(&t), 0);
}

// Not running guest code, and not about to: parked, in a system call, or
// not started.
bool quiescent(DebugState state) noexcept { return state != DebugState::kGuest && state != DebugState::kHost; }

void wake(Cpu& cpu) noexcept {
  cpu.debug.hold.store(0, std::memory_order_seq_cst);
  sys::call(SYS_futex, reinterpret_cast<long>(&cpu.debug.hold), FUTEX_WAKE_PRIVATE, 1);
}

// The selectors the program would have natively: it runs at CPL 0 on
// dunk's, and shows the user ones, as in its signal frames.
std::uint32_t user_selector(std::uint64_t selector) noexcept {
  if (selector == DUNK_KERNEL_CS) return DUNK_USER_CS;
  if (selector == DUNK_KERNEL_DS) return DUNK_USER_DS;
  return static_cast<std::uint32_t>(selector);
}

}  // namespace

bool VmTarget::listed(const Cpu& cpu) const noexcept {
  return cpu.in_guest && !cpu.owner_exited.load(std::memory_order_acquire) &&
         cpu.owner_tid.load(std::memory_order_relaxed) != 0;
}

Cpu* VmTarget::cpu_of(ThreadId thread) noexcept {
  for (unsigned i = 0, n = machine_.cpu_count(); i < n; ++i) {
    Cpu* cpu = machine_.cpu_at(i);
    if (listed(*cpu) && cpu->owner_tid.load(std::memory_order_relaxed) == thread) return cpu;
  }
  return nullptr;
}

std::size_t VmTarget::threads(ThreadId* out, std::size_t max) noexcept {
  std::size_t n = 0;
  for (unsigned i = 0, count = machine_.cpu_count(); i < count; ++i) {
    const Cpu& cpu = *machine_.cpu_at(i);
    if (!listed(cpu)) continue;
    if (n < max) out[n] = cpu.owner_tid.load(std::memory_order_relaxed);
    ++n;
  }
  return n;
}

bool VmTarget::thread_alive(ThreadId thread) noexcept { return cpu_of(thread) != nullptr; }

std::size_t VmTarget::describe_thread(ThreadId thread, char* out, std::size_t size) noexcept {
  const Cpu* cpu = cpu_of(thread);
  if (cpu == nullptr || size == 0) return 0;
  core::TextBuffer text(out, size);
  text.append("vCPU ").dec(cpu->vcpu.id());
  return std::strlen(out);
}

bool VmTarget::has_avx() noexcept { return (machine_.xcr0() & arch::xfeature::kAVX) != 0; }

void VmTarget::kick(const Cpu& cpu) noexcept {
  // A signal from this process, with the link's address: the host handler
  // knows it from a SIGCANCEL of glibc's (core/debug_link.h).
  siginfo_t info{};
  info.si_signo = core::DebugLink::kKickSignal;
  info.si_code = SI_QUEUE;
  info.si_pid = static_cast<pid_t>(link_.pid);
  info.si_uid = static_cast<uid_t>(sys::call(SYS_getuid));
  info.si_value.sival_ptr = &link_;
  sys::call(SYS_rt_tgsigqueueinfo, link_.pid, cpu.owner_tid.load(std::memory_order_relaxed),
            core::DebugLink::kKickSignal, reinterpret_cast<long>(&info));
}

void VmTarget::stop_all(bool require_one) noexcept {
  // New threads start held; then every vCPU is held, and those about to
  // run guest code or running it are kicked out of KVM_RUN.
  link_.hold_new.store(1, std::memory_order_seq_cst);
  for (unsigned round = 0;; ++round) {
    bool all = true;
    unsigned seen = 0;
    for (unsigned i = 0, n = machine_.cpu_count(); i < n; ++i) {
      Cpu& cpu = *machine_.cpu_at(i);
      // Again each round: a thread starting on this vCPU resets it.
      cpu.debug.hold.store(1, std::memory_order_seq_cst);
      if (!listed(cpu)) continue;
      ++seen;
      const DebugState state = cpu.debug.state.load(std::memory_order_seq_cst);
      if (quiescent(state)) continue;
      all = false;
      if (state == DebugState::kGuest && round % kKickRounds == 0) kick(cpu);
    }
    if (all && (!require_one || seen > 0)) break;
    sleep_one_ms();
  }
  stopped_ = true;
}

bool VmTarget::to_event(Cpu& cpu, StopEvent& event) noexcept {
  CpuDebug& d = cpu.debug;
  if (d.state.load(std::memory_order_acquire) != DebugState::kParked || d.stop.kind == DebugStopKind::kNone ||
      d.stop_reported) {
    return false;
  }
  const ThreadId thread = cpu.owner_tid.load(std::memory_order_relaxed);
  switch (d.stop.kind) {
    case DebugStopKind::kBreakpoint:
      // Removed since it was hit: the vCPU resumes at its address and runs
      // the original instruction; nothing to report.
      if (d.frame == nullptr || !link_.has_breakpoint(d.frame->rip)) {
        d.stop = core::DebugStop{};
        return false;
      }
      event = StopEvent{StopReason::kSoftwareBreakpoint, thread, SIGTRAP, d.frame->rip};
      break;
    case DebugStopKind::kStep:
      event = StopEvent{StopReason::kSignal, thread, SIGTRAP, 0};
      break;
    case DebugStopKind::kHardware: {
      event = StopEvent{StopReason::kSignal, thread, SIGTRAP, 0};
      for (unsigned i = 0; i < hardware_count_; ++i) {
        const HardwareBreakpoint& h = hardware_[i];
        if ((h.slots & d.stop.dr6) == 0) continue;
        const StopReason reason = h.type == BreakpointType::kHardware ? StopReason::kHardwareBreakpoint
                                  : h.type == BreakpointType::kWrite  ? StopReason::kWatch
                                  : h.type == BreakpointType::kRead   ? StopReason::kReadWatch
                                                                      : StopReason::kAccessWatch;
        event = StopEvent{reason, thread, SIGTRAP, h.address};
        break;
      }
      break;
    }
    case DebugStopKind::kSignal:
      event = StopEvent{StopReason::kSignal, thread, d.stop.value, 0};
      break;
    case DebugStopKind::kExited:
      event = StopEvent{StopReason::kExited, thread, d.stop.value, 0};
      break;
    case DebugStopKind::kKilled:
      event = StopEvent{StopReason::kKilled, thread, d.stop.value, 0};
      break;
    case DebugStopKind::kNone:
      return false;
  }
  d.stop_reported = true;
  return true;
}

bool VmTarget::pending_stop(StopEvent& stop, const ResumeRequest* request) noexcept {
  // The process's end first: nothing else matters after it.
  for (const bool ending : {true, false}) {
    for (unsigned i = 0, n = machine_.cpu_count(); i < n; ++i) {
      Cpu& cpu = *machine_.cpu_at(i);
      if (!listed(cpu)) continue;
      const DebugStopKind kind = cpu.debug.stop.kind;
      const bool ends = kind == DebugStopKind::kExited || kind == DebugStopKind::kKilled;
      if (ends != ending) continue;
      if (request != nullptr && !ends &&
          request->action_for(cpu.owner_tid.load(std::memory_order_relaxed)).kind == ResumeKind::kStay) {
        continue;
      }
      if (to_event(cpu, stop)) return true;
    }
  }
  return false;
}

StopEvent VmTarget::halt() noexcept {
  if (!stopped_) stop_all(/*require_one=*/true);
  StopEvent event;
  if (pending_stop(event, nullptr)) {
    initial_ = false;
    return last_ = event;
  }
  if (initial_) {
    // The first instruction in VM mode, as a program starts under gdb.
    initial_ = false;
    ThreadId first = 0;
    threads(&first, 1);
    last_ = StopEvent{StopReason::kSignal, first, SIGTRAP, 0};
  }
  return last_;
}

StopEvent VmTarget::interrupt() noexcept {
  stop_all(/*require_one=*/false);
  StopEvent event;
  if (pending_stop(event, nullptr)) return last_ = event;
  ThreadId thread = last_.thread;
  if (!thread_alive(thread)) threads(&thread, 1);
  return last_ = StopEvent{StopReason::kSignal, thread, SIGINT, 0};
}

bool VmTarget::collect_stop(StopEvent& stop) noexcept {
  std::uint64_t count;
  sys::call(SYS_read, link_.event_fd, reinterpret_cast<long>(&count), sizeof count);
  stop_all(/*require_one=*/false);
  if (!pending_stop(stop, nullptr)) {
    // Nothing to report after all (a breakpoint hit and removed in the
    // meantime): everything runs on as gdb asked.
    return !resume(last_request_, stop);
  }
  last_ = stop;
  return true;
}

void VmTarget::release(Cpu& cpu, const ResumeAction& action) noexcept {
  cpu.debug.command = core::DebugCommand{
      action.kind == ResumeKind::kStep ? core::DebugResume::kStep : core::DebugResume::kContinue, action.signal};
  cpu.debug.command_sequence.fetch_add(1, std::memory_order_release);
  wake(cpu);
}

bool VmTarget::resume(const ResumeRequest& request, StopEvent& pending) noexcept {
  // A stop that came while another was reported goes first, if its thread
  // is one that would run (gdb then deals with it as with a new one).
  if (pending_stop(pending, &request)) {
    last_ = pending;
    return false;
  }
  bool any_stay = false;
  for (unsigned i = 0, n = machine_.cpu_count(); i < n; ++i) {
    const Cpu& cpu = *machine_.cpu_at(i);
    if (listed(cpu) && request.action_for(cpu.owner_tid.load(std::memory_order_relaxed)).kind == ResumeKind::kStay) {
      any_stay = true;
    }
  }
  // Threads that start while some stay held start held too.
  link_.hold_new.store(any_stay ? 1 : 0, std::memory_order_seq_cst);
  for (unsigned i = 0, n = machine_.cpu_count(); i < n; ++i) {
    Cpu& cpu = *machine_.cpu_at(i);
    if (!listed(cpu)) {
      if (!any_stay) wake(cpu);
      continue;
    }
    const ResumeAction action = request.action_for(cpu.owner_tid.load(std::memory_order_relaxed));
    if (action.kind != ResumeKind::kStay) release(cpu, action);
  }
  stopped_ = false;
  last_request_ = request;
  return true;
}

Status VmTarget::read_registers(ThreadId thread, X86State& state) noexcept {
  Cpu* cpu = cpu_of(thread);
  if (cpu == nullptr) return Error{"no such thread", ESRCH};
  const CpuDebug& d = cpu->debug;
  const DebugState where = d.state.load(std::memory_order_acquire);
  if (where != DebugState::kParked && where != DebugState::kCall) return Error{"the thread is running", EBUSY};
  if (machine_.xsave_size() > sizeof xsave_) return Error{"the XSAVE image is larger than the stub's buffer", E2BIG};
  kvm_sregs sregs{};
  DUNK_TRY(cpu->vcpu.get_sregs(sregs));
  guest::TrapFrame f{};
  if (d.frame != nullptr) {
    f = *d.frame;
  } else {
    kvm_regs regs{};
    DUNK_TRY(cpu->vcpu.get_regs(regs));
    f = core::from_kvm_regs(regs, sregs.cs.selector, sregs.ss.selector);
  }
  const std::uint64_t gpr[16] = {f.rax, f.rbx, f.rcx, f.rdx, f.rsi, f.rdi, f.rbp, f.rsp,
                                 f.r8,  f.r9,  f.r10, f.r11, f.r12, f.r13, f.r14, f.r15};
  std::memcpy(state.gpr, gpr, sizeof gpr);
  state.rip = f.rip;
  state.rflags = f.rflags;
  const std::uint32_t segment[6] = {user_selector(f.cs), user_selector(f.ss), sregs.ds.selector,
                                    sregs.es.selector,   sregs.fs.selector,   sregs.gs.selector};
  std::memcpy(state.segment, segment, sizeof segment);
  state.fs_base = sregs.fs.base;
  state.gs_base = sregs.gs.base;
  if (d.gs_in_msr) {
    DUNK_ASSIGN_OR_RETURN(state.gs_base, core::KvmVcpuRegisters(cpu->vcpu, machine_.xsave_size()).user_gs_base());
  }
  // The call in progress, for a thread in a system call; none otherwise.
  state.orig_rax = where == DebugState::kCall && d.frame != nullptr && d.frame->vector == DUNK_VECTOR_SYSCALL
                       ? f.rax
                       : ~std::uint64_t{0};
  DUNK_TRY(cpu->vcpu.get_xsave(xsave_, machine_.xsave_size()));
  state.xsave = xsave_;
  return {};
}

Status VmTarget::write_registers(ThreadId thread, const X86State& state) noexcept {
  Cpu* cpu = cpu_of(thread);
  if (cpu == nullptr) return Error{"no such thread", ESRCH};
  CpuDebug& d = cpu->debug;
  // A thread in a system call has its registers in use by its monitor.
  if (d.state.load(std::memory_order_acquire) != DebugState::kParked) {
    return Error{"the thread's registers are not stopped", EBUSY};
  }
  kvm_sregs sregs{};
  DUNK_TRY(cpu->vcpu.get_sregs(sregs));
  guest::TrapFrame f{};
  kvm_regs regs{};
  if (d.frame != nullptr) {
    f = *d.frame;
  } else {
    DUNK_TRY(cpu->vcpu.get_regs(regs));
    f = core::from_kvm_regs(regs, sregs.cs.selector, sregs.ss.selector);
  }
  const std::uint64_t* g = state.gpr;
  f.rax = g[0], f.rbx = g[1], f.rcx = g[2], f.rdx = g[3], f.rsi = g[4], f.rdi = g[5], f.rbp = g[6], f.rsp = g[7];
  f.r8 = g[8], f.r9 = g[9], f.r10 = g[10], f.r11 = g[11], f.r12 = g[12], f.r13 = g[13], f.r14 = g[14], f.r15 = g[15];
  f.rip = state.rip;
  // The flags a program may set natively (those rt_sigreturn takes); not
  // IF, IOPL and the like, which are dunk's in ring 0.
  f.rflags = (f.rflags & ~abi::kRestorableFlags) | (state.rflags & abi::kRestorableFlags);
  if (d.frame != nullptr) {
    *d.frame = f;
  } else {
    DUNK_TRY(cpu->vcpu.set_regs(core::to_kvm_regs(f)));
  }
  core::KvmVcpuRegisters vcpu(cpu->vcpu, machine_.xsave_size());
  if (state.fs_base != sregs.fs.base) DUNK_TRY(vcpu.set_fs_base(state.fs_base));
  if (d.gs_in_msr) {
    DUNK_TRY(vcpu.set_user_gs_base(state.gs_base));
  } else if (state.gs_base != sregs.gs.base) {
    DUNK_TRY(cpu->vcpu.get_sregs(sregs));
    sregs.gs.base = state.gs_base;
    DUNK_TRY(cpu->vcpu.set_sregs(sregs));
  }
  arch::xsave::Image(state.xsave).normalize_for(machine_.xcr0());
  return cpu->vcpu.set_xsave(state.xsave);
}

std::size_t VmTarget::read_memory(std::uint64_t address, void* out, std::size_t size) noexcept {
  // /proc/self/mem reads what ptrace reads: PROT_NONE pages included.
  const long got = sys::call(SYS_pread64, memory_fd_, reinterpret_cast<long>(out), static_cast<long>(size),
                             static_cast<long>(address));
  if (got <= 0) return 0;
  auto* bytes = static_cast<std::uint8_t*>(out);
  LockGuard held(link_.lock);
  for (unsigned i = 0; i < link_.breakpoint_count; ++i) {
    const core::DebugLink::Breakpoint& b = link_.breakpoints[i];
    if (b.address - address < static_cast<std::uint64_t>(got)) bytes[b.address - address] = b.original;
  }
  return static_cast<std::size_t>(got);
}

bool VmTarget::write_raw(std::uint64_t address, const void* data, std::size_t size) noexcept {
  const auto* bytes = static_cast<const std::byte*>(data);
  while (size > 0) {
    const long n = sys::call(SYS_pwrite64, memory_fd_, reinterpret_cast<long>(bytes), static_cast<long>(size),
                             static_cast<long>(address));
    if (n <= 0) return false;
    bytes += n, address += static_cast<std::uint64_t>(n), size -= static_cast<std::size_t>(n);
  }
  return true;
}

bool VmTarget::write_memory(std::uint64_t address, const void* data, std::size_t size) noexcept {
  LockGuard held(link_.lock);
  // Under one of the stub's int3, the byte written is the one it puts back
  // when the breakpoint goes; the int3 stays.
  const auto* bytes = static_cast<const std::uint8_t*>(data);
  for (unsigned i = 0; i < link_.breakpoint_count; ++i) {
    core::DebugLink::Breakpoint& b = link_.breakpoints[i];
    if (b.address - address < size) b.original = bytes[b.address - address];
  }
  bool ok = write_raw(address, data, size);
  for (unsigned i = 0; i < link_.breakpoint_count; ++i) {
    const core::DebugLink::Breakpoint& b = link_.breakpoints[i];
    if (b.address - address < size) ok = write_raw(b.address, &kInt3, 1) && ok;
  }
  return ok;
}

void VmTarget::load_debug_registers() noexcept {
  // Every monitor loads the new values before its vCPU runs again.
  link_.debugreg_generation.fetch_add(1, std::memory_order_release);
}

Status VmTarget::insert_breakpoint(BreakpointType type, std::uint64_t address, std::uint64_t length) noexcept {
  LockGuard held(link_.lock);
  if (type == BreakpointType::kSoftware) {
    for (unsigned i = 0; i < link_.breakpoint_count; ++i) {
      if (link_.breakpoints[i].address == address) return {};
    }
    if (link_.breakpoint_count == core::DebugLink::kMaxBreakpoints) return Error{"too many breakpoints", ENOSPC};
    std::uint8_t original;
    if (sys::call(SYS_pread64, memory_fd_, reinterpret_cast<long>(&original), 1, static_cast<long>(address)) != 1) {
      return Error{"cannot read the breakpoint's address", EFAULT};
    }
    if (!write_raw(address, &kInt3, 1)) return Error{"cannot write the breakpoint's int3", EFAULT};
    link_.breakpoints[link_.breakpoint_count++] = core::DebugLink::Breakpoint{address, original};
    return {};
  }
  // Debug registers: an instruction breakpoint takes one; a watched range
  // as many as its aligned pieces.
  arch::dr7::WatchPiece pieces[arch::dr7::kSlots];
  unsigned count = 1;
  if (type == BreakpointType::kHardware) {
    pieces[0] = arch::dr7::WatchPiece{address, 1};
  } else {
    count = arch::dr7::split_watch_range(address, length, pieces, arch::dr7::kSlots);
    if (count > arch::dr7::kSlots) return Error{"the watched range needs more debug registers than x86 has", ENOSPC};
  }
  std::uint64_t dr7 = link_.debugreg[7];
  const unsigned free_slots = ~arch::dr7::armed_slots(dr7) & 0xf;
  if (static_cast<unsigned>(__builtin_popcount(free_slots)) < count || hardware_count_ == arch::dr7::kSlots) {
    return Error{"no free debug register", ENOSPC};
  }
  const arch::dr7::Condition condition = type == BreakpointType::kHardware ? arch::dr7::Condition::kExecute
                                         : type == BreakpointType::kWrite  ? arch::dr7::Condition::kWrite
                                                                           : arch::dr7::Condition::kReadWrite;
  unsigned slots = 0;
  for (unsigned i = 0, slot = 0; i < count; ++i) {
    while ((free_slots >> slot & 1) == 0) ++slot;
    link_.debugreg[slot] = pieces[i].address;
    dr7 = arch::dr7::arm(dr7, slot, condition, pieces[i].bytes);
    slots |= 1u << slot;
    ++slot;
  }
  link_.debugreg[7] = dr7;
  hardware_[hardware_count_++] = HardwareBreakpoint{type, address, length, slots};
  load_debug_registers();
  return {};
}

Status VmTarget::remove_breakpoint(BreakpointType type, std::uint64_t address, std::uint64_t length) noexcept {
  LockGuard held(link_.lock);
  if (type == BreakpointType::kSoftware) {
    for (unsigned i = 0; i < link_.breakpoint_count; ++i) {
      core::DebugLink::Breakpoint& b = link_.breakpoints[i];
      if (b.address != address) continue;
      const bool restored = write_raw(address, &b.original, 1);
      b = link_.breakpoints[--link_.breakpoint_count];
      return restored ? Status{} : Error{"cannot restore the instruction under a breakpoint", EFAULT};
    }
    return {};  // not there (any more): nothing to do
  }
  for (unsigned i = 0; i < hardware_count_; ++i) {
    HardwareBreakpoint& h = hardware_[i];
    if (h.type != type || h.address != address || (type != BreakpointType::kHardware && h.length != length)) continue;
    for (unsigned slot = 0; slot < arch::dr7::kSlots; ++slot) {
      if ((h.slots >> slot & 1) == 0) continue;
      link_.debugreg[7] = arch::dr7::disarm(link_.debugreg[7], slot);
      link_.debugreg[slot] = 0;
    }
    h = hardware_[--hardware_count_];
    load_debug_registers();
    return {};
  }
  return {};
}

void VmTarget::pass_signals(std::uint64_t mask) noexcept { link_.pass_signals.store(mask, std::memory_order_relaxed); }

long VmTarget::read_auxv(std::uint64_t offset, void* out, std::size_t size) noexcept {
  const long fd = sys::call(SYS_openat, AT_FDCWD, reinterpret_cast<long>("/proc/self/auxv"), O_RDONLY | O_CLOEXEC);
  if (sys::failed(fd)) return -1;
  const long n = sys::call(SYS_pread64, fd, reinterpret_cast<long>(out), static_cast<long>(size),
                           static_cast<long>(offset));
  sys::call(SYS_close, fd);
  return sys::failed(n) ? -1 : n;
}

long VmTarget::exec_file(char* out, std::size_t size) noexcept {
  const long n = sys::call(SYS_readlinkat, AT_FDCWD, reinterpret_cast<long>("/proc/self/exe"),
                           reinterpret_cast<long>(out), static_cast<long>(size));
  return sys::failed(n) ? -1 : n;
}

void VmTarget::kill() noexcept { sys::call(SYS_kill, link_.pid, SIGKILL); }

void VmTarget::detach() noexcept {
  {
    LockGuard held(link_.lock);
    for (unsigned i = 0; i < link_.breakpoint_count; ++i) {
      write_raw(link_.breakpoints[i].address, &link_.breakpoints[i].original, 1);
    }
    link_.breakpoint_count = 0;
    std::memset(link_.debugreg, 0, sizeof link_.debugreg);
    hardware_count_ = 0;
    load_debug_registers();
  }
  link_.pass_signals.store(0, std::memory_order_relaxed);
  // From here on no monitor parks; the parked ones go on, loading the
  // cleared debug registers on their way.
  link_.attached.store(false, std::memory_order_seq_cst);
  link_.hold_new.store(0, std::memory_order_seq_cst);
  for (unsigned i = 0, n = machine_.cpu_count(); i < n; ++i) {
    Cpu& cpu = *machine_.cpu_at(i);
    if (listed(cpu)) {
      release(cpu, ResumeAction{ResumeKind::kContinue, 0});
    } else {
      wake(cpu);
    }
  }
  stopped_ = false;
}

}  // namespace dunk::debug
