#include "core/mirror.h"

#include <fcntl.h>
#include <sys/syscall.h>

#include <algorithm>

#include "base/fd_placement.h"
#include "base/proc_maps.h"
#include "base/syscall.h"

namespace dunk::core {
namespace {

constexpr std::uint64_t kPage = arch::kPageSize4K;

// Ring 3 reaches only what the program opens to it, unless the whole mirror
// of host memory is to be its (MirrorConfig::user_mirror); never dunk's own.
arch::PageAttributes attributes_for(int prot, Owner owner, bool user_mirror) noexcept {
  return arch::PageAttributes{
      .writable = (prot & PROT_WRITE) != 0,
      .user = user_mirror && owner == Owner::kHost,
      .executable = (prot & PROT_EXEC) != 0,
      .software = static_cast<std::uint8_t>(owner),
  };
}

int prot_of(const MapEntry& entry) noexcept {
  int prot = PROT_NONE;
  if (entry.read) prot |= PROT_READ;
  if (entry.write) prot |= PROT_WRITE;
  if (entry.exec) prot |= PROT_EXEC;
  return prot;
}

}  // namespace

Status Mirror::init(kvm::Vm& vm, Arena& arena, const MirrorConfig& config) noexcept {
  vm_ = &vm;
  arena_ = &arena;
  config_ = config;

  const std::uint64_t entries = GpaSpace::directory_entries(config.gpa.chunk_shift);
  const std::uint64_t reverse = GpaSpace::reverse_entries(config.gpa);
  DUNK_ASSIGN_OR_RETURN(std::byte* dir, arena.allocate(entries * sizeof(std::uint32_t)));
  DUNK_ASSIGN_OR_RETURN(std::byte* rev, arena.allocate(reverse * sizeof(std::uint32_t)));
  GpaSpaceStorage storage{{reinterpret_cast<std::uint32_t*>(dir), entries},
                          {reinterpret_cast<std::uint32_t*>(rev), reverse}};
  DUNK_ASSIGN_OR_RETURN(GpaSpace space, GpaSpace::create(config.gpa, storage));
  gpa_.emplace(std::move(space));

  // The arena first: page tables are allocated there and need GPAs.
  if (arena.base().value() % gpa_->chunk_size() != 0 || Arena::kSize > gpa_->chunk_size()) {
    return Error{"dunk arena does not fit one GPA chunk", EINVAL};
  }
  DUNK_TRY(ensure_chunk(arena.base()));
  arena_gpa_ = gpa_->translate(arena.base())->value();

  DUNK_ASSIGN_OR_RETURN(arch::PageTable table, arch::PageTable::create(*this, config.paging));
  table.set_keep_empty_tables(true);  // see release() below
  root_gpa_ = table.root().value();
  trees_[0].emplace(std::move(table));
  // All of the arena, committed or not, as supervisor read/write data: its
  // structures are reached by linear address (GDT, TSS, IDT, vCPU areas),
  // and an uncommitted part is as inaccessible to the guest as to the host.
  DUNK_TRY(set_locked(arena.base(), arena.end(), PROT_READ | PROT_WRITE, Owner::kDunk));

  long fd = sys::call(SYS_memfd_create, reinterpret_cast<long>("dunk-probe"), MFD_CLOEXEC);
  if (sys::failed(fd)) return errno_error("memfd_create(dunk-probe) failed", fd);
  probe_fd_ = move_out_of_program_range(static_cast<int>(fd));
  return {};
}

Result<arch::TablePage> Mirror::allocate() noexcept {
  DUNK_ASSIGN_OR_RETURN(std::byte* page, reserve_only_ ? arena_->take_free_page() : arena_->allocate_page());
  ++tables_allocated_;
  // Tables are reachable from the guest too (the whole arena is mapped), so
  // the program can edit its page tables with plain stores.
  Gpa gpa(arena_gpa_ + (hva_of(page) - arena_->base()));
  return arch::TablePage{reinterpret_cast<arch::PageTableEntry*>(page), gpa};
}

void Mirror::release(arch::TablePage) noexcept {
  // Another vCPU may still hold the table in its paging-structure caches
  // until its TLB is flushed; reusing it now could make that vCPU walk
  // garbage. Empty tables stay linked (set_keep_empty_tables), so a table
  // is released only when a large page replaces it: rare, and not recycled.
}

arch::PageTableEntry* Mirror::table_at(Gpa gpa) noexcept {
  std::uint64_t offset = gpa.value() - arena_gpa_;
  if (gpa.value() < arena_gpa_ || offset >= Arena::kSize) return nullptr;
  return (arena_->base() + offset).as_ptr<arch::PageTableEntry>();
}

Status Mirror::ensure_chunk(Hva address) noexcept {
  bool created = false;
  DUNK_ASSIGN_OR_RETURN(ChunkAssignment chunk, gpa_->assign(address, &created));
  if (!created) return {};
  Status slot = vm_->set_memory_region(chunk.slot, chunk.guest, chunk.size, chunk.host);
  if (!slot) {
    gpa_->release(address);
    return slot;
  }
  return {};
}

std::optional<Gpa> Mirror::translate(Hva address) const noexcept { return gpa_->translate(address); }

Result<Gpa> Mirror::assign(Hva address) noexcept {
  LockGuard hold(lock_);
  DUNK_TRY(ensure_chunk(address));
  return *gpa_->translate(address);
}

Status Mirror::set(Hva start, Hva end, int prot) noexcept {
  LockGuard hold(lock_);
  // dunk's arena keeps the mapping init() gave it (its pages are committed
  // with mprotect, which passes through the monitor when guest code does it).
  if (start < arena_->end() && arena_->base() < end) {
    DUNK_TRY(set_locked(start, std::min(end, arena_->base()), prot, Owner::kHost));
    return set_locked(std::max(start, arena_->end()), end, prot, Owner::kHost);
  }
  return set_locked(start, end, prot, Owner::kHost);
}

Status Mirror::set_locked(Hva start, Hva end, int prot, Owner owner) noexcept {
  if (start >= end) return {};
  generation_.fetch_add(1, std::memory_order_acq_rel);
  for (std::optional<arch::PageTable>& tree : trees_) {
    if (tree) DUNK_TRY(set_tree(*tree, start, end, prot, owner));
  }
  return {};
}

Status Mirror::set_tree(arch::PageTable& tree, Hva start, Hva end, int prot, Owner owner) noexcept {
  start = start.align_down(kPage);
  end = end.align_up(kPage);
  if (end.value() > kUserSpaceEnd) end = Hva(kUserSpaceEnd);
  if (start >= end) return {};
  // New memory starts dirty (dirty tracking, core/dirty.h).
  const arch::EditOptions keep{.keep_software = user_edits_ ? static_cast<int>(Owner::kUser) : -1,
                               .new_leaves_dirty = true};
  if (prot == PROT_NONE) return tree.unmap(identity_gva(start), end - start, arch::PageTableEntry(), keep);

  const std::uint64_t chunk = gpa_->chunk_size();
  for (Hva piece = start; piece < end;) {
    Hva piece_end = std::min(end, piece.align_down(chunk) + chunk);
    DUNK_TRY(ensure_chunk(piece));
    Gpa gpa = *gpa_->translate(piece);
    DUNK_TRY(tree.map(identity_gva(piece), gpa, piece_end - piece, attributes_for(prot, owner, config_.user_mirror),
                      config_.largest, keep));
    piece = piece_end;
  }
  return {};
}

Status Mirror::sync(Hva start, Hva end) noexcept {
  LockGuard hold(lock_);
  return sync_locked(start, end);
}

Status Mirror::sync_locked(Hva start, Hva end) noexcept {
  MapsReader reader(maps_buffer_, sizeof maps_buffer_);
  DUNK_TRY(reader.open());
  Hva cursor = start;
  MapEntry entry;
  while (reader.next(entry) && cursor < end) {
    if (entry.end <= cursor) continue;
    if (entry.start >= end) break;
    Hva lo = std::max(entry.start, cursor);
    Hva hi = std::min(entry.end, end);
    if (lo > cursor) DUNK_TRY(set_locked(cursor, lo, PROT_NONE, Owner::kHost));  // a hole
    // dunk's arena keeps the mapping init() gave it, whatever the host's view.
    if (!arena_->contains(lo)) DUNK_TRY(set_locked(lo, hi, prot_of(entry), Owner::kHost));
    cursor = hi;
  }
  DUNK_TRY(reader.status());
  if (cursor < end && !arena_->contains(cursor)) DUNK_TRY(set_locked(cursor, end, PROT_NONE, Owner::kHost));
  return {};
}

std::optional<int> Mirror::protection(Hva address) noexcept { return protection_in(*trees_[0], address); }

std::optional<int> Mirror::protection_in(arch::PageTable& tree, Hva address) noexcept {
  auto t = tree.lookup(identity_gva(address));
  if (!t) return std::nullopt;
  int prot = PROT_READ;
  if (t->attrs.writable) prot |= PROT_WRITE;
  if (t->attrs.executable) prot |= PROT_EXEC;
  return prot;
}

bool Mirror::host_allows(Hva address, bool write, bool fetch) noexcept {
  // Reading one byte through the kernel faults the page in as a user access
  // would: a stack below its current bottom grows; an unmapped address fails
  // with EFAULT, with no signal.
  long ret = sys::call(SYS_pwrite64, probe_fd_, static_cast<long>(address.value()), 1, 0);
  if (ret != 1) return false;
  // The page is there; its protection decides.
  Hva page = address.align_down(kPage);
  if (sync_locked(page, page + kPage).ok() == false) return false;
  auto prot = protection(address);
  if (!prot) return false;
  if (write && (*prot & PROT_WRITE) == 0) return false;
  if (fetch && (*prot & PROT_EXEC) == 0) return false;
  return true;
}

bool Mirror::resolve_fault(Hva address, bool write, bool fetch, Gpa root) noexcept {
  LockGuard hold(lock_);
  if (arena_->contains(address)) return false;
  arch::PageTable& tree = *trees_[tree_of_root(root).value_or(0)];
  auto allowed = [&] {
    auto prot = protection_in(tree, address);
    return prot && (!write || (*prot & PROT_WRITE) != 0) && (!fetch || (*prot & PROT_EXEC) != 0);
  };
  // A TLB entry older than the current mapping: the page tables already
  // allow the access, and the fault itself evicted the stale entry (SDM vol.
  // 3A §4.10.4.1, "Operations that Invalidate TLBs and Paging-Structure
  // Caches": a page fault invalidates the faulting address's entries).
  if (allowed()) return true;
  // What the program set is the program's: the fault is its answer.
  if (owned_by_program(tree, address)) return false;
  if (!host_allows(address, write, fetch)) return false;
  // Mirror the whole mapping the address belongs to, so that a growing
  // stack or a foreign mapping costs one fault, not one per page.
  Hva page = address.align_down(kPage);
  MapsReader reader(maps_buffer_, sizeof maps_buffer_);
  if (!reader.open().ok()) return true;
  MapEntry entry;
  while (reader.next(entry)) {
    if (entry.start <= page && page < entry.end) {
      (void)set_locked(entry.start, entry.end, prot_of(entry), Owner::kHost);
      break;
    }
  }
  return allowed();
}

// --- the privileged API's side ---------------------------------------------

bool Mirror::owned_by_program(arch::PageTable& tree, Hva address) noexcept {
  auto ref = tree.find(identity_gva(address));
  if (!ref) return false;
  const arch::PageTableEntry e = arch::load_entry(ref->entry);
  return e.raw() != 0 && e.software() == static_cast<std::uint8_t>(Owner::kUser) &&
         (e.present() ? e.is_leaf(ref->level) : true);
}

bool Mirror::program_owned(Hva address, Gpa root) noexcept {
  LockGuard hold(lock_);
  return owned_by_program(*trees_[tree_of_root(root).value_or(0)], address);
}

arch::PageTable* Mirror::tree(unsigned id) noexcept {
  return id < kMaxTrees && trees_[id] ? &*trees_[id] : nullptr;
}

std::optional<unsigned> Mirror::tree_of_root(Gpa root) noexcept {
  if (root.value() == 0) return 0u;
  for (unsigned id = 0; id < kMaxTrees; ++id) {
    if (trees_[id] && trees_[id]->root() == root) return id;
  }
  return std::nullopt;
}

Status Mirror::stock_tables(std::uint64_t size) noexcept {
  // Mapping `size` bytes with 4 KiB pages needs a table per 2 MiB, per GiB
  // and per 512 GiB it touches, plus the splits at both edges, in every
  // tree the edit reaches.
  const std::uint64_t tables = size / arch::kPageSize2M + size / arch::kPageSize1G + 16;
  return arena_->stock_pages(tables > 4096 ? 4096 : tables);
}

namespace {
// The lock, and tables from the arena's reserve only, for an edit made by
// guest code (see Arena::take_free_page).
class UserEdit {
 public:
  UserEdit(Lock& lock, bool& reserve_only, bool& user_edits) noexcept
      : hold_(lock), reserve_only_(reserve_only) {
    reserve_only_ = true;
    user_edits = true;
  }
  ~UserEdit() { reserve_only_ = false; }

 private:
  LockGuard hold_;
  bool& reserve_only_;
};
}  // namespace

Result<unsigned> Mirror::clone_tree(unsigned from, bool share_leaf_tables) noexcept {
  // A copy needs at most as many tables as the mirror ever allocated.
  DUNK_TRY(arena_->stock_pages(tables_allocated_ + 16));
  UserEdit edit(lock_, reserve_only_, user_edits_);
  if (tree(from) == nullptr) return Error{"no such address space to clone", EINVAL};
  unsigned id = 1;
  while (id < kMaxTrees && trees_[id]) ++id;
  if (id == kMaxTrees) return Error{"too many address spaces (dunk keeps at most 64 current)", ENOSPC};
  DUNK_ASSIGN_OR_RETURN(arch::PageTable copy, trees_[from]->clone(share_leaf_tables));
  copy.set_keep_empty_tables(true);
  trees_[id].emplace(std::move(copy));
  return id;
}

Status Mirror::destroy_tree(unsigned id) noexcept {
  LockGuard hold(lock_);
  if (id == 0) return Error{"the process's own address space cannot be freed", EINVAL};
  if (tree(id) == nullptr) return Error{"no such address space", EINVAL};
  trees_[id]->destroy();
  trees_[id].reset();
  return {};
}

Status Mirror::check_user_range(unsigned id, Gva va, std::uint64_t size) noexcept {
  if (tree(id) == nullptr) return Error{"no such address space", EINVAL};
  const Hva start = identity_hva(va);
  if (start < arena_->end() && arena_->base() < start + size) {
    return Error{"the range overlaps dunk's own memory (page tables, vCPU areas, IDT), which the program may not remap",
                 EPERM};
  }
  return {};
}


Status Mirror::user_map(unsigned id, Gva va, Hva memory, std::uint64_t size, arch::PageAttributes attrs,
                        arch::PageSize largest) noexcept {
  DUNK_TRY(stock_tables(size));
  UserEdit edit(lock_, reserve_only_, user_edits_);
  DUNK_TRY(check_user_range(id, va, size));
  attrs.software = static_cast<std::uint8_t>(Owner::kUser);
  const std::uint64_t chunk = gpa_->chunk_size();
  for (std::uint64_t done = 0; done < size;) {
    const Hva piece = memory + done;
    const std::uint64_t n = std::min(size - done, piece.align_down(chunk) + chunk - piece);
    DUNK_TRY(ensure_chunk(piece));
    DUNK_TRY(trees_[id]->map(va + done, *gpa_->translate(piece), n, attrs, largest));
    done += n;
  }
  return {};
}

Status Mirror::user_unmap(unsigned id, Gva va, std::uint64_t size) noexcept {
  DUNK_TRY(stock_tables(0));
  UserEdit edit(lock_, reserve_only_, user_edits_);
  DUNK_TRY(check_user_range(id, va, size));
  return trees_[id]->unmap(va, size, arch::PageTableEntry::marker(static_cast<std::uint8_t>(Owner::kUser)));
}

Status Mirror::user_protect(unsigned id, Gva va, std::uint64_t size, arch::PageAttributes attrs,
                            bool present) noexcept {
  DUNK_TRY(stock_tables(0));
  UserEdit edit(lock_, reserve_only_, user_edits_);
  DUNK_TRY(check_user_range(id, va, size));
  if (!present) return trees_[id]->hide(va, size, static_cast<std::uint8_t>(Owner::kUser));
  attrs.software = static_cast<std::uint8_t>(Owner::kUser);
  return trees_[id]->protect(va, size, attrs);
}

Status Mirror::split_host_pages(Hva start, std::uint64_t size) noexcept {
  DUNK_TRY(stock_tables(size));
  UserEdit edit(lock_, reserve_only_, user_edits_);
  for (std::optional<arch::PageTable>& tree : trees_) {
    if (!tree) continue;
    // Collect first, edit after: the walk must not see its own splits.
    struct Large {
      Gva va;
      Gpa pa;
      std::uint64_t size;
      arch::PageAttributes attrs;
    } large[64];
    for (;;) {
      unsigned n = 0;
      tree->for_each_leaf(identity_gva(start), size, [&](Gva va, arch::PageSize s, arch::PageTableEntry& e) {
        const arch::PageTableEntry v = arch::load_entry(&e);
        if (s == arch::PageSize::k4K || v.software() != static_cast<std::uint8_t>(Owner::kHost) || n == 64) return;
        large[n++] = {va, v.page_address(s), arch::page_bytes(s), v.attributes()};
      });
      if (n == 0) break;
      for (unsigned i = 0; i < n; ++i) {
        DUNK_TRY(tree->map(large[i].va, large[i].pa, large[i].size, large[i].attrs, arch::PageSize::k4K,
                           arch::EditOptions{.new_leaves_dirty = true}));
      }
    }
  }
  return {};
}

Status Mirror::begin_raw_edit(std::uint64_t size) noexcept {
  DUNK_TRY(stock_tables(size));
  lock_.lock();
  reserve_only_ = true;
  user_edits_ = true;
  return {};
}

void Mirror::end_raw_edit() noexcept {
  reserve_only_ = false;
  lock_.unlock();
}

Result<arch::EntryRef> Mirror::raw_slot(unsigned id, Gva va, unsigned level, bool create) noexcept {
  DUNK_TRY(check_user_range(id, va.align_down(kPage), kPage));
  return trees_[id]->slot(va, level, create);
}

void Mirror::raw_store(arch::PageTableEntry* entry, arch::PageTableEntry value) noexcept {
  arch::store_entry(entry, value.set_software(static_cast<std::uint8_t>(Owner::kUser)));
}

Status Mirror::user_release(unsigned id, Gva va, std::uint64_t size) noexcept {
  DUNK_TRY(stock_tables(size));
  UserEdit edit(lock_, reserve_only_, user_edits_);
  DUNK_TRY(check_user_range(id, va, size));
  DUNK_TRY(trees_[id]->unmap(va, size));
  // Mirrored from the host again (in every tree; the others' kUser entries stay).
  return sync_locked(identity_hva(va), identity_hva(va) + size);
}

}  // namespace dunk::core
