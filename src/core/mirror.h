// The address-space mirror: guest page tables that map every host virtual
// address of the process to itself, with the host's protections.
//
//   host VA ──(guest page tables: identity, host prot)──> guest VA = host VA
//   guest VA ──(page tables)──> GPA ──(KVM memory slot per chunk)──> host VA
//
// The guest page tables carry the protections (present / writable /
// executable) so that a bad access is a guest #PF with its exact address and
// error code rather than an EFAULT from KVM_RUN. The monitor keeps them
// current as mmap, munmap, mprotect, mremap, brk and friends pass through it,
// and resolves anything else lazily from /proc/self/maps when the guest
// faults.
//
// GPA space is assigned per chunk (GpaSpace) on first touch: a chunk of host
// address space becomes *resident* — a GPA chunk, a memory slot whose host
// range is the chunk itself, so that KVM follows the host's page tables for
// whatever is mapped there now or later — when the guest first faults in
// it. Until then the chunk's mappings are written as hidden leaves (not
// present, rights kept), so a mapping call never needs GPA space. When every
// GPA chunk is in use, the fault takes one back from a chunk not used
// lately: its leaves are hidden again in every tree and its slot deleted,
// which is also the TLB shootdown (see evict()). The process's address
// space may therefore be any size; only the chunks used at once must fit.
#pragma once

#include <sys/mman.h>

#include <atomic>
#include <cstdint>
#include <optional>
#include <span>

#include "arch/x86_64/page_table.h"
#include "core/address_space_mirror.h"
#include "base/lock.h"
#include "core/arena.h"
#include "core/gpa_space.h"
#include "dunk/address.h"
#include "dunk/result.h"

namespace dunk::core {

// What a page-table leaf's software bits say about who put it there.
//
// The rule between the monitor and the program (dunk/paging.h): an entry
// the program set through the privileged API — a leaf, a hidden leaf, or the
// marker an unmap leaves — carries kUser, and the monitor never changes it:
// mmap, munmap, mprotect and the lazy fault path skip it, in every tree.
// The program gets the range back with AddressSpace::release(). The other
// way round, the program may not edit kDunk entries (dunk's arena: page
// tables, vCPU areas, IDT, stacks), which the API refuses.
enum class Owner : std::uint8_t {
  kHost = 0,   // mirrors a host mapping
  kDunk = 1,   // dunk's own structures (areas, tables, IDT)
  kUser = 2,   // set by the program through the privileged API
};

struct MirrorConfig {
  GpaSpaceConfig gpa;
  arch::PagingFeatures paging;
  // Host mappings reachable from ring 3 (EnterOptions::user_mirror).
  bool user_mirror = false;
  // The largest page the mirror of host mappings uses (EnterOptions::small_pages: 4 KiB).
  arch::PageSize largest = arch::PageSize::k1G;
};

// A range of host addresses ring 3 may reach (the sandbox's untrusted
// region, a read-only view of the vDSO): every leaf the mirror creates
// inside it carries the U bit, with at most `max_prot` of the host's
// rights. Everywhere else the mirror's leaves are supervisor-only.
struct UserRange {
  Hva start;
  Hva end;
  int max_prot = PROT_READ | PROT_WRITE | PROT_EXEC;
};

// Where the mirror installs and deletes memory slots: the process's VM, or
// a fake in unit tests.
class MemorySlots {
 public:
  // KVM_SET_USER_MEMORY_REGION: size 0 deletes the slot.
  virtual Status set_memory_region(std::uint32_t slot, Gpa gpa, std::uint64_t size, Hva hva) noexcept = 0;

 protected:
  ~MemorySlots() = default;
};

// Whether this code runs in the guest (CPL 0) rather than on the host.
bool running_in_guest() noexcept;

class Mirror final : public AddressSpaceMirror, private arch::TableMemory {
 public:
  Mirror() noexcept = default;
  Mirror(const Mirror&) = delete;
  Mirror& operator=(const Mirror&) = delete;

  // Sets up GPA bookkeeping and the root table. The arena must be reserved;
  // its chunk is assigned first, so tables have GPAs from the start. It and
  // the chunks of dunk's own image (the ring-0 entry code and the data it
  // reads, which must never fault) are resident for good.
  Status init(MemorySlots& slots, Arena& arena, const MirrorConfig& config) noexcept;

  // In a fork child following the fork, on its copy of the parent's mirror
  // (fork copied dunk's arena: every tree, the program's own entries and
  // clones among them, and the GPA assignments): makes it the mirror of the
  // child's new VM, whose memory slots are `slots`. The chunks that must
  // stay where they are get their slots again at the same guest-physical
  // addresses — the pinned ones (dunk's arena and image, Dune's identity
  // chunks) and, when the program uses the privileged paging API (it may
  // hold guest-physical addresses), every one; the others are hidden again
  // and come back on first touch, as in a new VM. The child has one thread:
  // a lock some thread of the parent held is stale.
  Status adopt_after_fork(MemorySlots& slots) noexcept;

  Gpa root() const noexcept { return Gpa(root_gpa_); }
  arch::PageTable& page_table() noexcept { return *trees_[0]; }

  // Makes the guest mapping of [start, end) mirror host protection `prot`
  // (PROT_NONE: not present). Page-aligned.
  Status set(Hva start, Hva end, int prot) noexcept override;
  // The ranges ring 3 may reach (at most kMaxUserRanges, page-aligned, none
  // overlapping dunk's arena); replaces the earlier ones. With `resync`, the
  // old and new ranges are mirrored from the host again at once, so that
  // the U bits follow; otherwise the next sync does it.
  static constexpr unsigned kMaxUserRanges = 4;
  Status set_user_ranges(std::span<const UserRange> ranges, bool resync) noexcept;

  // Re-reads the host's mappings of [start, end) from /proc/self/maps and
  // mirrors them (holes become not-present). dunk's arena is left alone.
  Status sync(Hva start, Hva end) noexcept override;
  Status sync_all() noexcept override { return sync(Hva(0), Hva(kUserSpaceEnd)); }

  // The host protection (PROT_*) the mirror holds for `address` (in the
  // process's tree), resident or not; nullopt when it has it unmapped.
  std::optional<int> protection(Hva address) noexcept override;
  std::optional<Gpa> translate(Hva address) const noexcept;
  // The GPA of `address`, assigning GPA space (and a memory slot) to its
  // chunk if it has none yet, mapped on the host or not. Takes the lock.
  // The program learns the address (dunk::guest_physical, Dune's
  // dune_va_to_pa): the mirror assigns eagerly from now on, and the chunk
  // is pinned, never reclaimed.
  Result<Gpa> assign(Hva address) noexcept override;
  // The host address behind a guest-physical one (nullopt: no chunk there).
  // For ptedit.h, which reads frames: from now on nothing is reclaimed.
  std::optional<Hva> host_of(Gpa address) noexcept;

  // A guest page fault at `address`: makes the address's chunk resident and
  // brings the mirror up to date with the host if the host allows the
  // access (first touch of a chunk, stack growth, mappings made behind the
  // monitor's back, a stale TLB entry). `root`: the tree the vCPU ran on
  // (the area's root; 0: the process's).
  FaultResolution resolve_fault(Hva address, bool write, bool fetch, Gpa root = Gpa(0)) noexcept override;

  // The program uses the privileged paging API: it reads entries and
  // guest-physical addresses, copies them into entries of its own and
  // expects every mapped page present. From now on every chunk with
  // mappings is resident and stays so: GPA space is assigned when memory is
  // mapped, never reclaimed (the old limit: the distinct chunks must fit the
  // GPA space). Called by the privileged API's entry points below; for a
  // program that handles page faults itself (dunk/traps.h), by
  // set_trap_handler. Idempotent.
  void assign_eagerly() noexcept override;
  bool assigns_eagerly() const noexcept { return eager_.load(std::memory_order_acquire); }
  // Whether `address`'s chunk has GPA space (and a memory slot) now.
  bool resident(Hva address) const noexcept { return translate(address).has_value(); }

  // Whether the entry that decides `address` in the tree of `root` was set
  // by the program (Owner::kUser).
  bool program_owned(Hva address, Gpa root) noexcept;

  // ---- The privileged API's side (src/priv/paging.cc) ----
  // Every tree the monitor keeps current: tree 0 is the process's (root());
  // the others are the program's clones of it. Hold lock() while using one.
  // Trees may share tables (copy-on-write clones): the monitor's edits
  // write through shared tables (what every tree must see), the program's
  // (user_map, ..., raw_slot) copy what they change first.
  static constexpr unsigned kMaxTrees = 4096;
  // One past the highest tree id in use so far: loops over trees stop there.
  unsigned tree_end() const noexcept { return tree_end_; }
  Lock& lock() noexcept { return lock_; }
  // For edits made outside the calls below (raw entry writes, ptedit.h):
  // from now on the monitor's edits keep kUser entries.
  void note_user_edits() noexcept {
    assign_eagerly();
    user_edits_ = true;
    raw_stores_ = true;
  }
  arch::PageTable* tree(unsigned id) noexcept;
  // The same for dunk's own readers of the tables (dirty tracking, the
  // pagemap view), which read hidden leaves as well: the mirror goes on
  // assigning on first touch. Takes no lock.
  arch::PageTable* tree_as_is(unsigned id) noexcept { return id < kMaxTrees && trees_[id] ? &*trees_[id] : nullptr; }
  // The tree whose root table is at `root` (Gpa(0): the process's).
  std::optional<unsigned> tree_of_root(Gpa root) noexcept;
  // These take the lock themselves.
  Result<unsigned> clone_tree(unsigned from, arch::CloneKind kind) noexcept;
  // Frees the tables the tree alone links, for reuse by any tree: no vCPU
  // runs on it (a vCPU that ran on it before flushed those tables' entries
  // when it loaded CR3 with another root or PCID, and flushes the PCID
  // again before using it). A table another tree stopped linking while it
  // was live (an unsharing edit) is not reused (a vCPU of that tree may
  // hold it in its paging-structure caches until its next flush), nor is
  // any once the program stores entries itself (EntryEdit, ptedit.h): a
  // link it stored is not counted, and the table it links might be reused
  // under it.
  Status destroy_tree(unsigned id) noexcept;
  // The tables tree `id` alone links (arch::PageTable::own_tables).
  std::uint64_t own_tables(unsigned id) noexcept;
  // The program's edits (entries marked kUser). `memory` is the host
  // memory that backs `va` (its GPA chunk is assigned on demand).
  Status user_map(unsigned tree, Gva va, Hva memory, std::uint64_t size, arch::PageAttributes attrs,
                  arch::PageSize largest) noexcept;
  Status user_unmap(unsigned tree, Gva va, std::uint64_t size) noexcept;
  // `present` false: hidden (not present, frame kept for a later protect).
  Status user_protect(unsigned tree, Gva va, std::uint64_t size, arch::PageAttributes attrs, bool present) noexcept;
  // Gives [va, va + size) back to the monitor: mirrored from the host again.
  Status user_release(unsigned tree, Gva va, std::uint64_t size) noexcept;
  // Remaps the monitor's own (kHost) large pages in [start, start + size)
  // with 4 KiB pages, in every tree: same memory, rights and owner.
  // Any size: tables are stocked per 4 GiB piece and tree.
  Status split_host_pages(Hva start, std::uint64_t size) noexcept;
  // Commits enough page-table pages for an edit of `size` bytes, before the
  // lock is taken (see Arena::take_free_page).
  Status stock_tables(std::uint64_t size) noexcept;

  // Counts the changes of the host mappings' mirror (every set/sync): what
  // a cache of /proc/self/maps facts is keyed by (core/dirty.h). Readable
  // without the lock.
  std::uint64_t generation() const noexcept { return generation_.load(std::memory_order_acquire); }

  // Raw entries: the program stores whole entries itself (Dune's libdune,
  // through dunk::EntryEdit). begin_raw_edit commits tables for `size` bytes
  // of new mappings, then holds the lock (tables from the reserve only, no
  // system call) until end_raw_edit.
  Status begin_raw_edit(std::uint64_t size) noexcept;
  void end_raw_edit() noexcept;
  // The slot of `va` at `level` in a tree (arch::PageTable::slot); EPERM in
  // dunk's arena. Between begin_raw_edit and end_raw_edit.
  Result<arch::EntryRef> raw_slot(unsigned tree, Gva va, unsigned level, bool create) noexcept;
  // Stores `value`, marked as the program's (Owner::kUser): the monitor
  // leaves the entry alone from now on. Between begin_raw_edit and
  // end_raw_edit, into an entry raw_slot returned.
  void raw_store(arch::PageTableEntry* entry, arch::PageTableEntry value) noexcept;
  // The host address of a page table of the mirror, from its GPA (what an
  // entry above it holds); null for anything else.
  arch::PageTableEntry* table_of(Gpa gpa) noexcept { return table_at(gpa); }

  int probe_fd() const noexcept { return probe_fd_; }
  // A probe descriptor of this process's own, in place of the one it has
  // (a fork child sharing its parent's descriptor table must neither use
  // nor close at its exit the parent's).
  Status renew_probe() noexcept;
  std::uint32_t chunks_assigned() const noexcept { return gpa_ ? gpa_->assigned() : 0; }
  std::uint32_t chunk_capacity() const noexcept { return gpa_ ? gpa_->capacity() : 0; }
  std::uint64_t chunks_reclaimed() const noexcept { return chunks_reclaimed_; }
  std::uint64_t tables_allocated() const noexcept { return tables_allocated_; }
  // Tables given back for reuse (destroyed trees) and dropped for good
  // (unlinked by an edit of a live tree, or linked by one before: never
  // reused, so their memory stays spent). The tables in use — linked by a
  // tree, or dropped — are the allocated minus the freed.
  std::uint64_t tables_freed() const noexcept { return tables_freed_; }
  std::uint64_t tables_dropped() const noexcept { return tables_dropped_; }
  std::uint64_t tables_in_use() const noexcept { return tables_allocated_ - tables_freed_; }

 private:
  // arch::TableMemory
  Result<arch::TablePage> allocate() noexcept override;
  void release(arch::TablePage page) noexcept override;
  arch::PageTableEntry* table_at(Gpa gpa) noexcept override;
  std::uint32_t* links(Gpa gpa) noexcept override;
  void unlinked(arch::TablePage page) noexcept override;
  // The index of the arena page at `gpa` (nullopt outside the arena).
  std::optional<std::uint64_t> arena_page(Gpa gpa) const noexcept;
  // The slots of trees_ that may hold a tree.
  std::span<std::optional<arch::PageTable>> live_trees() noexcept { return {trees_, tree_end_}; }
  Status set_locked(Hva start, Hva end, int prot, Owner owner) noexcept;
  Status set_tree(arch::PageTable& tree, Hva start, Hva end, int prot, Owner owner, bool user,
                  arch::NewTables* made = nullptr) noexcept;
  const UserRange* user_range_at(Hva address) const noexcept;
  Hva next_user_start(Hva address) const noexcept;
  // The rights a present leaf gives `address` (what the CPU would allow).
  std::optional<int> present_protection(arch::PageTable& tree, Hva address) noexcept;
  // The same, or those a hidden leaf of a chunk not resident holds.
  std::optional<int> mirrored_protection(arch::PageTable& tree, Hva address) noexcept;
  Status check_user_range(unsigned tree, Gva va, std::uint64_t size) noexcept;
  // Runs `edit` (an edit of `size` bytes made by guest code) under the lock
  // with tables from the arena's reserve only, stocked first; again,
  // stocked again, when another thread's edit took the stock meanwhile.
  template <class Edit>
  Status user_edit(std::uint64_t size, Edit edit) noexcept;
  bool owned_by_program(arch::PageTable& tree, Hva address) noexcept;
  Status sync_locked(Hva start, Hva end) noexcept;
  // Mirrors the host mapping that holds `address` after asking the kernel
  // to fault it in (stack growth); false if the host has no mapping there.
  bool mirror_from_host(Hva address) noexcept;

  // Residency (lock held). make_resident assigns GPA space to `address`'s
  // chunk — taking it from another chunk when none is free, unless every
  // chunk is pinned or the mirror assigns eagerly — installs its slot and
  // brings its hidden leaves into service in every tree.
  Status make_resident(Hva address, FaultResolution* counts = nullptr) noexcept;
  Result<ChunkAssignment> take_chunk(Hva address, bool* created, FaultResolution* counts) noexcept;
  Status install(const ChunkAssignment& chunk) noexcept;
  Status evict(const ChunkAssignment& victim) noexcept;
  // Hides a chunk's leaves in every tree (the program's own entries kept).
  Status hide_chunk(const ChunkAssignment& chunk) noexcept;
  // Whether the CPU used `chunk` (an accessed bit in the entries that cover
  // it in any tree) since the last call; clears what it reads.
  bool chunk_accessed(Hva chunk) noexcept;
  Status pin_range(Hva start, Hva end) noexcept;
  Status assign_eagerly_locked() noexcept;
  // Page-table pages committed for assign_eagerly's re-reading of the
  // host's mappings.
  static constexpr std::size_t kEagerTableReserve = 256;
  Status split_in_tree(arch::PageTable& tree, Hva start, std::uint64_t size) noexcept;

  Lock lock_;
  MemorySlots* slots_ = nullptr;
  Arena* arena_ = nullptr;
  MirrorConfig config_;
  std::optional<GpaSpace> gpa_;
  std::optional<arch::PageTable> trees_[kMaxTrees];
  unsigned tree_end_ = 1;
  // Per arena page (page tables live there): the entries that link it
  // (arch::TableMemory::links), and whether a live tree stopped linking
  // it (then it is never reused). In the arena, so a fork child's copy of
  // the mirror has them.
  std::uint32_t* table_links_ = nullptr;
  std::uint8_t* table_unlinked_live_ = nullptr;
  // destroy_tree at work: released tables may be reused.
  bool destroying_ = false;
  // The program stored entries itself (raw edits): no table is reused.
  bool raw_stores_ = false;
  std::uint64_t tables_freed_ = 0;
  std::uint64_t tables_dropped_ = 0;
  // Set once the program has made an edit: from then on the monitor's
  // edits keep kUser entries (which costs them a walk of existing tables).
  bool user_edits_ = false;
  UserRange user_ranges_[kMaxUserRanges];
  unsigned user_range_count_ = 0;
  // assign_eagerly(): written under lock_, read without it.
  std::atomic<bool> eager_{false};
  std::uint64_t chunks_reclaimed_ = 0;
  // While guest code edits under lock_: tables come from the arena's
  // reserve only (no system call).
  bool reserve_only_ = false;
  std::uint64_t root_gpa_ = 0;
  std::uint64_t arena_gpa_ = 0;
  std::uint64_t tables_allocated_ = 0;
  std::atomic<std::uint64_t> generation_{0};
  // A memfd used to ask the kernel whether an address is readable: a pwrite
  // from it faults the page in (growing a stack) or fails with EFAULT,
  // without a signal.
  int probe_fd_ = -1;
  // Scratch for reading /proc/self/maps (guarded by lock_).
  char maps_buffer_[16384];
};

}  // namespace dunk::core
