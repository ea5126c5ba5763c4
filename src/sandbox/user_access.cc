#include "sandbox/user_access.h"

#include <algorithm>
#include <cstring>

#include "arch/x86_64/vectors.h"
#include "dunk/paging.h"
#include "dunk/traps.h"

extern "C" {
long dunk_sandbox_copy(void* to, const void* from, std::size_t size);
long dunk_sandbox_copy_out(void* to, const void* from, std::size_t size);
long dunk_sandbox_probe_write(void* start, void* end);
long dunk_sandbox_try_xrstor(const void* image, void* scratch);
extern const char dunk_sandbox_access_begin[], dunk_sandbox_access_end[];
extern const char dunk_sandbox_access_fixup[], dunk_sandbox_xrstor_fixup[];
}

namespace dunk::sandbox {
namespace {

constexpr std::uint64_t kPage = 4096;

// The last fault a fixup skipped over as a stale TLB entry, per thread: a
// second fault at the same place is real.
thread_local std::uint64_t last_retried_rip = 0;
thread_local std::uint64_t last_retried_address = 0;

bool in_access_code(std::uint64_t rip) noexcept {
  return rip >= reinterpret_cast<std::uint64_t>(dunk_sandbox_access_begin) &&
         rip < reinterpret_cast<std::uint64_t>(dunk_sandbox_access_end);
}

bool known_fixup(std::uint64_t address) noexcept {
  return address == reinterpret_cast<std::uint64_t>(dunk_sandbox_access_fixup) ||
         address == reinterpret_cast<std::uint64_t>(dunk_sandbox_xrstor_fixup);
}

// Whether the page tables allow the faulting access now: the fault came from
// a TLB entry older than a permission upgrade another vCPU's thread made
// (mprotect), and evicted it (SDM vol. 3A §4.10.4.1).
bool tables_allow(const TrapFrame& frame) noexcept {
  const PageFault pf = page_fault(frame);
  auto info = AddressSpace::current().lookup(pf.address);
  if (!info) return false;
  return !pf.write || (info->access & kWrite) != 0;
}

TrapAction on_access_fault(TrapFrame& frame) noexcept {
  if (frame.from_ring3() || !in_access_code(frame.rip) || !known_fixup(frame.r11)) return TrapAction::kDefault;
  if (frame.vector == static_cast<std::uint64_t>(arch::Vector::kPageFault) && tables_allow(frame) &&
      !(last_retried_rip == frame.rip && last_retried_address == frame.cr2)) {
    last_retried_rip = frame.rip;
    last_retried_address = frame.cr2;
    return TrapAction::kResume;
  }
  last_retried_rip = last_retried_address = 0;
  frame.rip = frame.r11;
  return TrapAction::kResume;
}

}  // namespace

Status install_user_access() noexcept {
  DUNK_TRY(set_trap_handler(kPageFault, on_access_fault));
  return set_trap_handler(kGeneralProtection, on_access_fault);
}

bool copy_from_program(void* to, std::uint64_t from, std::size_t size) noexcept {
  if (size == 0) return true;
  return dunk_sandbox_copy(to, reinterpret_cast<const void*>(from), size) == 0;
}

bool copy_to_program(std::uint64_t to, const void* from, std::size_t size) noexcept {
  if (size == 0) return true;
  return dunk_sandbox_copy_out(reinterpret_cast<void*>(to), from, size) == 0;
}

bool program_writable(std::uint64_t start, std::size_t size) noexcept {
  return dunk_sandbox_probe_write(reinterpret_cast<void*>(start), reinterpret_cast<void*>(start + size)) == 0;
}

std::size_t copy_readable_prefix(void* to, std::uint64_t from, std::size_t size) noexcept {
  if (copy_from_program(to, from, size)) return size;
  // Page by page up to the first that faults.
  std::size_t done = 0;
  while (done < size) {
    const std::uint64_t at = from + done;
    const std::size_t chunk = std::min<std::size_t>(size - done, kPage - (at % kPage));
    if (!copy_from_program(static_cast<char*>(to) + done, at, chunk)) break;
    done += chunk;
  }
  return done;
}

bool xrstor_accepts(const void* image, void* scratch, std::size_t size) noexcept {
  std::memset(scratch, 0, size);
  return dunk_sandbox_try_xrstor(image, scratch) == 0;
}

}  // namespace dunk::sandbox
