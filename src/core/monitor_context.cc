#include "core/monitor_context.h"

#include "arch/x86_64/registers.h"

namespace dunk::core {

Result<std::uint64_t> KvmVcpuRegisters::fs_base() noexcept {
  kvm_sregs sregs{};
  DUNK_TRY(vcpu_.get_sregs(sregs));
  return sregs.fs.base;
}

Status KvmVcpuRegisters::set_fs_base(std::uint64_t base) noexcept {
  kvm_sregs sregs{};
  DUNK_TRY(vcpu_.get_sregs(sregs));
  sregs.fs.base = base;
  return vcpu_.set_sregs(sregs);
}

Result<std::uint64_t> KvmVcpuRegisters::user_gs_base() noexcept {
  kvm_msr_entry msr{arch::msr::kKernelGsBase, 0, 0};
  DUNK_TRY(vcpu_.get_msrs({&msr, 1}));
  return msr.data;
}

Status KvmVcpuRegisters::set_user_gs_base(std::uint64_t base) noexcept {
  const kvm_msr_entry msr{arch::msr::kKernelGsBase, 0, base};
  return vcpu_.set_msrs({&msr, 1});
}

Status KvmVcpuRegisters::save_fpu(std::byte* image) noexcept { return vcpu_.get_xsave(image, xsave_size_); }

Status KvmVcpuRegisters::load_fpu(const std::byte* image) noexcept { return vcpu_.set_xsave(image); }

}  // namespace dunk::core
