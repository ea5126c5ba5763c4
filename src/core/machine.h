// The process's virtual machine and its vCPUs.
//
// One Machine per process: the KVM VM, the address-space mirror, the shared
// IDT, what the CPU and KVM offer. One Cpu per thread that entered VM mode:
// its vCPU, its area (GDT, TSS, stacks, trap frames), the monitor's private
// stack. Cpus are created from dunk's arena with raw system calls only, so a
// monitor can make one for a new thread without entering libc.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "arch/x86_64/cpuid.h"
#include "arch/x86_64/descriptors.h"
#include "base/fd_placement.h"
#include "base/fd_set.h"
#include "base/lock.h"
#include "core/arena.h"
#include "core/config.h"
#include "core/debug_link.h"
#include "core/ldt_mirror.h"
#include "core/mirror.h"
#include "core/signals.h"
#include "core/stats.h"
#include "core/user_segments.h"
#include "dunk/dunk.h"
#include "guest/abi.h"
#include "kvm/kvm.h"

namespace dunk::core {

class Cpu;

// The mirror's memory slots are the VM's. The mirror changes them from the
// monitor (a first touch, a reclaim) and from dunk's code in the guest (the
// privileged paging API's calls), whose ioctl goes to the monitor as
// DUNK_SYSCALL_OWN_IOCTL: the plain one names a descriptor of dunk's, which
// the program's calls may not.
struct VmMemorySlots final : MemorySlots {
  kvm::Vm* vm = nullptr;
  Status set_memory_region(std::uint32_t slot, Gpa gpa, std::uint64_t size, Hva hva) noexcept override;
};

class Machine {
 public:
  // The process's machine; created() tells whether it holds a VM.
  static Machine& instance() noexcept;

  // Creates the VM on first use; later calls return at once.
  Status ensure_created(const EnterOptions& options) noexcept;
  bool created() const noexcept { return created_.load(std::memory_order_acquire); }
  // Whether the VM was created by this process (not inherited by fork).
  bool created_here() const noexcept;
  // Tears the VM down (dunk::shutdown): every thread that entered has left
  // VM mode or exited. A Cpu pointer kept from before belongs to an older
  // generation() and must not be used.
  Status destroy() noexcept;
  // Counts the VMs this process has torn down.
  std::uint64_t generation() const noexcept { return generation_.load(std::memory_order_acquire); }

  // A vCPU for a thread: one whose previous thread has exited, or a new one.
  // Monitor-safe (raw system calls, arena memory).
  Result<Cpu*> acquire_cpu() noexcept;
  // The Cpu whose owner is host thread `tid`, or null. Async-signal-safe.
  Cpu* cpu_of_thread(std::int32_t tid) noexcept;

  // In a fork child: the parent's VM is unusable here (KVM refuses ioctls
  // from another address space). Drops it so that enter() builds a new one.
  // A child that shares the parent's descriptor table (CLONE_FILES) leaves
  // the parent's descriptors open and out of the program's reach; any other
  // child closes its copies.
  void forget_after_fork(bool shares_fd_table) noexcept;
  // In a fork child following the fork (EnterOptions::follow_fork), in
  // place of forget_after_fork and create: the child's own VM, built from
  // its copy of the parent's (dunk's arena as fork copied it: the page
  // tables with the program's edits and clones, the GPA assignments, the
  // IDT, the LDT mirror, the vCPU area of `forking`, the thread that
  // forked). Only KVM's objects are new: the VM, the memory slots the
  // copied tables need (Mirror::adopt_after_fork), and one vCPU, set up
  // for `forking`'s area, which the child's thread takes. The parent's
  // other vCPUs are dropped. Monitor rules (it runs before the child's
  // first instruction, on the copy of `forking`'s monitor stack).
  Status adopt_after_fork(Cpu& forking, bool shares_fd_table) noexcept;
  // Whether the process is exiting and has closed (or is closing) its VM's
  // descriptors (close_fds_before_exit): KVM calls may fail from now on.
  bool exiting() const noexcept { return exiting_.load(std::memory_order_seq_cst); }
  // How many vCPUs have an owner thread that has not begun to exit.
  unsigned live_cpus() const noexcept;
  // Before the process exits: a process sharing its descriptor table with
  // another (a CLONE_FILES child) closes its VM's descriptors, which would
  // otherwise outlive it in the other process. Monitor-safe.
  void close_fds_before_exit() noexcept;

  Mirror& mirror() noexcept { return mirror_; }
  // The ranges ring 3 may reach (Mirror::set_user_ranges), now and in every
  // VM this process builds later: a fork child following the fork mirrors
  // its copy of the sandbox's region with the same U bits.
  Status set_user_ranges(std::span<const UserRange> ranges) noexcept;
  LdtMirror& ldt() noexcept { return ldt_; }
  Arena& arena() noexcept { return arena_; }
  Stats& stats() noexcept { return *stats_; }
  const arch::CpuFeatures& features() const noexcept { return features_; }
  std::size_t xsave_size() const noexcept { return xsave_size_; }
  std::uint64_t xcr0() const noexcept { return xcr0_; }
  // The XSAVE image of the FPU's initial state (what a signal handler
  // starts with), xsave_size() bytes.
  const std::byte* fpu_init_image() const noexcept { return fpu_init_; }
  kvm::Vm& vm() noexcept { return *vm_; }
  const kvm::CpuidBuffer& cpuid() const noexcept { return cpuid_; }
  std::uint64_t idt_address() const noexcept { return reinterpret_cast<std::uint64_t>(idt_); }

  // Whether fork children enter VM mode too (EnterOptions::follow_fork).
  bool follow_fork() const noexcept { return follow_fork_; }
  // Whether the VM has an in-kernel local APIC per vCPU (EnterOptions::
  // interrupts). Kept across fork, so that a child following the fork
  // builds the same kind of VM.
  bool interrupts() const noexcept { return interrupts_; }
  // What the VM was created with: interrupts and the memory layout
  // (EnterOptions), kept across fork like interrupts().
  EnterOptions creation_options() const noexcept;
  // Whether KVM can single-step without injecting interrupts in between.
  bool step_blocks_irq() const noexcept { return step_blocks_irq_; }
  // The vCPU with KVM vCPU ID (= x2APIC ID) `id` whose thread has not
  // exited, or null. Async-signal-safe.
  Cpu* live_cpu(unsigned id) noexcept;
  // Every vCPU created so far (live or waiting for reuse), by index below
  // cpu_count(). Async-signal-safe.
  unsigned cpu_count() const noexcept { return cpu_count_.load(std::memory_order_acquire); }
  Cpu* cpu_at(unsigned index) noexcept { return cpus_[index]; }

  // The configuration the VM is created with: the environment's, read at
  // the first creation, unless configure() gave one before.
  const MachineConfig& config() const noexcept { return config_; }
  void configure(const MachineConfig& config) noexcept {
    config_ = config;
    configured_ = true;
  }
  // DUNK_TRACE=1 in the environment: the monitor reports every exit on stderr.
  bool trace() const noexcept { return config_.trace; }
  // DUNK_STRACE_FD: where the monitor writes a line per system call
  // (dunk exec --strace), once checked to be open; -1: no tracing.
  int strace_fd() const noexcept { return strace_fd_; }

  // File descriptors dunk holds (/dev/kvm, the VM, vCPUs, the mirror's
  // probe): the monitor keeps the program from closing them (a fork child
  // that closes every descriptor, say). Async-signal-safe.
  FdSet& dunk_fds() noexcept { return dunk_fds_; }

  // Serialises changes to the program's signal actions.
  Lock& signal_lock() noexcept { return signal_lock_; }
  // Serialises the CPUID set-up of new vCPUs (Cpu::setup).
  Lock& cpuid_lock() noexcept { return cpuid_lock_; }
  // Held while vCPUs are handed out or made (acquire_cpu). A thread that
  // forks holds it, then the mirror's and the arena's locks, across the
  // fork (MachineThreads::start_process): a child following the fork finds
  // the copy of dunk's state that no other thread was changing.
  Lock& cpus_lock() noexcept { return cpus_lock_; }
  // The vCPU of the thread forking now (under cpus_lock()), for the child:
  // its thread's TLS may be another thread's (a thread made without
  // CLONE_SETTLS), so the child cannot ask current_cpu().
  void set_forking(Cpu* cpu) noexcept { forking_ = cpu; }
  Cpu* forking() const noexcept { return forking_; }
  // Whether this is a fork child following the fork whose VM is not built
  // yet: its copy of the machine is still its parent's (made by another
  // process, a fork in progress). Async-signal-safe.
  bool fork_child_before_its_vm() const noexcept {
    return forking_ != nullptr && follow_fork_ && owner_pid_ != sys::call(SYS_getpid);
  }

  // The program break, tracked across brk calls (see the brk handler).
  std::atomic<std::uint64_t> brk{0};

  // The debugger serving this process (`dunk exec --gdb`,
  // core/debug_link.h), or null. Async-signal-safe. A fork child forgets
  // its parent's.
  DebugLink* debugger() const noexcept { return debugger_.load(std::memory_order_acquire); }
  void attach_debugger(DebugLink* link) noexcept { debugger_.store(link, std::memory_order_release); }

 private:
  Status create(const EnterOptions& options) noexcept;
  Result<kvm::System> open_kvm() noexcept;
  Status check_capabilities() noexcept;
  Status enable_interrupts() noexcept;
  Status read_cpu_features() noexcept;
  Status build_idt() noexcept;
  Status build_fpu_init_image() noexcept;
  Status setup_stats() noexcept;
  // The parts of create() that set up a new VM's KVM objects.
  Status create_vm() noexcept;
  // Closes (or, sharing the descriptor table, forgets) the parent's VM and
  // vCPU descriptors in a fork child, keeping the KVM device's, the mirror's
  // probe and the ones dunk exec passed down; `forking`'s run page stays
  // mapped for the child's vCPU to replace.
  void drop_parent_descriptors(const Cpu& forking, bool shares_fd_table) noexcept;
  // What forget_after_fork and adopt_after_fork both do first in a fork
  // child: its copies of dunk's locks freed, no VM (yet), not exiting, the
  // parent's debugger and its breakpoints gone.
  void start_over_in_fork_child(bool shares_fd_table) noexcept;

  Lock create_lock_;
  Lock signal_lock_;
  Lock cpuid_lock_;
  FdSet dunk_fds_;
  std::atomic<bool> created_{false};
  std::optional<kvm::System> kvm_;
  std::optional<kvm::Vm> vm_;
  Arena arena_;
  VmMemorySlots slots_;
  Mirror mirror_;
  LdtMirror ldt_;
  kvm::CpuidBuffer cpuid_{};
  arch::CpuFeatures features_{};
  std::uint64_t xcr0_ = 0;
  std::size_t xsave_size_ = 0;
  bool xsave2_ = false;  // KVM_CAP_XSAVE2
  std::size_t vcpu_mmap_size_ = 0;
  arch::IdtGate* idt_ = nullptr;
  Stats* stats_ = nullptr;
  bool stats_shared_ = false;  // stats_ is the --stats file's block
  std::byte* fpu_init_ = nullptr;
  Result<Cpu*> create_cpu() noexcept;

  std::atomic<unsigned> next_vcpu_id_{0};
  unsigned max_vcpus_ = 1;
  char vcpu_limit_message_[160] = {};
  MachineConfig config_{};
  bool configured_ = false;
  int strace_fd_ = -1;
  bool follow_fork_ = false;
  bool shares_fd_table_ = false;
  int inherited_kvm_fd_ = -1;  // DUNK_KVM_FD, once used
  std::atomic<bool> exiting_{false};
  std::atomic<DebugLink*> debugger_{nullptr};
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<bool> fds_closed_{false};
  bool interrupts_ = false;
  // EnterOptions' layout fields, as the VM was created with them.
  bool identity_physical_ = false;
  bool user_mirror_ = false;
  bool small_pages_ = false;
  bool step_blocks_irq_ = false;
  UserRange user_ranges_[Mirror::kMaxUserRanges];
  unsigned user_range_count_ = 0;
  long owner_pid_ = 0;
  // Every Cpu created, for reuse by later threads (KVM cannot destroy a vCPU
  // short of destroying the VM).
  static constexpr unsigned kMaxCpus = 4096;
  Lock cpus_lock_;
  Cpu* cpus_[kMaxCpus] = {};
  std::atomic<unsigned> cpu_count_{0};  // written under cpus_lock_; read by signal handlers
  Cpu* forking_ = nullptr;              // written under cpus_lock_
};

// Per-thread state. Lives in the arena; never freed while the process runs
// (a thread that leaves VM mode may enter again).
class Cpu {
 public:
  kvm::Vcpu vcpu;
  guest::VcpuArea* area = nullptr;
  std::byte* monitor_stack_top = nullptr;
  static constexpr std::size_t kMonitorStackSize = 256 * 1024;
  // The XSAVE image passed between host and guest (entry, leave, clone),
  // 64-byte aligned, Machine::xsave_size() bytes.
  std::byte* xsave = nullptr;
  // The state the next entry resumes in the guest: what enter() captured, or
  // a new thread's first state, or a fork child's (prepare_entry).
  guest::TrapFrame entry_frame{};
  UserSegments entry_segments{};
  // The program's FS and GS at its last fork (selectors included, which the
  // host thread does not hold in VM mode): what a fork child resumes with.
  UserSegments fork_segments{};
  // The vCPU's special registers at that fork: a child following the fork
  // resumes its copy of this vCPU's state (CR3, FS, GS, the LDT) on a vCPU
  // of its own.
  kvm_sregs fork_sregs{};
  // The next entry resumes a fork child where its parent's vCPU stopped for
  // the fork, inside dunk's SYSCALL entry with the area as the parent left
  // it (Machine::adopt_after_fork), rather than starting afresh.
  bool resumes_fork = false;
  // The program's signal mask, which a fork child has blocked every signal
  // in place of while it builds its VM: given back once the vCPU is the
  // thread's (Monitor::run), so that a signal sent meanwhile reaches the
  // program in VM mode, as any other, and not dunk's code on the host.
  std::uint64_t fork_sigmask = 0;
  bool unmask_at_entry = false;

  // Sets the state the next entry resumes: `frame`, FS and GS, and the FPU
  // image `fpu` (xsave_size bytes; null: `xsave` holds it already).
  void prepare_entry(const guest::TrapFrame& frame, const UserSegments& segments,
                     const std::byte* fpu = nullptr, std::size_t fpu_size = 0) noexcept;
  // The same with the host thread's current FS and GS (a thread entering
  // from the host, where they are the program's).
  void prepare_entry_from_host(const guest::TrapFrame& frame, const std::byte* fpu = nullptr,
                               std::size_t fpu_size = 0) noexcept;
  // The host thread that owns this vCPU, and whether that thread has exited
  // (then the Cpu is reused for a new thread once the kernel has reaped it).
  std::atomic<std::int32_t> owner_tid{0};
  std::atomic<bool> owner_exited{false};
  // The last exits this vCPU served (kind, RIP, system call number or
  // vector), reported when something goes fatally wrong.
  struct RecentExit {
    std::uint8_t kind;
    std::uint64_t rip;
    std::uint64_t detail;
  };
  static constexpr unsigned kRecentExits = 8;
  RecentExit recent[kRecentExits] = {};
  unsigned recent_next = 0;

  // Whether the owner thread has TLS of its own (CLONE_SETTLS), where its
  // monitor can record this Cpu for in_vm().
  bool own_tls = true;
  // Signals waiting for the guest, and the guest's alternate stack.
  CpuSignals signals;
  // What a debugger and this vCPU's monitor tell each other.
  CpuDebug debug;

  // Whether the guest face is live (read by in_vm() from guest code).
  volatile bool in_guest = false;
  // The guest's state was resumed on the host to let the CPU repeat a
  // faulting access natively (a host fault KVM reports without an
  // address): the signal that comes of it goes back to VM mode.
  volatile bool refaulting = false;
  // The CPUNODE segment's limit the vCPU answers getcpu with (the host
  // CPU's, Monitor::follow_host_cpu).
  std::uint32_t cpunode_limit = ~std::uint32_t{0};
  // The generation of the LDT mirror this vCPU's LDTR holds.
  std::uint64_t ldt_generation = 0;
  // This entry resumes a fork child, which has nowhere to report a failure.
  bool entering_fork_child = false;
  // The error that made the first entry fail, reported by enter().
  Error entry_error{};

  explicit Cpu(kvm::Vcpu v) noexcept : vcpu(std::move(v)) {}

  // Loads the general state every entry needs (segments, control registers,
  // MSRs); called once at creation: init_area, then setup_vcpu.
  Status setup(Machine& machine) noexcept;
  // The area's descriptor tables and stacks for a new vCPU.
  Status init_area() noexcept;
  // The vCPU's side: CPUID, segments, control registers, MSRs, XCR0, TSC,
  // the local APIC. With `fork` (a fork child's vCPU on its copy of the
  // parent's area), CR3, FS, GS and the LDT are the parent vCPU's
  // (fork_sregs) and KERNEL_GS_BASE holds the program's GS base, as they
  // were when the parent's vCPU stopped in dunk's SYSCALL entry.
  Status setup_vcpu(Machine& machine, bool fork = false) noexcept;

  // The local APIC's state right after setup (x2APIC mode, software-enabled,
  // nothing pending); null when the VM has no interrupts. A vCPU reused by a
  // new thread gets it back, so that nothing sent to the thread that exited
  // reaches the new one.
  kvm_lapic_state* lapic_init = nullptr;
  Status setup_interrupts(Machine& machine) noexcept;
  Status reset_interrupts() noexcept;
};

// The calling thread's Cpu, if it ever entered VM mode (null otherwise).
Cpu* current_cpu() noexcept;
// For a new thread's monitor: the thread's TLS is its own from its first
// instruction (CLONE_SETTLS), so this records its Cpu there.
void set_current_cpu(Cpu* cpu) noexcept;

}  // namespace dunk::core
