#include "dunk/dirty.h"

#include "core/machine.h"
#include "dunk/dunk.h"
#include "dunk/paging.h"
#include "priv/internal.h"

namespace dunk {
namespace {

// Past this many pages to flush one by one, a whole-TLB flush is cheaper.
constexpr std::size_t kInvlpgLimit = 32;

}  // namespace

Result<DirtyTracker> DirtyTracker::create(void* start, std::size_t size) noexcept {
  if (!in_vm()) return Error{"DirtyTracker::create: needs VM mode", EPERM};
  DUNK_TRY(priv::require_page_aligned(start, size));
  DUNK_TRY(core::Machine::instance().mirror().split_host_pages(Hva(reinterpret_cast<std::uint64_t>(start)), size));
  flush_tlb();
  return DirtyTracker(start, size);
}

std::size_t DirtyTracker::scan(void** pages, std::size_t max, bool clean) const noexcept {
  std::size_t n = 0;
  void* first[kInvlpgLimit];
  AddressSpace::current().walk(start_, size_, [&](const PageInfo& info, PageRef& ref) {
    if (!info.dirty) return;
    if (clean) ref.test_and_clean();
    if (n < max) pages[n] = info.page;
    if (n < kInvlpgLimit) first[n] = info.page;
    ++n;
  });
  if (clean && n > 0) {
    if (n <= kInvlpgLimit) {
      for (std::size_t i = 0; i < n; ++i) flush_tlb(first[i]);
    } else {
      flush_tlb();
    }
  }
  return n;
}

void DirtyTracker::reset() noexcept { (void)scan(nullptr, 0, true); }

std::size_t DirtyTracker::collect(void** pages, std::size_t max, bool clean) noexcept {
  return scan(pages, max, clean);
}

std::size_t DirtyTracker::count() const noexcept { return scan(nullptr, 0, false); }

}  // namespace dunk
