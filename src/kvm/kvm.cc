#include "kvm/kvm.h"

#include "kvm/uapi.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>

#include <cstddef>
#include <cstring>


// The kernel's layouts put the entries right after two 32-bit words. (Do not
// compare with offsetof on the uapi structs: compiled as C++, their
// __DECLARE_FLEX_ARRAY adds an empty struct that shifts the array.)
static_assert(offsetof(dunk::kvm::CpuidBuffer, entries) == 8);  // = dunk_kvm_cpuid2_entries_offset

namespace dunk::kvm {
namespace {

long ioctl_raw(int fd, unsigned long request, const void* arg) noexcept {
  return sys::call(SYS_ioctl, fd, static_cast<long>(request), reinterpret_cast<long>(arg));
}
long ioctl_raw(int fd, unsigned long request, long arg) noexcept {
  return sys::call(SYS_ioctl, fd, static_cast<long>(request), arg);
}

Status check(long ret, const char* what) noexcept {
  if (sys::failed(ret)) return errno_error(what, ret);
  return {};
}

}  // namespace

kvm_cpuid_entry2* CpuidBuffer::find(std::uint32_t function, std::uint32_t index) noexcept {
  for (auto& entry : span()) {
    bool indexed = (entry.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) != 0;
    if (entry.function == function && (!indexed || entry.index == index)) return &entry;
  }
  return nullptr;
}

namespace {
// The descriptor where `placer` puts it.
UniqueFd placed(long fd, FdPlacer placer) noexcept {
  return UniqueFd(placer != nullptr ? placer(static_cast<int>(fd)) : static_cast<int>(fd));
}
}  // namespace

Result<System> System::open(const char* path, FdPlacer placer) noexcept {
  long fd = sys::call(SYS_openat, AT_FDCWD, reinterpret_cast<long>(path), O_RDWR | O_CLOEXEC);
  if (sys::failed(fd)) return errno_error(kOpenFailed, fd);
  return adopt(placed(fd, placer), placer);
}

Result<System> System::duplicate(int fd, FdPlacer placer) noexcept {
  // Only the KVM device gets an ioctl: the number may name anything by now.
  // (KVM is a misc device, major 10, minor 232: include/linux/miscdevice.h.)
  struct stat st {};
  if (sys::failed(sys::call(SYS_fstat, fd, reinterpret_cast<long>(&st))) || !S_ISCHR(st.st_mode) ||
      major(st.st_rdev) != 10 || minor(st.st_rdev) != 232) {
    return Error{"the inherited descriptor is not the KVM device", EINVAL};
  }
  long copy = sys::call(SYS_fcntl, fd, F_DUPFD_CLOEXEC, 0);
  if (sys::failed(copy)) return errno_error("fcntl(F_DUPFD_CLOEXEC) of an inherited KVM handle failed", copy);
  return adopt(placed(copy, placer), placer);
}

Result<System> System::adopt(UniqueFd fd, FdPlacer placer) noexcept {
  if (ioctl_raw(fd.get(), KVM_GET_API_VERSION, 0L) != kApiVersion) {
    return Error{"KVM_GET_API_VERSION is not 12: unsupported KVM", EINVAL};
  }
  return System(std::move(fd), placer);
}

long System::check_extension(long capability) const noexcept {
  long ret = ioctl_raw(fd(), KVM_CHECK_EXTENSION, capability);
  return ret < 0 ? 0 : ret;
}

Result<std::size_t> System::vcpu_mmap_size() const noexcept {
  long ret = ioctl_raw(fd(), KVM_GET_VCPU_MMAP_SIZE, 0L);
  if (sys::failed(ret)) return errno_error("ioctl(KVM_GET_VCPU_MMAP_SIZE) failed", ret);
  return static_cast<std::size_t>(ret);
}

Status System::supported_cpuid(CpuidBuffer& out) const noexcept {
  out.nent = kMaxCpuidEntries;
  return check(ioctl_raw(fd(), dunk_kvm_get_supported_cpuid, &out), "ioctl(KVM_GET_SUPPORTED_CPUID) failed");
}

Result<Vm> Vm::create(const System& system) noexcept {
  // Machine type 0: the default x86 VM. The returned descriptor is close-on-exec.
  long fd = ioctl_raw(system.fd(), KVM_CREATE_VM, 0L);
  if (sys::failed(fd)) return errno_error("ioctl(KVM_CREATE_VM) failed", fd);
  return Vm(placed(fd, system.placer_), system.placer_);
}

long Vm::check_extension(long capability) const noexcept {
  long ret = ioctl_raw(fd(), KVM_CHECK_EXTENSION, capability);
  return ret < 0 ? 0 : ret;
}

Status Vm::set_memory_region(std::uint32_t slot, Gpa gpa, std::uint64_t size, Hva hva) noexcept {
  kvm_userspace_memory_region region{};
  region.slot = slot;
  region.guest_phys_addr = gpa.value();
  region.memory_size = size;
  region.userspace_addr = hva.value();
  return check(ioctl_raw(fd(), KVM_SET_USER_MEMORY_REGION, &region),
               "ioctl(KVM_SET_USER_MEMORY_REGION) failed");
}

Status Vm::enable_capability(std::uint32_t capability, std::uint64_t arg0) noexcept {
  kvm_enable_cap cap{};
  cap.cap = capability;
  cap.args[0] = arg0;
  return check(ioctl_raw(fd(), KVM_ENABLE_CAP, &cap), "ioctl(KVM_ENABLE_CAP) failed");
}

Status Vm::set_tss_addr(std::uint64_t gpa) noexcept {
  return check(ioctl_raw(fd(), KVM_SET_TSS_ADDR, static_cast<long>(gpa)), "ioctl(KVM_SET_TSS_ADDR) failed");
}

Status Vm::set_identity_map_addr(std::uint64_t gpa) noexcept {
  std::uint64_t addr = gpa;
  return check(ioctl_raw(fd(), KVM_SET_IDENTITY_MAP_ADDR, &addr),
               "ioctl(KVM_SET_IDENTITY_MAP_ADDR) failed");
}

Result<Vcpu> Vm::create_vcpu(unsigned id, std::size_t mmap_size, void* at, int xsave2) noexcept {
  long fd = ioctl_raw(this->fd(), KVM_CREATE_VCPU, static_cast<long>(id));
  if (sys::failed(fd)) return errno_error("ioctl(KVM_CREATE_VCPU) failed", fd);
  UniqueFd owned = placed(fd, placer_);
  DUNK_ASSIGN_OR_RETURN(Mapping run, Mapping::map(at, mmap_size, PROT_READ | PROT_WRITE,
                                                  MAP_SHARED | (at != nullptr ? MAP_FIXED : 0), owned.get(), 0));
  Vcpu vcpu(std::move(owned), std::move(run), id, at != nullptr);
  vcpu.xsave2_ = xsave2 >= 0 ? xsave2 > 0 : check_extension(KVM_CAP_XSAVE2) > 0;
  return vcpu;
}

Vcpu::~Vcpu() {
  if (!placed_ || run_.data() == nullptr) return;
  // One mmap replaces the run page: no moment with a hole another mapping
  // could take.
  sys::call(SYS_mmap, reinterpret_cast<long>(run_.data()), static_cast<long>(run_.size()), PROT_NONE,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  run_.release();
}

long Vcpu::run() noexcept { return sys::call(SYS_ioctl, fd(), KVM_RUN, 0); }

Status Vcpu::get_events(kvm_vcpu_events& events) noexcept {
  return check(ioctl_raw(fd(), KVM_GET_VCPU_EVENTS, &events), "ioctl(KVM_GET_VCPU_EVENTS) failed");
}

Status Vcpu::inject_nmi() noexcept { return check(ioctl_raw(fd(), KVM_NMI, nullptr), "ioctl(KVM_NMI) failed"); }

Status Vcpu::get_regs(kvm_regs& regs) noexcept {
  return check(ioctl_raw(fd(), KVM_GET_REGS, &regs), "ioctl(KVM_GET_REGS) failed");
}
Status Vcpu::set_regs(const kvm_regs& regs) noexcept {
  return check(ioctl_raw(fd(), KVM_SET_REGS, &regs), "ioctl(KVM_SET_REGS) failed");
}
Status Vcpu::get_sregs(kvm_sregs& sregs) noexcept {
  return check(ioctl_raw(fd(), KVM_GET_SREGS, &sregs), "ioctl(KVM_GET_SREGS) failed");
}
Status Vcpu::set_sregs(const kvm_sregs& sregs) noexcept {
  return check(ioctl_raw(fd(), KVM_SET_SREGS, &sregs), "ioctl(KVM_SET_SREGS) failed");
}
Status Vcpu::set_cpuid(const CpuidBuffer& cpuid) noexcept {
  return check(ioctl_raw(fd(), dunk_kvm_set_cpuid2, &cpuid), "ioctl(KVM_SET_CPUID2) failed");
}

Status Vcpu::get_xsave(void* buffer, std::size_t size) noexcept {
  if (size < dunk_kvm_xsave_size) return Error{"xsave buffer smaller than struct kvm_xsave", EINVAL};
  // KVM_GET_XSAVE2 writes as many bytes as KVM_CAP_XSAVE2 reported; the
  // caller sized the buffer from that.
  unsigned long request = xsave2_ ? dunk_kvm_get_xsave2 : dunk_kvm_get_xsave;
  return check(ioctl_raw(fd(), request, buffer), "ioctl(KVM_GET_XSAVE) failed");
}
Status Vcpu::set_xsave(const void* buffer) noexcept {
  return check(ioctl_raw(fd(), dunk_kvm_set_xsave, buffer), "ioctl(KVM_SET_XSAVE) failed");
}

Status Vcpu::set_xcr0(std::uint64_t value) noexcept {
  kvm_xcrs xcrs{};
  xcrs.nr_xcrs = 1;
  xcrs.xcrs[0].xcr = 0;
  xcrs.xcrs[0].value = value;
  return check(ioctl_raw(fd(), KVM_SET_XCRS, &xcrs), "ioctl(KVM_SET_XCRS) failed");
}

Status Vcpu::set_single_step(bool on, bool block_irq) noexcept {
  const std::uint64_t none[8] = {};
  return set_guest_debug(
      on ? KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP | (block_irq ? KVM_GUESTDBG_BLOCKIRQ : 0) : 0, none);
}

Status Vcpu::set_guest_debug(std::uint32_t control, const std::uint64_t (&debugreg)[8]) noexcept {
  kvm_guest_debug debug{};
  debug.control = control;
  static_assert(sizeof debug.arch.debugreg == sizeof debugreg);
  std::memcpy(debug.arch.debugreg, debugreg, sizeof debugreg);
  return check(ioctl_raw(fd(), KVM_SET_GUEST_DEBUG, &debug), "ioctl(KVM_SET_GUEST_DEBUG) failed");
}

Status Vcpu::get_mp_state(std::uint32_t& state) noexcept {
  kvm_mp_state mp{};
  DUNK_TRY(check(ioctl_raw(fd(), KVM_GET_MP_STATE, &mp), "ioctl(KVM_GET_MP_STATE) failed"));
  state = mp.mp_state;
  return {};
}

Status Vcpu::set_mp_state(std::uint32_t state) noexcept {
  kvm_mp_state mp{state};
  return check(ioctl_raw(fd(), KVM_SET_MP_STATE, &mp), "ioctl(KVM_SET_MP_STATE) failed");
}

Status Vcpu::get_lapic(kvm_lapic_state& state) noexcept {
  return check(ioctl_raw(fd(), KVM_GET_LAPIC, &state), "ioctl(KVM_GET_LAPIC) failed");
}
Status Vcpu::set_lapic(const kvm_lapic_state& state) noexcept {
  return check(ioctl_raw(fd(), KVM_SET_LAPIC, &state), "ioctl(KVM_SET_LAPIC) failed");
}

namespace {
// The layout of struct kvm_msrs with room for its flexible array.
struct MsrBuffer {
  std::uint32_t nmsrs;
  std::uint32_t pad;
  kvm_msr_entry entries[16];
};
static_assert(offsetof(MsrBuffer, entries) == 8);
}  // namespace

Status Vcpu::set_msrs(std::span<const kvm_msr_entry> msrs) noexcept {
  MsrBuffer buffer{};
  if (msrs.size() > std::size(buffer.entries)) return Error{"too many MSRs for one KVM_SET_MSRS", E2BIG};
  buffer.nmsrs = static_cast<std::uint32_t>(msrs.size());
  std::memcpy(buffer.entries, msrs.data(), msrs.size_bytes());
  long ret = ioctl_raw(fd(), dunk_kvm_set_msrs, &buffer);
  if (sys::failed(ret)) return errno_error("ioctl(KVM_SET_MSRS) failed", ret);
  // KVM_SET_MSRS returns how many it set, stopping at the first it rejects.
  if (static_cast<std::size_t>(ret) != msrs.size()) return Error{"KVM_SET_MSRS rejected an MSR", EINVAL};
  return {};
}

Status Vcpu::get_msrs(std::span<kvm_msr_entry> msrs) noexcept {
  MsrBuffer buffer{};
  if (msrs.size() > std::size(buffer.entries)) return Error{"too many MSRs for one KVM_GET_MSRS", E2BIG};
  buffer.nmsrs = static_cast<std::uint32_t>(msrs.size());
  std::memcpy(buffer.entries, msrs.data(), msrs.size_bytes());
  long ret = ioctl_raw(fd(), dunk_kvm_get_msrs, &buffer);
  if (sys::failed(ret)) return errno_error("ioctl(KVM_GET_MSRS) failed", ret);
  if (static_cast<std::size_t>(ret) != msrs.size()) return Error{"KVM_GET_MSRS rejected an MSR", EINVAL};
  std::memcpy(msrs.data(), buffer.entries, msrs.size_bytes());
  return {};
}

Status Vcpu::set_tsc_offset(std::int64_t offset) noexcept {
  kvm_device_attr attr{};
  attr.group = KVM_VCPU_TSC_CTRL;
  attr.attr = KVM_VCPU_TSC_OFFSET;
  attr.addr = reinterpret_cast<std::uint64_t>(&offset);
  return check(ioctl_raw(fd(), KVM_SET_DEVICE_ATTR, &attr),
               "ioctl(KVM_SET_DEVICE_ATTR, KVM_VCPU_TSC_OFFSET) failed");
}

Result<UniqueFd> Vcpu::stats_fd() noexcept {
  long ret = ioctl_raw(fd(), KVM_GET_STATS_FD, 0L);
  if (sys::failed(ret)) return errno_error("ioctl(KVM_GET_STATS_FD) failed", ret);
  return UniqueFd(static_cast<int>(ret));
}

}  // namespace dunk::kvm
