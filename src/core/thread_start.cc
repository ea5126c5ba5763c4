#include "core/thread_start.h"

#include <linux/futex.h>
#include <linux/sched.h>
#include <sched.h>
#include <sys/syscall.h>

#include "base/syscall.h"
#include "core/dirty.h"
#include "core/machine.h"
#include "core/monitor.h"
#include "core/monitor_context.h"
#include "core/text.h"

namespace dunk::core {

[[noreturn]] void thread_main(void* arg) noexcept {
  auto* cpu = static_cast<Cpu*>(arg);
  cpu->owner_tid.store(static_cast<std::int32_t>(sys::call(SYS_gettid)), std::memory_order_relaxed);
  if (cpu->own_tls) set_current_cpu(cpu);
  Monitor monitor(Machine::instance(), *cpu);
  monitor.run();
}

long MachineThreads::start_thread(const Syscall& call, const CloneRequest& request, const TrapFrame& child_frame) noexcept {
  auto acquired = machine_.acquire_cpu();
  if (!acquired) {
    char line[256];
    TextBuffer text(line, sizeof line);
    text.append("dunk: cannot give a new thread a vCPU: ").append(acquired.error().what);
    if (acquired.error().err != 0) text.append(" (errno ").dec(acquired.error().err).append(")");
    write_stderr(text.append("\n").c_str());
    return -EAGAIN;
  }
  Cpu& child = **acquired;
  child.signals.reset();  // a new thread has no alternate stack and nothing pending
  // FS: the new TLS with CLONE_SETTLS, else the parent's; GS: the parent's
  // (parked in KERNEL_GS_BASE by the SYSCALL entry's SWAPGS). The new thread
  // starts with this one's FPU state (MXCSR, x87 control word).
  child.own_tls = (request.flags & CLONE_SETTLS) != 0;
  KvmVcpuRegisters parent(cpu_.vcpu, machine_.xsave_size());
  auto fs = parent.fs_base();
  auto gs = parent.user_gs_base();
  if (!fs || !gs || !parent.save_fpu(child.xsave)) {
    child.owner_exited.store(true, std::memory_order_release);  // never started: reusable
    return -EAGAIN;
  }
  // Selectors null, as after ARCH_SET_FS (a new thread in VM mode has not
  // loaded one).
  child.prepare_entry(child_frame, UserSegments{.fs_base = child.own_tls ? request.tls : *fs, .gs_base = *gs});

  // The host thread starts on its monitor's stack; the guest's stack is in
  // the entry frame.
  const auto monitor_top = reinterpret_cast<std::uint64_t>(child.monitor_stack_top);
  CloneCall clone{.nr = call.nr(),
                  .args = {static_cast<long>(call.arg(0)), static_cast<long>(monitor_top), static_cast<long>(call.arg(2)),
                           static_cast<long>(call.arg(3)), static_cast<long>(call.arg(4))},
                  .frame = nullptr, .xsave = nullptr, .xsave_size = 0, .ready = nullptr, .child_fixup = nullptr,
                  .clone_flags = request.flags, .signal_arrived = &cpu_.signals.arrived};
  // clone3: a copy of the program's block with the monitor's stack in it.
  // Room for later versions of struct clone_args than this one's (the
  // kernel checks that what it does not know is zero).
  union {
    clone_args args;
    std::byte bytes[512];
  } block{};
  if (call.nr() == SYS_clone3) {
    if (request.args3_size > sizeof block.bytes) {
      child.owner_exited.store(true, std::memory_order_release);
      return -E2BIG;
    }
    if (!ProcessMemory().read(block.bytes, request.args3, request.args3_size)) {
      child.owner_exited.store(true, std::memory_order_release);
      return -EFAULT;
    }
    block.args.stack = monitor_top - Cpu::kMonitorStackSize;
    block.args.stack_size = Cpu::kMonitorStackSize;
    clone.args[0] = reinterpret_cast<long>(block.bytes);
    clone.args[1] = static_cast<long>(request.args3_size);
  }
  const long ret = dunk_clone_thread(&clone, &child, &thread_main);
  if (ret < 0) child.owner_exited.store(true, std::memory_order_release);  // never started: reusable
  return ret;
}

long MachineThreads::start_process(const Syscall& call, const CloneRequest& request, const TrapFrame& child) noexcept {
  KvmVcpuRegisters registers(cpu_.vcpu, machine_.xsave_size());
  if (!registers.save_fpu(cpu_.xsave)) return -EAGAIN;
  // FS and GS as the program has them (a selector it loaded, a base it
  // wrote with WRGSBASE): the host thread holds neither. A fork child reads
  // them from its copy of this Cpu (dunk_fork_child_fixup).
  kvm_sregs sregs{};
  auto user_gs = registers.user_gs_base();
  if (!cpu_.vcpu.get_sregs(sregs) || !user_gs) return -EAGAIN;
  cpu_.fork_segments = vcpu_user_segments(sregs, *user_gs);
  cpu_.fork_sregs = sregs;
  volatile std::uint32_t ready = 0;
  const bool shares_memory = (request.flags & CLONE_VM) != 0;
  const bool parent_waits_for_exec = (request.flags & CLONE_VFORK) != 0;
  CloneCall clone{
      .nr = call.nr(),
      .args = {static_cast<long>(call.arg(0)), static_cast<long>(call.arg(1)), static_cast<long>(call.arg(2)),
               static_cast<long>(call.arg(3)), static_cast<long>(call.arg(4))},
      .frame = &child,
      .xsave = cpu_.xsave,
      .xsave_size = machine_.xsave_size(),
      .ready = (shares_memory && !parent_waits_for_exec) ? &ready : nullptr,
      .child_fixup = shares_memory ? nullptr : &dunk_fork_child_fixup,
      .clone_flags = request.flags,
      // A signal that came first is delivered first: the child would copy
      // the mask of a handler that has not run (the host handler sets it on
      // the thread), where natively its parent's handler has run and
      // restored the program's (or the kernel restarts the fork after it).
      .signal_arrived = &cpu_.signals.arrived,
  };
  // A child with memory of its own copies dunk's state with it, which a
  // child following the fork keeps (Machine::adopt_after_fork): no other
  // thread may be changing it meanwhile — making a vCPU, editing the page
  // tables or the GPA assignments, allocating. The order is the one other
  // paths nest these locks in (a vCPU's making allocates; the mirror
  // allocates tables).
  if (!shares_memory) {
    machine_.cpus_lock().lock();
    machine_.mirror().lock().lock();
    machine_.arena().lock().lock();
    machine_.set_forking(&cpu_);
  }
  const long ret = dunk_clone_native(&clone);
  if (!shares_memory) {
    machine_.set_forking(nullptr);
    machine_.arena().lock().unlock();
    machine_.mirror().lock().unlock();
    machine_.cpus_lock().unlock();
  }
  if (ret > 0 && clone.ready != nullptr) {
    // The child copies `child` and the XSAVE image off this stack first.
    while (ready == 0) sys::call(SYS_futex, reinterpret_cast<long>(&ready), FUTEX_WAIT_PRIVATE, 0, 0);
  }
  return ret;
}

bool MachineThreads::thread_exits() noexcept {
  // The kernel writes for the thread on its way out, through the host's
  // page tables (its robust list's futex words, its clear_child_tid word):
  // dirty-bit readers count it as outside VM mode until it is gone.
  note_left_vm_mode();
  // Sequentially consistent with the loads in live_cpus: of two threads
  // exiting at once, at least one sees the other gone.
  cpu_.owner_exited.store(true, std::memory_order_seq_cst);
  return machine_.live_cpus() == 0;
}

void MachineThreads::process_exits() noexcept { machine_.close_fds_before_exit(); }

bool MachineThreads::process_exiting() const noexcept { return machine_.exiting(); }

}  // namespace dunk::core
