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
#include "base/lock.h"
#include "core/arena.h"
#include "core/mirror.h"
#include "core/stats.h"
#include "dunk/dunk.h"
#include "guest/abi.h"
#include "kvm/kvm.h"

namespace dunk::core {

class Cpu;

class Machine {
 public:
  // The process's machine; created() tells whether it holds a VM.
  static Machine& instance() noexcept;

  // Creates the VM on first use; later calls return at once.
  Status ensure_created(const EnterOptions& options) noexcept;
  bool created() const noexcept { return created_.load(std::memory_order_acquire); }

  // A vCPU for the calling thread, set up to run dunk's guest runtime.
  Result<Cpu*> create_cpu() noexcept;

  // In a fork child: the parent's VM is unusable here (KVM refuses ioctls
  // from another address space). Drops it so that enter() builds a new one.
  void forget_after_fork() noexcept;

  Mirror& mirror() noexcept { return mirror_; }
  Arena& arena() noexcept { return arena_; }
  Stats& stats() noexcept { return *stats_; }
  const arch::CpuFeatures& features() const noexcept { return features_; }
  std::size_t xsave_size() const noexcept { return xsave_size_; }
  std::uint64_t xcr0() const noexcept { return xcr0_; }
  kvm::Vm& vm() noexcept { return *vm_; }
  const kvm::CpuidBuffer& cpuid() const noexcept { return cpuid_; }
  std::uint64_t idt_address() const noexcept { return reinterpret_cast<std::uint64_t>(idt_); }

  // DUNK_TRACE=1 in the environment: the monitor reports every exit on stderr.
  bool trace() const noexcept { return trace_; }

  // The program break, tracked across brk calls (see the brk handler).
  std::atomic<std::uint64_t> brk{0};

 private:
  Status create(const EnterOptions& options) noexcept;
  Status check_capabilities() noexcept;
  Status read_cpu_features() noexcept;
  Status build_idt() noexcept;
  Status setup_stats() noexcept;

  Lock create_lock_;
  std::atomic<bool> created_{false};
  std::optional<kvm::System> kvm_;
  std::optional<kvm::Vm> vm_;
  Arena arena_;
  Mirror mirror_;
  kvm::CpuidBuffer cpuid_{};
  arch::CpuFeatures features_{};
  std::uint64_t xcr0_ = 0;
  std::size_t xsave_size_ = 0;
  std::size_t vcpu_mmap_size_ = 0;
  arch::IdtGate* idt_ = nullptr;
  Stats* stats_ = nullptr;
  std::atomic<unsigned> next_vcpu_id_{0};
  bool trace_ = false;
};

// Per-thread state. Lives in the arena; never freed while the process runs
// (a thread that leaves VM mode may enter again).
class Cpu {
 public:
  kvm::Vcpu vcpu;
  guest::VcpuArea* area = nullptr;
  std::byte* monitor_stack_top = nullptr;
  // The XSAVE image passed between host and guest (entry, leave, clone),
  // 64-byte aligned, Machine::xsave_size() bytes.
  std::byte* xsave = nullptr;
  // The host state captured by enter(), resumed in the guest.
  guest::TrapFrame entry_frame{};
  // Whether the guest face is live (read by in_vm() from guest code).
  volatile bool in_guest = false;
  // The error that made the first entry fail, reported by enter().
  Error entry_error{};

  explicit Cpu(kvm::Vcpu v) noexcept : vcpu(std::move(v)) {}

  // Loads the general state every entry needs (segments, control registers,
  // MSRs); called once at creation.
  Status setup(Machine& machine) noexcept;
};

// The calling thread's Cpu, if it ever entered VM mode (null otherwise).
Cpu* current_cpu() noexcept;

}  // namespace dunk::core
