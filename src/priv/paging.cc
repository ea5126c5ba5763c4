// The program's page tables (dunk/paging.h) over the address-space mirror's
// trees (src/core/mirror.h), which hold the coexistence rule.
#include "dunk/paging.h"

#include <atomic>

#include "arch/x86_64/paging.h"
#include "arch/x86_64/registers.h"
#include "core/machine.h"
#include "dunk/dunk.h"
#include "base/syscall.h"
#include "dunk/traps.h"
#include "guest/abi.h"
#include "priv/internal.h"

namespace dunk {

class AddressSpaces {
 public:
  static AddressSpace& get(unsigned id) noexcept {
    static AddressSpace* spaces = [] {
      alignas(AddressSpace) static std::byte storage[core::Mirror::kMaxTrees][sizeof(AddressSpace)];
      auto* s = reinterpret_cast<AddressSpace*>(storage);
      for (unsigned i = 0; i < core::Mirror::kMaxTrees; ++i) new (&s[i]) AddressSpace(i);
      return s;
    }();
    return spaces[id];
  }
};

core::Mirror* priv::mirror() noexcept {
  core::Machine& machine = core::Machine::instance();
  return machine.created() ? &machine.mirror() : nullptr;
}

AddressSpace& priv::address_space(unsigned id) noexcept { return AddressSpaces::get(id); }

namespace {

using priv::mirror;

constexpr Error kNoMachine{"the page tables exist once the process has entered VM mode (dunk::enter)", ENXIO};

Gva gva(const void* p) noexcept { return Gva(reinterpret_cast<std::uint64_t>(p)); }

arch::PageAttributes attributes(unsigned access) noexcept {
  return arch::PageAttributes{.writable = (access & kWrite) != 0,
                              .user = (access & kUser) != 0,
                              .executable = (access & kExec) != 0,
                              .write_through = (access & kWriteThrough) != 0,
                              .cache_disable = (access & kNoCache) != 0};
}

PageSize public_size(arch::PageSize s) noexcept {
  return s == arch::PageSize::k4K ? PageSize::k4K : s == arch::PageSize::k2M ? PageSize::k2M : PageSize::k1G;
}
arch::PageSize arch_size(PageSize s) noexcept {
  return s == PageSize::k4K ? arch::PageSize::k4K : s == PageSize::k2M ? arch::PageSize::k2M : arch::PageSize::k1G;
}

// A leaf's rights as the CPU applies them: `effective` from a lookup (the
// AND over every level), or the leaf's own bits in a walk (dunk's upper
// levels allow everything).
PageInfo info_of(std::uint64_t page, arch::PageSize size, arch::PageTableEntry leaf, bool nx) noexcept {
  PageInfo info;
  info.page = reinterpret_cast<void*>(page);
  info.size = public_size(size);
  info.access = kRead | (leaf.writable() ? kWrite : 0u) | ((!nx || !leaf.execute_disable()) ? kExec : 0u) |
                (leaf.user() ? kUser : 0u) | (leaf.cache_disable() ? kNoCache : 0u) |
                (leaf.write_through() ? kWriteThrough : 0u);
  info.accessed = leaf.accessed();
  info.dirty = leaf.dirty();
  info.program_owned = leaf.software() == static_cast<std::uint8_t>(core::Owner::kUser);
  info.physical = leaf.page_address(size).value();
  return info;
}

}  // namespace

Status priv::require_page_aligned(const void* va, std::size_t size) noexcept {
  if ((reinterpret_cast<std::uint64_t>(va) | size) % arch::kPageSize4K != 0 || size == 0) {
    return Error{"address and size must be non-zero multiples of 4 KiB", EINVAL};
  }
  return {};
}

// --- PageRef ------------------------------------------------------------------

std::uint64_t PageRef::raw() const noexcept {
  return std::atomic_ref<std::uint64_t>(*entry_).load(std::memory_order_acquire);
}
bool PageRef::accessed() const noexcept { return arch::PageTableEntry(raw()).accessed(); }
bool PageRef::dirty() const noexcept { return arch::PageTableEntry(raw()).dirty(); }

bool PageRef::test_and_clean() noexcept {
  auto* e = reinterpret_cast<arch::PageTableEntry*>(entry_);
  arch::PageTableEntry current = arch::load_entry(e);
  for (;;) {
    if (!current.accessed() && !current.dirty()) return false;
    arch::PageTableEntry clean = arch::PageTableEntry(current).set_accessed(false).set_dirty(false);
    if (arch::exchange_entry(e, current, clean)) return current.dirty();
  }
}

// --- AddressSpace ---------------------------------------------------------------

AddressSpace& AddressSpace::process() noexcept { return AddressSpaces::get(0); }

AddressSpace& AddressSpace::current() noexcept {
  core::Cpu* cpu = core::current_cpu();
  core::Mirror* m = mirror();
  if (cpu == nullptr || m == nullptr || !in_vm()) return process();
  return AddressSpaces::get(m->tree_of_root(Gpa(cpu->area->root)).value_or(0));
}

Status AddressSpace::map(void* va, const void* memory, std::size_t size, unsigned access, PageSize largest) noexcept {
  DUNK_TRY(priv::require_page_aligned(va, size));
  if (reinterpret_cast<std::uint64_t>(memory) % arch::kPageSize4K != 0) {
    return Error{"AddressSpace::map: memory not 4 KiB aligned", EINVAL};
  }
  core::Mirror* m = mirror();
  if (m == nullptr) return kNoMachine;
  DUNK_TRY(m->user_map(id_, gva(va), hva_of(memory), size, attributes(access), arch_size(largest)));
  if ((access & kRead) == 0) return m->user_protect(id_, gva(va), size, {}, /*present=*/false);
  return {};
}

Status AddressSpace::unmap(void* va, std::size_t size) noexcept {
  DUNK_TRY(priv::require_page_aligned(va, size));
  core::Mirror* m = mirror();
  if (m == nullptr) return kNoMachine;
  return m->user_unmap(id_, gva(va), size);
}

Status AddressSpace::protect(void* va, std::size_t size, unsigned access) noexcept {
  DUNK_TRY(priv::require_page_aligned(va, size));
  core::Mirror* m = mirror();
  if (m == nullptr) return kNoMachine;
  return m->user_protect(id_, gva(va), size, attributes(access), (access & kRead) != 0);
}

Status AddressSpace::release(void* va, std::size_t size) noexcept {
  DUNK_TRY(priv::require_page_aligned(va, size));
  core::Mirror* m = mirror();
  if (m == nullptr) return kNoMachine;
  return m->user_release(id_, gva(va), size);
}

std::optional<PageInfo> AddressSpace::lookup(const void* va) const noexcept {
  core::Mirror* m = mirror();
  arch::PageTable* tree = m != nullptr ? m->tree(id_) : nullptr;
  if (tree == nullptr) return std::nullopt;
  auto t = tree->lookup(gva(va));
  if (!t) return std::nullopt;
  const std::uint64_t bytes = arch::page_bytes(t->size);
  PageInfo info = info_of(reinterpret_cast<std::uint64_t>(va) & ~(bytes - 1), t->size, arch::load_entry(t->leaf),
                          tree->features().nx);
  // The effective rights (every level's), and the exact byte's address.
  info.access = kRead | (t->attrs.writable ? kWrite : 0u) | (t->attrs.executable ? kExec : 0u) |
                (t->attrs.user ? kUser : 0u) | (info.access & (kNoCache | kWriteThrough));
  info.physical = t->pa.value();
  return info;
}

std::size_t AddressSpace::walk_impl(const void* va, std::size_t size,
                                    void (*call)(void*, const PageInfo&, PageRef&), void* f) const noexcept {
  core::Mirror* m = mirror();
  arch::PageTable* tree = m != nullptr ? m->tree(id_) : nullptr;
  if (tree == nullptr) return 0;
  std::size_t n = 0;
  const bool nx = tree->features().nx;
  tree->for_each_leaf(gva(va), size, [&](Gva page, arch::PageSize s, arch::PageTableEntry& e) {
    PageInfo info = info_of(page.value(), s, arch::load_entry(&e), nx);
    PageRef ref(reinterpret_cast<std::uint64_t*>(&e));
    call(f, info, ref);
    ++n;
  });
  return n;
}

Result<AddressSpace*> AddressSpace::clone(CloneMode mode) const noexcept {
  core::Mirror* m = mirror();
  if (m == nullptr) return kNoMachine;
  const arch::CloneKind kind = mode == CloneMode::kShareLeafTables ? arch::CloneKind::kShareLeafTables
                               : mode == CloneMode::kCopyOnWrite    ? arch::CloneKind::kCopyOnWrite
                                                                    : arch::CloneKind::kCopy;
  DUNK_ASSIGN_OR_RETURN(unsigned id, m->clone_tree(id_, kind));
  return &AddressSpaces::get(id);
}

std::size_t AddressSpace::own_tables() const noexcept {
  core::Mirror* m = mirror();
  return m != nullptr ? m->own_tables(id_) : 0;
}

std::size_t page_tables_in_use() noexcept {
  core::Mirror* m = mirror();
  return m != nullptr ? m->tables_in_use() : 0;
}

Status AddressSpace::destroy() noexcept {
  core::Mirror* m = mirror();
  if (m == nullptr) return kNoMachine;
  if (in_vm() && &current() == this) return Error{"AddressSpace::destroy: the calling vCPU runs on it", EBUSY};
  return m->destroy_tree(id_);
}

std::uint64_t AddressSpace::root() const noexcept {
  core::Mirror* m = mirror();
  arch::PageTable* tree = m != nullptr ? m->tree(id_) : nullptr;
  return tree != nullptr ? tree->root().value() : 0;
}

Status AddressSpace::activate() noexcept {
  if (!in_vm()) return Error{"AddressSpace::activate: needs VM mode", EPERM};
  const std::uint64_t r = root();
  if (r == 0) return Error{"AddressSpace::activate: no such address space", EINVAL};
  // With CR4.PCIDE, CR3[11:0] tags the TLB entries this space creates and
  // bit 63 clear flushes that tag's old entries, so an edit made while the
  // space was inactive cannot leave a stale one (SDM vol. 3A §4.10.4.1,
  // "Operations that Invalidate TLBs and Paging-Structure Caches": MOV to
  // CR3). Entries of other spaces stay.
  // PCIDs 1..4095, recycled past 4095 spaces: two spaces with one PCID
  // never mix entries, as each load flushes the PCID's.
  const arch::Cr3 cr3 =
      arch::Cr3::make(Gpa(r), pcid_enabled() ? static_cast<std::uint16_t>(1 + id_ % 4095) : 0);
  core::current_cpu()->area->root = r;
  asm volatile("movq %0, %%cr3" : : "r"(cr3.raw()) : "memory");
  return {};
}

// --- Raw entries ------------------------------------------------------------

static_assert(kEntryDunkOwned == std::uint64_t{static_cast<std::uint8_t>(core::Owner::kDunk)} << 9);
static_assert(kEntryProgramOwned == std::uint64_t{static_cast<std::uint8_t>(core::Owner::kUser)} << 9);

Result<EntryEdit> EntryEdit::begin(AddressSpace& space, std::size_t size) noexcept {
  core::Mirror* m = mirror();
  if (m == nullptr) return kNoMachine;
  if (m->tree(space.id()) == nullptr) return Error{"EntryEdit: no such address space", EINVAL};
  DUNK_TRY(m->begin_raw_edit(size));
  return EntryEdit(space);
}

EntryEdit::~EntryEdit() {
  if (held_) mirror()->end_raw_edit();
}

Result<EntrySlot> EntryEdit::slot(const void* va, PageSize size, bool create) noexcept {
  const unsigned level = size == PageSize::k4K ? 1 : size == PageSize::k2M ? 2 : 3;
  DUNK_ASSIGN_OR_RETURN(arch::EntryRef ref, mirror()->raw_slot(space_->id(), gva(va), level, create));
  const PageSize mapped = public_size(arch::leaf_size(ref.level));
  return EntrySlot{reinterpret_cast<std::uint64_t*>(ref.entry), mapped};
}

void EntryEdit::store(std::uint64_t* entry, std::uint64_t value) noexcept {
  mirror()->raw_store(reinterpret_cast<arch::PageTableEntry*>(entry), arch::PageTableEntry(value));
}

std::uint64_t* page_table_at(std::uint64_t gpa) noexcept {
  core::Mirror* m = mirror();
  if (m == nullptr) return nullptr;
  return reinterpret_cast<std::uint64_t*>(m->table_of(Gpa(gpa & arch::PageTableEntry::kAddressMask4K)));
}

std::optional<std::uint64_t> guest_physical(const void* p) noexcept {
  core::Mirror* m = mirror();
  if (m == nullptr) return std::nullopt;
  const Hva address = hva_of(p);
  // The program will hold this address: no chunk gives its guest-physical
  // space back from now on (Mirror::assign_eagerly).
  m->assign_eagerly();
  if (auto gpa = m->translate(address)) return gpa->value();
  // No guest-physical space yet (the monitor assigns it as it mirrors
  // memory, and PROT_NONE memory is not mirrored): the monitor assigns it.
  if (!in_vm()) return std::nullopt;
  const long gpa = sys::call(DUNK_SYSCALL_GUEST_PHYSICAL, static_cast<long>(address.value()));
  if (sys::failed(gpa)) return std::nullopt;
  return static_cast<std::uint64_t>(gpa);
}

void* host_address(std::uint64_t gpa) noexcept {
  core::Mirror* m = mirror();
  if (m == nullptr) return nullptr;
  auto hva = m->host_of(Gpa(gpa));
  return hva ? hva->as_ptr<void>() : nullptr;
}

void flush_tlb(const void* va) noexcept {
  if (in_vm()) asm volatile("invlpg (%0)" : : "r"(va) : "memory");
}

void flush_tlb() noexcept {
  if (!in_vm()) return;
  std::uint64_t raw;
  asm volatile("movq %%cr3, %0" : "=r"(raw));
  // Reloading CR3 without "keep" flushes the current PCID's entries.
  const arch::Cr3 cr3 = arch::Cr3::from_raw(raw).with_keep_tlb(false);
  asm volatile("movq %0, %%cr3" : : "r"(cr3.raw()) : "memory");
}

bool pcid_enabled() noexcept {
  core::Machine& machine = core::Machine::instance();
  return machine.created() && machine.features().pcid;
}

}  // namespace dunk
