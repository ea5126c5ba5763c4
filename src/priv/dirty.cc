// DirtyTracker (dunk/dirty.h): per-range bitmaps over core's dirty passes
// (core/dirty.h), which hold the protocol; this file adds what only guest
// code can do — flush its own TLB, send the shootdown — and the ranges.
#include "dunk/dirty.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>

#include "arch/x86_64/registers.h"
#include "core/dirty.h"
#include "core/machine.h"
#include "dunk/dunk.h"
#include "dunk/interrupts.h"
#include "dunk/paging.h"
#include "guest/dispatch.h"
#include "priv/internal.h"

namespace dunk {
namespace {

constexpr std::uint64_t kPage = 4096;

std::uint64_t words_for(std::uint64_t pages) noexcept { return (pages + 63) / 64; }

// Sets the bits of pages [first, last) of a bitmap.
void set_bit_range(std::uint64_t* bits, std::uint64_t first, std::uint64_t last) noexcept {
  while (first < last && first % 64 != 0) {
    bits[first / 64] |= std::uint64_t{1} << (first % 64);
    ++first;
  }
  while (first + 64 <= last) {
    bits[first / 64] = ~std::uint64_t{0};
    first += 64;
  }
  while (first < last) {
    bits[first / 64] |= std::uint64_t{1} << (first % 64);
    ++first;
  }
}

bool interrupts_on() noexcept {
  std::uint64_t flags;
  asm volatile("pushfq; popq %0" : "=r"(flags));
  return (flags & arch::rflags::kIF) != 0;
}

}  // namespace

struct DirtyTracker::State {
  struct Range {
    std::uint64_t start = 0;
    std::uint64_t pages = 0;
    std::uint64_t* found = nullptr;   // what this pass reports, a bit per page
    std::uint64_t* sticky = nullptr;  // reported again until every vCPU has flushed
    bool large_seen = false;          // a leaf larger than 4 KiB: split after the pass

    std::uint64_t end() const noexcept { return start + pages * kPage; }
    std::uint64_t words() const noexcept { return words_for(pages); }
    void mark(std::uint64_t lo, std::uint64_t hi) noexcept {
      lo = std::max(lo, start);
      hi = std::min(hi, end());
      if (lo < hi) set_bit_range(found, (lo - start) / kPage, (hi - start + kPage - 1) / kPage);
    }
  };

  Range* ranges = nullptr;
  std::size_t count = 0;
  std::size_t capacity = 0;
  core::ReaderState reader;
  bool sticky_any = false;
  Pass last;

  ~State() {
    for (std::size_t i = 0; i < count; ++i) release(ranges[i]);
    std::free(ranges);
  }
  static void release(Range& r) noexcept {
    std::free(r.found);
    std::free(r.sticky);
    r.found = r.sticky = nullptr;
  }
  // A range of `pages` pages at `start` with zeroed bitmaps; false when out
  // of memory.
  static bool make(Range& r, std::uint64_t start, std::uint64_t pages) noexcept {
    r = Range{start, pages};
    r.found = static_cast<std::uint64_t*>(std::calloc(words_for(pages), sizeof(std::uint64_t)));
    r.sticky = static_cast<std::uint64_t*>(std::calloc(words_for(pages), sizeof(std::uint64_t)));
    if (r.found == nullptr || r.sticky == nullptr) {
      release(r);
      return false;
    }
    return true;
  }
  // Inserts `r` keeping the ranges in address order.
  void finish_clean(core::DirtyPass& pass) noexcept;
  bool insert(const Range& r) noexcept {
    if (count == capacity) {
      const std::size_t more = capacity == 0 ? 8 : capacity * 2;
      auto* grown = static_cast<Range*>(std::realloc(ranges, more * sizeof(Range)));
      if (grown == nullptr) return false;
      ranges = grown;
      capacity = more;
    }
    std::size_t at = count;
    while (at > 0 && ranges[at - 1].start > r.start) {
      ranges[at] = ranges[at - 1];
      --at;
    }
    ranges[at] = r;
    ++count;
    return true;
  }
};

// After a cleaning pass: the flushes, the quiet test, the sticky pages and
// the splits (see dunk/dirty.h).
void DirtyTracker::State::finish_clean(core::DirtyPass& pass) noexcept {
  State& s = *this;
  const bool expired = pass.sticky_expired();
  // Every other vCPU must stop using translations from before the clean:
  // a shootdown when this VM has interrupts (they flush now, and the next
  // pass may prune), else the TLB generation alone (they flush on their
  // way back from the host). This vCPU flushes now either way.
  std::uint64_t published = 0;
  if (interrupts_enabled() && interrupts_on() && flush_tlb_all_cpus()) {
    published = std::atomic_ref<std::uint64_t>(guest::dunk_tlb_generation).load(std::memory_order_acquire);
  }
  s.last.quiet = pass.finish(published);
  if (published == 0) {
    flush_tlb();
    std::atomic_ref<std::uint64_t> own(core::current_cpu()->area->tlb_generation);
    if (own.load(std::memory_order_relaxed) < pass.generation()) own.store(pass.generation(), std::memory_order_release);
  }
  if (expired) {
    for (std::size_t i = 0; i < s.count; ++i) std::memset(s.ranges[i].sticky, 0, s.ranges[i].words() * 8);
    s.sticky_any = false;
    s.reader.sticky_generation = 0;
  }
  if (!s.last.quiet) {
    // What this clean cleaned may still be written through another vCPU's
    // old TLB entries: reported again until every vCPU has flushed.
    for (std::size_t i = 0; i < s.count; ++i) {
      State::Range& r = s.ranges[i];
      for (std::uint64_t w = 0; w < r.words(); ++w) r.sticky[w] |= r.found[w];
    }
    s.sticky_any = true;
    pass.keep_sticky();
  }
  if (s.sticky_any) {
    for (std::size_t i = 0; i < s.count; ++i) {
      const State::Range& r = s.ranges[i];
      for (std::uint64_t w = 0; w < r.words(); ++w) s.last.sticky += static_cast<unsigned>(__builtin_popcountll(r.sticky[w]));
    }
  }
  // Large pages met in a range: 4 KiB from the next pass on.
  core::Mirror& mirror = core::Machine::instance().mirror();
  for (std::size_t i = 0; i < s.count; ++i) {
    State::Range& r = s.ranges[i];
    if (!r.large_seen) continue;
    r.large_seen = false;
    (void)mirror.split_host_pages(Hva(r.start), r.pages * kPage);
    flush_tlb();
  }
}


Result<DirtyTracker> DirtyTracker::create() noexcept {
  if (!in_vm()) return Error{"DirtyTracker::create: needs VM mode", EPERM};
  auto* state = new (std::nothrow) State;
  if (state == nullptr) return Error{"DirtyTracker::create: out of memory", ENOMEM};
  // Its history starts now: a thread that left VM mode before does not make
  // its first collect blind.
  core::start_reader(state->reader);
  return DirtyTracker(state);
}

Result<DirtyTracker> DirtyTracker::create(void* start, std::size_t size) noexcept {
  DUNK_TRY(priv::require_page_aligned(start, size));
  DUNK_ASSIGN_OR_RETURN(DirtyTracker tracker, create());
  DUNK_TRY(tracker.add(start, size));
  return tracker;
}

DirtyTracker::DirtyTracker(DirtyTracker&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {}

DirtyTracker& DirtyTracker::operator=(DirtyTracker&& other) noexcept {
  if (this != &other) {
    delete state_;
    state_ = std::exchange(other.state_, nullptr);
  }
  return *this;
}

DirtyTracker::~DirtyTracker() { delete state_; }

Status DirtyTracker::add(void* start, std::size_t size) noexcept {
  DUNK_TRY(priv::require_page_aligned(start, size));
  if (!in_vm()) return Error{"DirtyTracker::add: needs VM mode", EPERM};
  const auto lo = reinterpret_cast<std::uint64_t>(start);
  const std::uint64_t hi = lo + size;
  core::Machine& machine = core::Machine::instance();
  const core::Arena& arena = machine.arena();
  if (lo < arena.end().value() && arena.base().value() < hi) {
    return Error{"DirtyTracker::add: the range overlaps dunk's own memory (page tables, vCPU areas)", EPERM};
  }
  for (std::size_t i = 0; i < state_->count; ++i) {
    const State::Range& r = state_->ranges[i];
    if (lo < r.end() && r.start < hi) return Error{"DirtyTracker::add: the range overlaps a tracked one", EEXIST};
  }
  // 4 KiB granularity for what is mapped now (what is mapped later is
  // split by the collect that first finds it large).
  DUNK_TRY(machine.mirror().split_host_pages(Hva(lo), size));
  State::Range r;
  if (!State::make(r, lo, size / kPage) || !state_->insert(r)) {
    State::release(r);
    return Error{"DirtyTracker::add: out of memory for the range's bitmaps", ENOMEM};
  }
  flush_tlb();  // no large-page translation of the range survives here
  return {};
}

Status DirtyTracker::remove(void* start, std::size_t size) noexcept {
  DUNK_TRY(priv::require_page_aligned(start, size));
  const auto lo = reinterpret_cast<std::uint64_t>(start);
  const std::uint64_t hi = lo + size;
  State& s = *state_;
  for (std::size_t i = 0; i < s.count;) {
    State::Range r = s.ranges[i];
    if (hi <= r.start || r.end() <= lo) {
      ++i;
      continue;
    }
    // Cut out [lo, hi): up to two pieces stay, with their bits.
    State::Range pieces[2];
    std::size_t kept = 0;
    const std::pair<std::uint64_t, std::uint64_t> keep[2] = {{r.start, std::min(lo, r.end())},
                                                             {std::max(hi, r.start), r.end()}};
    for (const auto& [a, b] : keep) {
      if (a >= b) continue;
      State::Range& piece = pieces[kept];
      if (!State::make(piece, a, (b - a) / kPage)) {
        for (std::size_t k = 0; k < kept; ++k) State::release(pieces[k]);
        return Error{"DirtyTracker::remove: out of memory for the remaining pieces' bitmaps", ENOMEM};
      }
      const std::uint64_t offset = (a - r.start) / kPage;
      for (std::uint64_t p = 0; p < piece.pages; ++p) {
        const std::uint64_t from = offset + p;
        if ((r.sticky[from / 64] >> (from % 64)) & 1) piece.sticky[p / 64] |= std::uint64_t{1} << (p % 64);
      }
      ++kept;
    }
    State::release(s.ranges[i]);
    for (std::size_t k = i + 1; k < s.count; ++k) s.ranges[k - 1] = s.ranges[k];
    --s.count;
    for (std::size_t k = 0; k < kept; ++k) {
      if (!s.insert(pieces[k])) {
        State::release(pieces[k]);
        return Error{"DirtyTracker::remove: out of memory", ENOMEM};
      }
    }
    i = 0;  // the order changed; start over (removed parts never match again)
  }
  return {};
}

void DirtyTracker::reset() noexcept { (void)collect_impl(nullptr, nullptr, true); }

std::size_t DirtyTracker::collect(void** pages, std::size_t max, bool clean) noexcept {
  struct Out {
    void** pages;
    std::size_t max, n;
  } out{pages, max, 0};
  return collect_impl(
      [](void* f, void* page) {
        Out& o = *static_cast<Out*>(f);
        if (o.n < o.max) o.pages[o.n] = page;
        ++o.n;
      },
      &out, clean);
}

std::size_t DirtyTracker::count() noexcept { return collect_impl(nullptr, nullptr, false); }

const DirtyTracker::Pass& DirtyTracker::last_pass() const noexcept { return state_->last; }
std::size_t DirtyTracker::range_count() const noexcept { return state_->count; }
void* DirtyTracker::range_start(std::size_t i) const noexcept {
  return i < state_->count ? reinterpret_cast<void*>(state_->ranges[i].start) : nullptr;
}
std::size_t DirtyTracker::range_size(std::size_t i) const noexcept {
  return i < state_->count ? state_->ranges[i].pages * kPage : 0;
}

std::size_t DirtyTracker::collect_impl(void (*call)(void*, void*), void* f, bool clean) noexcept {
  State& s = *state_;
  s.last = Pass{};
  for (std::size_t i = 0; i < s.count; ++i) std::memset(s.ranges[i].found, 0, s.ranges[i].words() * 8);
  if (!in_vm()) {
    // No TLB to flush from here: report everything, clean nothing.
    s.last.blind = true;
    for (std::size_t i = 0; i < s.count; ++i) s.ranges[i].mark(s.ranges[i].start, s.ranges[i].end());
    clean = false;
  } else {
    core::DirtyPass pass(s.reader, clean, /*reports=*/true);
    s.last.blind = pass.blind() != core::Blind::kNo;
    s.last.pruned = pass.prunes();
    for (std::size_t i = 0; i < s.count; ++i) {
      State::Range& r = s.ranges[i];
      if (s.last.blind) r.mark(r.start, r.end());
      // (This vCPU flushes its whole TLB once the pass has cleaned: before
      // that it stores only into the tracker's own bitmaps.)
      pass.scan(Hva(r.start), r.pages * kPage, [&](Gva page, arch::PageSize size, arch::PageTableEntry&) {
        r.mark(page.value(), page.value() + arch::page_bytes(size));
        if (size != arch::PageSize::k4K) r.large_seen = true;
      });
      pass.always_dirty(Hva(r.start), Hva(r.end()), [&](Hva lo, Hva hi) { r.mark(lo.value(), hi.value()); });
      if (s.sticky_any) {
        for (std::uint64_t w = 0; w < r.words(); ++w) r.found[w] |= r.sticky[w];
      }
    }
    s.last.entries_read = pass.counts().entries_read;
    s.last.tables_skipped = pass.counts().tables_skipped;
    s.last.dirty_leaves = pass.counts().dirty_leaves;
    if (clean) s.finish_clean(pass);
  }
  std::size_t reported = 0;
  for (std::size_t i = 0; i < s.count; ++i) {
    const State::Range& r = s.ranges[i];
    for (std::uint64_t w = 0; w < r.words(); ++w) {
      for (std::uint64_t bits = r.found[w]; bits != 0; bits &= bits - 1) {
        const std::uint64_t page = w * 64 + static_cast<unsigned>(__builtin_ctzll(bits));
        if (call != nullptr) call(f, reinterpret_cast<void*>(r.start + page * kPage));
        ++reported;
      }
    }
  }
  s.last.reported = reported;
  return reported;
}

}  // namespace dunk
