// KVM's binary statistics (api.rst, "KVM_GET_STATS_FD"): a header, an array
// of descriptors each followed by its name, and the data block. Read with
// pread; the layout is self-describing, so nothing here is version-specific.
#include <sys/syscall.h>

#include <cstring>
#include <vector>

#include "kvm/kvm.h"
#include "kvm/uapi.h"

namespace dunk::kvm {
namespace {

Status pread_exact(int fd, void* buffer, std::size_t size, std::uint64_t offset) noexcept {
  long ret = sys::call(SYS_pread64, fd, reinterpret_cast<long>(buffer), static_cast<long>(size),
                       static_cast<long>(offset));
  if (sys::failed(ret)) return errno_error("pread(KVM stats fd) failed", ret);
  if (static_cast<std::size_t>(ret) != size) return Error{"short read from KVM stats fd", EIO};
  return {};
}

}  // namespace

Result<std::uint64_t> read_stat(int stats_fd, const char* name) noexcept {
  kvm_stats_header header{};
  DUNK_TRY(pread_exact(stats_fd, &header, sizeof header, 0));
  const std::size_t desc_size = dunk_kvm_stats_desc_size + header.name_size;
  std::vector<std::byte> descriptors(desc_size * header.num_desc);
  DUNK_TRY(pread_exact(stats_fd, descriptors.data(), descriptors.size(), header.desc_offset));
  for (std::uint32_t i = 0; i < header.num_desc; ++i) {
    const std::byte* raw = descriptors.data() + i * desc_size;
    const auto* desc = reinterpret_cast<const kvm_stats_desc*>(raw);
    const auto* desc_name = reinterpret_cast<const char*>(raw + dunk_kvm_stats_desc_name_offset);
    if (std::strncmp(desc_name, name, header.name_size) != 0) continue;
    std::uint64_t value = 0;
    DUNK_TRY(pread_exact(stats_fd, &value, sizeof value, header.data_offset + desc->offset));
    return value;
  }
  return Error{"no such KVM statistic", ENOENT};
}

}  // namespace dunk::kvm
