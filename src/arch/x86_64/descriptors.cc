#include "arch/x86_64/descriptors.h"

namespace dunk::arch {

Status fill_gdt(std::span<SegmentDescriptor, gdt::kEntries> table, Gva tss, CpuNode where) noexcept {
  if (where.cpu > kMaxCpuNodeCpu) return Error{"fill_gdt: cpu number does not fit the CPUNODE segment"};
  if (where.node > kMaxCpuNodeNode) return Error{"fill_gdt: node number does not fit the CPUNODE segment"};

  for (SegmentDescriptor& entry : table) entry = SegmentDescriptor();
  table[gdt::kKernelCodeIndex] = code64_segment(0);
  table[gdt::kKernelDataIndex] = data_segment(0);
  table[gdt::kUser32CodeIndex] = code32_segment(3);
  table[gdt::kUserDataIndex] = data_segment(3);
  table[gdt::kUserCodeIndex] = code64_segment(3);

  const SystemDescriptor tss_desc = tss_descriptor(tss, /*busy=*/true);
  table[gdt::kTssIndex] = tss_desc.low();
  table[gdt::kTssIndex + 1] = SegmentDescriptor(tss_desc.high());

  table[gdt::kCpuNodeIndex] = cpunode_segment(where);
  return {};
}

}  // namespace dunk::arch
