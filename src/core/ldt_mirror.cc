#include "core/ldt_mirror.h"

#include <sys/syscall.h>

#include <cstring>

#include "base/syscall.h"

namespace dunk::core {

Status LdtMirror::reload(HostKernel& host) noexcept {
  if (table_ == nullptr) return Error{"the LDT mirror has no table", EINVAL};
  LockGuard hold(lock_);
  // read_ldt copies the table and zero-fills the rest of the buffer; its
  // size is that of the kernel's table as allocated, not the entries in
  // use: the mirror's limit ends at the last entry that is not empty.
  const long got = host.call(SYS_modify_ldt, 0, reinterpret_cast<long>(table_), static_cast<long>(kBytes));
  if (sys::failed(got)) return errno_error("modify_ldt(0) failed", got);
  std::size_t bytes = static_cast<std::size_t>(got);
  while (bytes >= 8) {
    std::uint64_t entry;
    std::memcpy(&entry, table_ + bytes - 8, sizeof entry);
    if (entry != 0) break;
    bytes -= 8;
  }
  bytes_.store(static_cast<std::uint32_t>(bytes), std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  return {};
}

}  // namespace dunk::core
