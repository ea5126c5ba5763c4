#include "arch/x86_64/page_table.h"

#include <algorithm>
#include <cerrno>

namespace dunk::arch {

// Internally a virtual address is its low 48 bits ("linear offset"), so that
// ranges in the upper canonical half do not wrap at 2^64; visitors get the
// sign-extended Gva back.
namespace {

constexpr std::uint64_t kLinearMask = bit_mask(kLinearBits - 1, 0);
constexpr std::uint64_t kHalf = std::uint64_t{1} << (kLinearBits - 1);

constexpr std::uint64_t linear(Gva va) noexcept { return va.value() & kLinearMask; }
constexpr Gva to_gva(std::uint64_t lin) noexcept {
  return Gva((lin & kHalf) != 0 ? lin | ~kLinearMask : lin);
}

constexpr unsigned table_index(unsigned level, std::uint64_t lin) noexcept {
  return static_cast<unsigned>((lin >> level_shift(level)) % kEntriesPerTable);
}

bool table_empty(const PageTableEntry* table) noexcept {
  for (unsigned i = 0; i < kEntriesPerTable; ++i) {
    if (load_entry(&table[i]).present()) return false;
  }
  return true;
}

// Fills `child` (a detached table) with the 512 pages that together map
// exactly what `large`, a leaf at `level`, maps. Only the size and address
// change; for 4 KiB children the PAT bit moves from bit 12 to bit 7, where
// the large page had PS.
void fill_split(PageTableEntry* child, PageTableEntry large, unsigned level) noexcept {
  const PageSize large_size = leaf_size(level);
  const PageSize child_size = leaf_size(level - 1);
  PageTableEntry pattern = large;
  pattern.set_page_address(Gpa(0), large_size);
  if (child_size == PageSize::k4K) {
    pattern.set_pat_large(false).set_pat_4k(large.pat_large());
  }
  const Gpa base = large.page_address(large_size);
  const std::uint64_t step = page_bytes(child_size);
  for (unsigned i = 0; i < kEntriesPerTable; ++i) {
    child[i] = PageTableEntry(pattern).set_page_address(base + i * step, child_size);
  }
}

}  // namespace

struct PageTable::Edit {
  enum class Kind { kMap, kUnmap, kProtect, kHide };
  Kind kind;
  std::uint64_t pa_minus_va = 0;  // kMap: pa of linear offset x is x + pa_minus_va
  PageAttributes attrs{};
  PageSize largest = PageSize::k1G;
  PageTableEntry marker{};  // kUnmap: what replaces a mapping
  EditOptions options{};
  std::uint8_t software = 0;  // kHide

  bool keeps(PageTableEntry e) const noexcept {
    return options.keep_software >= 0 && e.raw() != 0 && e.software() == options.keep_software;
  }
};

// --- construction -----------------------------------------------------------

Result<PageTable> PageTable::create(TableMemory& memory, PagingFeatures features) noexcept {
  PageTable table(memory, features, TablePage{});
  DUNK_ASSIGN_OR_RETURN(TablePage root, table.allocate_table());
  table.root_ = root;
  return table;
}

Result<PageTable> PageTable::adopt(TableMemory& memory, PagingFeatures features, Gpa root) noexcept {
  if (!root.is_aligned(kTableBytes)) return Error{"PageTable::adopt: root not 4 KiB aligned", EINVAL};
  PageTableEntry* entries = memory.table_at(root);
  if (entries == nullptr) return Error{"PageTable::adopt: root is not a table of this memory", EINVAL};
  return PageTable(memory, features, TablePage{entries, root});
}

PageTable::PageTable(PageTable&& other) noexcept
    : memory_(other.memory_),
      features_(other.features_),
      root_(std::exchange(other.root_, TablePage{})),
      keep_empty_tables_(other.keep_empty_tables_) {}

PageTable& PageTable::operator=(PageTable&& other) noexcept {
  if (this != &other) {
    memory_ = other.memory_;
    features_ = other.features_;
    root_ = std::exchange(other.root_, TablePage{});
    keep_empty_tables_ = other.keep_empty_tables_;
  }
  return *this;
}

void PageTable::destroy() noexcept {
  if (root_.entries == nullptr) return;
  drop_table(std::exchange(root_, TablePage{}).gpa, kPagingLevels);
}

// --- table memory -----------------------------------------------------------

Result<TablePage> PageTable::allocate_table() const noexcept {
  DUNK_ASSIGN_OR_RETURN(TablePage page, memory_->allocate());
  const std::uint64_t limit = std::uint64_t{1} << features_.phys_bits;
  if (!page.gpa.is_aligned(kTableBytes) || page.gpa.value() >= limit) {
    if (std::uint32_t* n = memory_->links(page.gpa)) *n = 0;
    memory_->release(page);
    return Error{"page table: table memory returned a GPA beyond MAXPHYADDR or unaligned", ERANGE};
  }
  return page;
}

void PageTable::add_link(PageTableEntry link, unsigned level) const noexcept {
  if (!link.present() || link.is_leaf(level)) return;
  if (std::uint32_t* n = memory_->links(link.table_address())) ++*n;
}

void PageTable::release_subtree(PageTableEntry old, unsigned level) const noexcept {
  if (!old.present() || old.is_leaf(level)) return;
  drop_table(old.table_address(), level - 1);
}

// One link fewer to the level-`level` table at `gpa`.
void PageTable::drop_table(Gpa gpa, unsigned level) const noexcept {
  PageTableEntry* entries = memory_->table_at(gpa);
  if (entries == nullptr) return;
  std::uint32_t* n = memory_->links(gpa);
  if (n != nullptr && *n > 1) {
    --*n;
    memory_->unlinked(TablePage{entries, gpa});
    return;
  }
  release_tree(TablePage{entries, gpa}, level);
}

// Releases `table` (a level-`level` table nothing links any more) and drops
// its links to the tables below. The order does not matter.
void PageTable::release_tree(TablePage table, unsigned level) const noexcept {
  if (level > 1) {
    for (unsigned i = 0; i < kEntriesPerTable; ++i) release_subtree(load_entry(&table.entries[i]), level);
  }
  if (std::uint32_t* n = memory_->links(table.gpa)) *n = 0;
  memory_->release(table);
}

Result<PageTableEntry*> PageTable::own_table(PageTableEntry* e, PageTableEntry old, unsigned level) noexcept {
  const Gpa gpa = old.table_address();
  PageTableEntry* child = memory_->table_at(gpa);
  if (child == nullptr) return Error{"page table: entry links a table the memory did not allocate", EFAULT};
  std::uint32_t* n = memory_->links(gpa);
  if (old.software() == kBorrowedTable || n == nullptr || *n <= 1) return child;
  // Shared: a copy of this tree's own, its links to the tables below
  // counted (they are linked from both copies now).
  DUNK_ASSIGN_OR_RETURN(TablePage copy, allocate_table());
  for (unsigned i = 0; i < kEntriesPerTable; ++i) {
    const PageTableEntry v = load_entry(&child[i]);
    copy.entries[i] = v;
    if (level > 2) add_link(v, level - 1);
  }
  // The link keeps its own bits (accessed, taken), now to the copy.
  PageTableEntry current = old;
  while (!exchange_entry(e, current, PageTableEntry(current).set_table_address(copy.gpa))) {
  }
  --*n;
  memory_->unlinked(TablePage{child, gpa});
  return copy.entries;
}

// --- editing ----------------------------------------------------------------

Status PageTable::check_range(Gva va, std::uint64_t size) const noexcept {
  if (!va.is_aligned(kPageSize4K) || size % kPageSize4K != 0) {
    return Error{"page table: address or size not 4 KiB aligned", EINVAL};
  }
  if (!is_canonical(va)) return Error{"page table: non-canonical virtual address", EINVAL};
  const std::uint64_t lin = linear(va);
  const std::uint64_t half_end = lin < kHalf ? kHalf : 2 * kHalf;
  if (size > half_end - lin) return Error{"page table: range leaves its canonical half", EINVAL};
  return {};
}

Status PageTable::map(Gva va, Gpa pa, std::uint64_t size, PageAttributes attrs, PageSize largest,
                      EditOptions options) noexcept {
  DUNK_TRY(check_range(va, size));
  if (!pa.is_aligned(kPageSize4K)) return Error{"page table: physical address not 4 KiB aligned", EINVAL};
  const std::uint64_t limit = std::uint64_t{1} << features_.phys_bits;
  if (pa.value() > limit || size > limit - pa.value()) {
    return Error{"page table: physical address beyond MAXPHYADDR", ERANGE};
  }
  return apply(va, size, Edit{.kind = Edit::Kind::kMap, .pa_minus_va = pa.value() - linear(va), .attrs = attrs,
                               .largest = largest, .options = options});
}

Status PageTable::unmap(Gva va, std::uint64_t size, PageTableEntry marker, EditOptions options) noexcept {
  DUNK_TRY(check_range(va, size));
  if (marker.present()) return Error{"page table: an unmap marker must be a not-present entry", EINVAL};
  return apply(va, size, Edit{.kind = Edit::Kind::kUnmap, .marker = marker, .options = options});
}

Status PageTable::protect(Gva va, std::uint64_t size, PageAttributes attrs, EditOptions options) noexcept {
  DUNK_TRY(check_range(va, size));
  return apply(va, size, Edit{.kind = Edit::Kind::kProtect, .attrs = attrs, .options = options});
}

Status PageTable::hide(Gva va, std::uint64_t size, std::uint8_t software, EditOptions options) noexcept {
  DUNK_TRY(check_range(va, size));
  return apply(va, size, Edit{.kind = Edit::Kind::kHide, .options = options, .software = software});
}

std::uint64_t PageTable::reveal(Gva va, std::uint64_t size, Gpa pa, std::uint8_t software) noexcept {
  const std::uint64_t first = va.value(), end = first + size;
  std::uint64_t revealed = 0;
  for_each_hidden_leaf(va, size, [&](Gva page, PageSize s, PageTableEntry& e) {
    PageTableEntry v = load_entry(&e);
    if (v.software() != software || page.value() < first || page.value() + page_bytes(s) > end) return;
    // Not present: the CPU neither caches nor updates the entry, but
    // mark_written may set its accessed and dirty bits meanwhile (a write
    // the kernel made for the program): compare-and-exchange keeps them.
    while (!exchange_entry(&e, v, v.revealed(pa + (page.value() - first), s))) {
    }
    ++revealed;
  });
  return revealed;
}

Status PageTable::apply(Gva va, std::uint64_t size, const Edit& edit) noexcept {
  if (root_.entries == nullptr) return Error{"page table: no tree (moved from or destroyed)", EINVAL};
  const std::uint64_t lin = linear(va);
  return edit_table(root_.entries, kPagingLevels, lin, lin + size, edit);
}

Status PageTable::edit_table(PageTableEntry* table, unsigned level, std::uint64_t va, std::uint64_t end,
                             const Edit& edit) noexcept {
  const std::uint64_t span = level_span(level);
  while (va < end) {
    const std::uint64_t base = va & ~(span - 1);
    const std::uint64_t piece_end = std::min(end, base + span);
    DUNK_TRY(edit_entry(&table[table_index(level, va)], level, base, va, piece_end, edit));
    va = piece_end;
  }
  return {};
}

// Applies `edit` to [va, end), the part of the range inside entry `e`, which
// covers [base, base + span) at `level`.
Status PageTable::edit_entry(PageTableEntry* e, unsigned level, std::uint64_t base, std::uint64_t va,
                             std::uint64_t end, const Edit& edit) noexcept {
  const PageTableEntry old = load_entry(e);
  const bool table = old.present() && !old.is_leaf(level);
  if (!table && edit.keeps(old)) return {};
  const bool covers = va == base && end == base + level_span(level);
  // A table that may hold kept entries is edited inside, never replaced.
  if (covers && !(table && edit.options.keep_software >= 0)) {
    switch (edit.kind) {
      case Edit::Kind::kMap: {
        if (!can_map_leaf(level, base, edit)) break;
        const Gpa pa(base + edit.pa_minus_va);
        const PageTableEntry leaf = PageTableEntry::leaf(pa, leaf_size(level), edit.attrs, features_.nx);
        // Written out of service when the edit asks (EditOptions::hidden):
        // every other bit as a present leaf would have it.
        auto placed = [&](PageTableEntry v) { return edit.options.hidden ? v.as_hidden() : v; };
        if (old.maps_page(level) && old.page_address(leaf_size(level)) == pa) {
          // The same page with new rights keeps its accessed and dirty bits,
          // moved with a compare-and-exchange: a CPU (or mark_written) may
          // set them between the load and the store.
          PageTableEntry current = old;
          while (!exchange_entry(
              e, current, placed(PageTableEntry(leaf).set_accessed(current.accessed()).set_dirty(current.dirty())))) {
          }
          return {};
        }
        store_entry(e, placed(edit.options.new_leaves_dirty ? PageTableEntry(leaf).set_accessed(true).set_dirty(true)
                                                            : leaf));
        release_subtree(old, level);
        return {};
      }
      case Edit::Kind::kUnmap:
        if (old == edit.marker) return {};
        store_entry(e, edit.marker);
        release_subtree(old, level);
        return {};
      case Edit::Kind::kProtect:
      case Edit::Kind::kHide:
        if (table) break;
        if (!old.maps_page(level)) return {};
        protect_leaf(e, level, edit);
        return {};
    }
  }
  if (!table) {
    // Nothing below to edit, unless a large page (or a marker, for an
    // unmap leaving another marker) has to be split first.
    switch (edit.kind) {
      case Edit::Kind::kMap: break;
      case Edit::Kind::kUnmap:
        if (old == edit.marker) return {};
        break;
      case Edit::Kind::kProtect:
        if (!old.maps_page(level)) return {};
        break;
      case Edit::Kind::kHide:
        if (!old.present()) return {};
        break;
    }
  }
  return edit_below(e, old, level, va, end, edit);
}

// The edit covers part of the entry (or needs smaller pages): descend.
Status PageTable::edit_below(PageTableEntry* e, PageTableEntry old, unsigned level, std::uint64_t va,
                             std::uint64_t end, const Edit& edit) noexcept {
  if (!old.present() || old.is_leaf(level)) return edit_detached(e, old, level, va, end, edit);
  PageTableEntry* child = memory_->table_at(old.table_address());
  if (child == nullptr) return Error{"page table: entry links a table the memory did not allocate", EFAULT};
  if (edit.options.unshare) {
    DUNK_ASSIGN_OR_RETURN(child, own_table(e, old, level));
    old = load_entry(e);
  }
  const Gpa child_gpa = old.table_address();
  if (edit.options.new_leaves_dirty && !old.accessed()) {
    // Before the edit below: a scan that finds the new leaves must not have
    // pruned this table meanwhile.
    PageTableEntry current = old;
    while (current.present() && !current.accessed() &&
           !exchange_entry(e, current, PageTableEntry(current).set_accessed(true))) {
    }
  }
  DUNK_TRY(edit_table(child, level - 1, va, end, edit));
  if (edit.kind == Edit::Kind::kUnmap && !keep_empty_tables_ && old.software() != kBorrowedTable &&
      table_empty(child)) {
    store_entry(e, PageTableEntry());
    drop_table(child_gpa, level - 1);
  }
  return {};
}

// Builds the new subtable off to the side (empty, or the split of a large
// page), applies the edit to it, and links it with one store; on failure
// nothing was linked and the detached tables go back to the memory.
Status PageTable::edit_detached(PageTableEntry* e, PageTableEntry old, unsigned level, std::uint64_t va,
                                std::uint64_t end, const Edit& edit) noexcept {
  const std::uint64_t base = va & ~(level_span(level) - 1);
  // The same edit made this table in another tree where the entry held
  // what this one holds: the same table would come out. Link that one.
  if (NewTables* made = edit.options.new_tables) {
    for (unsigned i = 0; i < made->n; ++i) {
      const NewTables::Made& m = made->made[i];
      if (m.level != level || m.base != base || m.old != old.raw()) continue;
      std::uint32_t* n = memory_->links(m.table);
      PageTableEntry* shared = memory_->table_at(m.table);
      if (n == nullptr || *n == 0 || shared == nullptr) break;
      PageTableEntry current = old;
      if (!exchange_entry(e, current, m.link)) break;  // changed meanwhile: build one of its own
      ++*n;
      return {};
    }
  }
  DUNK_ASSIGN_OR_RETURN(TablePage fresh, allocate_table());
  if (old.maps_page(level)) {
    // Even when the edit rewrites every piece: a piece mapped again over
    // its own frame keeps the accessed and dirty bits it inherits here.
    fill_split(fresh.entries, old, level);
  } else if (old.raw() != 0 && end - va != level_span(level)) {
    for (unsigned i = 0; i < kEntriesPerTable; ++i) fresh.entries[i] = old;  // a marker covers its part
  }
  Status status = edit_table(fresh.entries, level - 1, va, end, edit);
  if (!status) {
    release_tree(fresh, level - 1);
    return status;
  }
  // The pieces of a large page that was used are used pieces: the link says
  // so, or a scan that prunes by accessed bits would miss their dirty bits.
  const bool used = edit.options.new_leaves_dirty || (old.maps_page(level) && (old.accessed() || old.dirty()));
  PageTableEntry link = PageTableEntry::table(fresh.gpa).set_accessed(used);
  const std::uint64_t ad = PageTableEntry().set_accessed(true).set_dirty(true).raw();
  PageTableEntry current = old;
  while (!exchange_entry(e, current, link)) {
    if ((current.raw() & ~ad) != (old.raw() & ~ad)) {
      store_entry(e, link);  // not a CPU's change: the caller's lock is not held
      break;
    }
    // A CPU (or mark_written) set accessed or dirty on the large page since
    // it was read: its pieces get them too, or that write would be lost.
    for (unsigned i = 0; i < kEntriesPerTable; ++i) {
      if (fresh.entries[i].maps_page(level - 1)) {
        fresh.entries[i] = PageTableEntry(fresh.entries[i].raw() | (current.raw() & ad));
      }
    }
    link.set_accessed(true);
  }
  if (NewTables* made = edit.options.new_tables; made != nullptr && made->n < NewTables::kMax) {
    made->made[made->n++] = NewTables::Made{level, base, old.raw(), fresh.gpa, link};
  }
  return {};
}

bool PageTable::can_map_leaf(unsigned level, std::uint64_t base, const Edit& edit) const noexcept {
  const std::uint64_t pa = base + edit.pa_minus_va;
  switch (level) {
    case 1: return true;
    case 2: return edit.largest != PageSize::k4K && pa % kPageSize2M == 0;
    case 3: return features_.gib_pages && edit.largest == PageSize::k1G && pa % kPageSize1G == 0;
    default: return false;
  }
}

// Rewrites the attributes of a present leaf, keeping its address and the
// bits the attributes do not describe. Compare-and-exchange, so an
// accessed/dirty bit the CPU sets meanwhile is not lost.
void PageTable::protect_leaf(PageTableEntry* e, unsigned level, const Edit& edit) noexcept {
  const PageSize size = leaf_size(level);
  PageTableEntry current = load_entry(e);
  for (;;) {
    if (edit.kind == Edit::Kind::kHide) {
      PageTableEntry hidden = current.as_hidden();
      hidden.set_software(edit.software);
      if (exchange_entry(e, current, hidden)) return;
      continue;
    }
    PageTableEntry next = PageTableEntry::leaf(current.page_address(size), size, edit.attrs, features_.nx);
    next.set_accessed(current.accessed())
        .set_dirty(current.dirty())
        .set_protection_key(current.protection_key())
        .set_software_high(current.software_high() & ~std::uint8_t{1});  // no longer hidden
    if (size == PageSize::k4K) {
      next.set_pat_4k(current.pat_4k());
    } else {
      next.set_pat_large(current.pat_large());
    }
    if (exchange_entry(e, current, next)) return;
  }
}

// --- reading ----------------------------------------------------------------

std::optional<Translation> PageTable::lookup(Gva va) const noexcept {
  if (root_.entries == nullptr || !is_canonical(va)) return std::nullopt;
  PageTableEntry* table = root_.entries;
  PageAttributes rights{.writable = true, .user = true, .executable = true};
  for (unsigned level = kPagingLevels; level >= 1; --level) {
    PageTableEntry* e = &table[index(level, va)];
    const PageTableEntry v = load_entry(e);
    if (!v.present()) return std::nullopt;
    rights.writable &= v.writable();
    rights.user &= v.user();
    rights.executable &= !(features_.nx && v.execute_disable());
    if (v.is_leaf(level)) {
      const PageSize size = leaf_size(level);
      PageAttributes attrs = v.attributes();
      attrs.writable = rights.writable;
      attrs.user = rights.user;
      attrs.executable = rights.executable;
      const Gpa pa = v.page_address(size) + (va.value() & (page_bytes(size) - 1));
      return Translation{pa, attrs, size, e};
    }
    table = memory_->table_at(v.table_address());
    if (table == nullptr) return std::nullopt;
  }
  return std::nullopt;
}

std::optional<EntryRef> PageTable::find(Gva va) const noexcept {
  PageTableEntry* entries[kPagingLevels];
  const unsigned n = path(va, entries);
  if (n == 0) return std::nullopt;
  return EntryRef{entries[n - 1], kPagingLevels + 1 - n};
}

unsigned PageTable::path(Gva va, PageTableEntry* out[kPagingLevels]) const noexcept {
  if (root_.entries == nullptr || !is_canonical(va)) return 0;
  PageTableEntry* table = root_.entries;
  for (unsigned level = kPagingLevels, n = 1;; --level, ++n) {
    PageTableEntry* e = &table[index(level, va)];
    out[n - 1] = e;
    const PageTableEntry v = load_entry(e);
    if (!v.present() || v.is_leaf(level)) return n;
    table = memory_->table_at(v.table_address());
    if (table == nullptr) return n;
  }
}

Result<EntryRef> PageTable::slot(Gva va, unsigned level, bool create, bool unshare) noexcept {
  if (root_.entries == nullptr) return Error{"page table: no tree", EINVAL};
  if (!is_canonical(va) || level < 1 || level >= kPagingLevels) {
    return Error{"page table: a slot needs a canonical address and a leaf level (1-3)", EINVAL};
  }
  PageTableEntry* table = root_.entries;
  for (unsigned l = kPagingLevels;; --l) {
    PageTableEntry* e = &table[index(l, va)];
    const PageTableEntry v = load_entry(e);
    if (l == level || v.maps_page(l)) return EntryRef{e, l};
    if (v.present()) {
      if (unshare) {
        DUNK_ASSIGN_OR_RETURN(table, own_table(e, v, l));
        continue;
      }
      table = memory_->table_at(v.table_address());
      if (table == nullptr) return Error{"page table: entry links a table the memory did not allocate", EFAULT};
      continue;
    }
    if (!create) return Error{"page table: no table on the way to the slot", ENOENT};
    DUNK_ASSIGN_OR_RETURN(TablePage fresh, allocate_table());
    if (v.raw() != 0) {
      for (unsigned i = 0; i < kEntriesPerTable; ++i) fresh.entries[i] = v;
    }
    store_entry(e, PageTableEntry::table(fresh.gpa));
    table = fresh.entries;
  }
}

Result<PageTable> PageTable::clone(CloneKind kind) const noexcept {
  if (root_.entries == nullptr) return Error{"page table: no tree to clone", EINVAL};
  DUNK_ASSIGN_OR_RETURN(TablePage root, allocate_table());
  PageTable copy(*memory_, features_, root);
  copy.keep_empty_tables_ = keep_empty_tables_;
  Status status = clone_table(root_.entries, root.entries, kPagingLevels, kind);
  if (!status) {
    copy.destroy();
    return status.error();
  }
  return copy;
}

// Fills `to` (a fresh level-`level` table) from `from`. On failure `to`
// holds what was copied so far, all of it releasable.
Status PageTable::clone_table(const PageTableEntry* from, PageTableEntry* to, unsigned level,
                              CloneKind kind) const noexcept {
  for (unsigned i = 0; i < kEntriesPerTable; ++i) {
    const PageTableEntry v = load_entry(&from[i]);
    if (!v.present() || v.is_leaf(level)) {
      to[i] = v;
      continue;
    }
    PageTableEntry* child = memory_->table_at(v.table_address());
    if (child == nullptr) return Error{"page table: entry links a table the memory did not allocate", EFAULT};
    if (kind == CloneKind::kCopyOnWrite) {
      // Linked from both roots; the first unsharing edit below copies it.
      to[i] = v;
      add_link(v, level);
      continue;
    }
    if (kind == CloneKind::kShareLeafTables && level == 2) {
      // Shared for edits: both trees' links say so (no unsharing edit
      // copies it), and the table is counted for both.
      PageTableEntry* source = const_cast<PageTableEntry*>(&from[i]);
      PageTableEntry current = v;
      while (current.software() != kBorrowedTable &&
             !exchange_entry(source, current, PageTableEntry(current).set_software(kBorrowedTable))) {
      }
      to[i] = PageTableEntry(current).set_software(kBorrowedTable);
      add_link(v, level);
      continue;
    }
    DUNK_ASSIGN_OR_RETURN(TablePage fresh, allocate_table());
    Status status = clone_table(child, fresh.entries, level - 1, kind);
    to[i] = PageTableEntry::table(fresh.gpa);
    DUNK_TRY(status);
  }
  return {};
}

std::uint64_t PageTable::own_tables() const noexcept {
  if (root_.entries == nullptr) return 0;
  return count_own(root_.entries, kPagingLevels);
}

std::uint64_t PageTable::count_own(const PageTableEntry* table, unsigned level) const noexcept {
  std::uint64_t n = 1;
  if (level == 1) return n;
  for (unsigned i = 0; i < kEntriesPerTable; ++i) {
    const PageTableEntry v = load_entry(&table[i]);
    if (!v.present() || v.is_leaf(level)) continue;
    const std::uint32_t* links = memory_->links(v.table_address());
    const PageTableEntry* child = memory_->table_at(v.table_address());
    if (child == nullptr || (links != nullptr && *links > 1)) continue;
    n += count_own(child, level - 1);
  }
  return n;
}

void PageTable::for_each_leaf(Gva va, std::uint64_t size, LeafVisitor visit) const noexcept {
  visit_leaves(va, size, /*hidden=*/false, visit);
}

void PageTable::for_each_hidden_leaf(Gva va, std::uint64_t size, LeafVisitor visit) const noexcept {
  visit_leaves(va, size, /*hidden=*/true, visit);
}

void PageTable::visit_leaves(Gva va, std::uint64_t size, bool hidden, LeafVisitor& visit) const noexcept {
  if (root_.entries == nullptr || size == 0 || !is_canonical(va)) return;
  const std::uint64_t lin = linear(va);
  const std::uint64_t half_end = lin < kHalf ? kHalf : 2 * kHalf;
  walk(root_.entries, kPagingLevels, lin, lin + std::min(size, half_end - lin), hidden, visit);
}

// Visits the present leaves (`hidden` false) or the hidden ones.
void PageTable::walk(const PageTableEntry* table, unsigned level, std::uint64_t va, std::uint64_t end, bool hidden,
                     LeafVisitor& visit) const noexcept {
  const std::uint64_t span = level_span(level);
  while (va < end) {
    const std::uint64_t base = va & ~(span - 1);
    const std::uint64_t piece_end = std::min(end, base + span);
    PageTableEntry* e = const_cast<PageTableEntry*>(&table[table_index(level, va)]);
    const PageTableEntry v = load_entry(e);
    if (v.present() && !v.is_leaf(level)) {
      if (const PageTableEntry* child = memory_->table_at(v.table_address())) {
        walk(child, level - 1, va, piece_end, hidden, visit);
      }
    } else if (v.is_leaf(level) && (hidden ? v.hidden() : v.present())) {
      visit(to_gva(base), leaf_size(level), *e);
    }
    va = piece_end;
  }
}

// --- dirty tracking -----------------------------------------------------------

namespace {
constexpr std::uint64_t kAccessedDirty = (std::uint64_t{1} << 5) | (std::uint64_t{1} << 6);

// Sets `bits` in *e while it still passes `still`; false when it stopped
// passing first (another thread replaced the entry).
template <class Still>
bool set_bits(PageTableEntry* e, std::uint64_t bits, Still still) noexcept {
  PageTableEntry current = load_entry(e);
  for (;;) {
    if (!still(current)) return false;
    if ((current.raw() & bits) == bits) return true;
    if (exchange_entry(e, current, PageTableEntry(current.raw() | bits))) return true;
  }
}

// Clears `bits` in *e; returns the entry as it was when they were cleared.
PageTableEntry clear_bits(PageTableEntry* e, std::uint64_t bits) noexcept {
  PageTableEntry current = load_entry(e);
  while ((current.raw() & bits) != 0 && !exchange_entry(e, current, PageTableEntry(current.raw() & ~bits))) {
  }
  return current;
}
}  // namespace

std::uint64_t PageTable::mark_written(Gva va, std::uint64_t size) const noexcept {
  if (root_.entries == nullptr || size == 0 || !is_canonical(va)) return 0;
  const std::uint64_t lin = linear(va) & ~(kPageSize4K - 1);
  const std::uint64_t half_end = lin < kHalf ? kHalf : 2 * kHalf;
  const std::uint64_t end = linear(va) + std::min(size, half_end - linear(va));
  return mark_in(root_.entries, kPagingLevels, lin, std::min(half_end, (end + kPageSize4K - 1) & ~(kPageSize4K - 1)));
}

std::uint64_t PageTable::mark_in(PageTableEntry* table, unsigned level, std::uint64_t va,
                                 std::uint64_t end) const noexcept {
  const std::uint64_t span = level_span(level);
  std::uint64_t marked = 0;
  while (va < end) {
    const std::uint64_t base = va & ~(span - 1);
    const std::uint64_t piece_end = std::min(end, base + span);
    PageTableEntry* e = &table[table_index(level, va)];
    const PageTableEntry v = load_entry(e);
    if (v.maps_page(level)) {
      // Accessed and dirty, as a store sets them; a hidden leaf keeps them
      // for the protect() that brings it back.
      const std::uint64_t frame = v.page_address(leaf_size(level)).value();
      if (set_bits(e, kAccessedDirty, [&](PageTableEntry c) {
            return c.maps_page(level) && c.page_address(leaf_size(level)).value() == frame;
          })) {
        marked += (piece_end - va) / kPageSize4K;
      }
    } else if (v.present()) {
      // The table entry first (top-down, as the CPU walks): a scan that
      // finds it accessed descends to the leaf marked below.
      const std::uint64_t link = v.table_address().value();
      (void)set_bits(e, std::uint64_t{1} << 5, [&](PageTableEntry c) {
        return c.present() && !c.is_leaf(level) && c.table_address().value() == link;
      });
      if (PageTableEntry* child = memory_->table_at(v.table_address())) marked += mark_in(child, level - 1, va, piece_end);
    }
    va = piece_end;
  }
  return marked;
}

void PageTable::scan_dirty(Gva va, std::uint64_t size, DirtyScanOptions options, LeafVisitor visit,
                           DirtyScanCounts* counts) const noexcept {
  if (root_.entries == nullptr || size == 0 || !is_canonical(va)) return;
  const std::uint64_t lin = linear(va);
  const std::uint64_t half_end = lin < kHalf ? kHalf : 2 * kHalf;
  DirtyScanCounts local;
  scan_in(root_.entries, kPagingLevels, lin, lin + std::min(size, half_end - lin), options, visit, local);
  if (counts != nullptr) *counts += local;
}

void PageTable::scan_in(PageTableEntry* table, unsigned level, std::uint64_t va, std::uint64_t end,
                        DirtyScanOptions options, LeafVisitor& visit, DirtyScanCounts& counts) const noexcept {
  if (level == 1) {
    scan_leaf_table(table, va, end, options, visit, counts);
    return;
  }
  const std::uint64_t span = level_span(level);
  while (va < end) {
    const std::uint64_t base = va & ~(span - 1);
    const std::uint64_t piece_end = std::min(end, base + span);
    PageTableEntry* e = &table[table_index(level, va)];
    const PageTableEntry v = load_entry(e);
    ++counts.entries_read;
    if (v.maps_page(level)) {
      if (v.dirty()) {
        // Cleaned before it is reported: a write after this point sets the
        // bit again and is found by the next scan.
        if (options.clean) (void)clear_bits(e, kAccessedDirty);
        ++counts.dirty_leaves;
        visit(to_gva(base), leaf_size(level), *e);
      }
    } else if (v.present()) {
      const bool used = v.accessed() || v.accessed_taken();
      if (options.prune && !used) {
        ++counts.tables_skipped;
      } else {
        // Accessed goes before the leaves below are read: a write after the
        // clear sets it again on its way down.
        if (options.clean && used && va == base && piece_end == base + span) {
          (void)clear_bits(e, std::uint64_t{1} << 5 | std::uint64_t{1} << PageTableEntry::kAccessedTakenBit);
        }
        if (PageTableEntry* child = memory_->table_at(v.table_address())) {
          scan_in(child, level - 1, va, piece_end, options, visit, counts);
        }
      }
    }
    va = piece_end;
  }
}

// The last level, where a scan spends its time: with writes spread thin
// nearly every entry is clean, and at this level an entry without the
// dirty bit is one the scan passes over (present or hidden, it is not
// reported; absent, there is nothing below it). So the entries are tested
// eight at a time (one cache line) with one branch, and only a group with
// a dirty bit among them is looked at entry by entry.
void PageTable::scan_leaf_table(PageTableEntry* table, std::uint64_t va, std::uint64_t end, DirtyScanOptions options,
                                LeafVisitor& visit, DirtyScanCounts& counts) noexcept {
  constexpr unsigned kGroup = 8;
  constexpr std::uint64_t kDirtyBit = std::uint64_t{1} << 6;
  const std::uint64_t table_base = va & ~(level_span(2) - 1);
  unsigned i = table_index(1, va);
  const unsigned stop = i + static_cast<unsigned>(((end - 1) >> level_shift(1)) - (va >> level_shift(1))) + 1;
  counts.entries_read += stop - i;
  while (i < stop) {
    if (i % kGroup == 0 && stop - i >= kGroup) {
      std::uint64_t any = 0;
      for (unsigned k = 0; k < kGroup; ++k) any |= load_entry(&table[i + k]).raw();
      if ((any & kDirtyBit) == 0) {
        i += kGroup;
        continue;
      }
    }
    PageTableEntry* e = &table[i];
    const PageTableEntry v = load_entry(e);
    if (v.maps_page(1) && v.dirty()) {
      // Cleaned before it is reported, as in scan_in.
      if (options.clean) (void)clear_bits(e, kAccessedDirty);
      ++counts.dirty_leaves;
      visit(to_gva(table_base + std::uint64_t{i} * kPageSize4K), PageSize::k4K, *e);
    }
    ++i;
  }
}

}  // namespace dunk::arch
