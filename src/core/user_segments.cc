#include "core/user_segments.h"

#include <asm/prctl.h>
#include <sys/auxv.h>
#include <sys/syscall.h>

#include "arch/x86_64/descriptors.h"
#include "base/syscall.h"
#include "guest/abi.h"

namespace dunk::core {
namespace {

// HWCAP2_FSGSBASE (asm/hwcap2.h): the kernel lets user code run
// RDFSBASE/WRFSBASE/RDGSBASE/WRGSBASE. Read once, when the library loads.
constexpr unsigned long kHwcap2Fsgsbase = 1UL << 1;
const bool host_has_fsgsbase = (getauxval(AT_HWCAP2) & kHwcap2Fsgsbase) != 0;

bool readable_here(std::uint16_t selector) noexcept {
  bool readable = false;
  asm("verr %1\n\tsetz %0" : "=q"(readable) : "r"(selector) : "cc");
  return readable;
}

std::uint16_t read_fs_selector() noexcept {
  std::uint16_t s = 0;
  asm volatile("mov %%fs, %0" : "=r"(s));
  return s;
}

std::uint16_t read_gs_selector() noexcept {
  std::uint16_t s = 0;
  asm volatile("mov %%gs, %0" : "=r"(s));
  return s;
}

// Selector and base in one step each: between the MOV and the WRFSBASE the
// FS base is the descriptor's, and nothing here may touch thread-local
// storage.
void load_fs(std::uint16_t selector, std::uint64_t base) noexcept {
  if (is_null_selector(selector) || !readable_here(selector)) {
    sys::call(SYS_arch_prctl, ARCH_SET_FS, static_cast<long>(base));
  } else if (host_has_fsgsbase) {
    asm volatile("mov %0, %%fs\n\twrfsbase %1" : : "r"(selector), "r"(base) : "memory");
  } else {
    asm volatile("mov %0, %%fs" : : "r"(selector) : "memory");
  }
}

void load_gs(std::uint16_t selector, std::uint64_t base) noexcept {
  if (is_null_selector(selector) || !readable_here(selector)) {
    sys::call(SYS_arch_prctl, ARCH_SET_GS, static_cast<long>(base));
  } else if (host_has_fsgsbase) {
    asm volatile("mov %0, %%gs\n\twrgsbase %1" : : "r"(selector), "r"(base) : "memory");
  } else {
    asm volatile("mov %0, %%gs" : : "r"(selector) : "memory");
  }
}

kvm_segment vcpu_data_segment(std::uint16_t selector, std::uint64_t base) noexcept {
  using namespace arch::segment_type;
  kvm_segment s{};
  s.base = base;
  s.limit = 0xffffffff;
  s.selector = selector;
  s.type = kDataWritable | kAccessed;
  s.present = 1;
  s.dpl = is_null_selector(selector) ? 0 : 3;  // the program's descriptors are DPL 3
  s.db = 1;
  s.s = 1;
  s.g = 1;
  return s;
}

}  // namespace

UserSegments vcpu_user_segments(const kvm_sregs& sregs, std::uint64_t user_gs_base) noexcept {
  return UserSegments{.fs_selector = sregs.fs.selector,
                      .gs_selector = sregs.gs.selector,
                      .fs_base = sregs.fs.base,
                      .gs_base = user_gs_base};
}

UserSegments native_view(const UserSegments& vm) noexcept {
  auto native = [](std::uint16_t selector) -> std::uint16_t {
    return (selector & ~3U) == DUNK_KERNEL_DS ? DUNK_USER_DS : selector;
  };
  UserSegments s = vm;
  s.fs_selector = native(vm.fs_selector);
  s.gs_selector = native(vm.gs_selector);
  return s;
}

UserSegments host_user_segments() noexcept {
  UserSegments s;
  s.fs_selector = read_fs_selector();
  s.gs_selector = read_gs_selector();
  sys::call(SYS_arch_prctl, ARCH_GET_FS, reinterpret_cast<long>(&s.fs_base));
  sys::call(SYS_arch_prctl, ARCH_GET_GS, reinterpret_cast<long>(&s.gs_base));
  return s;
}

void load_host_user_segments(const UserSegments& s) noexcept {
  load_fs(s.fs_selector, s.fs_base);
  load_gs(s.gs_selector, s.gs_base);
}

void set_vcpu_user_segments(kvm_sregs& sregs, const UserSegments& s) noexcept {
  sregs.fs = vcpu_data_segment(s.fs_selector, s.fs_base);
  sregs.gs = vcpu_data_segment(s.gs_selector, s.gs_base);
}

}  // namespace dunk::core
