// The public entry points: enter(), leave(), in_vm().
//
// enter() captures the calling thread's state, switches to the monitor's
// stack and lets the monitor resume that state inside the VM, so that
// enter() "returns" in guest ring 0. leave() is one of dunk's private system
// calls: the monitor answers it by restoring the guest's state on the host.
#include <asm/prctl.h>
#include <signal.h>
#include <sys/mman.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "base/syscall.h"
#include "core/machine.h"
#include "core/monitor.h"
#include "core/thread_start.h"
#include "dunk/dunk.h"
#include "guest/abi.h"
#include "kvm/kvm.h"

namespace dunk {
namespace {

// Read by guest and host faces alike; initial-exec, because the monitor
// must not call into the dynamic linker's TLS resolver.
thread_local core::Cpu* tls_cpu __attribute__((tls_model("initial-exec"))) = nullptr;
// The machine's generation tls_cpu belongs to: a VM torn down by shutdown()
// leaves the Cpu pointers of the threads that used it behind.
thread_local std::uint64_t tls_generation __attribute__((tls_model("initial-exec"))) = 0;

core::Cpu* live_tls_cpu() noexcept {
  if (tls_cpu == nullptr) return nullptr;
  return tls_generation == core::Machine::instance().generation() ? tls_cpu : nullptr;
}

void set_tls_cpu(core::Cpu* cpu) noexcept {
  tls_cpu = cpu;
  tls_generation = core::Machine::instance().generation();
}

}  // namespace

// The parent's VM is unusable in a fork child: KVM serves a VM only to the
// address space that created it. Drops it, so that enter() builds another.
void forget_parent_vm(bool shares_fd_table) {
  core::Machine::instance().forget_after_fork(shares_fd_table);
  set_tls_cpu(nullptr);
}

// A fork made outside VM mode (by a thread that never entered, or after
// leave()) copies a Machine whose VM the child cannot use either. (A child
// forked in VM mode has dropped it already, and may have a VM of its own by
// the time libc runs this.)
void forget_in_fork_child() {
  if (!core::Machine::instance().created_here()) forget_parent_vm(/*shares_fd_table=*/false);
}

// Moves a fork child into a VM of its own and resumes `frame` there (does
// not return), or says why not.
Status enter_fork_child(const guest::TrapFrame& frame, const core::UserSegments& segments, const void* xsave,
                        const abi::SignalStack& altstack) {
  core::Machine& machine = core::Machine::instance();
  // The parent's kind of VM (forget_after_fork keeps its options).
  EnterOptions options = machine.creation_options();
  options.follow_fork = true;
  DUNK_TRY(machine.ensure_created(options));
  DUNK_ASSIGN_OR_RETURN(core::Cpu * cpu, machine.acquire_cpu());
  set_tls_cpu(cpu);
  cpu->signals.reset();
  cpu->signals.altstack = altstack;
  cpu->entering_fork_child = true;
  cpu->owner_tid.store(static_cast<std::int32_t>(sys::call(SYS_gettid)), std::memory_order_relaxed);
  cpu->prepare_entry(frame, segments, static_cast<const std::byte*>(xsave), machine.xsave_size());
  core::dunk_run_on_stack(cpu->monitor_stack_top, &core::monitor_main, cpu);
}

// Moves a fork child into a VM of its own built from its copy of the
// parent's (Machine::adopt_after_fork) and resumes the program there where
// the parent's vCPU stopped for the fork (does not return), or says why not.
// Runs on the copy of `forking`'s monitor stack, which the child's monitor
// then starts over from its top: `frame` and `xsave` (below the current
// stack pointer) are copied into `forking` first.
Status adopt_fork_child(core::Cpu& forking, const guest::TrapFrame& frame, const core::UserSegments& segments,
                        const void* xsave, const abi::SignalStack& altstack, bool shares_fd_table,
                        std::uint64_t program_mask) {
  core::Machine& machine = core::Machine::instance();
  DUNK_TRY(machine.adopt_after_fork(forking, shares_fd_table));
  set_tls_cpu(&forking);
  forking.signals.reset();
  forking.signals.altstack = altstack;
  forking.debug.reset(/*held=*/false);
  forking.refaulting = false;
  forking.in_guest = false;
  forking.entering_fork_child = true;
  forking.resumes_fork = true;
  forking.owner_exited.store(false, std::memory_order_relaxed);
  forking.owner_tid.store(static_cast<std::int32_t>(sys::call(SYS_gettid)), std::memory_order_relaxed);
  forking.fork_sigmask = program_mask;
  forking.unmask_at_entry = true;
  forking.prepare_entry(frame, segments, static_cast<const std::byte*>(xsave), machine.xsave_size());
  core::dunk_run_on_stack(forking.monitor_stack_top, &core::monitor_main, &forking);
}

// What a fork child needs to resume the program, on the arena's transit
// region (building its own VM replaces the rest of the arena).
struct ForkChild {
  guest::TrapFrame frame;
  core::UserSegments segments;
  abi::SignalStack altstack;
  alignas(64) std::byte xsave[];  // Machine::xsave_size() bytes
};

void hand_altstack_to_host(const abi::SignalStack& altstack) {
  if (altstack.size != 0) sys::call(SYS_sigaltstack, reinterpret_cast<long>(&altstack), 0);
}

[[noreturn]] void resume_fork_child(void* arg) {
  auto* child = static_cast<ForkChild*>(arg);
  Status s = enter_fork_child(child->frame, child->segments, child->xsave, child->altstack);
  char why[256];
  char line[400];
  int n = std::snprintf(line, sizeof line, "dunk: a fork child cannot enter VM mode (%s); it runs outside VM mode\n",
                        describe(s.error(), why, sizeof why));
  if (n > 0) sys::call(SYS_write, 2, reinterpret_cast<long>(line), n);
  set_tls_cpu(nullptr);
  hand_altstack_to_host(child->altstack);
  core::load_host_user_segments(core::native_view(child->segments));
  core::dunk_restore_frame(&child->frame, child->xsave);
}

// Runs in a fork child (no CLONE_VM) of a thread in VM mode, on the copy of
// its monitor's stack, before the child resumes the program: in a VM of its
// own when the process follows forks, otherwise on the host (by returning).
extern "C" void dunk_fork_child_fixup(const guest::TrapFrame* frame, const void* xsave, std::uint64_t clone_flags) {
  // No signal handler runs while the child is neither the parent's copy nor
  // in a VM of its own; the mask is the program's again once it is.
  const std::uint64_t all = ~std::uint64_t{0};
  std::uint64_t program_mask = 0;
  sys::call(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&all), reinterpret_cast<long>(&program_mask), 8);
  // Signals dunk's handler kept blocked for the VM before this point.
  program_mask &= ~core::take_signals_deferred_in_fork_child();
  core::Machine& machine = core::Machine::instance();
  // The vCPU of the thread that forked (MachineThreads::start_process).
  // Forgotten at once: from here on dunk's signal handler no longer takes
  // this process for a child whose fixup has not begun.
  core::Cpu* const forking = machine.forking();
  machine.set_forking(nullptr);
  const abi::SignalStack altstack = forking != nullptr ? forking->signals.altstack : abi::kNoSignalStack;
  // The program's FS and GS as the parent's monitor read them before the
  // fork (MachineThreads::start_process).
  const core::UserSegments segments = forking != nullptr ? forking->fork_segments : core::host_user_segments();
  const bool follow = machine.follow_fork();
  const bool shares_fd_table = (clone_flags & CLONE_FILES) != 0;
  if (follow && forking != nullptr) {
    // The parent's state as fork copied it: the page tables with every edit
    // the program made, a handler or ring-3 run in progress, all kept.
    const Status s = adopt_fork_child(*forking, *frame, segments, xsave, altstack, shares_fd_table, program_mask);
    char why[256];
    char line[400];
    const int n = std::snprintf(line, sizeof line,
                                "dunk: a fork child cannot keep its parent's VM state (%s); it builds a VM afresh\n",
                                describe(s.error(), why, sizeof why));
    if (n > 0) sys::call(SYS_write, 2, reinterpret_cast<long>(line), n);
  }
  sys::call(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&program_mask), 0, 8);
  forget_parent_vm(shares_fd_table);
  if (follow) {
    // This stack lies in the arena, which the new VM recycles: move to the
    // arena's transit region first, which recycling keeps (the child's
    // monitor then runs on a stack of the new arena). Not to memory mapped
    // anywhere else: the program may expect a fault there.
    constexpr std::size_t kStack = 256 * 1024;
    const std::size_t size = kStack + sizeof(ForkChild) + machine.xsave_size();
    if (Result<std::byte*> memory = machine.arena().transit(size); memory.ok()) {
      auto* child = reinterpret_cast<ForkChild*>(*memory + kStack);
      child->frame = *frame;
      child->segments = segments;
      child->altstack = altstack;
      std::memcpy(child->xsave, xsave, machine.xsave_size());
      core::dunk_run_on_stack(child, &resume_fork_child, child);
    }
    sys::call(SYS_write, 2, reinterpret_cast<long>("dunk: a fork child has no memory to enter VM mode; it runs outside VM mode\n"), 75);
  }
  hand_altstack_to_host(altstack);
  core::load_host_user_segments(core::native_view(segments));
}

Status enter(const EnterOptions& options) noexcept {
  core::Machine& machine = core::Machine::instance();
  // Asking a VM without local APICs for interrupts fails, in VM mode too
  // (ensure_created says why).
  if (in_vm()) return options.interrupts ? machine.ensure_created(options) : Status{};
  static const int atfork_registered = pthread_atfork(nullptr, nullptr, forget_in_fork_child);
  (void)atfork_registered;
  DUNK_TRY(machine.ensure_created(options));
  if (live_tls_cpu() == nullptr) {
    DUNK_ASSIGN_OR_RETURN(core::Cpu * cpu, machine.acquire_cpu());
    set_tls_cpu(cpu);
  }
  core::Cpu* cpu = tls_cpu;
  // Signals the program catches reach its handlers in the guest from now on.
  core::adopt_signal_handlers();
  core::take_altstack_from_host(*cpu);
  cpu->owner_tid.store(static_cast<std::int32_t>(sys::call(SYS_gettid)), std::memory_order_relaxed);
  // dunk_capture_and_switch fills in the frame and the FPU image; RAX is
  // what enter() returns in the guest. XSAVE leaves parts of the image's
  // header alone, which KVM_SET_XSAVE wants zero.
  std::memset(cpu->xsave, 0, machine.xsave_size());
  cpu->prepare_entry_from_host(guest::TrapFrame{});
  long result = core::dunk_capture_and_switch(&cpu->entry_frame, cpu->xsave, cpu->monitor_stack_top,
                                              &core::monitor_main, cpu);
  if (result != 0) return cpu->entry_error;
  return {};
}

void leave() noexcept {
  if (!in_vm()) return;
  sys::call(DUNK_SYSCALL_LEAVE);
}

bool in_vm() noexcept {
  const core::Cpu* cpu = live_tls_cpu();
  return cpu != nullptr && cpu->in_guest;
}

Status shutdown() noexcept {
  if (in_vm()) return Error{"shutdown: the calling thread is in VM mode (leave() first)", EBUSY};
  return core::Machine::instance().destroy();
}

core::Cpu* core::current_cpu() noexcept { return live_tls_cpu(); }

void core::set_current_cpu(core::Cpu* cpu) noexcept { set_tls_cpu(cpu); }

const char* describe(const Error& error, char* buf, std::size_t size) noexcept {
  if (std::strcmp(error.what, kvm::kOpenFailed) == 0) {
    const char* device = core::Machine::instance().config().kvm_device;
    switch (error.err) {
      case ENOENT:
        std::snprintf(buf, size,
                      "no %s: this kernel has no KVM, or its module (kvm_intel or kvm_amd) is not loaded; "
                      "without hardware virtualization, use the nested test VM (scripts/in-vm)",
                      device);
        return buf;
      case EACCES:
      case EPERM:
        std::snprintf(buf, size,
                      "permission denied opening %s: add your user to the 'kvm' group and log in again, or "
                      "run as root",
                      device);
        return buf;
      default:
        break;
    }
  }
  if (error.err == ENOTSUP) {
    std::snprintf(buf, size, "this KVM cannot run dunk: %s", error.what);
    return buf;
  }
  return error.format(buf, size);
}

}  // namespace dunk
