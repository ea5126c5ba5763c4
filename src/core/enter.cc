// The public entry points: enter(), leave(), in_vm().
//
// enter() captures the calling thread's state, switches to the monitor's
// stack and lets the monitor resume that state inside the VM, so that
// enter() "returns" in guest ring 0. leave() is one of dunk's private system
// calls: the monitor answers it by restoring the guest's state on the host.
#include <asm/prctl.h>
#include <pthread.h>
#include <sys/syscall.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "base/syscall.h"
#include "core/machine.h"
#include "core/monitor.h"
#include "dunk/dunk.h"
#include "guest/abi.h"
#include "kvm/kvm.h"

namespace dunk {
namespace {

// Read by guest and host faces alike; initial-exec, because the monitor
// must not call into the dynamic linker's TLS resolver.
thread_local core::Cpu* tls_cpu __attribute__((tls_model("initial-exec"))) = nullptr;

}  // namespace

// Runs in a fork child (no CLONE_VM) before it resumes the program, outside
// VM mode: the parent's VM is not usable from another address space.
extern "C" void dunk_fork_child_fixup() {
  if (tls_cpu != nullptr) {
    // The child runs on the host: the alternate signal stack the program
    // set in VM mode becomes the host thread's, as it would have been.
    const core::KernelStack& alt = tls_cpu->signals.altstack;
    if (alt.size != 0) sys::call(SYS_sigaltstack, reinterpret_cast<long>(&alt), 0);
  }
  core::Machine::instance().forget_after_fork();
  tls_cpu = nullptr;
}

// A fork made outside VM mode (by a thread that never entered, or after
// leave()) copies a Machine whose VM the child cannot use either.
void forget_in_fork_child() { dunk_fork_child_fixup(); }

Status enter(const EnterOptions& options) noexcept {
  if (in_vm()) return {};
  core::Machine& machine = core::Machine::instance();
  static const int atfork_registered = pthread_atfork(nullptr, nullptr, forget_in_fork_child);
  (void)atfork_registered;
  DUNK_TRY(machine.ensure_created(options));
  if (tls_cpu == nullptr) {
    DUNK_ASSIGN_OR_RETURN(core::Cpu * cpu, machine.acquire_cpu());
    tls_cpu = cpu;
  }
  core::Cpu* cpu = tls_cpu;
  // Signals the program catches reach its handlers in the guest from now on.
  core::adopt_signal_handlers();
  core::take_altstack_from_host(*cpu);
  cpu->owner_tid.store(static_cast<std::int32_t>(sys::call(SYS_gettid)), std::memory_order_relaxed);
  sys::call(SYS_arch_prctl, ARCH_GET_FS, reinterpret_cast<long>(&cpu->entry_fs_base));
  sys::call(SYS_arch_prctl, ARCH_GET_GS, reinterpret_cast<long>(&cpu->entry_gs_base));
  // XSAVE leaves parts of its header alone; KVM_SET_XSAVE wants them zero.
  std::memset(cpu->xsave, 0, machine.xsave_size());
  long result = core::dunk_capture_and_switch(&cpu->entry_frame, cpu->xsave, cpu->monitor_stack_top,
                                              &core::monitor_main, cpu);
  if (result != 0) return cpu->entry_error;
  return {};
}

void leave() noexcept {
  if (!in_vm()) return;
  sys::call(DUNK_SYSCALL_LEAVE);
}

bool in_vm() noexcept { return tls_cpu != nullptr && tls_cpu->in_guest; }

core::Cpu* core::current_cpu() noexcept { return tls_cpu; }

void core::set_current_cpu(core::Cpu* cpu) noexcept { tls_cpu = cpu; }

const char* describe(const Error& error, char* buf, std::size_t size) noexcept {
  if (std::strcmp(error.what, kvm::kOpenFailed) == 0) {
    const char* device = std::getenv("DUNK_KVM_DEVICE");
    if (device == nullptr || *device == '\0') device = "/dev/kvm";
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
