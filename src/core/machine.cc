#include "core/machine.h"

#include <asm/prctl.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "arch/x86_64/apic.h"
#include "arch/x86_64/registers.h"
#include "arch/x86_64/vectors.h"
#include "arch/x86_64/xsave.h"
#include "base/syscall.h"
#include "core/guest_cpuid.h"
#include "core/monitor_context.h"
#include "core/text.h"
#include "guest/dispatch.h"
#include "kvm/uapi.h"

namespace dunk::core {
namespace {

// KVM_SET_TSS_ADDR / KVM_SET_IDENTITY_MAP_ADDR for Intel: three pages and one
// page just below the BIOS area, inside the GPA hole GpaSpace never assigns
// (the addresses QEMU uses).
constexpr std::uint64_t kIntelTssGpa = 0xfffb'd000;
constexpr std::uint64_t kIntelIdentityMapGpa = 0xfffb'c000;

constexpr unsigned kIdtBytes = arch::kIdtEntries * sizeof(arch::IdtGate);

// EnterOptions::identity_physical places dunk's arena (its page tables) at
// the first free GiB from 12 GiB up, where its guest-physical address can be
// its host address: just above the 4 GiB Dune's libdune keeps for its page
// pool at 8 GiB (include/libdune/dune.h, PAGEBASE and MAX_PAGES), and below
// both the physical width and the HyperTransport hole (gpa_space.cc).
constexpr Hva kIdentityArenaFrom{std::uint64_t{12} << 30};
Hva identity_limit(unsigned phys_bits) noexcept {
  constexpr std::uint64_t kHyperTransportHole = 0xfd'0000'0000;
  return Hva(std::min(std::uint64_t{1} << phys_bits, kHyperTransportHole));
}

std::uint64_t host_xcr0() noexcept {
  std::uint32_t eax, edx;
  asm volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (std::uint64_t{edx} << 32) | eax;
}

struct Capability {
  long id;
  const char* missing;  // the error when KVM lacks it
};

constexpr Capability kRequired[] = {
    {KVM_CAP_USER_MEMORY, "KVM lacks KVM_CAP_USER_MEMORY"},
    {KVM_CAP_EXT_CPUID, "KVM lacks KVM_CAP_EXT_CPUID (KVM_GET_SUPPORTED_CPUID)"},
    {KVM_CAP_XSAVE, "KVM lacks KVM_CAP_XSAVE: dunk carries the program's AVX state into the guest"},
    {KVM_CAP_XCRS, "KVM lacks KVM_CAP_XCRS: dunk sets the guest's XCR0 to the host's"},
    {KVM_CAP_VCPU_ATTRIBUTES,
     "KVM lacks KVM_CAP_VCPU_ATTRIBUTES (KVM_VCPU_TSC_OFFSET, Linux 5.16+): without it the guest's "
     "TSC differs from the host's and every vDSO clock is wrong"},
    {KVM_CAP_NR_MEMSLOTS, "KVM lacks KVM_CAP_NR_MEMSLOTS"},
};

// What EnterOptions::interrupts needs on top. A split irqchip (Linux 4.4+,
// api.rst "KVM_CAP_SPLIT_IRQCHIP") puts only the local APICs in the kernel:
// no PIC or IOAPIC, so nothing claims ports or MMIO beside dunk's own exit
// ports. dunk needs Linux 5.16+ anyway (KVM_CAP_VCPU_ATTRIBUTES), so there is
// no kernel to fall back to KVM_CREATE_IRQCHIP for.
constexpr Capability kRequiredForInterrupts[] = {
    {KVM_CAP_SPLIT_IRQCHIP,
     "KVM lacks KVM_CAP_SPLIT_IRQCHIP: EnterOptions::interrupts needs an in-kernel local APIC"},
    {KVM_CAP_MP_STATE, "KVM lacks KVM_CAP_MP_STATE: EnterOptions::interrupts needs KVM_SET_MP_STATE"},
};

// Every vCPU's local APIC gets this spurious-interrupt vector (reserved in
// dunk/interrupts.h).
constexpr unsigned kSpuriousVector = 0xff;

kvm_segment flat_segment(std::uint16_t selector, bool code, unsigned dpl) noexcept {
  kvm_segment s{};
  s.base = 0;
  s.limit = 0xffffffff;
  s.selector = selector;
  using namespace arch::segment_type;
  s.type = code ? (kCode | kCodeReadable | kAccessed) : (kDataWritable | kAccessed);
  s.present = 1;
  s.dpl = static_cast<std::uint8_t>(dpl);
  s.db = code ? 0 : 1;  // a 64-bit code segment must have D clear (L and D both set is invalid)
  s.s = 1;
  s.l = code ? 1 : 0;
  s.g = 1;
  return s;
}

// Whether the thread that last owned `cpu` (exited) may still be running on
// its monitor's stack: until the kernel reports it gone. A Cpu whose thread
// never started (its clone failed, or was restarted for a signal) had none.
bool owner_not_reaped(const Cpu& cpu, long pid) noexcept {
  const std::int32_t owner = cpu.owner_tid.load();
  return owner != 0 && sys::call(SYS_tgkill, pid, owner, 0) != -ESRCH;
}

}  // namespace

// dunk's guest code runs at CPL 0, the host process (the monitor included)
// at CPL 3.
bool running_in_guest() noexcept {
  std::uint16_t cs;
  asm volatile("mov %%cs, %0" : "=r"(cs));
  return (cs & 3) == 0;
}

Status VmMemorySlots::set_memory_region(std::uint32_t slot, Gpa gpa, std::uint64_t size, Hva hva) noexcept {
  if (!running_in_guest()) return vm->set_memory_region(slot, gpa, size, hva);
  kvm_userspace_memory_region region{};
  region.slot = slot;
  region.guest_phys_addr = gpa.value();
  region.memory_size = size;
  region.userspace_addr = hva.value();
  const long ret = sys::call(DUNK_SYSCALL_OWN_IOCTL, vm->fd(), KVM_SET_USER_MEMORY_REGION, reinterpret_cast<long>(&region));
  if (sys::failed(ret)) return errno_error("ioctl(KVM_SET_USER_MEMORY_REGION) from the guest failed", ret);
  return {};
}

Machine& Machine::instance() noexcept {
  // Constructed once, never destroyed: vCPU threads may run until the very
  // end of the process, after static destructors.
  alignas(Machine) static std::byte storage[sizeof(Machine)];
  static Machine* machine = new (storage) Machine();
  return *machine;
}

bool Machine::created_here() const noexcept { return created() && owner_pid_ == sys::call(SYS_getpid); }

Status Machine::ensure_created(const EnterOptions& options) noexcept {
  if (options.follow_fork) follow_fork_ = true;
  auto settled = [&]() -> Status {
    if (options.interrupts && !interrupts_) {
      return Error{"EnterOptions::interrupts must be given to the first enter(), which creates the VM; this "
                   "process's VM has no local APICs",
                   EINVAL};
    }
    if ((options.identity_physical && !identity_physical_) || (options.user_mirror && !user_mirror_) ||
        (options.small_pages && !small_pages_)) {
      return Error{"EnterOptions' memory layout (identity_physical, user_mirror, small_pages) must be given to the "
                   "first enter(), which creates the VM; this process's VM has another",
                   EINVAL};
    }
    return {};
  };
  if (created()) return settled();
  LockGuard hold(create_lock_);
  if (created()) return settled();
  DUNK_TRY(create(options));
  owner_pid_ = sys::call(SYS_getpid);
  created_.store(true, std::memory_order_release);
  return {};
}

EnterOptions Machine::creation_options() const noexcept {
  return EnterOptions{.interrupts = interrupts_,
                      .follow_fork = follow_fork_,
                      .identity_physical = identity_physical_,
                      .user_mirror = user_mirror_,
                      .small_pages = small_pages_};
}

Status Machine::check_capabilities() noexcept {
  for (const Capability& cap : kRequired) {
    if (kvm_->check_extension(cap.id) <= 0) return Error{cap.missing, ENOTSUP};
  }
  // DUNK_REQUIRE_KVM_CAP=N makes capability N required too: a way to ask
  // whether a kernel offers it, and to exercise this error path in tests.
  if (const long id = config_.required_capability; id >= 0) {
    if (kvm_->check_extension(id) <= 0) {
      static char message[96];
      std::snprintf(message, sizeof message, "KVM lacks capability %ld (required by DUNK_REQUIRE_KVM_CAP)", id);
      return Error{message, ENOTSUP};
    }
  }
  return {};
}

Status Machine::enable_interrupts() noexcept {
  for (const Capability& cap : kRequiredForInterrupts) {
    if (vm_->check_extension(cap.id) <= 0) return Error{cap.missing, ENOTSUP};
  }
  // Before any vCPU exists: each vCPU created afterwards gets a local APIC.
  // No IOAPIC pins are reserved: nothing routes device interrupts.
  DUNK_TRY(vm_->enable_capability(KVM_CAP_SPLIT_IRQCHIP, 0));
  // x2APIC IDs are vCPU IDs; without this, KVM treats destination 0xff as a
  // broadcast even in x2APIC mode (api.rst, KVM_CAP_X2APIC_API). Optional:
  // only a process with 256 vCPUs would notice.
  if (vm_->check_extension(KVM_CAP_X2APIC_API) > 0) {
    DUNK_TRY(vm_->enable_capability(KVM_CAP_X2APIC_API,
                                    KVM_X2APIC_API_USE_32BIT_IDS | KVM_X2APIC_API_DISABLE_BROADCAST_QUIRK));
  }
  // Single-stepping out of dunk's entry code (signal delivery) must not
  // step into every pending interrupt's handler too.
  step_blocks_irq_ = (vm_->check_extension(KVM_CAP_SET_GUEST_DEBUG2) & KVM_GUESTDBG_BLOCKIRQ) != 0;
  return {};
}

Status Machine::read_cpu_features() noexcept {
  DUNK_TRY(kvm_->supported_cpuid(cpuid_));
  static arch::CpuidEntry entries[kvm::kMaxCpuidEntries];
  std::size_t n = 0;
  for (const kvm_cpuid_entry2& e : cpuid_.span()) {
    entries[n++] = arch::CpuidEntry{e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx};
  }
  auto host_cpuid = [](std::uint32_t function, std::uint32_t index) { return arch::host_cpuid(function, index); };
  if (MissingFeatures missing = missing_isa_features({entries, n}, host_cpuid)) {
    static char message[256];
    std::snprintf(message, sizeof message,
                  "KVM's CPUID lacks instruction-set features this host's code uses (leaf %#x.%u E%cX bits "
                  "%#x); is this KVM without hardware virtualization (VT-x/AMD-V)?",
                  missing.function, missing.index, static_cast<char>(missing.reg - 'a' + 'A'), missing.bits);
    return Error{message, ENOTSUP};
  }
  features_ = arch::decode_cpu_features({entries, n});
  if (!features_.long_mode || !features_.syscall) {
    return Error{"KVM's CPUID lacks long mode or SYSCALL", ENOTSUP};
  }
  if (!features_.xsave) return Error{"the CPU lacks XSAVE, which dunk needs to carry FPU/AVX state", ENOTSUP};
  if (features_.phys_bits < 32 || features_.phys_bits > 52) {
    return Error{"KVM reports an implausible guest physical address width", ENOTSUP};
  }
  // The guest must accept every state component the host uses, or code that
  // glibc chose by the host's CPUID would fault in the guest.
  std::uint64_t host = host_xcr0();
  xcr0_ = host & features_.xcr0_supported & ~arch::xfeature::kSupervisorMask;
  if (!arch::xfeature::valid_xcr0(xcr0_)) return Error{"no valid guest XCR0 for this host", ENOTSUP};

  long xsave2 = kvm_->check_extension(KVM_CAP_XSAVE2);
  xsave2_ = xsave2 > 0;
  std::size_t size = dunk_kvm_xsave_size;
  if (xsave2 > 0 && static_cast<std::size_t>(xsave2) > size) size = static_cast<std::size_t>(xsave2);
  std::size_t host_size = arch::host_cpuid(0xd, 0).ebx;  // for the host's current XCR0
  if (host_size > size) size = host_size;
  xsave_size_ = (size + 63) & ~std::size_t{63};
  return {};
}

Status Machine::build_fpu_init_image() noexcept {
  // The FPU's initial state (SDM vol. 1 §13.6, "Processor Tracking of XSAVE-
  // Managed State"; Table 10-1 for FXSAVE's layout): FCW 0x37F, MXCSR
  // 0x1F80, every register zero, x87 and SSE marked as loaded from here.
  DUNK_ASSIGN_OR_RETURN(fpu_init_, arena_.allocate(xsave_size_, arch::xsave::kAlignment));
  arch::xsave::Image(fpu_init_).fill_initial(xsave_size_);
  return {};
}

Status Machine::build_idt() noexcept {
  DUNK_ASSIGN_OR_RETURN(std::byte* memory, arena_.allocate(kIdtBytes));
  idt_ = reinterpret_cast<arch::IdtGate*>(memory);
  for (unsigned v = 0; v < arch::kIdtEntries; ++v) {
    // NMI, #DF and #MC can strike when IST1 is unusable: they get IST2.
    const unsigned ist = guest::is_fatal_vector(v) ? 2 : 1;
    // int3 and into are meant to be executed by ring-3 code too.
    const bool software_trap = v == static_cast<unsigned>(arch::Vector::kBreakpoint) ||
                               v == static_cast<unsigned>(arch::Vector::kOverflow);
    idt_[v] = arch::make_gate(arch::GateType::kInterrupt, Gva(guest::dunk_idt_stubs[v]),
                              arch::gdt::kKernelCode, ist, software_trap ? 3 : 0);
  }
  return {};
}

Status Machine::setup_stats() noexcept {
  // In the arena, like every mapping of dunk's.
  DUNK_ASSIGN_OR_RETURN(std::byte* memory, arena_.allocate(sizeof(Stats)));
  // `dunk exec --stats` names a file every process of the tree adds to.
  const char* path = config_.stats_path;
  if (*path != '\0') {
    long fd = sys::call(SYS_openat, AT_FDCWD, reinterpret_cast<long>(path), O_RDWR | O_CLOEXEC);
    if (!sys::failed(fd)) {
      long addr = sys::call(SYS_mmap, reinterpret_cast<long>(memory), sizeof(Stats), PROT_READ | PROT_WRITE,
                            MAP_SHARED | MAP_FIXED, fd, 0);
      sys::call(SYS_close, fd);
      if (!sys::failed(addr)) {
        auto* shared = reinterpret_cast<Stats*>(addr);
        if (shared->magic == Stats::kMagic && shared->version == Stats::kVersion) {
          stats_ = shared;
          stats_shared_ = true;
          stats_->add(stats_->processes);
          return {};
        }
      }
      // Private zeroed memory again in its place (a failed MAP_FIXED may
      // have unmapped it).
      addr = sys::call(SYS_mmap, reinterpret_cast<long>(memory), sizeof(Stats), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
      if (sys::failed(addr)) return errno_error("mmap(dunk stats block) failed", addr);
    }
    // A stats file that cannot be used must not stop the program; its
    // counts go to a private block instead.
  }
  stats_ = reinterpret_cast<Stats*>(memory);
  stats_shared_ = false;
  stats_->magic = Stats::kMagic;
  stats_->version = Stats::kVersion;
  stats_->size = sizeof(Stats);
  stats_->add(stats_->processes);
  return {};
}

Result<kvm::System> Machine::open_kvm() noexcept {
  // DUNK_KVM_FD: a KVM handle inherited from `dunk exec`, which passes one
  // down the process tree so that a program that has dropped its
  // privileges (and could not open /dev/kvm) still runs in VM mode. It stays
  // open for this process's own children, out of the program's reach.
  if (const int fd = config_.inherited_kvm_fd; fd >= 0 && fd < FdSet::kLimit) {
    if (auto system = kvm::System::duplicate(fd, &move_out_of_program_range)) {
      dunk_fds_.add(fd);
      inherited_kvm_fd_ = fd;
      return system;
    }
    // Not (or no longer) a KVM handle: open the device as without it.
  }
  // DUNK_KVM_DEVICE names another device node than /dev/kvm.
  return kvm::System::open(config_.kvm_device, &move_out_of_program_range);
}

Status Machine::create_vm() noexcept {
  DUNK_ASSIGN_OR_RETURN(kvm::Vm vm, kvm::Vm::create(*kvm_));
  vm_.emplace(std::move(vm));
  guest::dunk_lapic_present = false;
  if (interrupts_) DUNK_TRY(enable_interrupts());
  guest::dunk_lapic_present = interrupts_;
  if (features_.vendor == arch::Vendor::kIntel) {
    // VMX-only set-up (api.rst, KVM_SET_TSS_ADDR: "required on Intel-based hosts").
    DUNK_TRY(vm_->set_identity_map_addr(kIntelIdentityMapGpa));
    DUNK_TRY(vm_->set_tss_addr(kIntelTssGpa));
  }
  slots_.vm = &*vm_;
  return {};
}

Status Machine::create(const EnterOptions& options) noexcept {
  if (!configured_) config_ = MachineConfig::from_environment();
  configured_ = true;
  DUNK_ASSIGN_OR_RETURN(kvm::System system, open_kvm());
  kvm_.emplace(std::move(system));
  DUNK_TRY(check_capabilities());
  DUNK_TRY(read_cpu_features());
  DUNK_ASSIGN_OR_RETURN(std::size_t mmap_size, kvm_->vcpu_mmap_size());
  vcpu_mmap_size_ = mmap_size;

  interrupts_ = options.interrupts;
  DUNK_TRY(create_vm());
  // KVM's limit of vCPUs per VM (api.rst, KVM_CAP_MAX_VCPUS; without it,
  // KVM_CAP_NR_VCPUS): one per thread alive in VM mode at once.
  long max_vcpus = vm_->check_extension(KVM_CAP_MAX_VCPUS);
  if (max_vcpus <= 0) max_vcpus = vm_->check_extension(KVM_CAP_NR_VCPUS);
  max_vcpus_ = max_vcpus > 0 ? static_cast<unsigned>(max_vcpus) : 1;
  // DUNK_MAX_VCPUS=N lowers it (to test what happens at the limit).
  if (config_.max_vcpus > 0 && config_.max_vcpus < max_vcpus_) max_vcpus_ = config_.max_vcpus;
  TextBuffer(vcpu_limit_message_, sizeof vcpu_limit_message_)
      .append("KVM allows ")
      .dec(max_vcpus_)
      .append(" vCPUs per VM (KVM_CAP_MAX_VCPUS) and every one serves a live thread: no more threads in VM mode");

  identity_physical_ = options.identity_physical;
  user_mirror_ = options.user_mirror;
  small_pages_ = options.small_pages;
  // DUNK_GPA_BITS=N narrows the guest-physical space (to test a small one);
  // the page tables still follow the CPU.
  const unsigned gpa_bits =
      config_.gpa_bits > 30 && config_.gpa_bits < features_.phys_bits ? config_.gpa_bits : features_.phys_bits;
  // A fork child's arena still holds its parent's VM: start afresh (at the
  // same address, which keeps an identity layout). After dunk::shutdown of
  // a VM of the other layout, an arena outside the identity window moves;
  // never while this thread runs on it (a fork child waits on its transit
  // region, which recycling keeps).
  const Hva identity_end = identity_limit(gpa_bits);
  const bool on_arena = arena_.reserved() && arena_.contains(Hva(reinterpret_cast<std::uint64_t>(__builtin_frame_address(0))));
  if (identity_physical_ && arena_.reserved() && !on_arena &&
      (arena_.base() < kIdentityArenaFrom || arena_.end() > identity_end)) {
    arena_.release();
  }
  if (arena_.reserved()) {
    DUNK_TRY(arena_.recycle());
  } else if (identity_physical_) {
    DUNK_TRY(arena_.reserve_between(kIdentityArenaFrom, identity_end));
  } else {
    DUNK_TRY(arena_.reserve());
  }
  MirrorConfig config{
      .gpa = {.phys_bits = gpa_bits,
              .chunk_shift = 30,
              .max_chunks = static_cast<std::uint32_t>(kvm_->check_extension(KVM_CAP_NR_MEMSLOTS)),
              .reserved = default_reserved_gpa_ranges(),
              .identity = identity_physical_},
      .paging = {.gib_pages = features_.gib_pages, .nx = features_.nx, .phys_bits = features_.phys_bits},
      .user_mirror = user_mirror_,
      .largest = small_pages_ ? arch::PageSize::k4K : arch::PageSize::k1G,
  };
  DUNK_TRY(mirror_.init(slots_, arena_, config));
  dunk_fds_.add(kvm_->fd());
  dunk_fds_.add(vm_->fd());
  dunk_fds_.add(mirror_.probe_fd());
  // The --strace descriptor `dunk exec` passed down: dunk's, like the KVM
  // handle (out of the program's reach), when it is open.
  strace_fd_ = -1;
  if (const int fd = config_.strace_fd; fd >= 0 && sys::call(SYS_fcntl, fd, F_GETFD) >= 0) {
    strace_fd_ = fd;
    dunk_fds_.add(fd);
  }
  DUNK_TRY(build_idt());
  DUNK_ASSIGN_OR_RETURN(std::byte* ldt_table, arena_.allocate(LdtMirror::kBytes));
  new (&ldt_) LdtMirror();
  ldt_.attach(ldt_table);
  {
    // The program's LDT, if it has one already (a fork child's, say).
    LinuxHost host;
    DUNK_TRY(ldt_.reload(host));
  }
  DUNK_TRY(setup_stats());
  DUNK_TRY(build_fpu_init_image());
  DUNK_TRY(mirror_.set_user_ranges({user_ranges_, user_range_count_}, /*resync=*/false));
  DUNK_TRY(mirror_.sync_all());
  brk.store(static_cast<std::uint64_t>(sys::call(SYS_brk, 0)), std::memory_order_relaxed);
  return {};
}

Status Machine::set_user_ranges(std::span<const UserRange> ranges) noexcept {
  if (ranges.size() > Mirror::kMaxUserRanges) return Error{"too many user ranges", EINVAL};
  LockGuard hold(create_lock_);
  if (created()) DUNK_TRY(mirror_.set_user_ranges(ranges, /*resync=*/true));
  std::copy(ranges.begin(), ranges.end(), user_ranges_);
  user_range_count_ = static_cast<unsigned>(ranges.size());
  return {};
}

void Machine::start_over_in_fork_child(bool shares_fd_table) noexcept {
  // Runs in the child, which has one thread: no lock is held by anyone,
  // though another thread of the parent may have held one at the fork.
  create_lock_.reset_after_fork();
  signal_lock_.reset_after_fork();
  cpuid_lock_.reset_after_fork();
  cpus_lock_.reset_after_fork();
  fd_placement_lock().reset_after_fork();
  created_.store(false, std::memory_order_relaxed);
  shares_fd_table_ = shares_fd_table;
  exiting_.store(false, std::memory_order_relaxed);
  fds_closed_.store(false, std::memory_order_relaxed);
  // The debugger serves the parent; its int3 in this copy of the memory
  // would end the child.
  if (DebugLink* link = debugger_.exchange(nullptr, std::memory_order_relaxed)) {
    remove_breakpoints_in_fork_child(*link);
  }
}

void Machine::forget_after_fork(bool shares_fd_table) noexcept {
  start_over_in_fork_child(shares_fd_table);
  if (!shares_fd_table) {
    // Copies of the parent's descriptors: close them all (each vCPU's pins
    // the parent's VM), including one a parent thread was creating at the
    // fork, not yet listed anywhere but the bitmap; then the program may
    // reuse the numbers. The inherited KVM handle and the --strace
    // descriptor stay for this process's own VM and children (create()
    // owns them again).
    dunk_fds_.drain([this](int fd) {
      if (fd != inherited_kvm_fd_ && fd != strace_fd_) sys::call(SYS_close, fd);
    });
  }
  // Otherwise the numbers are the parent's descriptors, still in use: they
  // stay open and out of this program's reach (the bitmap stays). Either
  // way the parent's VM is forgotten without another close.
  if (vm_) vm_->abandon_fd();
  if (kvm_) kvm_->abandon_fd();
  vm_.reset();
  kvm_.reset();
  // The arena's contents belong to the parent's VM; the next create()
  // recycles it (this may run on a monitor stack inside it).
  mirror_.~Mirror();
  new (&mirror_) Mirror();
  next_vcpu_id_.store(0, std::memory_order_relaxed);
  cpus_lock_.reset_after_fork();
  cpu_count_.store(0, std::memory_order_relaxed);
}

void Machine::drop_parent_descriptors(const Cpu& forking, bool shares_fd_table) noexcept {
  const int kept[] = {kvm_ ? kvm_->fd() : -1, mirror_.probe_fd(), inherited_kvm_fd_, strace_fd_};
  auto is_kept = [&](int fd) { return std::find(std::begin(kept), std::end(kept), fd) != std::end(kept); };
  if (!shares_fd_table) {
    // Copies of the parent's VM and vCPU descriptors (each pins the
    // parent's VM), including one a parent thread was creating at the fork,
    // listed nowhere but in the bitmap: closed, so that the program may
    // reuse the numbers. The KVM device's, the probe's and dunk exec's stay
    // this process's.
    dunk_fds_.drain([&](int fd) {
      if (!is_kept(fd)) sys::call(SYS_close, fd);
    });
    for (int fd : kept) {
      if (fd >= 0) dunk_fds_.add(fd);
    }
  }
  // Otherwise the numbers are the parent's live descriptors: they stay open
  // and out of this program's reach. Either way the objects forget them
  // without another close; each vCPU's run page (a mapping of the parent's
  // vCPU, which pins it too) becomes inaccessible memory of the arena.
  for (unsigned i = 0, n = cpu_count_.load(std::memory_order_relaxed); i < n; ++i) {
    if (cpus_[i] == &forking) {
      cpus_[i]->vcpu.abandon();  // its run page is replaced by the child's vCPU's
    } else {
      cpus_[i]->vcpu.abandon_fd();
    }
    cpus_[i]->vcpu.~Vcpu();
  }
  if (vm_) vm_->abandon_fd();
  vm_.reset();
}

Status Machine::adopt_after_fork(Cpu& forking, bool shares_fd_table) noexcept {
  start_over_in_fork_child(shares_fd_table);
  arena_.reset_after_fork();
  ldt_.reset_after_fork();
  void* const run_page = forking.vcpu.run_page();
  drop_parent_descriptors(forking, shares_fd_table);
  if (shares_fd_table) {
    // The device's and the probe's descriptors are the parent's, in the
    // table both processes share, and this one closes its own at its exit
    // (close_fds_before_exit): it takes copies of its own.
    DUNK_ASSIGN_OR_RETURN(kvm::System own, kvm::System::duplicate(kvm_->fd(), &move_out_of_program_range));
    kvm_->abandon_fd();
    kvm_.emplace(std::move(own));
    dunk_fds_.add(kvm_->fd());
    DUNK_TRY(mirror_.renew_probe());
    dunk_fds_.add(mirror_.probe_fd());
  }
  // The parent's other vCPUs served threads this process does not have.
  cpus_[0] = &forking;
  cpu_count_.store(1, std::memory_order_relaxed);
  next_vcpu_id_.store(1, std::memory_order_relaxed);

  // KVM's objects. The device's descriptor, its capabilities, CPUID and
  // limits are the parent's (the same kernel): none is asked again.
  DUNK_TRY(create_vm());
  dunk_fds_.add(vm_->fd());
  DUNK_TRY(mirror_.adopt_after_fork(slots_));
  DUNK_ASSIGN_OR_RETURN(kvm::Vcpu vcpu, vm_->create_vcpu(0, vcpu_mmap_size_, run_page, xsave2_ ? 1 : 0));
  dunk_fds_.add(vcpu.fd());
  new (&forking.vcpu) kvm::Vcpu(std::move(vcpu));
  DUNK_TRY(forking.setup_vcpu(*this, /*fork=*/true));
  owner_pid_ = sys::call(SYS_getpid);

  // A process of its own in the counts: the --stats file's block counts
  // one more, a private block starts afresh.
  if (!stats_shared_) stats_->clear_counts();
  stats_->add(stats_->processes);
  stats_->add(stats_->vcpus);
  created_.store(true, std::memory_order_release);
  return {};
}

Status Machine::destroy() noexcept {
  LockGuard hold(create_lock_);
  if (!created()) return {};
  if (!created_here()) return Error{"shutdown: the VM belongs to the parent process (fork)", EINVAL};
  const long pid = sys::call(SYS_getpid);
  {
    LockGuard cpus(cpus_lock_);
    for (unsigned i = 0, n = cpu_count_.load(std::memory_order_relaxed); i < n; ++i) {
      const Cpu& cpu = *cpus_[i];
      const bool exited = cpu.owner_exited.load(std::memory_order_acquire);
      if (!exited && cpu.in_guest) return Error{"shutdown: a thread is still in VM mode", EBUSY};
      // An exiting thread runs on its monitor's stack until the kernel has
      // reaped it: the stack must stay until then.
      if (exited && owner_not_reaped(cpu, pid)) {
        return Error{"shutdown: a thread that exited in VM mode is still being reaped", EBUSY};
      }
    }
  }
  created_.store(false, std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  for (unsigned i = 0, n = cpu_count_.load(std::memory_order_relaxed); i < n; ++i) {
    dunk_fds_.remove(cpus_[i]->vcpu.fd());
    cpus_[i]->~Cpu();  // closes the vCPU, unmaps its kvm_run page
    cpus_[i] = nullptr;
  }
  cpu_count_.store(0, std::memory_order_release);
  next_vcpu_id_.store(0, std::memory_order_relaxed);
  if (const int probe = mirror_.probe_fd(); probe >= 0) {
    dunk_fds_.remove(probe);
    sys::call(SYS_close, probe);
  }
  mirror_.~Mirror();
  new (&mirror_) Mirror();
  dunk_fds_.remove(vm_->fd());
  vm_.reset();
  dunk_fds_.remove(kvm_->fd());
  kvm_.reset();  // a copy of an inherited handle (DUNK_KVM_FD), which stays
  stats_ = nullptr;  // in the arena (the --stats file's block too), recycled below
  idt_ = nullptr;
  fpu_init_ = nullptr;
  interrupts_ = false;
  identity_physical_ = false;
  user_mirror_ = false;
  small_pages_ = false;
  guest::dunk_lapic_present = false;
  new (&ldt_) LdtMirror();  // its table was in the arena
  // Page tables, areas, stacks: back to the kernel, the reservation kept.
  return arena_.recycle();
}

unsigned Machine::live_cpus() const noexcept {
  unsigned live = 0;
  for (unsigned i = 0, n = cpu_count_.load(std::memory_order_seq_cst); i < n; ++i) {
    if (!cpus_[i]->owner_exited.load(std::memory_order_seq_cst)) ++live;
  }
  return live;
}

void Machine::close_fds_before_exit() noexcept {
  if (!shares_fd_table_ || !created_here()) return;
  // From here on a failing KVM call in another thread is this exit's doing:
  // that thread ends quietly (Monitor::fatal) instead of reporting it.
  exiting_.store(true, std::memory_order_seq_cst);
  // Two threads exiting at once may both get here: close once.
  if (fds_closed_.exchange(true, std::memory_order_seq_cst)) return;
  for (unsigned i = 0, n = cpu_count_.load(std::memory_order_acquire); i < n; ++i) {
    sys::call(SYS_close, cpus_[i]->vcpu.fd());
  }
  if (mirror_.probe_fd() >= 0) sys::call(SYS_close, mirror_.probe_fd());
  sys::call(SYS_close, vm_->fd());
  sys::call(SYS_close, kvm_->fd());
}

Cpu* Machine::cpu_of_thread(std::int32_t tid) noexcept {
  for (unsigned i = 0, n = cpu_count_.load(std::memory_order_acquire); i < n; ++i) {
    if (cpus_[i]->owner_tid.load(std::memory_order_relaxed) == tid) return cpus_[i];
  }
  return nullptr;
}

Cpu* Machine::live_cpu(unsigned id) noexcept {
  for (unsigned i = 0, n = cpu_count_.load(std::memory_order_acquire); i < n; ++i) {
    Cpu* cpu = cpus_[i];
    if (cpu->vcpu.id() == id) return cpu->owner_exited.load(std::memory_order_acquire) ? nullptr : cpu;
  }
  return nullptr;
}

Result<Cpu*> Machine::acquire_cpu() noexcept {
  const long pid = sys::call(SYS_getpid);
  // Held while a new vCPU is made too: a thread that forks holds it across
  // the fork, so that the child never copies a vCPU half made (its run page
  // mapped but not yet listed, which would keep the parent's VM alive).
  LockGuard hold(cpus_lock_);
  // At KVM's cap of vCPUs, a thread that has exited but is not reaped yet
  // will free its vCPU in a moment: natively a thread created after
  // pthread_join of another never fails for the other's sake, so wait for
  // it (a bounded number of yields) rather than fail.
  constexpr unsigned kReapWaits = 10'000;
  for (unsigned waits = 0;; ++waits) {
    bool exiting = false;
    for (unsigned i = 0, n = cpu_count_.load(std::memory_order_relaxed); i < n; ++i) {
      Cpu* cpu = cpus_[i];
      if (!cpu->owner_exited.load(std::memory_order_acquire)) continue;
      // The exiting thread ran on this Cpu's monitor stack up to its exit
      // system call: reuse it only once the kernel reports the thread gone.
      if (owner_not_reaped(*cpu, pid)) {
        exiting = true;
        continue;
      }
      if (Status reset = cpu->reset_interrupts(); !reset) return reset.error();  // stays reusable
      cpu->owner_exited.store(false, std::memory_order_relaxed);
      return cpu;
    }
    if (!exiting || next_vcpu_id_.load(std::memory_order_relaxed) < max_vcpus_ || waits == kReapWaits) break;
    sys::call(SYS_sched_yield);
  }
  DUNK_ASSIGN_OR_RETURN(Cpu * cpu, create_cpu());
  if (unsigned n = cpu_count_.load(std::memory_order_relaxed); n < kMaxCpus) {
    cpus_[n] = cpu;
    cpu_count_.store(n + 1, std::memory_order_release);
  }
  return cpu;
}

Result<Cpu*> Machine::create_cpu() noexcept {
  unsigned id = next_vcpu_id_.fetch_add(1, std::memory_order_relaxed);
  // Every vCPU is in use by a live thread: say so, rather than pass on
  // KVM_CREATE_VCPU's bare EINVAL. The program's thread creation fails with
  // EAGAIN, as when the kernel runs out of threads.
  if (id >= max_vcpus_) return Error{vcpu_limit_message_, EAGAIN};
  // The run page in the arena, like every mapping of dunk's: the program's
  // address space holds only what it mapped itself (a fork child's vCPU
  // must not land in a hole the program left, where it expects a fault).
  DUNK_ASSIGN_OR_RETURN(std::byte* run_page, arena_.allocate(vcpu_mmap_size_));
  DUNK_ASSIGN_OR_RETURN(kvm::Vcpu vcpu, vm_->create_vcpu(id, vcpu_mmap_size_, run_page, xsave2_ ? 1 : 0));
  DUNK_ASSIGN_OR_RETURN(std::byte* object, arena_.allocate(sizeof(Cpu)));
  DUNK_ASSIGN_OR_RETURN(std::byte* area, arena_.allocate(DUNK_AREA_SIZE, DUNK_AREA_SIZE));
  DUNK_ASSIGN_OR_RETURN(std::byte* stack, arena_.allocate(Cpu::kMonitorStackSize, Arena::kPage, /*guard=*/true));
  DUNK_ASSIGN_OR_RETURN(std::byte* xsave, arena_.allocate(xsave_size_, 64));
  // Where the program's exception handlers run (src/guest/dispatch.h).
  DUNK_ASSIGN_OR_RETURN(std::byte* trap_stack, arena_.allocate(DUNK_TRAP_STACK_SIZE, Arena::kPage, /*guard=*/true));
  std::byte* lapic = nullptr;
  if (interrupts_) {
    DUNK_ASSIGN_OR_RETURN(std::byte* memory, arena_.allocate(sizeof(kvm_lapic_state)));
    lapic = memory;
  }
  dunk_fds_.add(vcpu.fd());
  Cpu* cpu = new (object) Cpu(std::move(vcpu));
  cpu->area = reinterpret_cast<guest::VcpuArea*>(area);
  guest::init_trap_area(*cpu->area, trap_stack, DUNK_TRAP_STACK_SIZE, xsave_size_, features_.fsgsbase,
                        mirror_.root().value());
  cpu->monitor_stack_top = stack + Cpu::kMonitorStackSize;
  cpu->xsave = xsave;
  cpu->lapic_init = reinterpret_cast<kvm_lapic_state*>(lapic);
  DUNK_TRY(cpu->setup(*this));
  stats_->add(stats_->vcpus);
  return cpu;
}

Status Cpu::setup(Machine& machine) noexcept {
  DUNK_TRY(init_area());
  return setup_vcpu(machine);
}

Status Cpu::init_area() noexcept {
  const unsigned id = vcpu.id();
  guest::VcpuArea& a = *area;
  a.self = reinterpret_cast<std::uint64_t>(&a);
  a.syscall_stack_top = reinterpret_cast<std::uint64_t>(a.syscall_stack + sizeof a.syscall_stack);
  a.origin_cs = DUNK_KERNEL_CS;
  a.origin_ss = DUNK_KERNEL_DS;
  a.tss.set_ist_stack(1, reinterpret_cast<std::uint64_t>(a.exception_stack + sizeof a.exception_stack));
  a.tss.set_ist_stack(2, reinterpret_cast<std::uint64_t>(a.fatal_stack + sizeof a.fatal_stack));
  a.tss.iomap_base = arch::kTssNoIoBitmap;
  const arch::CpuNode where{id % (arch::kMaxCpuNodeCpu + 1), 0};
  return arch::fill_gdt(a.gdt, Gva(reinterpret_cast<std::uint64_t>(&a.tss)), where);
}

Status Cpu::setup_vcpu(Machine& machine, bool fork) noexcept {
  const unsigned id = vcpu.id();
  guest::VcpuArea& a = *area;
  const arch::CpuNode where{id % (arch::kMaxCpuNodeCpu + 1), 0};

  // CPUID: what KVM supports, with this vCPU's APIC ID (SDM vol. 2A, CPUID
  // leaf 01H EBX[31:24] and leaves 0BH/1FH EDX).
  static kvm::CpuidBuffer cpuid;
  {
    LockGuard hold(machine.cpuid_lock());
    cpuid = machine.cpuid();
    for (kvm_cpuid_entry2& e : cpuid.span()) {
      if (e.function == 1) e.ebx = (e.ebx & 0x00ffffff) | (id << 24);
      if (e.function == 0xb || e.function == 0x1f) e.edx = id;
      // x2APIC (SDM vol. 2A, CPUID leaf 01H ECX[21]): KVM accepts
      // IA32_APIC_BASE.EXTD only when the guest's CPUID has it.
      static_assert(arch::cpuid_bit::kX2apic.reg == arch::CpuidReg::kEcx);
      if (e.function == arch::cpuid_bit::kX2apic.function && machine.interrupts()) {
        e.ecx |= arch::mask(arch::cpuid_bit::kX2apic);
      }
    }
    DUNK_TRY(vcpu.set_cpuid(cpuid));
  }

  kvm_sregs sregs{};
  DUNK_TRY(vcpu.get_sregs(sregs));
  sregs.cs = flat_segment(DUNK_KERNEL_CS, true, 0);
  sregs.ss = flat_segment(DUNK_KERNEL_DS, false, 0);
  // Data segment registers hold null selectors, as in a Linux process; in
  // 64-bit mode only FS and GS bases matter, set at each entry.
  sregs.ds = sregs.es = sregs.fs = sregs.gs = flat_segment(0, false, 0);
  sregs.tr = kvm_segment{};
  sregs.tr.base = reinterpret_cast<std::uint64_t>(&a.tss);
  sregs.tr.limit = arch::kTssLimit;
  sregs.tr.selector = DUNK_TSS_SELECTOR;
  sregs.tr.type = static_cast<std::uint8_t>(arch::SystemType::kTssBusy);
  sregs.tr.present = 1;
  sregs.ldt = kvm_segment{};
  sregs.ldt.type = static_cast<std::uint8_t>(arch::SystemType::kLdt);
  sregs.ldt.unusable = 1;
  sregs.gdt.base = reinterpret_cast<std::uint64_t>(a.gdt);
  sregs.gdt.limit = arch::gdt::kBytes - 1;
  sregs.idt.base = machine.idt_address();
  sregs.idt.limit = kIdtBytes - 1;
  const arch::CpuFeatures& f = machine.features();
  sregs.cr0 = arch::cr0::kPG | arch::cr0::kWP | arch::cr0::kNE | arch::cr0::kET | arch::cr0::kMP | arch::cr0::kPE;
  sregs.cr3 = machine.mirror().root().value();
  sregs.cr4 = arch::cr4::kPAE | arch::cr4::kPGE | arch::cr4::kOSFXSR | arch::cr4::kOSXMMEXCPT |
              arch::cr4::kOSXSAVE | (f.fsgsbase ? arch::cr4::kFSGSBASE : 0) | (f.pku ? arch::cr4::kPKE : 0) |
              (f.pcid ? arch::cr4::kPCIDE : 0);  // address-space tags for dunk/paging.h
  sregs.efer = arch::efer::kSCE | arch::efer::kLME | arch::efer::kLMA | (f.nx ? arch::efer::kNXE : 0);
  if (fork) {
    // Where the parent's vCPU was: on its tables (the program's own, or a
    // clone it activated), inside dunk's SYSCALL entry after SWAPGS (GS's
    // base is the area), with the program's FS and its LDT.
    sregs.cr3 = fork_sregs.cr3;
    sregs.fs = fork_sregs.fs;
    sregs.gs = fork_sregs.gs;
    sregs.ldt = fork_sregs.ldt;
  }
  DUNK_TRY(vcpu.set_sregs(sregs));

  const kvm_msr_entry msrs[] = {
      {arch::msr::kStar, 0, arch::gdt::kStar},
      {arch::msr::kLstar, 0, reinterpret_cast<std::uint64_t>(&guest::dunk_syscall_entry)},
      {arch::msr::kCstar, 0, reinterpret_cast<std::uint64_t>(&guest::dunk_compat_syscall_entry)},
      {arch::msr::kSfmask, 0, arch::kSyscallFlagMask},
      {arch::msr::kKernelGsBase, 0, fork ? fork_segments.gs_base : reinterpret_cast<std::uint64_t>(&a)},
      {arch::msr::kTscAux, 0, arch::encode_cpunode_limit(where)},
      {arch::msr::kPat, 0, arch::kPatPowerOn},
  };
  DUNK_TRY(vcpu.set_msrs(msrs));
  DUNK_TRY(vcpu.set_xcr0(machine.xcr0()));
  // Guest TSC = host TSC: the vDSO computes time from RDTSC and the host's
  // clock data, so any offset breaks every clock (docs/ARCHITECTURE.md,
  // "The guest's machine").
  DUNK_TRY(vcpu.set_tsc_offset(0));
  if (machine.interrupts()) DUNK_TRY(setup_interrupts(machine));
  return {};
}

Status Cpu::setup_interrupts(Machine&) noexcept {
  // KVM created the local APIC enabled in xAPIC mode (MMIO at 0xfee00000,
  // inside the GPA hole dunk never assigns). Switch it to x2APIC mode,
  // where every register is an MSR and IPIs are one WRMSR; then enable it
  // in software (SVR bit 8: until then it accepts no interrupt) and mask
  // LINT0/LINT1 (KVM wires LINT0 of vCPU 0 to the PIC, which a split
  // irqchip leaves to user space, and dunk has none). In that order: KVM
  // serves the x2APIC MSRs only in x2APIC mode, and KVM_SET_MSRS sets
  // entries in order.
  const kvm_msr_entry msrs[] = {
      {arch::msr::kApicBase, 0, arch::apic::x2apic_base(/*bsp=*/vcpu.id() == 0)},
      {arch::apic::msr::kSvr, 0, arch::apic::make_svr(kSpuriousVector)},
      {arch::apic::msr::kLvtLint0, 0, arch::apic::kLvtMasked},
      {arch::apic::msr::kLvtLint1, 0, arch::apic::kLvtMasked},
  };
  DUNK_TRY(vcpu.set_msrs(msrs));
  DUNK_TRY(vcpu.get_lapic(*lapic_init));
  // With an in-kernel local APIC every vCPU but the first starts waiting for
  // INIT and SIPI, as an application processor does (api.rst, KVM_GET_MP_STATE).
  return vcpu.set_mp_state(KVM_MP_STATE_RUNNABLE);
}

Status Cpu::reset_interrupts() noexcept {
  if (lapic_init == nullptr) return {};
  // Nothing pending or in service, except a TLB shootdown: TLB shootdowns
  // made while the vCPU had no thread did not reach it, and its TLB may
  // still hold entries from its previous thread. The new thread flushes
  // before its first instruction.
  kvm_lapic_state state = *lapic_init;
  constexpr unsigned kVector = DUNK_TLB_SHOOTDOWN_VECTOR;
  constexpr std::uint32_t kIrr = arch::apic::irr_page_offset(kVector);
  std::uint32_t irr;
  std::memcpy(&irr, state.regs + kIrr, sizeof irr);
  irr |= std::uint32_t{1} << arch::apic::vector_bit(kVector);
  std::memcpy(state.regs + kIrr, &irr, sizeof irr);
  DUNK_TRY(vcpu.set_lapic(state));
  return vcpu.set_mp_state(KVM_MP_STATE_RUNNABLE);
}

}  // namespace dunk::core

namespace dunk::core {

void Cpu::prepare_entry(const guest::TrapFrame& frame, const UserSegments& segments, const std::byte* fpu,
                        std::size_t fpu_size) noexcept {
  entry_frame = frame;
  entry_segments = segments;
  if (fpu != nullptr) std::memcpy(xsave, fpu, fpu_size);
}

void Cpu::prepare_entry_from_host(const guest::TrapFrame& frame, const std::byte* fpu, std::size_t fpu_size) noexcept {
  prepare_entry(frame, host_user_segments(), fpu, fpu_size);
}

}  // namespace dunk::core
