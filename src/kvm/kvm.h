// RAII wrappers over the KVM API (Linux Documentation/virt/kvm/api.rst):
// the /dev/kvm system handle, a VM, its vCPUs. Every ioctl goes through a raw
// system call, so vCPUs can be created and driven from the monitor, where
// libc must not be entered; failures come back as Errors naming the ioctl.
#pragma once

#include <linux/kvm.h>

#include <cstddef>
#include <cstdint>
#include <span>

#include "base/unique_fd.h"
#include "dunk/address.h"
#include "dunk/result.h"

// Newer than the 6.1 headers this builds against; values from api.rst.
#ifndef KVM_CAP_MEMORY_FAULT_INFO
#define KVM_CAP_MEMORY_FAULT_INFO 232
#endif
#ifndef KVM_EXIT_MEMORY_FAULT
#define KVM_EXIT_MEMORY_FAULT 39
#endif

namespace dunk::kvm {

// The `what` of the Error System::open returns when the device cannot be
// opened (its errno tells ENOENT from EACCES).
inline constexpr const char* kOpenFailed = "open(/dev/kvm) failed";

// The API version every KVM since Linux 2.6.22 reports.
inline constexpr int kApiVersion = 12;

// Enough for every leaf KVM_GET_SUPPORTED_CPUID returns on current CPUs
// (it fails with E2BIG when the buffer is too small, and we say so).
inline constexpr std::size_t kMaxCpuidEntries = 256;

// The layout of struct kvm_cpuid2 with room for its flexible array.
struct CpuidBuffer {
  std::uint32_t nent = 0;
  std::uint32_t padding = 0;
  kvm_cpuid_entry2 entries[kMaxCpuidEntries];

  std::span<kvm_cpuid_entry2> span() noexcept { return {entries, nent}; }
  std::span<const kvm_cpuid_entry2> span() const noexcept { return {entries, nent}; }
  kvm_cpuid_entry2* find(std::uint32_t function, std::uint32_t index = 0) noexcept;
};

// Where a descriptor this layer creates (the device, a VM, a vCPU) goes: the
// placer takes the new descriptor and returns the number to use from now on
// (dunk moves its own descriptors out of the program's way,
// base/fd_placement.h). Null: where the kernel put it.
using FdPlacer = int (*)(int fd) noexcept;

class System {
 public:
  // Opens the KVM device and checks the API version. The error's errno tells
  // ENOENT (no KVM in this kernel) from EACCES (no permission). The VM and
  // its vCPUs are placed by `placer` as well.
  static Result<System> open(const char* path = "/dev/kvm", FdPlacer placer = nullptr) noexcept;
  // A handle on the KVM device this process already holds (inherited):
  // duplicated, so `fd` stays open; fails unless it is one.
  static Result<System> duplicate(int fd, FdPlacer placer = nullptr) noexcept;

  int fd() const noexcept { return fd_.get(); }
  // Forgets the descriptor without closing it (another process sharing the
  // descriptor table still uses it).
  void abandon_fd() noexcept { fd_.release(); }
  // KVM_CHECK_EXTENSION: 0 when absent, else a capability-specific value.
  long check_extension(long capability) const noexcept;
  Result<std::size_t> vcpu_mmap_size() const noexcept;
  Status supported_cpuid(CpuidBuffer& out) const noexcept;

 private:
  System(UniqueFd fd, FdPlacer placer) noexcept : fd_(std::move(fd)), placer_(placer) {}
  // A handle on the device, once KVM_GET_API_VERSION says it is one dunk
  // can use.
  static Result<System> adopt(UniqueFd fd, FdPlacer placer) noexcept;
  friend class Vm;
  UniqueFd fd_;
  FdPlacer placer_;
};

class Vcpu;

class Vm {
 public:
  static Result<Vm> create(const System& system) noexcept;

  int fd() const noexcept { return fd_.get(); }
  // Forgets the descriptor without closing it (see System::abandon_fd).
  void abandon_fd() noexcept { fd_.release(); }
  long check_extension(long capability) const noexcept;

  // Installs (or, with size 0, deletes) memory slot `slot`: guest-physical
  // [gpa, gpa+size) is backed by this process's memory at [hva, hva+size).
  Status set_memory_region(std::uint32_t slot, Gpa gpa, std::uint64_t size, Hva hva) noexcept;
  Status enable_capability(std::uint32_t capability, std::uint64_t arg0 = 0) noexcept;
  // Intel VMX only: addresses KVM needs for real-mode emulation even though
  // dunk never runs real mode; harmless and rejected-as-unneeded on AMD.
  Status set_tss_addr(std::uint64_t gpa) noexcept;
  Status set_identity_map_addr(std::uint64_t gpa) noexcept;

  // A vCPU and its kvm_run page, mapped at `at` (MAP_FIXED, over memory
  // the caller reserved for it) or, with nullptr, wherever the kernel
  // chooses. A placed run page is replaced by inaccessible memory when the
  // vCPU goes, so the caller's reservation stays whole.
  // `xsave2`: whether KVM has KVM_CAP_XSAVE2, when the caller knows (else
  // asked).
  Result<Vcpu> create_vcpu(unsigned id, std::size_t mmap_size, void* at = nullptr, int xsave2 = -1) noexcept;

 private:
  Vm(UniqueFd fd, FdPlacer placer) noexcept : fd_(std::move(fd)), placer_(placer) {}
  UniqueFd fd_;
  FdPlacer placer_;
};

class Vcpu {
 public:
  int fd() const noexcept { return fd_.get(); }
  // Forgets the descriptor without closing it (see System::abandon_fd); the
  // run page still goes with the object.
  void abandon_fd() noexcept { fd_.release(); }
  // Forgets the descriptor and the run page alike, neither closed nor
  // unmapped: for a caller that maps a new vCPU's run page over this one's
  // (Vm::create_vcpu at the same address).
  void abandon() noexcept {
    fd_.release();
    run_.release();
  }
  unsigned id() const noexcept { return id_; }
  kvm_run* run_page() const noexcept { return run_.as<kvm_run>(); }

  // One KVM_RUN; returns 0 or the negative errno (EINTR when a host signal
  // arrived, EFAULT when host memory behind a slot could not be accessed).
  long run() noexcept;

  Status get_regs(kvm_regs& regs) noexcept;
  // KVM_GET_VCPU_EVENTS: exceptions, interrupts and NMIs being delivered.
  Status get_events(kvm_vcpu_events& events) noexcept;
  Status set_regs(const kvm_regs& regs) noexcept;
  Status get_sregs(kvm_sregs& sregs) noexcept;
  Status set_sregs(const kvm_sregs& sregs) noexcept;
  Status set_cpuid(const CpuidBuffer& cpuid) noexcept;
  // The xsave buffer is `size` bytes in the standard (non-compacted) XSAVE
  // format, at least 4096 bytes (kvm_xsave); larger with KVM_CAP_XSAVE2.
  Status get_xsave(void* buffer, std::size_t size) noexcept;
  Status set_xsave(const void* buffer) noexcept;
  Status set_xcr0(std::uint64_t value) noexcept;
  // Single-stepping the guest: each instruction ends in KVM_EXIT_DEBUG.
  // `block_irq` (KVM_GUESTDBG_BLOCKIRQ, Linux 5.15+) keeps KVM from
  // injecting interrupts between the steps.
  Status set_single_step(bool on, bool block_irq = false) noexcept;
  // KVM_SET_GUEST_DEBUG in full: `control` is KVM_GUESTDBG_* (0: off);
  // with KVM_GUESTDBG_USE_HW_BP, `debugreg` holds DR0-DR3, (DR6 unused),
  // DR7, and every #DB of the guest ends in KVM_EXIT_DEBUG. Single-stepping
  // sets TF at the RIP the vCPU has now: call it after KVM_SET_REGS.
  Status set_guest_debug(std::uint32_t control, const std::uint64_t (&debugreg)[8]) noexcept;
  // KVM_SET_MP_STATE: with an in-kernel local APIC, a vCPU other than the
  // first starts waiting for INIT/SIPI, and one that executed HLT waits for
  // an interrupt; KVM_MP_STATE_RUNNABLE makes it run.
  Status set_mp_state(std::uint32_t state) noexcept;
  // KVM_NMI: an NMI for the guest, taken at its next instruction boundary
  // where NMIs are not blocked (with or without an in-kernel local APIC).
  Status inject_nmi() noexcept;
  Status get_mp_state(std::uint32_t& state) noexcept;
  // The in-kernel local APIC's registers (KVM_GET_LAPIC/KVM_SET_LAPIC).
  Status get_lapic(kvm_lapic_state& state) noexcept;
  Status set_lapic(const kvm_lapic_state& state) noexcept;
  Status set_msrs(std::span<const kvm_msr_entry> msrs) noexcept;
  Status get_msrs(std::span<kvm_msr_entry> msrs) noexcept;
  // KVM_VCPU_TSC_CTRL/KVM_VCPU_TSC_OFFSET (Linux 5.16+): guest TSC = host TSC + offset.
  Status set_tsc_offset(std::int64_t offset) noexcept;
  // A file descriptor for KVM's binary statistics of this vCPU (Linux 5.14+).
  Result<UniqueFd> stats_fd() noexcept;

  Vcpu(Vcpu&&) noexcept = default;
  Vcpu& operator=(Vcpu&&) noexcept = delete;
  ~Vcpu();

 private:
  friend class Vm;
  Vcpu(UniqueFd fd, Mapping run, unsigned id, bool placed) noexcept
      : fd_(std::move(fd)), run_(std::move(run)), id_(id), placed_(placed) {}
  UniqueFd fd_;
  Mapping run_;
  unsigned id_ = 0;
  bool xsave2_ = false;
  bool placed_ = false;
};

// Reads one named 64-bit counter ("exits", "io_exits", ...) from a KVM binary
// statistics descriptor (api.rst, "KVM_GET_STATS_FD"). Not for the monitor:
// it allocates.
Result<std::uint64_t> read_stat(int stats_fd, const char* name) noexcept;

}  // namespace dunk::kvm
