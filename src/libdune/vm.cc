// Dune's page-table calls (dune_vm_*) on dunk's page tables.
//
// Dune edited its tables with plain stores, entry by entry, and its programs
// keep doing so through the pointers dune_vm_lookup and dune_vm_page_walk
// hand out. dunk's tables are as reachable (they lie in its arena, which the
// guest maps; with the identity layout a table's physical address is its
// address), so these calls work the same way, with two additions: every
// store goes through dunk::EntryEdit, under the lock dunk's monitor takes to
// edit the same tables, and marks the entry as the program's, so that the
// monitor leaves it alone; and entries the program rewrote itself are
// marked so when control comes back here (settle_handed_out).
#include <sys/syscall.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "libdune/internal.h"

namespace dunk::libdune {
namespace {

constexpr unsigned kLevels = 4;
constexpr std::uint64_t kLinearMask = (std::uint64_t{1} << 48) - 1;

constexpr unsigned shift_of(unsigned level) noexcept { return 12 + 9 * (level - 1); }
constexpr unsigned index_of(unsigned level, std::uint64_t va) noexcept { return (va >> shift_of(level)) & 511; }
// A 48-bit linear address as the canonical one it stands for.
constexpr std::uint64_t canonical(std::uint64_t linear) noexcept {
  return (linear & (std::uint64_t{1} << 47)) != 0 ? linear | ~kLinearMask : linear;
}
constexpr bool is_large(std::uint64_t e, unsigned level) noexcept { return level > 1 && (e & PTE_PS) != 0; }

// The tables of the address space whose root is `root` (a clone or pgroot).
struct Clone {
  ptent_t* root = nullptr;
  AddressSpace* space = nullptr;
};
constexpr unsigned kMaxClones = 64;  // dunk keeps at most 64 address spaces current
Clone clones[kMaxClones];

std::uint64_t* table_at(std::uint64_t entry) noexcept { return page_table_at(PTE_ADDR(entry)); }

// ---- Walking -------------------------------------------------------------------

// Calls visit(entry, va) for every entry of [start, end] (linear, end
// included) that holds something: 4 KiB entries and large pages. Dune's
// walk (CREATE_NONE): not-present upper entries are skipped.
template <class Visit>
int walk(std::uint64_t* table, unsigned level, std::uint64_t base, std::uint64_t start, std::uint64_t end,
         Visit& visit) noexcept {
  const std::uint64_t span = std::uint64_t{1} << shift_of(level);
  for (unsigned i = index_of(level, start), last = index_of(level, end); i <= last; ++i) {
    std::uint64_t* e = &table[i];
    const std::uint64_t value = *e;
    const std::uint64_t va = base + i * span;
    if (level == 1 || is_large(value, level)) {
      if (!holds_something(value)) continue;
      if (int r = visit(e, canonical(va)); r != 0) return r;
      continue;
    }
    if ((value & PTE_P) == 0) continue;
    std::uint64_t* below = table_at(value);
    if (below == nullptr) continue;
    const std::uint64_t from = i == index_of(level, start) ? start : va;
    const std::uint64_t to = i == last ? end : va + span - 1;
    if (int r = walk(below, level - 1, va, from, to, visit); r != 0) return r;
  }
  return 0;
}

template <class Visit>
int walk_range(ptent_t* root, std::uint64_t start, std::uint64_t end, Visit visit) noexcept {
  start &= kLinearMask;
  end &= kLinearMask;
  if (end < start) return 0;
  return walk(reinterpret_cast<std::uint64_t*>(root), kLevels, 0, start, end, visit);
}

// Dune's rights -> entry bits (libdune's get_pte_perm).
std::uint64_t entry_bits(int perm) noexcept {
  std::uint64_t bits = 0;
  if (perm & PERM_R) bits |= PTE_P;
  if (perm & PERM_W) bits |= PTE_W;
  if (!(perm & PERM_X)) bits |= PTE_NX;
  if (perm & PERM_U) bits |= PTE_U;
  if (perm & PERM_UC) bits |= PTE_PCD;
  if (perm & PERM_COW) bits |= PTE_COW;
  if (perm & PERM_USR1) bits |= PTE_USR1;
  if (perm & PERM_USR2) bits |= PTE_USR2;
  if (perm & PERM_USR3) bits |= PTE_USR3;
  if (perm & (PERM_BIG | PERM_BIG_1GB)) bits |= PTE_PS;
  return bits;
}

int errno_of(const Error& e) noexcept { return e.err != 0 ? -e.err : -EINVAL; }

// Stores `value` into `entry` as the program's, in its own short edit (for
// callers that must not hold the lock around the program's code).
void store_one(std::uint64_t* entry, std::uint64_t value) noexcept {
  auto edit = EntryEdit::begin(AddressSpace::process());
  if (edit.ok()) edit->store(entry, value);
}

// ---- Entries handed out ---------------------------------------------------------

struct HandedOut {
  std::uint64_t* entry;
  std::uint64_t value;  // when handed out
};
constexpr unsigned kMaxHandedOut = 32;
thread_local HandedOut handed_out[kMaxHandedOut];
thread_local unsigned handed_out_count = 0;

// Whether the program changed an entry it was handed, beyond the A/D bits
// the CPU sets on its own.
constexpr bool rewritten(std::uint64_t before, std::uint64_t now) noexcept {
  return ((before ^ now) & ~std::uint64_t{PTE_A | PTE_D}) != 0;
}

// After the program's own store into `entry` (which held `before`): the
// program's from now on; dunk's own entries go back to what they were.
void claim(std::uint64_t* entry, std::uint64_t before) noexcept {
  const std::uint64_t now = *entry;
  if (!rewritten(before, now) || (now & kEntryOwnerBits) == kEntryProgramOwned) return;
  store_one(entry, (before & kEntryOwnerBits) == kEntryDunkOwned ? before : now);
}

}  // namespace

AddressSpace* space_of_root(const ptent_t* root) noexcept {
  if (root == nullptr) return nullptr;
  if (root == pgroot) return &AddressSpace::process();
  for (const Clone& c : clones) {
    if (c.root == root) return c.space;
  }
  return nullptr;
}

void forget_lost_clones() noexcept {
  for (Clone& c : clones) {
    if (c.space == nullptr) continue;
    const std::uint64_t root = c.space->root();
    if (root == 0 || page_table_at(root) != c.root) c = Clone{};
  }
}

std::uint64_t* deciding_entry(const void* va) noexcept {
  // CR3 itself rather than dunk's record of it: this runs on whatever
  // tables ring 3 ran on, even ones whose copy of dunk's state is stale.
  std::uint64_t cr3;
  asm volatile("movq %%cr3, %0" : "=r"(cr3));
  auto* table = reinterpret_cast<std::uint64_t*>(page_table_at(PTE_ADDR(cr3)));
  const auto address = reinterpret_cast<std::uint64_t>(va);
  for (unsigned level = kLevels; table != nullptr; --level) {
    std::uint64_t* e = &table[index_of(level, address)];
    if (level == 1 || is_large(*e, level) || (*e & PTE_P) == 0) return e;
    table = table_at(*e);
  }
  return nullptr;
}

void note_handed_out(std::uint64_t* entry) noexcept {
  if (handed_out_count == kMaxHandedOut) settle_handed_out();
  handed_out[handed_out_count++] = HandedOut{entry, *entry};
}

void settle_handed_out() noexcept {
  for (unsigned i = 0; i < handed_out_count; ++i) claim(handed_out[i].entry, handed_out[i].value);
  handed_out_count = 0;
}

}  // namespace dunk::libdune

using namespace dunk::libdune;
using dunk::AddressSpace;
using dunk::EntryEdit;
using dunk::PageSize;

namespace {

// The address space of `root`, or null after reporting nothing (the caller
// returns -EINVAL, as for any bad argument).
AddressSpace* space_or_null(ptent_t* root) noexcept {
  settle_handed_out();
  return space_of_root(root);
}

PageSize size_of_create(int create) noexcept {
  return create == CREATE_BIG ? PageSize::k2M : create == CREATE_BIG_1GB ? PageSize::k1G : PageSize::k4K;
}

// A slot at `size` for a new mapping of `va`: a larger page in the way is
// emptied first (Dune overwrote it), so that the slot has the asked size.
dunk::Result<dunk::EntrySlot> slot_for_mapping(EntryEdit& edit, void* va, PageSize size) noexcept {
  auto slot = edit.slot(va, size, /*create=*/true);
  if (!slot.ok() || slot->size == size) return slot;
  edit.store(slot->entry, 0);
  return edit.slot(va, size, /*create=*/true);
}

// Whether a 4 KiB entry is a mapping the program made of a pool page (which
// holds a reference to it); not the pool's own mapping at its address.
bool maps_pool_page(std::uint64_t entry, std::uint64_t va) noexcept {
  const physaddr_t pa = PTE_ADDR(entry);
  return (entry & PTE_P) && !(entry & PTE_PS) && (entry & dunk::kEntryOwnerBits) == dunk::kEntryProgramOwned &&
         dune_page_isfrompool(pa) && pa != va;
}

}  // namespace

extern "C" {

int dune_vm_mprotect(ptent_t* root, void* va, size_t len, int perm) {
  AddressSpace* space = space_or_null(root);
  if (space == nullptr) return -EINVAL;
  if (!(perm & PERM_R)) {
    if (perm & PERM_W) return -EINVAL;  // x86 has no write-only page
    perm = PERM_NONE;
  }
  if (len == 0) return 0;
  const std::uint64_t bits = entry_bits(perm);
  {
    auto edit = EntryEdit::begin(*space);
    if (!edit.ok()) return errno_of(edit.error());
    const auto start = reinterpret_cast<std::uint64_t>(va);
    walk_range(root, start, start + len - 1, [&](std::uint64_t* e, std::uint64_t) {
      // Dune kept the frame and the page size, whatever the new rights.
      edit->store(e, PTE_ADDR(*e) | (PTE_FLAGS(*e) & PTE_PS) | bits);
      return 0;
    });
  }
  if (dunk::in_vm()) dunk::flush_tlb();
  return 0;
}

int dune_vm_map_phys(ptent_t* root, void* va, size_t len, void* pa, int perm) {
  AddressSpace* space = space_or_null(root);
  if (space == nullptr) return -EINVAL;
  if (len == 0) return 0;
  const PageSize size = size_of_create((perm & PERM_BIG) ? CREATE_BIG : (perm & PERM_BIG_1GB) ? CREATE_BIG_1GB
                                                                                            : CREATE_NORMAL);
  const std::uint64_t step = dunk::page_bytes(size);
  const auto start = reinterpret_cast<std::uint64_t>(va);
  const std::uint64_t first = start & ~(step - 1);
  const std::uint64_t last = (start + len - 1) & ~(step - 1);
  const std::uint64_t bits = entry_bits(perm);
  const auto pa_minus_va = reinterpret_cast<std::uint64_t>(pa) - start;
  auto edit = EntryEdit::begin(*space, last - first + step);
  if (!edit.ok()) return errno_of(edit.error());
  for (std::uint64_t page = first;; page += step) {
    auto slot = slot_for_mapping(*edit, reinterpret_cast<void*>(page), size);
    if (!slot.ok()) return errno_of(slot.error());
    // As Dune: each page maps what lies at its own offset from `pa`.
    edit->store(slot->entry, PTE_ADDR(page + pa_minus_va) | bits);
    if (page == last) break;
  }
  return 0;
}

int dune_vm_map_pages(ptent_t* root, void* va, size_t len, int perm) {
  AddressSpace* space = space_or_null(root);
  if (space == nullptr) return -EINVAL;
  if (!(perm & PERM_R) && (perm & ~PERM_R)) return -EINVAL;
  if (len == 0) return 0;
  const std::uint64_t bits = entry_bits(perm);
  const auto start = reinterpret_cast<std::uint64_t>(va);
  for (std::uint64_t page = start & ~std::uint64_t{PGMASK}; page <= start + len - 1; page += PGSIZE) {
    // The pool may grow (mmap): never while holding the lock.
    struct page* pg = dune_page_alloc();
    if (pg == nullptr) return -ENOMEM;
    int error = 0;
    {
      auto edit = EntryEdit::begin(*space, PGSIZE);
      if (!edit.ok()) {
        error = errno_of(edit.error());
      } else if (auto slot = slot_for_mapping(*edit, reinterpret_cast<void*>(page), PageSize::k4K); !slot.ok()) {
        error = errno_of(slot.error());
      } else {
        edit->store(slot->entry, PTE_ADDR(dune_page2pa(pg)) | bits);
      }
    }
    if (error != 0) {
      dune_page_put(pg);  // after the edit (see dune_vm_unmap)
      return error;
    }
  }
  return 0;
}

void dune_vm_unmap(ptent_t* root, void* va, size_t len) {
  AddressSpace* space = space_or_null(root);
  if (space == nullptr || len == 0) return;
  // The pool pages the range maps lose a reference, after the edit: the
  // pool's lock is taken by dune_page_alloc around an mmap, which dunk's
  // monitor serves under the lock the edit holds (so never the other way
  // round). The list comes from memory allocated before the edit.
  const auto start = reinterpret_cast<std::uint64_t>(va);
  const std::size_t most = (len + PGSIZE - 1) / PGSIZE + 1;
  auto* unmapped = static_cast<struct page**>(std::malloc(most * sizeof(struct page*)));
  std::size_t count = 0;
  {
    auto edit = EntryEdit::begin(*space);
    if (!edit.ok()) {
      std::free(unmapped);
      return;
    }
    walk_range(root, start, start + len - 1, [&](std::uint64_t* e, std::uint64_t page) {
      if (unmapped != nullptr && count < most && maps_pool_page(*e, page)) unmapped[count++] = dune_pa2page(PTE_ADDR(*e));
      edit->store(e, 0);  // empty, and the program's: dunk does not fill it
      return 0;
    });
  }
  for (std::size_t i = 0; i < count; ++i) dune_page_put(unmapped[i]);
  std::free(unmapped);
  if (dunk::in_vm()) dunk::flush_tlb();
}

int dune_vm_lookup(ptent_t* root, void* va, int create, ptent_t** pte_out) {
  AddressSpace* space = space_or_null(root);
  if (space == nullptr) return -EINVAL;
  std::uint64_t* entry = nullptr;
  if (create != CREATE_NONE) {
    auto edit = EntryEdit::begin(*space, PGSIZE);
    if (!edit.ok()) return errno_of(edit.error());
    auto slot = edit->slot(va, PageSize::k4K, /*create=*/true);
    if (!slot.ok()) return errno_of(slot.error());
    entry = slot->entry;
  } else {
    auto* table = reinterpret_cast<std::uint64_t*>(root);
    const auto address = reinterpret_cast<std::uint64_t>(va);
    for (unsigned level = kLevels;; --level) {
      std::uint64_t* e = &table[index_of(level, address)];
      if (level == 1 || ((*e & PTE_P) && is_large(*e, level))) {
        entry = e;
        break;
      }
      if (!(*e & PTE_P) || (table = table_at(*e)) == nullptr) return -ENOENT;
    }
  }
  note_handed_out(entry);
  *pte_out = reinterpret_cast<ptent_t*>(entry);
  return 0;
}

int dune_vm_insert_page(ptent_t* root, void* va, struct page* pg, int perm) {
  AddressSpace* space = space_or_null(root);
  if (space == nullptr) return -EINVAL;
  auto edit = EntryEdit::begin(*space, PGSIZE);
  if (!edit.ok()) return errno_of(edit.error());
  auto slot = slot_for_mapping(*edit, va, PageSize::k4K);
  if (!slot.ok()) return errno_of(slot.error());
  dune_page_get(pg);
  edit->store(slot->entry, PTE_ADDR(dune_page2pa(pg)) | entry_bits(perm));
  return 0;
}

struct page* dune_vm_lookup_page(ptent_t* root, void* va) {
  ptent_t* pte = nullptr;
  if (dune_vm_lookup(root, va, CREATE_NONE, &pte) != 0 || !(*pte & PTE_P)) return nullptr;
  const physaddr_t pa = PTE_ADDR(*pte);
  return dune_page_isfrompool(pa) ? dune_pa2page(pa) : nullptr;
}

ptent_t* dune_vm_clone(ptent_t* root) {
  AddressSpace* space = space_or_null(root);
  if (space == nullptr) return nullptr;
  Clone* free_slot = nullptr;
  for (Clone& c : clones) {
    if (c.root == nullptr) {
      free_slot = &c;
      break;
    }
  }
  if (free_slot == nullptr) return nullptr;
  auto copy = space->clone(dunk::CloneMode::kCopy);
  if (!copy.ok()) {
    report("dune_vm_clone", copy.error());
    return nullptr;
  }
  auto* new_root = reinterpret_cast<ptent_t*>(dunk::page_table_at((*copy)->root()));
  *free_slot = Clone{new_root, *copy};
  // The copy references the pool pages the original's mappings do.
  walk_range(new_root, 0, kLinearMask, [](std::uint64_t* e, std::uint64_t va) {
    if (maps_pool_page(*e, va)) dune_page_get(dune_pa2page(PTE_ADDR(*e)));
    return 0;
  });
  return new_root;
}

void dune_vm_free(ptent_t* root) {
  settle_handed_out();
  for (Clone& c : clones) {
    if (c.root != root || root == nullptr) continue;
    walk_range(root, 0, kLinearMask, [](std::uint64_t* e, std::uint64_t va) {
      if (maps_pool_page(*e, va)) dune_page_put(dune_pa2page(PTE_ADDR(*e)));
      return 0;
    });
    if (dunk::Status s = c.space->destroy(); !s) {
      report("dune_vm_free", s.error());
      return;
    }
    c = Clone{};
    return;
  }
}

void dune_vm_default_pgflt_handler(uintptr_t addr, uint64_t fec) {
  settle_handed_out();
  if (!(fec & FEC_W)) return;
  std::uint64_t* entry = deciding_entry(reinterpret_cast<void*>(addr));
  if (entry == nullptr || !(*entry & PTE_COW) || !(*entry & PTE_P)) return;
  const std::uint64_t flags = (PTE_FLAGS(*entry) & ~PTE_COW & ~dunk::kEntryOwnerBits) | PTE_W;
  const physaddr_t pa = PTE_ADDR(*entry);
  const bool pooled = dune_page_isfrompool(pa);
  if (pooled && dune_pa2page(pa)->ref == 1) {
    store_one(entry, pa | flags);  // the last reference: write in place
  } else {
    struct page* copy = dune_page_alloc();
    if (copy == nullptr) dune_die();
    std::memcpy(reinterpret_cast<void*>(dune_page2pa(copy)), reinterpret_cast<void*>(PGADDR(addr)), PGSIZE);
    if (pooled) dune_page_put(dune_pa2page(pa));
    store_one(entry, PTE_ADDR(dune_page2pa(copy)) | flags);
  }
  dune_flush_tlb_one(addr);
}

int dune_vm_page_walk(ptent_t* root, void* start_va, void* end_va, page_walk_cb cb, const void* arg) {
  if (space_or_null(root) == nullptr) return -EINVAL;
  return walk_range(root, reinterpret_cast<std::uint64_t>(start_va), reinterpret_cast<std::uint64_t>(end_va),
                    [&](std::uint64_t* e, std::uint64_t va) {
                      const std::uint64_t before = *e;
                      const int r = cb(arg, reinterpret_cast<ptent_t*>(e), reinterpret_cast<void*>(va));
                      claim(e, before);
                      return r;
                    });
}

uintptr_t dune_va_to_pa(void* ptr) {
  auto gpa = dunk::guest_physical(ptr);
  return gpa ? *gpa : reinterpret_cast<uintptr_t>(ptr);
}

uintptr_t dune_mmap_addr_to_pa(void* ptr) { return dune_va_to_pa(ptr); }
uintptr_t dune_stack_addr_to_pa(void* ptr) { return dune_va_to_pa(ptr); }

void* dune_pa_to_va(uintptr_t pa) { return dunk::host_address(pa); }

void dune_load_cr3(unsigned long cr3) {
  // From tables whose writable memory may be private copies (Wedge's),
  // libdune's state is only right on pgroot's: there first.
  std::uint64_t now;
  asm volatile("movq %%cr3, %0" : "=r"(now));
  if ((now & PTE_ADDR(~0ul)) != AddressSpace::process().root()) (void)AddressSpace::process().activate();
  settle_handed_out();
  const std::uint64_t root = cr3 & PTE_ADDR(~0ul);
  AddressSpace* space = space_of_root(reinterpret_cast<ptent_t*>(dunk::page_table_at(root)));
  if (space != nullptr && space->root() == root) {
    if (dunk::Status s = space->activate(); !s) report("load_cr3", s.error());
    return;
  }
  // Tables dunk does not know: loaded as they are, and not kept current.
  asm volatile("movq %0, %%cr3" : : "r"(root) : "memory");
}

}  // extern "C"
