// The address-space mirror: guest page tables that map every host virtual
// address of the process to itself, with the host's protections.
//
//   host VA ──(guest page tables: identity, host prot)──> guest VA = host VA
//   guest VA ──(page tables)──> GPA ──(KVM memory slot per chunk)──> host VA
//
// GPA space is assigned per chunk on demand (GpaSpace); each assigned chunk
// becomes a memory slot whose host range is the chunk itself, so KVM follows
// the host's page tables for whatever is mapped there now or later. The
// guest page tables carry the protections (present / writable / executable)
// so that a bad access is a guest #PF with its exact address and error code
// rather than an EFAULT from KVM_RUN. The monitor keeps them current as
// mmap, munmap, mprotect, mremap, brk and friends pass through it, and
// resolves anything else lazily from /proc/self/maps when the guest faults.
#pragma once

#include <sys/mman.h>

#include <atomic>
#include <cstdint>
#include <optional>

#include "arch/x86_64/page_table.h"
#include "core/address_space_mirror.h"
#include "base/lock.h"
#include "core/arena.h"
#include "core/gpa_space.h"
#include "dunk/address.h"
#include "dunk/result.h"
#include "kvm/kvm.h"

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

class Mirror final : public AddressSpaceMirror, private arch::TableMemory {
 public:
  Mirror() noexcept = default;
  Mirror(const Mirror&) = delete;
  Mirror& operator=(const Mirror&) = delete;

  // Sets up GPA bookkeeping and the root table. The arena must be reserved;
  // its chunk is assigned first, so tables have GPAs from the start.
  Status init(kvm::Vm& vm, Arena& arena, const MirrorConfig& config) noexcept;

  Gpa root() const noexcept { return Gpa(root_gpa_); }
  arch::PageTable& page_table() noexcept { return *trees_[0]; }

  // Makes the guest mapping of [start, end) mirror host protection `prot`
  // (PROT_NONE: not present). Page-aligned.
  Status set(Hva start, Hva end, int prot) noexcept override;
  // Re-reads the host's mappings of [start, end) from /proc/self/maps and
  // mirrors them (holes become not-present). dunk's arena is left alone.
  Status sync(Hva start, Hva end) noexcept override;
  Status sync_all() noexcept override { return sync(Hva(0), Hva(kUserSpaceEnd)); }

  // The host protection (PROT_*) the guest mapping of `address` carries, or
  // nullopt when it is not present.
  std::optional<int> protection(Hva address) noexcept override;
  std::optional<Gpa> translate(Hva address) const noexcept;
  // The GPA of `address`, assigning GPA space (and a memory slot) to its
  // chunk if it has none yet, mapped on the host or not. Takes the lock.
  Result<Gpa> assign(Hva address) noexcept override;
  // The host address behind a guest-physical one (nullopt: no chunk there).
  std::optional<Hva> host_of(Gpa address) const noexcept { return gpa_ ? gpa_->reverse(address) : std::nullopt; }

  // A guest page fault at `address`: brings the mirror up to date with the
  // host if the host allows the access (stack growth, mappings made behind
  // the monitor's back, a stale TLB entry). True if the access should now
  // succeed.
  // `root`: the tree the vCPU ran on (the area's root; 0: the process's).
  bool resolve_fault(Hva address, bool write, bool fetch, Gpa root = Gpa(0)) noexcept override;

  // Whether the entry that decides `address` in the tree of `root` was set
  // by the program (Owner::kUser).
  bool program_owned(Hva address, Gpa root) noexcept;

  // ---- The privileged API's side (src/priv/paging.cc) ----
  // Every tree the monitor keeps current: tree 0 is the process's (root());
  // the others are the program's clones of it. Hold lock() while using one.
  static constexpr unsigned kMaxTrees = 64;
  Lock& lock() noexcept { return lock_; }
  // For edits made outside the calls below (raw entry writes, ptedit.h):
  // from now on the monitor's edits keep kUser entries.
  void note_user_edits() noexcept { user_edits_ = true; }
  arch::PageTable* tree(unsigned id) noexcept;
  // The tree whose root table is at `root` (Gpa(0): the process's).
  std::optional<unsigned> tree_of_root(Gpa root) noexcept;
  // These take the lock themselves.
  Result<unsigned> clone_tree(unsigned from, bool share_leaf_tables) noexcept;
  Status destroy_tree(unsigned id) noexcept;
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
  std::uint32_t chunks_assigned() const noexcept { return gpa_ ? gpa_->assigned() : 0; }
  std::uint64_t tables_allocated() const noexcept { return tables_allocated_; }

 private:
  // arch::TableMemory
  Result<arch::TablePage> allocate() noexcept override;
  void release(arch::TablePage page) noexcept override;
  arch::PageTableEntry* table_at(Gpa gpa) noexcept override;

  Status set_locked(Hva start, Hva end, int prot, Owner owner) noexcept;
  Status set_tree(arch::PageTable& tree, Hva start, Hva end, int prot, Owner owner) noexcept;
  std::optional<int> protection_in(arch::PageTable& tree, Hva address) noexcept;
  Status check_user_range(unsigned tree, Gva va, std::uint64_t size) noexcept;
  bool owned_by_program(arch::PageTable& tree, Hva address) noexcept;
  Status sync_locked(Hva start, Hva end) noexcept;
  Status ensure_chunk(Hva address) noexcept;
  bool host_allows(Hva address, bool write, bool fetch) noexcept;

  Lock lock_;
  kvm::Vm* vm_ = nullptr;
  Arena* arena_ = nullptr;
  MirrorConfig config_;
  std::optional<GpaSpace> gpa_;
  std::optional<arch::PageTable> trees_[kMaxTrees];
  // Set once the program has made an edit: from then on the monitor's
  // edits keep kUser entries (which costs them a walk of existing tables).
  bool user_edits_ = false;
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
