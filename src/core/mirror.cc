#include "core/mirror.h"

#include <fcntl.h>
#include <sys/syscall.h>

#include <algorithm>

#include "base/proc_maps.h"
#include "base/syscall.h"

namespace dunk::core {
namespace {

constexpr std::uint64_t kPage = 4096;

arch::PageAttributes attributes_for(int prot, Owner owner) noexcept {
  return arch::PageAttributes{
      .writable = (prot & PROT_WRITE) != 0,
      .user = false,  // ring 3 reaches only what the program opens to it
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
  table_.emplace(std::move(table));
  // All of the arena, committed or not, as supervisor read/write data: its
  // structures are reached by linear address (GDT, TSS, IDT, vCPU areas),
  // and an uncommitted part is as inaccessible to the guest as to the host.
  DUNK_TRY(set_locked(arena.base(), arena.end(), PROT_READ | PROT_WRITE, Owner::kDunk));

  long fd = sys::call(SYS_memfd_create, reinterpret_cast<long>("dunk-probe"), MFD_CLOEXEC);
  if (sys::failed(fd)) return errno_error("memfd_create(dunk-probe) failed", fd);
  probe_fd_ = static_cast<int>(fd);
  return {};
}

Result<arch::TablePage> Mirror::allocate() noexcept {
  DUNK_ASSIGN_OR_RETURN(std::byte* page, arena_->allocate_page());
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

Status Mirror::set(Hva start, Hva end, int prot) noexcept {
  LockGuard hold(lock_);
  return set_locked(start, end, prot, Owner::kHost);
}

Status Mirror::set_locked(Hva start, Hva end, int prot, Owner owner) noexcept {
  start = start.align_down(kPage);
  end = end.align_up(kPage);
  if (end.value() > kUserSpaceEnd) end = Hva(kUserSpaceEnd);
  if (start >= end) return {};
  if (prot == PROT_NONE) return table_->unmap(identity_gva(start), end - start);

  const std::uint64_t chunk = gpa_->chunk_size();
  for (Hva piece = start; piece < end;) {
    Hva piece_end = std::min(end, piece.align_down(chunk) + chunk);
    DUNK_TRY(ensure_chunk(piece));
    Gpa gpa = *gpa_->translate(piece);
    DUNK_TRY(table_->map(identity_gva(piece), gpa, piece_end - piece, attributes_for(prot, owner)));
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
  auto t = table_->lookup(identity_gva(address));
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

bool Mirror::resolve_fault(Hva address, bool write, bool fetch) noexcept {
  LockGuard hold(lock_);
  if (arena_->contains(address)) return false;
  // A TLB entry older than the current mapping: the page tables already
  // allow the access, and the fault itself evicted the stale entry (SDM vol.
  // 3A §4.10.4.1, "Operations that Invalidate TLBs and Paging-Structure
  // Caches": a page fault invalidates the faulting address's entries).
  if (auto prot = protection(address)) {
    bool ok = (!write || (*prot & PROT_WRITE) != 0) && (!fetch || (*prot & PROT_EXEC) != 0);
    if (ok) return true;
  }
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
  return true;
}

}  // namespace dunk::core
