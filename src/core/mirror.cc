#include "core/mirror.h"

#include <fcntl.h>
#include <sys/syscall.h>

#include <algorithm>
#include <utility>

#include "arch/x86_64/vectors.h"
#include "base/fd_placement.h"
#include "base/proc_maps.h"
#include "base/syscall.h"
#include "guest/abi.h"
#include "guest/dispatch.h"

// The bounds of the ELF image dunk is linked into (the program, or the
// preload library), defined by the linker for the image that references
// them.
extern "C" const char __ehdr_start[] __attribute__((visibility("hidden")));
extern "C" const char _end[] __attribute__((visibility("hidden")));

namespace dunk::core {
namespace {

constexpr std::uint64_t kPage = arch::kPageSize4K;

// Ring 3 reaches only what the program opens to it, the user ranges
// (set_user_ranges), and the whole mirror of host memory when it is to be
// its (MirrorConfig::user_mirror); never dunk's own.
arch::PageAttributes attributes_for(int prot, Owner owner, bool user_range, bool user_mirror) noexcept {
  return arch::PageAttributes{
      .writable = (prot & PROT_WRITE) != 0,
      .user = user_range || (user_mirror && owner == Owner::kHost),
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

Status Mirror::init(MemorySlots& slots, Arena& arena, const MirrorConfig& config) noexcept {
  slots_ = &slots;
  arena_ = &arena;
  config_ = config;

  const std::uint64_t entries = GpaSpace::directory_entries(config.gpa.chunk_shift);
  const std::uint64_t reverse = GpaSpace::reverse_entries(config.gpa);
  DUNK_ASSIGN_OR_RETURN(std::byte* dir, arena.allocate(entries * sizeof(std::uint32_t)));
  DUNK_ASSIGN_OR_RETURN(std::byte* rev, arena.allocate(reverse * sizeof(std::uint32_t)));
  DUNK_ASSIGN_OR_RETURN(std::byte* marks, arena.allocate(reverse));
  GpaSpaceStorage storage{{reinterpret_cast<std::uint32_t*>(dir), entries},
                          {reinterpret_cast<std::uint32_t*>(rev), reverse},
                          {reinterpret_cast<std::uint8_t*>(marks), reverse}};
  DUNK_ASSIGN_OR_RETURN(GpaSpace space, GpaSpace::create(config.gpa, storage));
  gpa_.emplace(std::move(space));

  // The arena first: page tables are allocated there and need GPAs.
  if (arena.base().value() % gpa_->chunk_size() != 0 || Arena::kSize > gpa_->chunk_size()) {
    return Error{"dunk arena does not fit one GPA chunk", EINVAL};
  }
  DUNK_TRY(make_resident(arena.base()));
  gpa_->pin(arena.base());
  arena_gpa_ = gpa_->translate(arena.base())->value();

  // What links each table (sharing between trees), before the first table.
  constexpr std::uint64_t kArenaPages = Arena::kSize / Arena::kPage;
  DUNK_ASSIGN_OR_RETURN(std::byte* links, arena.allocate(kArenaPages * sizeof(std::uint32_t)));
  DUNK_ASSIGN_OR_RETURN(std::byte* unlinked, arena.allocate(kArenaPages));
  table_links_ = reinterpret_cast<std::uint32_t*>(links);
  table_unlinked_live_ = reinterpret_cast<std::uint8_t*>(unlinked);
  DUNK_ASSIGN_OR_RETURN(arch::PageTable table, arch::PageTable::create(*this, config.paging));
  table.set_keep_empty_tables(true);  // see release() below
  root_gpa_ = table.root().value();
  trees_[0].emplace(std::move(table));
  // All of the arena, committed or not, as supervisor read/write data: its
  // structures are reached by linear address (GDT, TSS, IDT, vCPU areas),
  // and an uncommitted part is as inaccessible to the guest as to the host.
  DUNK_TRY(set_locked(arena.base(), arena.end(), PROT_READ | PROT_WRITE, Owner::kDunk));
  // dunk's ring-0 entry code runs with no fault allowed (a fault there is
  // fatal, and the IDT stubs are what a fault would run), and reads data of
  // dunk's image (the shootdown generation, the trap handler table): the
  // chunks of the whole image stay resident.
  DUNK_TRY(pin_range(Hva(reinterpret_cast<std::uint64_t>(__ehdr_start)),
                     Hva(reinterpret_cast<std::uint64_t>(_end))));
  // A program that handles page faults itself would see first touches.
  if (guest::dunk_trap_handlers[static_cast<unsigned>(arch::Vector::kPageFault)] != nullptr) {
    eager_.store(true, std::memory_order_release);
  }

  return renew_probe();
}

Status Mirror::renew_probe() noexcept {
  long fd = sys::call(SYS_memfd_create, reinterpret_cast<long>("dunk-probe"), MFD_CLOEXEC);
  if (sys::failed(fd)) return errno_error("memfd_create(dunk-probe) failed", fd);
  probe_fd_ = move_out_of_program_range(static_cast<int>(fd));
  return {};
}

Status Mirror::adopt_after_fork(MemorySlots& slots) noexcept {
  lock_.reset_after_fork();
  slots_ = &slots;
  reserve_only_ = false;
  if (!gpa_) return Error{"the mirror to adopt after fork was never set up", EINVAL};
  const bool keep_all = eager_.load(std::memory_order_relaxed);
  Status status;
  gpa_->for_each_assignment([&](const ChunkAssignment& chunk) {
    if (!status) return;
    if (keep_all || gpa_->pinned(chunk.host)) {
      status = install(chunk);
      return;
    }
    // Leaves present in the copy would lead the child's vCPU to a
    // guest-physical address without a slot: out of service until touched.
    status = hide_chunk(chunk);
    if (status) gpa_->release(chunk.host);
  });
  generation_.fetch_add(1, std::memory_order_acq_rel);
  return status;
}

Result<arch::TablePage> Mirror::allocate() noexcept {
  DUNK_ASSIGN_OR_RETURN(std::byte* page, reserve_only_ ? arena_->take_free_page() : arena_->allocate_page());
  ++tables_allocated_;
  // Tables are reachable from the guest too (the whole arena is mapped), so
  // the program can edit its page tables with plain stores.
  Gpa gpa(arena_gpa_ + (hva_of(page) - arena_->base()));
  const std::uint64_t index = (hva_of(page) - arena_->base()) / Arena::kPage;
  table_links_[index] = 1;
  table_unlinked_live_[index] = 0;
  return arch::TablePage{reinterpret_cast<arch::PageTableEntry*>(page), gpa};
}

void Mirror::release(arch::TablePage page) noexcept {
  // Another vCPU may still hold the table in its paging-structure caches
  // until its TLB is flushed; reusing it now could make that vCPU walk
  // garbage. So only the tables of a destroyed tree are reused (no vCPU
  // runs on it, see destroy_tree), and of those only the ones no live tree
  // ever stopped linking. Others — a table a large page replaced in a live
  // tree (empty tables stay linked: set_keep_empty_tables), or one a live
  // tree unshared — are dropped for good, and so is every table once the
  // program stores entries itself (it may have linked one we do not count).
  const auto index = arena_page(page.gpa);
  if (destroying_ && !raw_stores_ && index && table_unlinked_live_[*index] == 0) {
    arena_->free_page(reinterpret_cast<std::byte*>(page.entries));
    ++tables_freed_;
    return;
  }
  ++tables_dropped_;
}

std::optional<std::uint64_t> Mirror::arena_page(Gpa gpa) const noexcept {
  if (gpa.value() < arena_gpa_ || gpa.value() - arena_gpa_ >= Arena::kSize) return std::nullopt;
  return (gpa.value() - arena_gpa_) / Arena::kPage;
}

std::uint32_t* Mirror::links(Gpa gpa) noexcept {
  const auto index = arena_page(gpa);
  return index && table_links_ != nullptr ? &table_links_[*index] : nullptr;
}

void Mirror::unlinked(arch::TablePage page) noexcept {
  if (destroying_) return;  // the tree that let go is gone, and no vCPU ran on it
  if (const auto index = arena_page(page.gpa)) table_unlinked_live_[*index] = 1;
}

arch::PageTableEntry* Mirror::table_at(Gpa gpa) noexcept {
  std::uint64_t offset = gpa.value() - arena_gpa_;
  if (gpa.value() < arena_gpa_ || offset >= Arena::kSize) return nullptr;
  return (arena_->base() + offset).as_ptr<arch::PageTableEntry>();
}

std::optional<Gpa> Mirror::translate(Hva address) const noexcept { return gpa_->translate(address); }

std::optional<Hva> Mirror::host_of(Gpa address) noexcept {
  if (!gpa_) return std::nullopt;
  assign_eagerly();
  return gpa_->reverse(address);
}

// --- residency ---------------------------------------------------------------

Status Mirror::install(const ChunkAssignment& chunk) noexcept {
  return slots_->set_memory_region(chunk.slot, chunk.guest, chunk.size, chunk.host);
}

Result<ChunkAssignment> Mirror::take_chunk(Hva address, bool* created, FaultResolution* counts) noexcept {
  if (!gpa_->full() || gpa_->assignment(address)) return gpa_->assign(address, created);
  if (eager_.load(std::memory_order_relaxed)) {
    return Error{"guest-physical address space exhausted: the program uses the privileged paging API, so every "
                 "1 GiB region it maps keeps its guest-physical space",
                 ENOMEM};
  }
  auto victim = gpa_->choose_victim([this](Hva host) { return chunk_accessed(host); });
  if (!victim) return Error{"every guest-physical chunk is pinned: none can be reclaimed", ENOMEM};
  DUNK_TRY(evict(*victim));
  if (counts != nullptr) ++counts->chunks_reclaimed;
  return gpa_->assign(address, created);
}

Status Mirror::make_resident(Hva address, FaultResolution* counts) noexcept {
  bool created = false;
  DUNK_ASSIGN_OR_RETURN(ChunkAssignment chunk, take_chunk(address, &created, counts));
  if (created) {
    if (Status slot = install(chunk); !slot) {
      gpa_->release(address);
      return slot;
    }
    if (counts != nullptr) ++counts->chunks_assigned;
  }
  // What was mapped while the chunk had no GPA space (or lost it) comes
  // into service; not present before, so no TLB holds it.
  for (std::optional<arch::PageTable>& tree : live_trees()) {
    if (tree) tree->reveal(identity_gva(chunk.host), chunk.size, chunk.guest, static_cast<std::uint8_t>(Owner::kHost));
  }
  return {};
}

Status Mirror::hide_chunk(const ChunkAssignment& chunk) noexcept {
  // The program's own entries are not in a chunk that can be evicted (the
  // privileged API makes the mirror assign eagerly), but are kept anyway.
  const arch::EditOptions keep{.keep_software = static_cast<int>(Owner::kUser)};
  for (std::optional<arch::PageTable>& tree : live_trees()) {
    if (tree) DUNK_TRY(tree->hide(identity_gva(chunk.host), chunk.size, static_cast<std::uint8_t>(Owner::kHost), keep));
  }
  return {};
}

Status Mirror::evict(const ChunkAssignment& victim) noexcept {
  // Out of service in every tree first: from here a walk through any of
  // them faults, and the fault makes the chunk resident again.
  DUNK_TRY(hide_chunk(victim));
  // Deleting the slot is the TLB shootdown. KVM must guarantee that no vCPU
  // reaches a deleted slot's memory once this returns (the caller may unmap
  // it), so it drops its nested page tables and flushes every vCPU's TLB —
  // the guest's linear translations included, which end in the same host
  // pages: it kicks each vCPU running in the guest out with a host IPI and
  // waits for it, and flushes the others before their next entry
  // (arch/x86/kvm/mmu: kvm_mmu_zap_all_fast, kvm_mmu_load). That reaches
  // every vCPU wherever it is — in the guest with interrupts off, in ring 3,
  // in a blocking system call — with no signal (the program may block them
  // all) and no interrupt (dunk exec's VMs have none).
  DUNK_TRY(slots_->set_memory_region(victim.slot, victim.guest, 0, victim.host));
  gpa_->release(victim.host);
  ++chunks_reclaimed_;
  return {};
}

bool Mirror::chunk_accessed(Hva chunk) noexcept {
  // The entries one level above the chunk's pages cover it whole (for 1 GiB
  // chunks, one PDPT entry); the CPU sets their accessed bit on every walk
  // through them (SDM vol. 3A §4.8, "Accessed and Dirty Flags"). Walks
  // served from the TLB set nothing, so a busy chunk may look idle: the
  // clock then takes it and the next access faults it back in.
  unsigned level = arch::kPagingLevels;
  while (level > 1 && arch::level_span(level) > gpa_->chunk_size()) --level;
  const std::uint64_t step = arch::level_span(level);
  const unsigned index = arch::kPagingLevels - level;  // path() lists the top level first
  bool accessed = false;
  for (std::optional<arch::PageTable>& tree : live_trees()) {
    if (!tree) continue;
    for (std::uint64_t va = chunk.value(); va < chunk.value() + gpa_->chunk_size(); va += step) {
      arch::PageTableEntry* path[arch::kPagingLevels];
      if (tree->path(identity_gva(Hva(va)), path) <= index) continue;
      // Dirty tracking prunes its scans by the accessed bits of table
      // entries (arch::DirtyScanOptions::prune): a table entry keeps that it
      // was accessed in a bit of its own, so that a scan still descends.
      arch::PageTableEntry current = arch::load_entry(path[index]);
      const bool leaf = current.is_leaf(level);
      while (current.accessed() &&
             !arch::exchange_entry(path[index], current,
                                   leaf ? arch::PageTableEntry(current).set_accessed(false)
                                        : current.with_accessed_taken())) {
      }
      accessed |= current.accessed();
    }
  }
  return accessed;
}

Status Mirror::pin_range(Hva start, Hva end) noexcept {
  for (Hva chunk = gpa_->chunk_of(start); chunk < end; chunk = chunk + gpa_->chunk_size()) {
    DUNK_TRY(make_resident(chunk));
    gpa_->pin(chunk);
  }
  return {};
}

void Mirror::assign_eagerly() noexcept {
  if (eager_.load(std::memory_order_acquire) || !gpa_) return;
  // Guest code asks the monitor: the re-reading below runs under the lock
  // and calls into libc, whose chunk may not be resident yet, and the fault
  // of its first touch would wait for the lock this thread holds.
  if (running_in_guest()) {
    (void)sys::call(DUNK_SYSCALL_ASSIGN_EAGERLY);
    return;
  }
  // The privileged API calls this from guest code too, where a system call
  // made under the lock (an mprotect committing a table) would wait for the
  // monitor, which would wait for the lock: tables come from a reserve
  // committed first (see Arena::take_free_page).
  (void)arena_->stock_pages(kEagerTableReserve);
  LockGuard hold(lock_);
  const bool reserve_only = std::exchange(reserve_only_, true);
  (void)assign_eagerly_locked();
  reserve_only_ = reserve_only;
}

Status Mirror::assign_eagerly_locked() noexcept {
  if (eager_.load(std::memory_order_relaxed)) return {};
  // What was unmapped while no thread was in VM mode is still in the
  // tables, hidden: the host's view first, so that only chunks with memory
  // take GPA space.
  Status status = sync_locked(Hva(0), Hva(kUserSpaceEnd));
  eager_.store(true, std::memory_order_release);
  // Every chunk with hidden leaves, in any tree, becomes resident. A chunk
  // that finds no GPA space stays hidden; its accesses fault and fail.
  // (Revealing changes leaves only, never the tables the walk follows.)
  for (std::optional<arch::PageTable>& tree : live_trees()) {
    if (!tree) continue;
    std::optional<Hva> last;
    tree->for_each_hidden_leaf(Gva(0), kUserSpaceEnd, [&](Gva page, arch::PageSize, arch::PageTableEntry& e) {
      const Hva chunk = gpa_->chunk_of(identity_hva(page));
      if (arch::load_entry(&e).software() != static_cast<std::uint8_t>(Owner::kHost) || chunk == last) return;
      last = chunk;
      if (Status s = make_resident(chunk); !s && status) status = s;
    });
  }
  return status;
}

// --- keeping the tables current ------------------------------------------------

Result<Gpa> Mirror::assign(Hva address) noexcept {
  // The program is about to hold this guest-physical address (and store it
  // in entries of its own): from now on nothing it may have learnt moves.
  assign_eagerly();
  LockGuard hold(lock_);
  DUNK_TRY(make_resident(address));
  gpa_->pin(address);
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
  // In pieces that lie wholly inside one user range or outside all of them.
  for (Hva piece = start; piece < end;) {
    const UserRange* range = owner == Owner::kHost ? user_range_at(piece) : nullptr;
    const Hva piece_end = std::min(end, range != nullptr ? range->end : next_user_start(piece));
    const int piece_prot = range != nullptr ? (prot & range->max_prot) : prot;
    // One edit, tree after tree: a table it makes in one tree is linked by
    // the next where their entries held the same (arch::NewTables).
    arch::NewTables made;
    for (std::optional<arch::PageTable>& tree : live_trees()) {
      if (tree) DUNK_TRY(set_tree(*tree, piece, piece_end, piece_prot, owner, range != nullptr, &made));
    }
    piece = piece_end;
  }
  return {};
}

const UserRange* Mirror::user_range_at(Hva address) const noexcept {
  for (unsigned i = 0; i < user_range_count_; ++i) {
    if (user_ranges_[i].start <= address && address < user_ranges_[i].end) return &user_ranges_[i];
  }
  return nullptr;
}

Hva Mirror::next_user_start(Hva address) const noexcept {
  Hva next(kUserSpaceEnd);
  for (unsigned i = 0; i < user_range_count_; ++i) {
    if (user_ranges_[i].start > address) next = std::min(next, user_ranges_[i].start);
  }
  return next;
}

Status Mirror::set_user_ranges(std::span<const UserRange> ranges, bool resync) noexcept {
  if (ranges.size() > kMaxUserRanges) return Error{"too many user ranges", EINVAL};
  for (const UserRange& r : ranges) {
    if (r.start.value() % kPage != 0 || r.end.value() % kPage != 0 || r.start >= r.end ||
        r.end.value() > kUserSpaceEnd) {
      return Error{"a user range must be page-aligned and inside the user address space", EINVAL};
    }
    if (arena_ != nullptr && r.start < arena_->end() && arena_->base() < r.end) {
      return Error{"a user range overlaps dunk's arena", EINVAL};
    }
  }
  LockGuard hold(lock_);
  UserRange old[kMaxUserRanges];
  const unsigned old_count = user_range_count_;
  std::copy_n(user_ranges_, old_count, old);
  std::copy(ranges.begin(), ranges.end(), user_ranges_);
  user_range_count_ = static_cast<unsigned>(ranges.size());
  if (!resync || gpa_ == std::nullopt) return {};
  for (unsigned i = 0; i < old_count; ++i) DUNK_TRY(sync_locked(old[i].start, old[i].end));
  for (const UserRange& r : ranges) DUNK_TRY(sync_locked(r.start, r.end));
  return {};
}

Status Mirror::set_tree(arch::PageTable& tree, Hva start, Hva end, int prot, Owner owner, bool user,
                        arch::NewTables* made) noexcept {
  start = start.align_down(kPage);
  end = end.align_up(kPage);
  if (end.value() > kUserSpaceEnd) end = Hva(kUserSpaceEnd);
  if (start >= end) return {};
  // New memory starts dirty (dirty tracking, core/dirty.h).
  const arch::EditOptions keep{.keep_software = user_edits_ ? static_cast<int>(Owner::kUser) : -1,
                               .new_leaves_dirty = true,
                               .new_tables = made};
  if (prot == PROT_NONE) return tree.unmap(identity_gva(start), end - start, arch::PageTableEntry(), keep);

  const std::uint64_t chunk = gpa_->chunk_size();
  for (Hva piece = start; piece < end;) {
    const Hva base = piece.align_down(chunk);
    const Hva piece_end = std::min(end, base + chunk);
    // (A chunk resident already has nothing hidden to bring into service:
    // make_resident's walk of the chunk in every tree is for a new one.)
    if (eager_.load(std::memory_order_relaxed) && !gpa_->translate(piece)) DUNK_TRY(make_resident(piece));
    const arch::PageAttributes attrs = attributes_for(prot, owner, user, config_.user_mirror);
    if (std::optional<Gpa> gpa = gpa_->translate(piece)) {
      DUNK_TRY(tree.map(identity_gva(piece), *gpa, piece_end - piece, attrs, config_.largest, keep));
    } else {
      // No GPA space yet: known, not in service. The frame is the offset in
      // the chunk, so the pages get the sizes they will have once resident.
      arch::EditOptions hidden = keep;
      hidden.hidden = true;
      DUNK_TRY(tree.map(identity_gva(piece), Gpa(piece - base), piece_end - piece, attrs, config_.largest,
                        hidden));
    }
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

std::optional<int> Mirror::protection(Hva address) noexcept {
  LockGuard hold(lock_);
  return mirrored_protection(*trees_[0], address);
}

std::optional<int> Mirror::present_protection(arch::PageTable& tree, Hva address) noexcept {
  auto t = tree.lookup(identity_gva(address));
  if (!t) return std::nullopt;
  int prot = PROT_READ;
  if (t->attrs.writable) prot |= PROT_WRITE;
  if (t->attrs.executable) prot |= PROT_EXEC;
  return prot;
}

std::optional<int> Mirror::mirrored_protection(arch::PageTable& tree, Hva address) noexcept {
  if (auto prot = present_protection(tree, address)) return prot;
  // A hidden leaf of the monitor's: the mapping of a chunk not resident.
  // (Upper levels allow everything, so the leaf's own bits are the rights.)
  auto ref = tree.find(identity_gva(address));
  if (!ref) return std::nullopt;
  const arch::PageTableEntry e = arch::load_entry(ref->entry);
  if (!e.hidden() || !e.is_leaf(ref->level) || e.software() != static_cast<std::uint8_t>(Owner::kHost)) {
    return std::nullopt;
  }
  int prot = PROT_READ;
  if (e.writable()) prot |= PROT_WRITE;
  if (!config_.paging.nx || !e.execute_disable()) prot |= PROT_EXEC;
  return prot;
}

namespace {
bool allows(std::optional<int> prot, bool write, bool fetch) noexcept {
  return prot && (!write || (*prot & PROT_WRITE) != 0) && (!fetch || (*prot & PROT_EXEC) != 0);
}
}  // namespace

bool Mirror::mirror_from_host(Hva address) noexcept {
  // Reading one byte through the kernel faults the page in as a user access
  // would: a stack below its current bottom grows; an unmapped address fails
  // with EFAULT, with no signal.
  long ret = sys::call(SYS_pwrite64, probe_fd_, static_cast<long>(address.value()), 1, 0);
  if (ret != 1) return false;
  // Mirror the whole mapping the address belongs to, so that a growing
  // stack or a foreign mapping costs one fault, not one per page.
  const Hva page = address.align_down(kPage);
  MapsReader reader(maps_buffer_, sizeof maps_buffer_);
  if (!reader.open().ok()) return false;
  MapEntry entry;
  while (reader.next(entry) && entry.start <= page) {
    if (entry.contains(page)) return set_locked(entry.start, entry.end, prot_of(entry), Owner::kHost).ok();
  }
  return false;
}

FaultResolution Mirror::resolve_fault(Hva address, bool write, bool fetch, Gpa root) noexcept {
  LockGuard hold(lock_);
  FaultResolution r;
  if (arena_->contains(address)) return r;
  arch::PageTable& tree = *trees_[tree_of_root(root).value_or(0)];
  // A TLB entry older than the current mapping: the page tables already
  // allow the access, and the fault itself evicted the stale entry (SDM vol.
  // 3A §4.10.4.1, "Operations that Invalidate TLBs and Paging-Structure
  // Caches": a page fault invalidates the faulting address's entries).
  if (allows(present_protection(tree, address), write, fetch)) {
    r.resolved = true;
    return r;
  }
  // What the program set is the program's: the fault is its answer.
  if (owned_by_program(tree, address)) return r;
  // Not mirrored as allowed: ask the host (a stack growing, a mapping made
  // behind the monitor's back, or none: the program's fault).
  if (!allows(mirrored_protection(tree, address), write, fetch) &&
      (!mirror_from_host(address) || !allows(mirrored_protection(tree, address), write, fetch))) {
    return r;
  }
  // Mirrored and allowed: the first touch of a chunk without GPA space.
  if (!make_resident(address, &r).ok()) return r;
  r.resolved = allows(present_protection(tree, address), write, fetch);
  return r;
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
  // The program reads the tables: every mapped page must be there.
  assign_eagerly();
  return id < kMaxTrees && trees_[id] ? &*trees_[id] : nullptr;
}

std::optional<unsigned> Mirror::tree_of_root(Gpa root) noexcept {
  if (root.value() == 0) return 0u;
  for (unsigned id = 0; id < tree_end_; ++id) {
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
// The program's edits are its tree's alone: tables the tree shares with
// another (copy-on-write clones) are copied before they change.
constexpr arch::EditOptions kThisTreeOnly{.unshare = true};

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

Result<unsigned> Mirror::clone_tree(unsigned from, arch::CloneKind kind) noexcept {
  assign_eagerly();
  // A copy needs at most as many tables as are in use; a copy-on-write
  // clone, its root.
  DUNK_TRY(arena_->stock_pages(kind == arch::CloneKind::kCopyOnWrite ? 16 : tables_in_use() + 16));
  UserEdit edit(lock_, reserve_only_, user_edits_);
  if (tree(from) == nullptr) return Error{"no such address space to clone", EINVAL};
  unsigned id = 1;
  while (id < kMaxTrees && trees_[id]) ++id;
  if (id == kMaxTrees) return Error{"too many address spaces (dunk keeps at most 4096 current)", ENOSPC};
  DUNK_ASSIGN_OR_RETURN(arch::PageTable copy, trees_[from]->clone(kind));
  copy.set_keep_empty_tables(true);
  trees_[id].emplace(std::move(copy));
  tree_end_ = std::max(tree_end_, id + 1);
  return id;
}

Status Mirror::destroy_tree(unsigned id) noexcept {
  LockGuard hold(lock_);
  if (id == 0) return Error{"the process's own address space cannot be freed", EINVAL};
  if (tree(id) == nullptr) return Error{"no such address space", EINVAL};
  destroying_ = true;
  trees_[id]->destroy();
  destroying_ = false;
  trees_[id].reset();
  while (tree_end_ > 1 && !trees_[tree_end_ - 1]) --tree_end_;
  return {};
}

std::uint64_t Mirror::own_tables(unsigned id) noexcept {
  LockGuard hold(lock_);
  return id < tree_end_ && trees_[id] ? trees_[id]->own_tables() : 0;
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


template <class Edit>
Status Mirror::user_edit(std::uint64_t size, Edit edit) noexcept {
  // The stock is committed before the lock is taken (guest code may not
  // make a system call holding it), so an edit on another thread may take
  // it first, and this one runs dry part way. Every user edit can be made
  // again over its own partial result (it sets entries to what they must
  // be; the tables it created stay and are not needed again), so it is:
  // each attempt needs fewer new tables than the one before.
  constexpr int kAttempts = 8;
  for (int attempt = 1;; ++attempt) {
    DUNK_TRY(stock_tables(size));
    Status done = [&] {
      UserEdit hold(lock_, reserve_only_, user_edits_);
      return edit();
    }();
    if (done || done.error().what != Arena::kReserveEmpty || attempt == kAttempts) return done;
  }
}

Status Mirror::user_map(unsigned id, Gva va, Hva memory, std::uint64_t size, arch::PageAttributes attrs,
                        arch::PageSize largest) noexcept {
  assign_eagerly();
  attrs.software = static_cast<std::uint8_t>(Owner::kUser);
  return user_edit(size, [&]() -> Status {
    DUNK_TRY(check_user_range(id, va, size));
    const std::uint64_t chunk = gpa_->chunk_size();
    for (std::uint64_t done = 0; done < size;) {
      const Hva piece = memory + done;
      const std::uint64_t n = std::min(size - done, piece.align_down(chunk) + chunk - piece);
      // Resident already: nothing to reveal (make_resident walks the chunk in
      // every tree, thousands with sthreads' compartments).
      if (!gpa_->translate(piece)) DUNK_TRY(make_resident(piece));
      DUNK_TRY(trees_[id]->map(va + done, *gpa_->translate(piece), n, attrs, largest, kThisTreeOnly));
      done += n;
    }
    return {};
  });
}

Status Mirror::user_unmap(unsigned id, Gva va, std::uint64_t size) noexcept {
  assign_eagerly();
  return user_edit(0, [&]() -> Status {
    DUNK_TRY(check_user_range(id, va, size));
    return trees_[id]->unmap(va, size, arch::PageTableEntry::marker(static_cast<std::uint8_t>(Owner::kUser)),
                             kThisTreeOnly);
  });
}

Status Mirror::user_protect(unsigned id, Gva va, std::uint64_t size, arch::PageAttributes attrs,
                            bool present) noexcept {
  assign_eagerly();
  attrs.software = static_cast<std::uint8_t>(Owner::kUser);
  return user_edit(0, [&]() -> Status {
    DUNK_TRY(check_user_range(id, va, size));
    if (!present) return trees_[id]->hide(va, size, static_cast<std::uint8_t>(Owner::kUser), kThisTreeOnly);
    return trees_[id]->protect(va, size, attrs, kThisTreeOnly);
  });
}

Status Mirror::split_host_pages(Hva start, std::uint64_t size) noexcept {
  assign_eagerly();
  // Piece by piece, each tree on its own: stock_tables stocks at most 4096
  // tables (about 8 GiB of 1 GiB pages split to 4 KiB), and the edit may
  // only take what was stocked (guest code cannot commit arena pages while
  // it holds the lock).
  constexpr std::uint64_t kPiece = std::uint64_t{4} << 30;
  for (std::uint64_t done = 0; done < size; done += kPiece) {
    const Hva piece = start + done;
    const std::uint64_t n = std::min(size - done, kPiece);
    for (unsigned id = 0; id < tree_end_; ++id) {
      if (!trees_[id]) continue;
      DUNK_TRY(stock_tables(n));
      UserEdit edit(lock_, reserve_only_, user_edits_);
      if (trees_[id]) DUNK_TRY(split_in_tree(*trees_[id], piece, n));
    }
  }
  return {};
}

Status Mirror::begin_raw_edit(std::uint64_t size) noexcept {
  // Entries the program stores hold guest-physical addresses it took from
  // the mirror: they must keep their meaning.
  assign_eagerly();
  DUNK_TRY(stock_tables(size));
  lock_.lock();
  reserve_only_ = true;
  user_edits_ = true;
  raw_stores_ = true;
  return {};
}

void Mirror::end_raw_edit() noexcept {
  reserve_only_ = false;
  lock_.unlock();
}

Result<arch::EntryRef> Mirror::raw_slot(unsigned id, Gva va, unsigned level, bool create) noexcept {
  DUNK_TRY(check_user_range(id, va.align_down(kPage), kPage));
  // The program stores into the slot: this tree's alone.
  return trees_[id]->slot(va, level, create, /*unshare=*/true);
}

void Mirror::raw_store(arch::PageTableEntry* entry, arch::PageTableEntry value) noexcept {
  arch::store_entry(entry, value.set_software(static_cast<std::uint8_t>(Owner::kUser)));
}

Status Mirror::split_in_tree(arch::PageTable& tree, Hva start, std::uint64_t size) noexcept {
  // Collect first, edit after: the walk must not see its own splits.
  struct Large {
    Gva va;
    Gpa pa;
    std::uint64_t size;
    arch::PageAttributes attrs;
  } large[64];
  for (;;) {
    unsigned n = 0;
    tree.for_each_leaf(identity_gva(start), size, [&](Gva va, arch::PageSize s, arch::PageTableEntry& e) {
      const arch::PageTableEntry v = arch::load_entry(&e);
      if (s == arch::PageSize::k4K || v.software() != static_cast<std::uint8_t>(Owner::kHost) || n == 64) return;
      large[n++] = {va, v.page_address(s), arch::page_bytes(s), v.attributes()};
    });
    if (n == 0) return {};
    for (unsigned i = 0; i < n; ++i) {
      DUNK_TRY(tree.map(large[i].va, large[i].pa, large[i].size, large[i].attrs, arch::PageSize::k4K,
                        arch::EditOptions{.new_leaves_dirty = true}));
    }
  }
}

Status Mirror::user_release(unsigned id, Gva va, std::uint64_t size) noexcept {
  assign_eagerly();
  return user_edit(size, [&]() -> Status {
    DUNK_TRY(check_user_range(id, va, size));
    DUNK_TRY(trees_[id]->unmap(va, size, arch::PageTableEntry(), kThisTreeOnly));
    // Mirrored from the host again (in every tree; the others' kUser entries stay).
    return sync_locked(identity_hva(va), identity_hva(va) + size);
  });
}

}  // namespace dunk::core
