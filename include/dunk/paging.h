// Page tables and the TLB: the program edits its own guest page tables with
// plain stores and flushes what it asks to, in guest ring 0 — no system
// call, no VM exit (each edit below is a few stores into tables the guest
// can reach; the flushes are INVLPG and a CR3 reload).
//
//   dunk::AddressSpace& as = dunk::AddressSpace::process();
//   as.protect(page, 4096, dunk::kRead);          // read-only from now on...
//   dunk::flush_tlb(page);                        // ...once the TLB agrees
//   as.map(alias, page, 4096, dunk::kRead | dunk::kWrite);  // a second view
//   auto info = as.lookup(page);                  // rights, size, A/D bits
//
// Switching between address spaces (CR3):
//
//   auto sandbox = dunk::AddressSpace::process().clone(dunk::CloneMode::kCopy);
//   (*sandbox)->unmap(secret, secret_size);      // invisible from there only
//   (*sandbox)->activate();  ...  dunk::AddressSpace::process().activate();
//
// Who owns what (the coexistence rule). dunk's monitor keeps every address
// space current with the host's mappings: mmap, munmap, mprotect, brk...
// pass through it. A page whose entry the program set through this API (map,
// unmap, protect) is the program's from then on, in that address space: the
// monitor leaves it alone — a later mprotect of the host mapping does not
// change it, a fault on it is not "resolved" behind the program's back but
// goes to its handler or ends the program. release() hands a range back.
// The other way round, dunk's own memory (page tables, vCPU areas, IDT,
// stacks) cannot be remapped: such edits fail with EPERM.
//
// Rules:
// - Every call here works in VM mode and outside it (before enter(), edits
//   prepare the tables). activate() and the flushes need VM mode.
// - Edits change tables that other vCPUs may be using; flush_tlb() flushes
//   only the calling vCPU's TLB. In a VM with interrupts,
//   flush_tlb_all_cpus() (dunk/interrupts.h) flushes every vCPU's;
//   otherwise coordinate other threads yourself.
// - x86 cannot express write-only or execute-only pages: without kRead a
//   page is not present (kNone); protect() back to kRead brings it back with
//   the same memory.
// - The memory given to map() must stay mapped on the host for as long as
//   the mapping is used; an access to memory the host no longer has ends the
//   program with SIGSEGV, as natively.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "dunk/result.h"

namespace dunk {

// Access rights and attributes of a mapping; combine with |.
enum Access : unsigned {
  kNone = 0,            // not present
  kRead = 1u << 0,      // present (and readable)
  kWrite = 1u << 1,
  kExec = 1u << 2,
  kUser = 1u << 3,      // reachable from ring 3 (dunk/ring3.h); else supervisor only
  kNoCache = 1u << 4,   // PCD: uncached
  kWriteThrough = 1u << 5,  // PWT
};

enum class PageSize : std::uint8_t { k4K, k2M, k1G };
constexpr std::size_t page_bytes(PageSize s) noexcept {
  return s == PageSize::k4K ? 4096 : s == PageSize::k2M ? 2u << 20 : 1u << 30;
}

// What a lookup or walk reports about one page.
struct PageInfo {
  void* page = nullptr;       // the first address of the page
  PageSize size = PageSize::k4K;
  unsigned access = kNone;    // kRead|kWrite|kExec|kUser|kNoCache|kWriteThrough
  bool accessed = false;      // A: the CPU used the page since the bit was cleared
  bool dirty = false;         // D: the CPU wrote to it since the bit was cleared
  bool program_owned = false; // set through this API: the monitor leaves it alone
  std::uint64_t physical = 0; // guest-physical address of the looked-up byte
};

// A reference to one page-table leaf, for walks that read or change it.
// Changes are single atomic stores (the CPU may set A/D at any moment).
class PageRef {
 public:
  explicit PageRef(std::uint64_t* entry) noexcept : entry_(entry) {}
  std::uint64_t raw() const noexcept;          // the entry (Intel SDM vol. 3A §4.5)
  bool accessed() const noexcept;
  bool dirty() const noexcept;
  // Clears A and D, returning whether D was set (compare-and-exchange).
  bool test_and_clean() noexcept;
  std::uint64_t* entry() const noexcept { return entry_; }

 private:
  std::uint64_t* entry_;
};

enum class CloneMode {
  kCopy,             // every table copied: edits of one tree never show in the other
  kShareLeafTables,  // 4 KiB-page tables shared: an edit of a 4 KiB page shows in both
  // Every table shared until an edit through this API (map, unmap, protect,
  // release, EntryEdit::slot) changes it in one of the spaces: that space
  // gets its own copy of the tables on the edit's way first, so edits never
  // show in the other, as with kCopy; the monitor's (host mappings) reach
  // both. A clone costs one table; each edit copies at most the tables on
  // its way that are still shared. A/D bits of shared tables are shared
  // (walk()'s test_and_clean of such an entry cleans it for both), and a
  // store the program makes through a raw pointer (not EntryEdit) into a
  // shared table shows in both.
  kCopyOnWrite,
};

class AddressSpace {
 public:
  // The process's address space, the one every vCPU starts on.
  static AddressSpace& process() noexcept;
  // The one the calling vCPU runs on (process() outside VM mode).
  static AddressSpace& current() noexcept;

  // Maps [va, va + size) to the memory that backs the host address `memory`
  // (identity: memory == va), with `access`, using pages up to `largest`
  // where both addresses are aligned for them. Page-aligned arguments.
  Status map(void* va, const void* memory, std::size_t size, unsigned access,
             PageSize largest = PageSize::k1G) noexcept;
  Status unmap(void* va, std::size_t size) noexcept;
  // Changes the rights of every mapped page in the range (holes stay holes);
  // large pages at the edges are split. kNone hides pages (see above).
  Status protect(void* va, std::size_t size, unsigned access) noexcept;
  // The page that maps `va`, if present.
  std::optional<PageInfo> lookup(const void* va) const noexcept;
  // Calls visit(info, ref) for every present page overlapping the range, in
  // address order; returns how many. The visitor may use `ref` to read or
  // clean the entry.
  template <class F>
  std::size_t walk(const void* va, std::size_t size, F&& visit) const noexcept {
    return walk_impl(va, size, [](void* f, const PageInfo& info, PageRef& ref) { (*static_cast<F*>(f))(info, ref); },
                     &visit);
  }
  // Hands the range back to dunk's monitor: mirrored from the host again.
  Status release(void* va, std::size_t size) noexcept;

  // A new address space with the same mappings (and the same program-owned
  // entries), kept current by the monitor like this one.
  Result<AddressSpace*> clone(CloneMode mode) const noexcept;
  // Frees a clone (not process(), not one a vCPU runs on), and the page
  // tables only it links.
  Status destroy() noexcept;
  // The page-table pages (4 KiB each) this space alone links, its root
  // included: what destroy() gives back. Tables shared with other spaces
  // (kCopyOnWrite, kShareLeafTables) are not counted.
  std::size_t own_tables() const noexcept;

  // Makes the calling vCPU run on this address space (MOV to CR3; with PCID
  // the TLB entries of other address spaces are kept). VM mode only. With
  // more spaces than the CPU's 4095 PCIDs, spaces share PCIDs (id mod
  // 4095): safe, since loading a space flushes its PCID's entries.
  Status activate() noexcept;
  // The root table's guest-physical address, what CR3 holds.
  std::uint64_t root() const noexcept;
  // 0 for process(), 1.. for clones.
  unsigned id() const noexcept { return id_; }

 private:
  friend class AddressSpaces;
  explicit AddressSpace(unsigned id) noexcept : id_(id) {}
  std::size_t walk_impl(const void* va, std::size_t size, void (*call)(void*, const PageInfo&, PageRef&),
                        void* f) const noexcept;
  unsigned id_;
};

// --- Raw entries ------------------------------------------------------------
//
// For code that edits entries with its own loads and stores, the way Dune's
// libdune (include/libdune/) and PTEditor do, rather than through map(),
// unmap() and protect(). The tables lie in dunk's arena, which the guest
// maps, so a pointer to an entry is an ordinary pointer.
//
//   auto edit = dunk::EntryEdit::begin(dunk::AddressSpace::process(), 4096);
//   auto slot = edit->slot(va, dunk::PageSize::k4K, /*create=*/true);
//   edit->store(slot->entry, physical | 0x3);      // present, writable
//
// dunk keeps an owner tag in bits 11:9 of every entry (core::Owner): what
// the program stored through EntryEdit carries kEntryProgramOwned, and the
// monitor leaves such entries alone, as it does those map() makes. A store
// the program makes on its own (through the pointer, without store()) has
// no tag unless it keeps the bits: the monitor may then change the entry
// when the host's mapping of that address changes.

inline constexpr std::uint64_t kEntryOwnerBits = 0xe00;
inline constexpr std::uint64_t kEntryDunkOwned = 0x200;     // dunk's own memory: not the program's to edit
inline constexpr std::uint64_t kEntryProgramOwned = 0x400;  // set by the program

// One slot: the entry and the size of the page it maps (or would map).
struct EntrySlot {
  std::uint64_t* entry = nullptr;
  PageSize size = PageSize::k4K;
};

class EntryEdit {
 public:
  // Holds the lock the monitor takes to edit the address space's tables,
  // until destroyed: make no system call meanwhile (the monitor would wait
  // for the lock). Page tables that mapping `size` bytes may need are set
  // aside first. Works in VM mode and outside it, once the tables exist.
  static Result<EntryEdit> begin(AddressSpace& space, std::size_t size = 0) noexcept;
  EntryEdit(EntryEdit&& other) noexcept : space_(other.space_), held_(other.held_) { other.held_ = false; }
  EntryEdit& operator=(EntryEdit&&) = delete;
  ~EntryEdit();

  // The entry that maps `va` with a page of `size` (k4K: its page-table
  // entry; k2M, k1G: the directory entry), or the larger page that maps it
  // on the way (present or hidden: not split). Missing tables are made when
  // `create` (each entry of a new table holds the marker the entry above
  // held), else ENOENT. EPERM in dunk's own memory.
  Result<EntrySlot> slot(const void* va, PageSize size, bool create) noexcept;
  // Stores `value` into a slot's entry with the program's owner tag.
  void store(std::uint64_t* entry, std::uint64_t value) noexcept;

 private:
  explicit EntryEdit(AddressSpace& space) noexcept : space_(&space), held_(true) {}
  AddressSpace* space_;
  bool held_;
};

// The host address of one of dunk's page tables, from the guest-physical
// address an entry above it holds (root(), too); null for anything else.
std::uint64_t* page_table_at(std::uint64_t gpa) noexcept;

// The guest-physical address behind host address `p` (any address of user
// space: in VM mode, guest-physical space is assigned to its chunk if it
// has none yet, mapped on the host or not); nullopt outside VM mode for
// memory dunk has not mirrored. With EnterOptions::identity_physical it is
// `p` itself for memory below the physical width.
std::optional<std::uint64_t> guest_physical(const void* p) noexcept;
// The host address behind a guest-physical one; null when it has none.
void* host_address(std::uint64_t gpa) noexcept;

// INVLPG: drops the calling vCPU's TLB entries for the page of `va`.
void flush_tlb(const void* va) noexcept;
// Drops every non-global TLB entry of the calling vCPU (CR3 reload).
void flush_tlb() noexcept;
// Whether the CPU tags TLB entries with address-space IDs (CR4.PCIDE), so
// that activate() keeps other spaces' entries.
bool pcid_enabled() noexcept;

// The page-table pages dunk holds for every address space (shared ones
// once), and those it will never reuse (dunk/paging.h's edits of a live
// space can leave some): what the tables cost. 0 before the process enters
// VM mode.
std::size_t page_tables_in_use() noexcept;

}  // namespace dunk
