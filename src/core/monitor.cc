#include "core/monitor.h"

#include <asm/prctl.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include <cstring>
#include <optional>

#include "arch/x86_64/registers.h"
#include "arch/x86_64/vectors.h"
#include "base/fd_listing.h"
#include "base/fd_placement.h"
#include "base/proc_maps.h"
#include "base/syscall.h"
#include "core/text.h"
#include "guest/dispatch.h"

namespace dunk::core {
namespace {

using guest::TrapFrame;

constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t page_up(std::uint64_t v) noexcept { return (v + kPage - 1) & ~(kPage - 1); }

// XSAVE header fields (SDM vol. 1 §13.4.2, "XSAVE Header"): XSTATE_BV at
// byte 512, XCOMP_BV at 520 of the XSAVE area.
constexpr std::size_t kXstateBvOffset = 512;
constexpr std::size_t kXcompBvOffset = 520;

}  // namespace

void die_by_signal(int signal, const char* message) noexcept {
  if (message != nullptr) write_stderr(message);
  // The kernel's struct sigaction for rt_sigaction: handler, flags,
  // restorer, mask.
  struct {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)();
    std::uint64_t mask;
  } action{SIG_DFL, 0, nullptr, 0};
  sys::call(SYS_rt_sigaction, signal, reinterpret_cast<long>(&action), 0, 8);
  std::uint64_t set = std::uint64_t{1} << (signal - 1);
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

[[noreturn]] void thread_main(void* arg) noexcept {
  auto* cpu = static_cast<Cpu*>(arg);
  cpu->owner_tid.store(static_cast<std::int32_t>(sys::call(SYS_gettid)), std::memory_order_relaxed);
  if (cpu->own_tls) set_current_cpu(cpu);
  Monitor monitor(Machine::instance(), *cpu);
  monitor.run();
}

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

  const TrapFrame& f = cpu_.entry_frame;
  kvm_regs regs{};
  regs.rip = f.rip;
  regs.rsp = f.rsp;
  regs.rbx = f.rbx, regs.rcx = f.rcx, regs.rdx = f.rdx, regs.rsi = f.rsi, regs.rdi = f.rdi;
  regs.rbp = f.rbp;
  regs.r8 = f.r8, regs.r9 = f.r9, regs.r10 = f.r10, regs.r11 = f.r11;
  regs.r12 = f.r12, regs.r13 = f.r13, regs.r14 = f.r14, regs.r15 = f.r15;
  // 0 for enter() (what dunk_capture_and_switch returns in the guest) and
  // for a new thread's or fork child's clone.
  regs.rax = f.rax;
  regs.rflags = (f.rflags | arch::rflags::kFixed1) & ~(arch::rflags::kTF | arch::rflags::kNT);

  kvm_sregs sregs{};
  DUNK_TRY(cpu_.vcpu.get_sregs(sregs));
  sregs.fs.base = cpu_.entry_fs_base;
  sregs.gs.base = cpu_.entry_gs_base;
  DUNK_TRY(cpu_.vcpu.set_sregs(sregs));
  const kvm_msr_entry kernel_gs{arch::msr::kKernelGsBase, 0, reinterpret_cast<std::uint64_t>(&area)};
  DUNK_TRY(cpu_.vcpu.set_msrs({&kernel_gs, 1}));

  // The captured XSAVE image, limited to what the guest's XCR0 enables and
  // in the standard (non-compacted) form KVM_SET_XSAVE expects.
  std::uint64_t xstate_bv;
  std::memcpy(&xstate_bv, cpu_.xsave + kXstateBvOffset, sizeof xstate_bv);
  xstate_bv &= machine_.xcr0();
  std::memcpy(cpu_.xsave + kXstateBvOffset, &xstate_bv, sizeof xstate_bv);
  std::memset(cpu_.xsave + kXcompBvOffset, 0, 8);
  DUNK_TRY(cpu_.vcpu.set_xsave(cpu_.xsave));
  DUNK_TRY(cpu_.vcpu.set_regs(regs));
  return {};
}

void Monitor::run() noexcept {
  if (Status s = load_entry_state(); !s) {
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
  cpu_.in_guest = true;
  Stats& stats = machine_.stats();
  kvm_run& run_page = *cpu_.vcpu.run_page();
  for (;;) {
    // Cleared before looking at the queue: a signal that arrives after the
    // look sets it again and makes KVM_RUN return at once.
    run_page.immediate_exit = 0;
    deliver_pending();
    stats.add(stats.kvm_runs);
    long ret = cpu_.vcpu.run();
    resume_frame_ = nullptr;
    Exit exit = decode_exit(ret, run_page);
    stats.count_exit(exit.kind);
    remember(exit);
    if (machine_.trace()) trace(exit);
    handle(exit);
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

void Monitor::handle(const Exit& exit) noexcept {
  guest::VcpuArea& area = *cpu_.area;
  switch (exit.kind) {
    case ExitKind::kSyscall:
      resume_frame_ = reinterpret_cast<TrapFrame*>(area.syscall_frame);
      handle_syscall(*resume_frame_);
      return;
    case ExitKind::kException:
      resume_frame_ = reinterpret_cast<TrapFrame*>(area.exception_frame);
      handle_exception(*resume_frame_);
      return;
    case ExitKind::kInterrupted:
    case ExitKind::kIrqWindowOpen:
    case ExitKind::kDebug:
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
      f.rip -= 1;
      leave_to_host(f, false);
    }
    case ExitKind::kFatal:
      fatal("double fault, NMI or machine check in the guest", &exit,
            reinterpret_cast<const TrapFrame*>(area.exception_frame));
    default:
      fatal("unexpected VM exit", &exit);
  }
}

long Monitor::forward(const TrapFrame& f) noexcept { return dunk_forward_syscall(&f); }

void Monitor::handle_syscall(TrapFrame& f) noexcept {
  const auto nr = static_cast<long>(f.rax);
  Stats& stats = machine_.stats();
  if (nr >= DUNK_SYSCALL_BASE && nr < DUNK_SYSCALL_BASE + 256) {
    stats.add(stats.dunk_calls);
    switch (nr) {
      case DUNK_SYSCALL_LEAVE:
        if (signals_pending()) {
          // Their handlers run in VM mode first; then the guest asks again.
          f.rip -= 2;
          return;
        }
        f.rax = 0;
        leave_to_host(f, /*user_gs_in_msr=*/true);
      case DUNK_SYSCALL_PING:
        f.rax = DUNK_SYSCALL_PING;
        return;
      case DUNK_SYSCALL_RESOLVE_FAULT: {
        const bool resolved = machine_.mirror().resolve_fault(Hva(f.rdi), (f.rsi & 1) != 0, (f.rsi & 2) != 0,
                                                              cpu_.area->root);
        if (resolved) stats.add(stats.faults_resolved);
        f.rax = resolved ? 1 : 0;
        return;
      }
      case DUNK_SYSCALL_GUEST_PHYSICAL: {
        auto gpa = machine_.mirror().assign(Hva(f.rdi));
        f.rax = gpa ? gpa->value() : static_cast<std::uint64_t>(-static_cast<long>(gpa.error().err));
        return;
      }
      default:
        f.rax = static_cast<std::uint64_t>(-ENOSYS);
        return;
    }
  }
  stats.count_syscall(static_cast<std::uint64_t>(nr));
  long ret;
  switch (nr) {
    case SYS_mmap:
    case SYS_munmap:
    case SYS_mprotect:
    case SYS_pkey_mprotect:
    case SYS_mremap:
    case SYS_brk:
    case SYS_shmat:
    case SYS_shmdt:
    case SYS_madvise:
      ret = mmap_family(nr, f);
      break;
    case SYS_arch_prctl:
      ret = arch_prctl(f);
      break;
    case SYS_close:
      // One of dunk's own descriptors is not open as far as the program
      // knows (it never opened it).
      ret = machine_.owns_fd(static_cast<int>(f.rdi)) ? -EBADF : forward(f);
      break;
    case SYS_close_range:
      ret = close_range(f);
      break;
    case SYS_getdents64:
      ret = getdents64(f);
      break;
    case SYS_getrlimit:
    case SYS_setrlimit:
    case SYS_prlimit64: {
      // RLIMIT_NOFILE of this process: not while dunk lifts it to place a
      // descriptor (src/base/fd_placement.h).
      const bool own_process = nr != SYS_prlimit64 || f.rdi == 0 || static_cast<long>(f.rdi) == sys::call(SYS_getpid);
      const std::uint64_t resource = nr == SYS_prlimit64 ? f.rsi : f.rdi;
      std::optional<LockGuard> hold;
      if (own_process && resource == RLIMIT_NOFILE) hold.emplace(fd_placement_lock());
      ret = forward(f);
      break;
    }
    case SYS_rt_sigaction:
      ret = rt_sigaction(f);
      break;
    case SYS_rt_sigreturn:
      ret = rt_sigreturn(f);
      break;
    case SYS_sigaltstack:
      ret = sigaltstack(f);
      break;
    case SYS_fork:
    case SYS_vfork:
    case SYS_clone:
    case SYS_clone3:
      ret = clone_family(nr, f);
      break;
    case SYS_exit_group:
      machine_.close_fds_before_exit();
      ret = forward(f);
      break;
    case SYS_exit:
      // The thread ends here; its vCPU serves a later thread once the kernel
      // has reaped this one (Machine::acquire_cpu).
      // (Sequentially consistent with the loads in live_cpus: of two threads
      // exiting at once, at least one sees the other gone.)
      cpu_.owner_exited.store(true, std::memory_order_seq_cst);
      // The last thread's exit ends the process (glibc's clone() child
      // returns through here).
      if (machine_.live_cpus() == 0) machine_.close_fds_before_exit();
      ret = forward(f);
      break;
    default:
      ret = forward(f);
  }
  if (ret == kRestartGuestSyscall) {
    // A signal arrived that the kernel would have delivered before
    // restarting this call: its handler runs first (the loop delivers it),
    // then the guest executes the same SYSCALL again, as natively.
    f.rip -= 2;
    return;
  }
  f.rax = static_cast<std::uint64_t>(ret);
}

void Monitor::mirror_or_warn(Status status, std::uint64_t address) noexcept {
  if (status) return;
  if (machine_.exiting()) fatal("mirror update during exit");  // ends the thread quietly
  char line[256];
  TextBuffer text(line, sizeof line);
  text.append("dunk: cannot mirror new mapping at ").hex(address).append(": ").append(status.error().what);
  if (status.error().err != 0) text.append(" (errno ").dec(status.error().err).append(")");
  text.append("\n");
  write_stderr(text.c_str());
}

long Monitor::mmap_family(long nr, TrapFrame& f) noexcept {
  Mirror& mirror = machine_.mirror();
  const std::uint64_t a0 = f.rdi, a1 = f.rsi, a2 = f.rdx;
  constexpr int kProt = PROT_READ | PROT_WRITE | PROT_EXEC;
  switch (nr) {
    case SYS_mmap: {
      long ret = forward(f);
      if (sys::failed(ret)) return ret;
      auto start = static_cast<std::uint64_t>(ret);
      Status s = mirror.set(Hva(start), Hva(start + page_up(a1)), static_cast<int>(a2) & kProt);
      if (!s) {
        // The program could not use the memory in VM mode: undo and fail
        // the call rather than let a later access fault mysteriously.
        mirror_or_warn(s, start);
        sys::call(SYS_munmap, ret, static_cast<long>(a1));
        return -ENOMEM;
      }
      return ret;
    }
    case SYS_munmap: {
      long ret = forward(f);
      if (ret == 0) (void)mirror.set(Hva(a0), Hva(a0 + page_up(a1)), PROT_NONE);
      return ret;
    }
    case SYS_mprotect:
    case SYS_pkey_mprotect: {
      long ret = forward(f);
      if (ret != 0) return ret;
      if ((a2 & (PROT_GROWSDOWN | PROT_GROWSUP)) != 0) {
        // The change extends to the end of the mapping: ask the host.
        mirror_or_warn(mirror.sync_all(), a0);
      } else {
        mirror_or_warn(mirror.set(Hva(a0), Hva(a0 + page_up(a1)), static_cast<int>(a2) & kProt), a0);
      }
      return ret;
    }
    case SYS_mremap: {
      const std::uint64_t old_size = a1, new_size = a2, flags = f.r10;
      int prot = mirror.protection(Hva(a0)).value_or(PROT_NONE);
      long ret = forward(f);
      if (sys::failed(ret)) return ret;
      auto start = static_cast<std::uint64_t>(ret);
      if (start != a0 && (flags & MREMAP_DONTUNMAP) == 0 && old_size != 0) {
        (void)mirror.set(Hva(a0), Hva(a0 + page_up(old_size)), PROT_NONE);
      } else if (start == a0 && new_size < old_size) {
        (void)mirror.set(Hva(a0 + page_up(new_size)), Hva(a0 + page_up(old_size)), PROT_NONE);
      }
      mirror_or_warn(mirror.set(Hva(start), Hva(start + page_up(new_size)), prot), start);
      return ret;
    }
    case SYS_brk: {
      long ret = forward(f);
      if (ret == kRestartGuestSyscall) return ret;
      auto now = static_cast<std::uint64_t>(ret);
      std::uint64_t before = machine_.brk.exchange(now, std::memory_order_relaxed);
      if (now > before) {
        mirror_or_warn(mirror.set(Hva(page_up(before)), Hva(page_up(now)), PROT_READ | PROT_WRITE), before);
      } else if (now < before) {
        (void)mirror.set(Hva(page_up(now)), Hva(page_up(before)), PROT_NONE);
      }
      return ret;
    }
    case SYS_shmat:
    case SYS_shmdt:
    default: {
      // Rare calls whose effect on the address space is easiest to read back
      // from the host: shared-memory attach/detach, and madvise guard
      // regions (MADV_GUARD_INSTALL/REMOVE, Linux 6.13+), which leave the
      // mapping in place but make its pages inaccessible.
      long ret = forward(f);
      if (sys::failed(ret)) return ret;
      constexpr std::uint64_t kMadvGuardInstall = 102, kMadvGuardRemove = 103;
      if (nr == SYS_madvise) {
        if (a2 == kMadvGuardInstall) (void)mirror.set(Hva(a0), Hva(a0 + page_up(a1)), PROT_NONE);
        if (a2 == kMadvGuardRemove) mirror_or_warn(mirror.sync(Hva(a0), Hva(a0 + page_up(a1))), a0);
        return ret;
      }
      mirror_or_warn(mirror.sync_all(), static_cast<std::uint64_t>(ret));
      return ret;
    }
  }
}

long Monitor::arch_prctl(TrapFrame& f) noexcept {
  const long code = static_cast<long>(f.rdi);
  if (code != ARCH_SET_FS && code != ARCH_SET_GS && code != ARCH_GET_FS && code != ARCH_GET_GS) {
    return forward(f);
  }
  kvm_sregs sregs{};
  if (!cpu_.vcpu.get_sregs(sregs)) return -EIO;
  switch (code) {
    case ARCH_GET_FS:
      return copy_to_guest(f.rsi, &sregs.fs.base, sizeof sregs.fs.base) ? 0 : -EFAULT;
    case ARCH_GET_GS: {
      // The SYSCALL path swapped GS: the program's GS base is parked in
      // KERNEL_GS_BASE until the stub swaps back.
      kvm_msr_entry msr{arch::msr::kKernelGsBase, 0, 0};
      if (!cpu_.vcpu.get_msrs({&msr, 1})) return -EIO;
      return copy_to_guest(f.rsi, &msr.data, sizeof msr.data) ? 0 : -EFAULT;
    }
    case ARCH_SET_FS: {
      // The host thread follows, so that the monitor, a fork child and a
      // thread leaving VM mode all see the program's TLS.
      long ret = forward(f);
      if (ret != 0) return ret;
      sregs.fs.base = f.rsi;
      return cpu_.vcpu.set_sregs(sregs) ? 0 : -EIO;
    }
    case ARCH_SET_GS: {
      long ret = forward(f);
      if (ret != 0) return ret;
      kvm_msr_entry msr{arch::msr::kKernelGsBase, 0, f.rsi};
      return cpu_.vcpu.set_msrs({&msr, 1}) ? 0 : -EIO;
    }
  }
  return -EINVAL;
}

long Monitor::close_range(TrapFrame& f) noexcept {
  // close_range(first, last, flags) around dunk's own descriptors: the
  // pieces between them are closed; CLOSE_RANGE_CLOEXEC alone closes
  // nothing (and dunk's descriptors are close-on-exec already).
  constexpr std::uint64_t kCloexec = 1U << 2;  // CLOSE_RANGE_CLOEXEC
  const std::uint64_t first = f.rdi, last = f.rsi, flags = f.rdx;
  if ((flags & kCloexec) != 0 || first > last) return forward(f);
  std::uint64_t from = first;
  const std::uint64_t scan_end = last < Machine::kMaxOwnedFd ? last + 1 : Machine::kMaxOwnedFd;
  for (std::uint64_t fd = first; fd < scan_end; ++fd) {
    if (!machine_.owns_fd(static_cast<int>(fd))) continue;
    if (fd > from) {
      long ret = sys::call(SYS_close_range, static_cast<long>(from), static_cast<long>(fd - 1), static_cast<long>(flags));
      if (ret != 0) return ret;
    }
    from = fd + 1;
  }
  if (from > last) return 0;
  return sys::call(SYS_close_range, static_cast<long>(from), static_cast<long>(last), static_cast<long>(flags));
}

long Monitor::getdents64(TrapFrame& f) noexcept {
  // Only a listing of this process's /proc/PID/fd holds dunk's descriptors
  // (src/base/fd_listing.h); everything else goes straight through.
  char link[64];
  char path[96];
  TextBuffer(link, sizeof link).append("/proc/self/fd/").dec(static_cast<long>(static_cast<int>(f.rdi)));
  long length = sys::call(SYS_readlinkat, AT_FDCWD, reinterpret_cast<long>(link), reinterpret_cast<long>(path),
                          sizeof path);
  if (length <= 0 || length >= static_cast<long>(sizeof path) ||
      !is_fd_directory_of({path, static_cast<std::size_t>(length)}, sys::call(SYS_getpid))) {
    return forward(f);
  }
  // Read into the monitor's buffer, drop dunk's entries, hand over the rest;
  // a chunk that held only dunk's entries must not read as the end.
  alignas(8) std::byte entries[16384];
  const std::size_t room = f.rdx < sizeof entries ? f.rdx : sizeof entries;
  for (;;) {
    long got = sys::call(SYS_getdents64, static_cast<long>(f.rdi), reinterpret_cast<long>(entries),
                         static_cast<long>(room));
    if (got <= 0) return got;
    std::size_t kept = drop_fd_entries(entries, static_cast<std::size_t>(got),
                                       [this](int fd) { return machine_.owns_fd(fd); });
    if (kept == 0) continue;
    return copy_to_guest(f.rsi, entries, kept) ? static_cast<long>(kept) : -EFAULT;
  }
}

extern "C" void dunk_fork_child_fixup(const TrapFrame* frame, const void* xsave, std::uint64_t clone_flags);

long Monitor::clone_family(long nr, TrapFrame& f) noexcept {
  // What the child's registers would be natively: the parent's at the
  // SYSCALL, RAX = 0, RSP = its new stack if it has one.
  std::uint64_t flags = 0, stack = 0, clone3_tls = 0;
  switch (nr) {
    case SYS_fork:
      flags = SIGCHLD;
      break;
    case SYS_vfork:
      flags = CLONE_VM | CLONE_VFORK | SIGCHLD;
      break;
    case SYS_clone:
      flags = f.rdi;
      stack = f.rsi;
      break;
    case SYS_clone3: {
      // struct clone_args: flags at 0, stack at 40, stack_size at 48.
      // struct clone_args (include/uapi/linux/sched.h): flags, pidfd,
      // child_tid, parent_tid, exit_signal, stack, stack_size, tls, ...;
      // the first version is these 64 bytes.
      std::uint64_t args[8];
      if (f.rsi < sizeof args) return -EINVAL;
      if (!copy_from_guest(args, f.rdi, sizeof args)) return -EFAULT;
      flags = args[0];
      if (args[5] != 0) stack = args[5] + args[6];
      clone3_tls = args[7];
      break;
    }
  }
  if ((flags & CLONE_VM) != 0 && (flags & CLONE_VFORK) == 0) {
    // A thread (or another process sharing this memory): same address
    // space, so it can run on a vCPU of this VM.
    std::uint64_t tls = nr == SYS_clone ? f.r8 : clone3_tls;
    return clone_thread(nr, f, flags, stack, tls);
  }
  TrapFrame child = f;
  child.rax = 0;
  if (stack != 0) child.rsp = stack;
  if (!cpu_.vcpu.get_xsave(cpu_.xsave, machine_.xsave_size())) return -EAGAIN;
  // FS/GS bases: a new thread gets CLONE_SETTLS from the kernel; otherwise the
  // child inherits the host thread's, which the monitor keeps equal to the
  // guest's (see arch_prctl).

  volatile std::uint32_t ready = 0;
  const bool shares_memory = (flags & CLONE_VM) != 0;
  const bool parent_waits_for_exec = (flags & CLONE_VFORK) != 0;
  CloneCall call{
      .nr = nr,
      .args = {static_cast<long>(f.rdi), static_cast<long>(f.rsi), static_cast<long>(f.rdx),
               static_cast<long>(f.r10), static_cast<long>(f.r8)},
      .frame = &child,
      .xsave = cpu_.xsave,
      .xsave_size = machine_.xsave_size(),
      .ready = (shares_memory && !parent_waits_for_exec) ? &ready : nullptr,
      .child_fixup = shares_memory ? nullptr : &dunk_fork_child_fixup,
      .clone_flags = flags,
  };
  long ret = dunk_clone_native(&call);
  if (ret > 0 && call.ready != nullptr) {
    // The child copies `child` and the XSAVE image off this stack first.
    while (ready == 0) {
      sys::call(SYS_futex, reinterpret_cast<long>(&ready), FUTEX_WAIT_PRIVATE, 0, 0);
    }
  }
  return ret;
}

long Monitor::clone_thread(long nr, TrapFrame& f, std::uint64_t flags, std::uint64_t stack,
                           std::uint64_t tls) noexcept {
  if (stack == 0) return -EINVAL;  // a thread needs a stack of its own; dunk does not emulate sharing one
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
  child.entry_frame = f;
  child.entry_frame.rax = 0;
  child.entry_frame.rsp = stack;
  kvm_sregs sregs{};
  kvm_msr_entry user_gs{arch::msr::kKernelGsBase, 0, 0};  // parked there by the SYSCALL entry's SWAPGS
  if (!cpu_.vcpu.get_sregs(sregs) || !cpu_.vcpu.get_msrs({&user_gs, 1})) return -EAGAIN;
  child.own_tls = (flags & CLONE_SETTLS) != 0;
  child.entry_fs_base = child.own_tls ? tls : sregs.fs.base;
  child.entry_gs_base = user_gs.data;
  // The new thread starts with this one's FPU state (MXCSR, x87 control word).
  if (!cpu_.vcpu.get_xsave(child.xsave, machine_.xsave_size())) return -EAGAIN;

  // The host thread starts on its monitor's stack; the guest's stack is in
  // the entry frame.
  const auto monitor_top = reinterpret_cast<std::uint64_t>(child.monitor_stack_top);
  CloneCall call{.nr = nr,
                 .args = {static_cast<long>(f.rdi), static_cast<long>(monitor_top), static_cast<long>(f.rdx),
                          static_cast<long>(f.r10), static_cast<long>(f.r8)},
                 .frame = nullptr, .xsave = nullptr, .xsave_size = 0, .ready = nullptr, .child_fixup = nullptr,
                 .clone_flags = flags};
  std::uint64_t args3[16] = {};
  if (nr == SYS_clone3) {
    const std::size_t size = f.rsi < sizeof args3 ? f.rsi : sizeof args3;
    if (!copy_from_guest(args3, f.rdi, size)) return -EFAULT;
    args3[5] = monitor_top - Cpu::kMonitorStackSize;  // stack
    args3[6] = Cpu::kMonitorStackSize;                // stack_size
    call.args[0] = reinterpret_cast<long>(args3);
    call.args[1] = static_cast<long>(size);
  }
  long ret = dunk_clone_thread(&call, &child, &thread_main);
  if (ret < 0) child.owner_exited.store(true, std::memory_order_release);  // never started: reusable
  return ret;
}

Status Monitor::frame_from_vcpu(TrapFrame& f) noexcept {
  kvm_regs r{};
  DUNK_TRY(cpu_.vcpu.get_regs(r));
  f.rax = r.rax, f.rbx = r.rbx, f.rcx = r.rcx, f.rdx = r.rdx;
  f.rsi = r.rsi, f.rdi = r.rdi, f.rbp = r.rbp, f.rsp = r.rsp;
  f.r8 = r.r8, f.r9 = r.r9, f.r10 = r.r10, f.r11 = r.r11;
  f.r12 = r.r12, f.r13 = r.r13, f.r14 = r.r14, f.r15 = r.r15;
  f.rip = r.rip;
  f.rflags = r.rflags;
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

void Monitor::handle_exception(TrapFrame& f) noexcept {
  Stats& stats = machine_.stats();
  if (f.vector < Stats::kVectors) stats.add(stats.exceptions[f.vector]);
  if (cpu_.area->exception_depth > 1) {
    if (cpu_.area->dispatching != 0) return fault_in_handler(f);
    fatal("exception inside dunk's exception path", nullptr, &f);
  }
  // Interrupts are dispatched in the guest (src/guest/dispatch.cc); one
  // that reaches the monitor anyway is ignored.
  if (f.vector >= DUNK_FIRST_INTERRUPT_VECTOR) return;
  if (in_dunk_code(f.rip)) fatal("exception in dunk's ring-0 entry code", nullptr, &f);

  if (f.vector == static_cast<std::uint64_t>(arch::Vector::kPageFault)) {
    const arch::PageFaultError error = arch::decode_page_fault_error(f.error_code);
    if (machine_.mirror().resolve_fault(Hva(f.cr2), error.write, error.instruction_fetch, cpu_.area->root)) {
      stats.add(stats.faults_resolved);
      return;  // IRETQ retries the access
    }
  }
  // The program's signal handler, if it has one, in VM mode.
  if (deliver_exception(f)) return;
  if (f.vector == static_cast<std::uint64_t>(arch::Vector::kPageFault)) {
    // A page the program itself unmapped or protected (dunk/paging.h) may
    // well be accessible on the host: re-running the access there would
    // succeed. It is the program's own fault; end it as one.
    if (machine_.mirror().program_owned(Hva(f.cr2), cpu_.area->root)) {
      char line[160];
      TextBuffer text(line, sizeof line);
      text.append("dunk: page fault at ").hex(f.cr2).append(" (rip ").hex(f.rip);
      text.append(") on a page the program mapped itself, and no handler took it\n");
      die_by_signal(SIGSEGV, text.c_str());
    }
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
  cpu_.refaulting = true;  // a handler for what comes of it runs in VM mode
  leave_to_host(f, false);
}

void Monitor::fault_in_handler(TrapFrame& f) noexcept {
  // A page fault the mirror resolves is invisible to the program, inside a
  // handler as anywhere; anything else ends the program (dunk/traps.h).
  if (f.vector == static_cast<std::uint64_t>(arch::Vector::kPageFault)) {
    const arch::PageFaultError error = arch::decode_page_fault_error(f.error_code);
    if (machine_.mirror().resolve_fault(Hva(f.cr2), error.write, error.instruction_fetch, cpu_.area->root)) {
      machine_.stats().add(machine_.stats().faults_resolved);
      return;
    }
  }
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

void Monitor::leave_to_host(const TrapFrame& frame, bool user_gs_in_msr) noexcept {
  TrapFrame f = frame;
  if (!cpu_.vcpu.get_xsave(cpu_.xsave, machine_.xsave_size())) fatal("KVM_GET_XSAVE failed while leaving");
  kvm_sregs sregs{};
  if (!cpu_.vcpu.get_sregs(sregs)) fatal("KVM_GET_SREGS failed while leaving");
  std::uint64_t gs = sregs.gs.base;
  if (user_gs_in_msr) {
    kvm_msr_entry msr{arch::msr::kKernelGsBase, 0, 0};
    if (!cpu_.vcpu.get_msrs({&msr, 1})) fatal("KVM_GET_MSRS failed while leaving");
    gs = msr.data;
  }
  sys::call(SYS_arch_prctl, ARCH_SET_FS, static_cast<long>(sregs.fs.base));
  sys::call(SYS_arch_prctl, ARCH_SET_GS, static_cast<long>(gs));
  hand_altstack_to_host();
  cpu_.in_guest = false;
  dunk_restore_frame(&f, cpu_.xsave);
}

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
