#include "core/soft_dirty.h"

#include <algorithm>

#include "core/dirty.h"
#include "core/machine.h"

namespace dunk::core {
namespace {

constexpr std::uint64_t kPage = arch::kPageSize4K;
constexpr std::uint64_t kSoftDirty = std::uint64_t{1} << 55;

class PagemapDirtyBits final : public DirtyBits {
 public:
  bool watching() noexcept override { return dirty_bits_cleaned(); }
  void kernel_wrote(std::uint64_t start, std::uint64_t length) noexcept override {
    note_kernel_write(Hva(start), length);
  }
  void kernel_writes_later(std::uint64_t start, std::uint64_t length) noexcept override {
    // Full: every page is reported until some go (core/dirty.h).
    (void)add_always_dirty(Hva(start), length);
  }
  void unseen_writes() noexcept override { note_unseen_writes(); }
  void unbounded_writer() noexcept override { note_unbounded_writer(); }
  void soft_dirty(std::uint64_t first_page, std::uint64_t* entries, std::size_t count) noexcept override;
  void clear_soft_dirty() noexcept override;
  ServedFiles& served_files() noexcept override { return served_; }

 private:
  // The pages a clean that was not quiet cleaned, kept as ranges (adjacent
  // leaves merged) and reported again until every vCPU has flushed
  // (core/dirty.h, DirtyPass). Beyond kSticky ranges: every page.
  static constexpr unsigned kSticky = 8192;
  struct Range {
    std::uint64_t start, end;
  };
  void note_sticky(std::uint64_t start, std::uint64_t end) noexcept;

  ServedFiles served_;
  Lock lock_;  // the reader's state: one pass at a time
  ReaderState reader_;
  Range sticky_[kSticky];
  unsigned sticky_count_ = 0;
  bool sticky_all_ = false;
  unsigned pending_ = 0;  // ranges after sticky_count_ that the running clean found
  bool pending_overflow_ = false;
};

void PagemapDirtyBits::soft_dirty(std::uint64_t first_page, std::uint64_t* entries, std::size_t count) noexcept {
  if (count == 0) return;
  LockGuard hold(lock_);
  const std::uint64_t start = first_page * kPage;
  const std::uint64_t end = start + count * kPage;
  auto set = [&](std::uint64_t lo, std::uint64_t hi) {
    lo = std::max(lo, start);
    hi = std::min(hi, end);
    for (std::uint64_t p = lo; p < hi; p += kPage) entries[(p - start) / kPage] |= kSoftDirty;
  };
  DirtyPass pass(reader_, /*clean=*/false, /*reports=*/true);
  if (pass.blind() != Blind::kNo || sticky_all_) {
    set(start, end);
    return;
  }
  // A page the guest's tables map is dunk's to answer: clean unless found
  // dirty below. One they do not map (not mirrored yet, PROT_NONE, a hole)
  // keeps the kernel's bit, which dunk never clears: it says whether the
  // page was written (or created) since it was mapped.
  Machine& machine = Machine::instance();
  // (A hidden leaf, of a chunk without guest-physical space now, maps its
  // page as well: its dirty bit is kept for when it comes back.)
  if (arch::PageTable* tree = machine.mirror().tree_as_is(0)) {
    auto mapped = [&](Gva page, arch::PageSize size, arch::PageTableEntry&) {
      const std::uint64_t lo = std::max(page.value(), start);
      const std::uint64_t hi = std::min(page.value() + arch::page_bytes(size), end);
      for (std::uint64_t p = lo; p < hi; p += kPage) entries[(p - start) / kPage] &= ~kSoftDirty;
    };
    tree->for_each_leaf(Gva(start), end - start, mapped);
    tree->for_each_hidden_leaf(Gva(start), end - start, mapped);
  }
  pass.scan(Hva(start), end - start, [&](Gva page, arch::PageSize size, arch::PageTableEntry&) {
    set(page.value(), page.value() + arch::page_bytes(size));
  });
  pass.always_dirty(Hva(start), Hva(end), [&](Hva lo, Hva hi) { set(lo.value(), hi.value()); });
  for (unsigned i = 0; i < sticky_count_; ++i) set(sticky_[i].start, sticky_[i].end);
}

void PagemapDirtyBits::note_sticky(std::uint64_t start, std::uint64_t end) noexcept {
  const unsigned at = sticky_count_ + pending_;
  if (pending_ > 0 && sticky_[at - 1].end == start) {
    sticky_[at - 1].end = end;
    return;
  }
  if (at == kSticky) {
    pending_overflow_ = true;
    return;
  }
  sticky_[at] = {start, end};
  ++pending_;
}

void PagemapDirtyBits::clear_soft_dirty() noexcept {
  LockGuard hold(lock_);
  DirtyPass pass(reader_, /*clean=*/true, /*reports=*/false);
  pending_ = 0;
  pending_overflow_ = false;
  pass.scan(Hva(0), kUserSpaceEnd, [&](Gva page, arch::PageSize size, arch::PageTableEntry&) {
    note_sticky(page.value(), page.value() + arch::page_bytes(size));
  });
  const bool expired = pass.sticky_expired();
  // Publishes a new TLB generation: this vCPU is in the host and flushes on
  // its way back; so do the others, whenever they come back.
  const bool quiet = pass.finish();
  if (expired) {
    // Move what this clean found down over the old ranges.
    for (unsigned i = 0; i < pending_; ++i) sticky_[i] = sticky_[sticky_count_ + i];
    sticky_count_ = 0;
    sticky_all_ = false;
  }
  if (!quiet) {
    sticky_count_ += pending_;
    sticky_all_ = sticky_all_ || pending_overflow_;
    pass.keep_sticky();
  }
  pending_ = 0;
}

}  // namespace

namespace {
// Built when the library loads: the monitor never runs a guarded static
// initialisation (it may take a libc lock).
PagemapDirtyBits g_bits;
}  // namespace

DirtyBits& process_dirty_bits() noexcept { return g_bits; }

}  // namespace dunk::core
