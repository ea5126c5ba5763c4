// A 4-level page-table tree that can be edited while vCPUs run on it.
//
// The tables live in memory the caller provides (TableMemory): in dunk that
// is guest-physical memory the monitor can also write through a host
// pointer; in tests it is posix_memalign'ed pages with made-up GPAs. The CPU
// features that shape the tree (1 GiB pages, NX, MAXPHYADDR) are injected
// too, so a test can model a machine the host is not.
//
// Concurrency: edits (map/unmap/protect/destroy) must be serialised by the
// caller — across every tree that shares tables with this one (one lock for
// all of them, as dunk's mirror has); the CPU may walk the tree at any time. Every entry changes with one
// 64-bit store; a new or split subtable is filled completely before the
// single store that links it; a table is released only after the store that
// unlinks it. Flushing TLBs is the caller's business (and TableMemory's, when
// it defers reuse of released tables until the flush).
//
// Failure: an edit that fails part-way (allocation failure) has applied
// itself to a prefix of the range; the tree is valid, no table is linked
// half-filled, and no table leaks.
//
// Sharing. A table may be linked by several entries — of one tree's copy of
// a table and another's, after a copy-on-write clone (CloneKind) — and
// TableMemory counts the entries that link each table. An edit marked
// EditOptions::unshare (an edit of this tree alone) copies every table it
// would change that is linked more than once, links the copy in its place
// and edits the copy: the other trees keep the table as it was. An edit
// without it writes through shared tables: what every tree that links them
// must see. A table goes back to the memory when its last link goes.
#pragma once

#include <cstdint>
#include <optional>
#include <type_traits>
#include <utility>

#include "arch/x86_64/paging.h"
#include "dunk/address.h"
#include "dunk/result.h"

namespace dunk::arch {

// One 4 KiB table: where the monitor writes it and what entries store.
struct TablePage {
  PageTableEntry* entries = nullptr;
  Gpa gpa;
};

class TableMemory {
 public:
  // A zero-filled, 4 KiB aligned table.
  virtual Result<TablePage> allocate() noexcept = 0;
  // A table no longer linked by any entry; the implementation may defer
  // its reuse until TLBs are flushed.
  virtual void release(TablePage page) noexcept = 0;
  // Host pointer of a table this memory allocated; nullptr if it did not.
  virtual PageTableEntry* table_at(Gpa gpa) noexcept = 0;
  // The number of entries that link the table at `gpa` (allocate() makes it
  // 1: the entry, or the tree, the table is made for); the trees change it
  // as they share and unshare tables, under their edit lock. nullptr for a
  // table this memory did not allocate.
  virtual std::uint32_t* links(Gpa gpa) noexcept = 0;
  // One entry that linked `page` no longer does, and others still do: a
  // tree that was using it (and may have it in a TLB's paging-structure
  // caches until that TLB is flushed) stopped. An implementation that
  // recycles released tables may want to know.
  virtual void unlinked(TablePage page) noexcept = 0;

 protected:
  ~TableMemory() = default;
};

struct Translation {
  Gpa pa;  // of the looked-up address itself, page offset included
  PageAttributes attrs;
  PageSize size;
  PageTableEntry* leaf;
};

// A non-owning reference to a callable (Gva page, PageSize, PageTableEntry&),
// valid for the duration of the call it is passed to. No allocation.
class LeafVisitor {
 public:
  template <class F, class = std::enable_if_t<!std::is_same_v<std::remove_cvref_t<F>, LeafVisitor>>>
  LeafVisitor(F&& f) noexcept  // NOLINT: implicit so lambdas pass directly
      : object_(const_cast<void*>(static_cast<const void*>(&f))),
        call_([](void* o, Gva va, PageSize s, PageTableEntry& e) {
          (*static_cast<std::remove_reference_t<F>*>(o))(va, s, e);
        }) {}

  void operator()(Gva va, PageSize s, PageTableEntry& e) const { call_(object_, va, s, e); }

 private:
  void* object_;
  void (*call_)(void*, Gva, PageSize, PageTableEntry&);
};

// The tables one edit made in one tree, for the other trees the same edit
// is applied to next (EditOptions::new_tables), as dunk's monitor applies
// each of its edits to every tree. Where another tree's entry holds exactly
// what this tree's held, the edit would build the same table there: that
// tree links this one instead (counted), so that private upper tables of
// many trees (copy-on-write clones) do not each get a copy of every table
// new memory needs. Valid for one edit only.
struct NewTables {
  static constexpr unsigned kMax = 32;
  struct Made {
    unsigned level;        // of the entry that links the table
    std::uint64_t base;    // the linear address the entry covers from
    std::uint64_t old;     // what the entry held before
    Gpa table;
    PageTableEntry link;   // what it holds now
  };
  Made made[kMax];
  unsigned n = 0;
};

// How an edit treats what is already there, beyond its range.
struct EditOptions {
  // Entries whose software bits (11:9) hold this value are left as they are:
  // leaves, hidden leaves and markers alike; a table in the range is then
  // descended rather than replaced or dropped wholesale, so that such
  // entries inside it survive. -1: nothing is kept.
  int keep_software = -1;
  // map(): the leaves are written taken out of service (hidden), as hide()
  // leaves them; reveal() brings them into service later. A mapping known
  // before the memory behind it may be used.
  bool hidden = false;
  // For dirty tracking (dunk/dirty.h): a leaf that maps a new frame (where
  // none was, or another) starts accessed and dirty, and every table entry
  // the edit links or descends through is made accessed. Memory that
  // appears in a range has changed since anyone last looked at it, and a
  // scan that prunes subtrees by their accessed bit (scan_dirty) must reach
  // it. A leaf re-made over the same frame keeps its own bits either way.
  bool new_leaves_dirty = false;
  // The edit is this tree's alone: a table on its way that other entries
  // link too (a copy-on-write clone's, CloneKind::kCopyOnWrite) is copied,
  // and the copy edited, so that no other tree sees the change. Tables
  // linked with kBorrowedTable are shared for edits and never copied.
  bool unshare = false;
  // Tables this edit made in trees it was applied to before: see NewTables.
  NewTables* new_tables = nullptr;
};

// What PageTable::clone shares with the tree it copies.
enum class CloneKind {
  kCopy,             // every table copied
  kShareLeafTables,  // the 4 KiB-page tables linked by both trees (kBorrowedTable): edits of them show in both
  kCopyOnWrite,      // every table but the root linked by both trees until an unsharing edit changes it
};

// How scan_dirty() treats what it reads.
struct DirtyScanOptions {
  // Clears accessed and dirty on each dirty leaf it reports, and accessed on
  // each table entry whose whole span lies in the range, before descending
  // below it: the next write anywhere underneath sets them again (SDM vol.
  // 3A §4.8, "Accessed and Dirty Flags": the CPU sets A in every
  // paging-structure entry it uses to translate, D in the leaf it writes
  // through). The caller flushes TLBs.
  bool clean = false;
  // Skips every table whose entry has accessed clear (and not taken by
  // another reader, PageTableEntry::accessed_taken): nothing below it was
  // used since a clean scan cleared it. Sound only when no CPU can still use
  // paging-structure-cache entries or TLB entries from before that scan
  // (they let writes through without setting A above the leaf).
  bool prune = false;
};

// What a scan_dirty() did, exactly.
struct DirtyScanCounts {
  std::uint64_t entries_read = 0;    // paging-structure entries loaded, all levels
  std::uint64_t tables_skipped = 0;  // subtrees pruned (accessed clear)
  std::uint64_t dirty_leaves = 0;    // leaves reported
  DirtyScanCounts& operator+=(const DirtyScanCounts& o) noexcept {
    entries_read += o.entries_read, tables_skipped += o.tables_skipped, dirty_leaves += o.dirty_leaves;
    return *this;
  }
};

// The entry that decides a virtual address: a leaf, a hidden leaf, a marker
// or an empty entry, and its level.
struct EntryRef {
  PageTableEntry* entry;
  unsigned level;
};

class PageTable {
 public:
  // A new, empty tree (allocates the root).
  static Result<PageTable> create(TableMemory& memory, PagingFeatures features) noexcept;
  // An existing tree rooted at `root`, whose tables `memory` allocated.
  static Result<PageTable> adopt(TableMemory& memory, PagingFeatures features, Gpa root) noexcept;

  PageTable(PageTable&& other) noexcept;
  PageTable& operator=(PageTable&& other) noexcept;
  PageTable(const PageTable&) = delete;
  PageTable& operator=(const PageTable&) = delete;
  // Leaves the tree in place: it may still be some vCPU's CR3. destroy()
  // releases it.
  ~PageTable() = default;

  // What CR3 should hold (bits 51:12).
  Gpa root() const noexcept { return root_.gpa; }
  const PagingFeatures& features() const noexcept { return features_; }

  // Maps [va, va + size) to [pa, pa + size), replacing whatever was there.
  // Each piece gets the largest page that the alignment of both va and pa,
  // the remaining size, `largest` and the CPU allow.
  // A leaf that keeps the frame and size it had keeps its accessed and dirty
  // bits too (a mapping re-made with new rights has not been cleaned).
  Status map(Gva va, Gpa pa, std::uint64_t size, PageAttributes attrs, PageSize largest = PageSize::k1G,
             EditOptions options = {}) noexcept;
  // Removes every mapping in [va, va + size), leaving `marker` (a
  // not-present entry, PageTableEntry::marker) in its place. Large pages
  // straddling an edge are split; their part outside the range stays as it
  // was. Tables left empty are released, unless set_keep_empty_tables(true).
  Status unmap(Gva va, std::uint64_t size, PageTableEntry marker = {}, EditOptions options = {}) noexcept;
  // Sets `attrs` on every present or hidden mapping in [va, va + size)
  // (a hidden one comes back present); holes stay holes.
  Status protect(Gva va, std::uint64_t size, PageAttributes attrs, EditOptions options = {}) noexcept;
  // Takes every present mapping in [va, va + size) out of service (hidden,
  // PageTableEntry::as_hidden) with software bits `software`; protect()
  // brings it back with the same frame, reveal() with another.
  Status hide(Gva va, std::uint64_t size, std::uint8_t software, EditOptions options = {}) noexcept;
  // Brings every hidden leaf inside [va, va + size) whose software bits are
  // `software` back into service, mapping pa + (its address - va) with the
  // rights, accessed and dirty bits it kept. Changes no table; leaves that
  // straddle the range's edges stay hidden. Returns how many it revealed.
  std::uint64_t reveal(Gva va, std::uint64_t size, Gpa pa, std::uint8_t software) noexcept;

  // A copy of this tree: the same entries. kCopy: new tables throughout.
  // kShareLeafTables: the 4 KiB-page tables themselves are shared, linked
  // with kBorrowedTable in both trees: an edit of a 4 KiB leaf shows in
  // both. kCopyOnWrite: a new root whose entries link this tree's tables,
  // which both trees share until an edit with EditOptions::unshare changes
  // one (then that tree gets its own copy of the tables on the edit's way).
  // In every kind, destroy() of either tree leaves the tables the other
  // still links.
  Result<PageTable> clone(CloneKind kind) const noexcept;
  Result<PageTable> clone(bool share_leaf_tables) const noexcept {
    return clone(share_leaf_tables ? CloneKind::kShareLeafTables : CloneKind::kCopy);
  }
  // The tables that this tree alone links, root included: what destroy()
  // gives back. A table linked more than once, and everything below it, is
  // not counted.
  std::uint64_t own_tables() const noexcept;

  // The entry that decides `va` (nullopt: no tree, or non-canonical).
  std::optional<EntryRef> find(Gva va) const noexcept;
  // The entries a walk of `va` reads, top level first: path[0] is the PML4
  // entry, path[n - 1] the one that decides (as find()). Returns n (0: no
  // tree, or non-canonical).
  unsigned path(Gva va, PageTableEntry* out[kPagingLevels]) const noexcept;

  // The slot of `va` at `level` (1: a 4 KiB page's entry, 2: a 2 MiB page's,
  // 3: a 1 GiB page's), for code that stores whole entries itself (Dune's
  // libdune). A page of a larger size that maps `va` on the way, present or
  // hidden, is returned instead (its level says so), not split. A missing
  // table on the way is created with `create` (empty, or holding the marker
  // the entry above held: a marker covers its part), else ENOENT. With
  // `unshare`, shared tables on the way are copied first (as for an edit
  // with EditOptions::unshare): the caller will store into the slot.
  Result<EntryRef> slot(Gva va, unsigned level, bool create, bool unshare = false) noexcept;

  // The translation of `va`. Writable/user/executable are the effective
  // rights: the AND over every level (SDM §4.6 "Access Rights").
  std::optional<Translation> lookup(Gva va) const noexcept;

  // Calls `visit(page start, size, leaf entry)` for every present leaf that
  // overlaps [va, va + size), in address order. The visitor may change the
  // entry only through store_entry/exchange_entry.
  void for_each_leaf(Gva va, std::uint64_t size, LeafVisitor visit) const noexcept;
  // The same for every hidden leaf (PageTableEntry::hidden).
  void for_each_hidden_leaf(Gva va, std::uint64_t size, LeafVisitor visit) const noexcept;

  // ---- Dirty tracking (dunk/dirty.h) ----
  // Both are lock-free: they change entries only by compare-and-exchange, so
  // CPUs may walk the tree and set accessed/dirty meanwhile, and another
  // thread may edit it, as long as tables are not reused while a call runs
  // (dunk's tables never are: Mirror::release).

  // Marks [va, va + size) written, as the CPU marks a store: accessed and
  // dirty on each leaf that maps part of it (present, or hidden: the bits
  // travel with the frame), accessed on every table entry above. Pages
  // without a leaf are left alone (memory that appears there later starts
  // dirty: EditOptions::new_leaves_dirty). Returns how many 4 KiB pages of
  // the range lay under a leaf.
  std::uint64_t mark_written(Gva va, std::uint64_t size) const noexcept;

  // Calls `visit(page start, size, leaf)` for every leaf (present or hidden)
  // with dirty set that overlaps [va, va + size), in address order, after
  // cleaning it when options.clean. Adds what it read to *counts if given.
  void scan_dirty(Gva va, std::uint64_t size, DirtyScanOptions options, LeafVisitor visit,
                  DirtyScanCounts* counts = nullptr) const noexcept;

  // Keep tables that unmap() empties, linked in place. A tree that other
  // vCPUs walk concurrently cannot hand a table back for reuse before every
  // vCPU has flushed its paging-structure caches; keeping empty tables
  // bounds the tree by the address range ever mapped instead, and the next
  // mapping there reuses them.
  void set_keep_empty_tables(bool keep) noexcept { keep_empty_tables_ = keep; }

  // Releases every table of the tree, root included. The object is empty
  // afterwards (root() is Gpa(0); edits fail).
  void destroy() noexcept;

 private:
  struct Edit;

  PageTable(TableMemory& memory, PagingFeatures features, TablePage root) noexcept
      : memory_(&memory), features_(features), root_(root) {}

  Status check_range(Gva va, std::uint64_t size) const noexcept;
  Status apply(Gva va, std::uint64_t size, const Edit& edit) noexcept;
  Status edit_table(PageTableEntry* table, unsigned level, std::uint64_t va, std::uint64_t end,
                    const Edit& edit) noexcept;
  Status edit_entry(PageTableEntry* e, unsigned level, std::uint64_t base, std::uint64_t va,
                    std::uint64_t end, const Edit& edit) noexcept;
  Status edit_below(PageTableEntry* e, PageTableEntry old, unsigned level, std::uint64_t va,
                    std::uint64_t end, const Edit& edit) noexcept;
  Status edit_detached(PageTableEntry* e, PageTableEntry old, unsigned level, std::uint64_t va,
                       std::uint64_t end, const Edit& edit) noexcept;
  bool can_map_leaf(unsigned level, std::uint64_t base, const Edit& edit) const noexcept;
  void protect_leaf(PageTableEntry* e, unsigned level, const Edit& edit) noexcept;
  Status clone_table(const PageTableEntry* from, PageTableEntry* to, unsigned level, CloneKind kind) const noexcept;
  // The table that entry `e` (holding `old`, a link at `level`) links,
  // made this tree's own first when other entries link it too.
  Result<PageTableEntry*> own_table(PageTableEntry* e, PageTableEntry old, unsigned level) noexcept;
  std::uint64_t count_own(const PageTableEntry* table, unsigned level) const noexcept;

  Result<TablePage> allocate_table() const noexcept;
  // One more entry links the table that `link` (an entry at `level`) links.
  void add_link(PageTableEntry link, unsigned level) const noexcept;
  // `old` was an entry at `level` and has just been overwritten: one link
  // fewer to the table it linked, which goes (with what it alone links)
  // when that was the last.
  void release_subtree(PageTableEntry old, unsigned level) const noexcept;
  void drop_table(Gpa gpa, unsigned level) const noexcept;
  void release_tree(TablePage table, unsigned level) const noexcept;
  void visit_leaves(Gva va, std::uint64_t size, bool hidden, LeafVisitor& visit) const noexcept;
  void walk(const PageTableEntry* table, unsigned level, std::uint64_t va, std::uint64_t end, bool hidden,
            LeafVisitor& visit) const noexcept;
  std::uint64_t mark_in(PageTableEntry* table, unsigned level, std::uint64_t va, std::uint64_t end) const noexcept;
  void scan_in(PageTableEntry* table, unsigned level, std::uint64_t va, std::uint64_t end, DirtyScanOptions options,
               LeafVisitor& visit, DirtyScanCounts& counts) const noexcept;
  static void scan_leaf_table(PageTableEntry* table, std::uint64_t va, std::uint64_t end, DirtyScanOptions options,
                              LeafVisitor& visit, DirtyScanCounts& counts) noexcept;

  TableMemory* memory_;
  PagingFeatures features_;
  TablePage root_;
  bool keep_empty_tables_ = false;
};

}  // namespace dunk::arch
