// The guest as handlers see it (core/syscall.h), implemented over KVM and
// the host kernel: what the monitor hands its system-call handlers.
#pragma once

#include <sys/syscall.h>

#include "base/syscall.h"
#include "core/dirty.h"
#include "core/signals.h"
#include "core/syscall.h"
#include "core/text.h"
#include "kvm/kvm.h"

namespace dunk::core {

// A vCPU's registers beyond the trap frame, through KVM's ioctls.
class KvmVcpuRegisters final : public VcpuRegisters {
 public:
  KvmVcpuRegisters(kvm::Vcpu& vcpu, std::size_t xsave_size) noexcept : vcpu_(vcpu), xsave_size_(xsave_size) {}

  Result<std::uint64_t> fs_base() noexcept override;
  Status set_fs_base(std::uint64_t base) noexcept override;
  Result<std::uint64_t> user_gs_base() noexcept override;
  Status set_user_gs_base(std::uint64_t base) noexcept override;
  Status save_fpu(std::byte* image) noexcept override;
  Status load_fpu(const std::byte* image) noexcept override;

 private:
  kvm::Vcpu& vcpu_;
  std::size_t xsave_size_;
};

// The process's own memory, read and written through the kernel
// (process_vm_readv/writev on itself): a bad guest pointer fails the copy
// instead of faulting the monitor.
class ProcessMemory final : public GuestMemory {
 public:
  // This process's memory, its pid asked once (a monitor is made anew in a
  // fork child), copied through the calling thread's tid: the kernel finds
  // the memory of the task it is given, and once the process's first
  // thread has exited (a program whose main thread called pthread_exit)
  // the pid names a zombie without memory, and every copy through it
  // failed. Used on the thread that made it.
  ProcessMemory() noexcept : pid_(sys::call(SYS_getpid)), tid_(sys::call(SYS_gettid)) {}
  long pid() const noexcept { return pid_; }

  bool read(void* to, std::uint64_t from, std::size_t size) noexcept override {
    return copy_from_guest(tid_, to, from, size);
  }
  bool write(std::uint64_t to, const void* from, std::size_t size) noexcept override {
    // The copy goes through the host's page tables: the guest's dirty bits
    // learn of it here (core/dirty.h).
    const bool written = copy_to_guest(tid_, to, from, size);
    if (written) note_kernel_write(Hva(to), size);
    return written;
  }

 private:
  long pid_;
  long tid_;
};

// The host kernel, called directly (the monitor rules: no libc).
class LinuxHost final : public HostKernel {
 public:
  // `signal_arrived`: the thread's CpuSignals::arrived, which stops a
  // forwarded call that a signal for the guest overtook (without one,
  // every call is made).
  explicit LinuxHost(const volatile std::uint32_t* signal_arrived = &kNever) noexcept : arrived_(signal_arrived) {}
  long forward(const Syscall& call) noexcept override { return dunk_forward_syscall(&call, arrived_); }
  long finish(const Syscall& call) noexcept override { return dunk_forward_syscall(&call, &kNever); }
  long call(long nr, long a0, long a1, long a2, long a3, long a4, long a5) noexcept override {
    return sys::call(nr, a0, a1, a2, a3, a4, a5);
  }

 private:
  static constexpr std::uint32_t kNever = 0;
  const volatile std::uint32_t* arrived_;
};

}  // namespace dunk::core
