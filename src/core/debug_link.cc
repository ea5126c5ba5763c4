#include "core/debug_link.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/syscall.h>

#include <cstddef>
#include <cstring>

#include "base/syscall.h"
#include "core/machine.h"

namespace dunk::core {

void CpuDebug::reset(bool held) noexcept {
  stop = DebugStop{};
  frame = nullptr;
  gs_in_msr = false;
  stop_reported = false;
  command_taken = command_sequence.load(std::memory_order_acquire);
  stepping = frame_step = stepping_out = step_into_handler = false;
  inject = 0;
  debugregs_applied = ~std::uint32_t{0};  // the first checkpoint loads the debug registers
  state.store(DebugState::kHost, std::memory_order_seq_cst);
  hold.store(held ? 1 : 0, std::memory_order_seq_cst);
}

bool DebugLink::has_breakpoint(std::uint64_t address) noexcept {
  LockGuard held(lock);
  for (unsigned i = 0; i < breakpoint_count; ++i) {
    if (breakpoints[i].address == address) return true;
  }
  return false;
}

void DebugLink::notify() noexcept {
  const std::uint64_t one = 1;
  sys::call(SYS_write, event_fd, reinterpret_cast<long>(&one), sizeof one);
}

bool DebugLink::passes(int sig) const noexcept {
  return sig >= 1 && sig <= 64 && (pass_signals.load(std::memory_order_relaxed) >> (sig - 1) & 1) != 0;
}

DebugCommand debug_park(DebugLink& link, Cpu& cpu, const DebugStop& stop, guest::TrapFrame* frame,
                        bool gs_in_msr) noexcept {
  CpuDebug& d = cpu.debug;
  if (!link.attached.load(std::memory_order_acquire)) return DebugCommand{};  // detached: nobody would release it
  d.frame = frame;
  d.gs_in_msr = gs_in_msr;
  d.stop = stop;
  d.stop_reported = false;
  const bool event = stop.kind != DebugStopKind::kNone;
  // An event holds this vCPU itself: the debugger then holds the others.
  if (event) d.hold.store(1, std::memory_order_seq_cst);
  d.state.store(DebugState::kParked, std::memory_order_seq_cst);
  if (event) link.notify();
  while (d.hold.load(std::memory_order_seq_cst) != 0) {
    // EINTR (a kick, a signal for the program) just looks again.
    sys::call(SYS_futex, reinterpret_cast<long>(&d.hold), FUTEX_WAIT_PRIVATE, 1, 0);
  }
  d.state.store(DebugState::kHost, std::memory_order_seq_cst);
  d.stop = DebugStop{};
  d.frame = nullptr;
  DebugCommand command{};
  const std::uint32_t sequence = d.command_sequence.load(std::memory_order_acquire);
  if (sequence != d.command_taken) {
    command = d.command;
    d.command_taken = sequence;
  }
  return command;
}

bool is_debugger_kick(int sig, const void* siginfo) noexcept {
  if (sig != DebugLink::kKickSignal) return false;
  const DebugLink* link = Machine::instance().debugger();
  if (link == nullptr) return false;
  const auto* info = static_cast<const std::byte*>(siginfo);
  std::int32_t code, pid;
  std::uint64_t value;
  std::memcpy(&code, info + offsetof(siginfo_t, si_code), sizeof code);
  std::memcpy(&pid, info + offsetof(siginfo_t, si_pid), sizeof pid);
  std::memcpy(&value, info + offsetof(siginfo_t, si_value), sizeof value);
  return code == SI_QUEUE && pid == link->pid && value == reinterpret_cast<std::uint64_t>(link);
}

void remove_breakpoints_in_fork_child(DebugLink& link) noexcept {
  // This process's own memory: the inherited descriptor of the debugger's
  // /proc/self/mem names the parent's.
  const long fd = sys::call(SYS_openat, AT_FDCWD, reinterpret_cast<long>("/proc/self/mem"), O_RDWR | O_CLOEXEC);
  if (sys::failed(fd)) return;
  // One thread here, and the lock may be a copy of one the parent held.
  link.lock.reset_after_fork();
  for (unsigned i = 0; i < link.breakpoint_count && i < DebugLink::kMaxBreakpoints; ++i) {
    const DebugLink::Breakpoint& b = link.breakpoints[i];
    sys::call(SYS_pwrite64, fd, reinterpret_cast<long>(&b.original), 1, static_cast<long>(b.address));
  }
  link.breakpoint_count = 0;
  sys::call(SYS_close, fd);
}

void debug_report_death(int sig) noexcept {
  Machine& machine = Machine::instance();
  DebugLink* link = machine.debugger();
  if (link == nullptr || !link->attached.load(std::memory_order_acquire)) return;
  Cpu* cpu = machine.cpu_of_thread(static_cast<std::int32_t>(sys::call(SYS_gettid)));
  if (cpu == nullptr || !cpu->in_guest) return;
  debug_park(*link, *cpu, DebugStop{DebugStopKind::kKilled, sig, 0}, nullptr, false);
}

}  // namespace dunk::core
