// 4-level paging structures: the entry format, page sizes, address
// decomposition, and the attributes dunk puts on a mapping.
//
// Intel SDM vol. 3A §4.5 "4-Level Paging and 5-Level Paging": Table 4-15
// "Format of a PML4 Entry (PML4E) that References a Page-Directory-Pointer
// Table", Table 4-16 "... PDPTE that Maps a 1-GByte Page", Table 4-17 "...
// PDPTE that References a Page Directory", Table 4-18 "... PDE that Maps a
// 2-MByte Page", Table 4-19 "... PDE that References a Page Table", Table
// 4-20 "... Page-Table Entry that Maps a 4-KByte Page". AMD APM vol. 2 §5.3
// "Long-Mode Page Translation". (Table numbers differ between SDM editions;
// the titles do not.)
#pragma once

#include <atomic>
#include <cstdint>

#include "arch/x86_64/bits.h"
#include "dunk/address.h"

namespace dunk::arch {

enum class PageSize : std::uint8_t { k4K, k2M, k1G };

inline constexpr std::uint64_t kPageSize4K = std::uint64_t{1} << 12;
inline constexpr std::uint64_t kPageSize2M = std::uint64_t{1} << 21;
inline constexpr std::uint64_t kPageSize1G = std::uint64_t{1} << 30;

constexpr std::uint64_t page_bytes(PageSize s) noexcept {
  switch (s) {
    case PageSize::k4K: return kPageSize4K;
    case PageSize::k2M: return kPageSize2M;
    case PageSize::k1G: return kPageSize1G;
  }
  return 0;
}

// Levels are numbered as the SDM's structures nest: 4 = PML4, 3 = PDPT,
// 2 = page directory, 1 = page table. One entry of level L covers
// 2^(12 + 9 (L - 1)) bytes.
inline constexpr unsigned kPagingLevels = 4;
inline constexpr unsigned kEntriesPerTable = 512;
inline constexpr std::uint64_t kTableBytes = 4096;

constexpr unsigned level_shift(unsigned level) noexcept { return 12 + 9 * (level - 1); }
constexpr std::uint64_t level_span(unsigned level) noexcept { return std::uint64_t{1} << level_shift(level); }

// The level whose entries map pages of size `s`.
constexpr unsigned leaf_level(PageSize s) noexcept {
  return s == PageSize::k4K ? 1 : s == PageSize::k2M ? 2 : 3;
}
constexpr PageSize leaf_size(unsigned level) noexcept {
  return level == 1 ? PageSize::k4K : level == 2 ? PageSize::k2M : PageSize::k1G;
}

// Index into the level-`level` table for `va` (SDM Figure 4-8 "Linear-Address
// Translation to a 4-KByte Page using 4-Level Paging").
constexpr unsigned index(unsigned level, Gva va) noexcept {
  return static_cast<unsigned>(get_field(va.value(), level_shift(level) + 8, level_shift(level)));
}

// 48-bit linear addresses must have bits 63:47 all equal (SDM vol. 1 §3.3.7.1
// "Canonical Addressing").
inline constexpr unsigned kLinearBits = 48;
constexpr bool is_canonical(Gva va, unsigned linear_bits = kLinearBits) noexcept {
  const auto value = static_cast<std::int64_t>(va.value());
  const unsigned unused = 64 - linear_bits;
  return ((value << unused) >> unused) == value;
}

// What dunk decides about a mapping. Accessed/dirty, PAT and protection keys
// are left at zero by the builders (PAT 0 with the power-on IA32_PAT is
// write-back).
struct PageAttributes {
  bool writable = false;
  bool user = false;
  bool executable = false;
  bool global = false;
  bool write_through = false;
  bool cache_disable = false;
  std::uint8_t software = 0;  // 3 bits, entry bits 11:9
  constexpr bool operator==(const PageAttributes&) const noexcept = default;
};

// What the CPU offers the page-table builder: 1 GiB pages (CPUID
// 0x80000001 EDX.26), the execute-disable bit (EDX.20; without it bit 63 is
// reserved and must stay 0) and MAXPHYADDR (0x80000008 EAX[7:0]).
struct PagingFeatures {
  bool gib_pages = false;
  bool nx = false;
  unsigned phys_bits = 36;
};

// One entry of any of the four levels. Bit 7 is PS in a PDPTE/PDE and PAT in
// a PTE; a 2 MiB or 1 GiB leaf keeps PAT in bit 12, which is why the
// physical address of a large page starts above it.
class alignas(8) PageTableEntry {
 public:
  constexpr PageTableEntry() noexcept = default;
  constexpr explicit PageTableEntry(std::uint64_t raw) noexcept : raw_(raw) {}

  // An entry that references a table: present, writable, user, XD clear, so
  // the leaf alone decides a page's permissions.
  static constexpr PageTableEntry table(Gpa table_gpa) noexcept;
  // A leaf mapping `pa` with `attrs`. XD is set only when `nx` says the CPU
  // has it; a CPU without NX cannot express non-executable pages.
  static constexpr PageTableEntry leaf(Gpa pa, PageSize size, const PageAttributes& attrs, bool nx) noexcept;

  constexpr std::uint64_t raw() const noexcept { return raw_; }

  constexpr bool present() const noexcept { return get_bit(raw_, 0); }
  constexpr bool writable() const noexcept { return get_bit(raw_, 1); }
  constexpr bool user() const noexcept { return get_bit(raw_, 2); }
  constexpr bool write_through() const noexcept { return get_bit(raw_, 3); }
  constexpr bool cache_disable() const noexcept { return get_bit(raw_, 4); }
  constexpr bool accessed() const noexcept { return get_bit(raw_, 5); }
  constexpr bool dirty() const noexcept { return get_bit(raw_, 6); }  // leaves only
  constexpr bool page_size() const noexcept { return get_bit(raw_, 7); }  // PDPTE/PDE only
  constexpr bool pat_4k() const noexcept { return get_bit(raw_, 7); }  // PTE only
  constexpr bool global() const noexcept { return get_bit(raw_, 8); }  // leaves only
  constexpr std::uint8_t software() const noexcept { return static_cast<std::uint8_t>(get_field(raw_, 11, 9)); }
  constexpr bool pat_large() const noexcept { return get_bit(raw_, 12); }  // 2 MiB/1 GiB leaves only
  constexpr std::uint8_t software_high() const noexcept { return static_cast<std::uint8_t>(get_field(raw_, 58, 52)); }
  constexpr std::uint8_t protection_key() const noexcept { return static_cast<std::uint8_t>(get_field(raw_, 62, 59)); }
  constexpr bool execute_disable() const noexcept { return get_bit(raw_, 63); }

  constexpr PageTableEntry& set_present(bool v) noexcept { return set_bit(0, v); }
  constexpr PageTableEntry& set_writable(bool v) noexcept { return set_bit(1, v); }
  constexpr PageTableEntry& set_user(bool v) noexcept { return set_bit(2, v); }
  constexpr PageTableEntry& set_write_through(bool v) noexcept { return set_bit(3, v); }
  constexpr PageTableEntry& set_cache_disable(bool v) noexcept { return set_bit(4, v); }
  constexpr PageTableEntry& set_accessed(bool v) noexcept { return set_bit(5, v); }
  constexpr PageTableEntry& set_dirty(bool v) noexcept { return set_bit(6, v); }
  constexpr PageTableEntry& set_page_size(bool v) noexcept { return set_bit(7, v); }
  constexpr PageTableEntry& set_pat_4k(bool v) noexcept { return set_bit(7, v); }
  constexpr PageTableEntry& set_global(bool v) noexcept { return set_bit(8, v); }
  constexpr PageTableEntry& set_software(std::uint8_t v) noexcept { return set_field(11, 9, v); }
  constexpr PageTableEntry& set_pat_large(bool v) noexcept { return set_bit(12, v); }
  constexpr PageTableEntry& set_software_high(std::uint8_t v) noexcept { return set_field(58, 52, v); }
  constexpr PageTableEntry& set_protection_key(std::uint8_t v) noexcept { return set_field(62, 59, v); }
  constexpr PageTableEntry& set_execute_disable(bool v) noexcept { return set_bit(63, v); }

  // Whether this entry, found at `level`, maps a page rather than a table
  // (PS is reserved in a PML4E).
  constexpr bool is_leaf(unsigned level) const noexcept { return level == 1 || (level <= 3 && page_size()); }

  // A leaf taken out of service: not present, so the CPU ignores every
  // other bit (SDM §4.5 "If the P flag is 0 ... the entry is not used ... and
  // the other bits are ignored"; AMD APM vol. 2 §5.4.1), which keep what the
  // leaf mapped, plus kHiddenBit to say so. A later protect brings it back.
  static constexpr unsigned kHiddenBit = 52;
  constexpr bool hidden() const noexcept { return !present() && get_bit(raw_, kHiddenBit); }
  constexpr PageTableEntry as_hidden() const noexcept {
    return PageTableEntry(with_bit(with_bit(raw_, 0, false), kHiddenBit, true));
  }
  // A hidden leaf back in service, mapping `pa` now: present again, every
  // other bit (rights, accessed, dirty, PAT, key) as it was kept.
  constexpr PageTableEntry revealed(Gpa pa, PageSize size) const noexcept {
    return PageTableEntry(with_bit(with_bit(raw_, kHiddenBit, false), 0, true)).set_page_address(pa, size);
  }
  // An entry that links a table and whose accessed bit another reader than
  // a dirty scan took (the mirror's reclaim clock, core/mirror.cc) keeps the
  // fact here: the CPU ignores bits 62:52 of such an entry (SDM vol. 3A
  // §4.5, Tables 4-15 to 4-17; AMD APM vol. 2 §5.4.1), and a scan that prunes
  // by accessed bits must still descend below it (PageTable::scan_dirty),
  // since writes there may be unreported. A cleaning scan clears both.
  static constexpr unsigned kAccessedTakenBit = 53;
  constexpr bool accessed_taken() const noexcept { return get_bit(raw_, kAccessedTakenBit); }
  constexpr PageTableEntry with_accessed_taken() const noexcept {
    return PageTableEntry(with_bit(with_bit(raw_, 5, false), kAccessedTakenBit, true));
  }
  // A present leaf or a hidden one, at `level`.
  constexpr bool maps_page(unsigned level) const noexcept { return (present() || hidden()) && is_leaf(level); }
  // A not-present entry that carries nothing but software bits (a marker
  // left by an unmap; 0 is the plain empty entry).
  static constexpr PageTableEntry marker(std::uint8_t software) noexcept {
    return PageTableEntry().set_software(software);
  }

  // Physical address of the referenced table or 4 KiB page: bits 51:12.
  constexpr Gpa table_address() const noexcept { return Gpa(raw_ & kAddressMask4K); }
  // Physical address of a leaf of `size`: bits 51:12, 51:21 or 51:30.
  constexpr Gpa page_address(PageSize size) const noexcept { return Gpa(raw_ & address_mask(size)); }
  constexpr PageTableEntry& set_table_address(Gpa pa) noexcept {
    raw_ = (raw_ & ~kAddressMask4K) | (pa.value() & kAddressMask4K);
    return *this;
  }
  constexpr PageTableEntry& set_page_address(Gpa pa, PageSize size) noexcept {
    raw_ = (raw_ & ~address_mask(size)) | (pa.value() & address_mask(size));
    return *this;
  }

  // The attributes of a leaf (inverse of leaf()).
  constexpr PageAttributes attributes() const noexcept {
    return PageAttributes{writable(), user(), !execute_disable(), global(), write_through(),
                          cache_disable(), software()};
  }

  static constexpr std::uint64_t kAddressMask4K = bit_mask(51, 12);
  static constexpr std::uint64_t address_mask(PageSize size) noexcept {
    return size == PageSize::k4K ? bit_mask(51, 12) : size == PageSize::k2M ? bit_mask(51, 21) : bit_mask(51, 30);
  }

  constexpr bool operator==(const PageTableEntry&) const noexcept = default;

 private:
  constexpr PageTableEntry& set_bit(unsigned n, bool v) noexcept {
    raw_ = with_bit(raw_, n, v);
    return *this;
  }
  constexpr PageTableEntry& set_field(unsigned hi, unsigned lo, std::uint64_t v) noexcept {
    raw_ = with_field(raw_, hi, lo, v);
    return *this;
  }

  std::uint64_t raw_ = 0;
};
static_assert(sizeof(PageTableEntry) == 8);
static_assert(alignof(PageTableEntry) == 8);

constexpr PageTableEntry PageTableEntry::table(Gpa table_gpa) noexcept {
  return PageTableEntry().set_present(true).set_writable(true).set_user(true).set_table_address(table_gpa);
}

constexpr PageTableEntry PageTableEntry::leaf(Gpa pa, PageSize size, const PageAttributes& a, bool nx) noexcept {
  PageTableEntry e;
  e.set_present(true)
      .set_writable(a.writable)
      .set_user(a.user)
      .set_write_through(a.write_through)
      .set_cache_disable(a.cache_disable)
      .set_global(a.global)
      .set_software(a.software)
      .set_page_size(size != PageSize::k4K)
      .set_execute_disable(nx && !a.executable)
      .set_page_address(pa, size);
  return e;
}

// The software bits (11:9) of an entry that links a table shared for edits
// (PageTable::clone with CloneKind::kShareLeafTables marks both trees'
// links): an edit through either tree shows in both, and no edit copies
// the table to unshare it. Counted like any link (TableMemory::links): the
// table goes when the last tree that links it lets go.
inline constexpr std::uint8_t kBorrowedTable = 7;

// Entries of live tables are read and written only through these: the CPU
// walks the tables of running vCPUs while the monitor edits them, so each
// change must reach memory as a single 64-bit access, and a subtable's
// contents must be visible before the entry that links it (release).
inline PageTableEntry load_entry(const PageTableEntry* e) noexcept {
  return std::atomic_ref<PageTableEntry>(*const_cast<PageTableEntry*>(e)).load(std::memory_order_acquire);
}
inline void store_entry(PageTableEntry* e, PageTableEntry value) noexcept {
  std::atomic_ref<PageTableEntry>(*e).store(value, std::memory_order_release);
}
// Replaces `expected` with `desired` unless the CPU changed the entry
// meanwhile (it sets accessed/dirty bits on its own); on failure `expected`
// holds the current value.
inline bool exchange_entry(PageTableEntry* e, PageTableEntry& expected, PageTableEntry desired) noexcept {
  return std::atomic_ref<PageTableEntry>(*e).compare_exchange_strong(expected, desired, std::memory_order_acq_rel);
}
static_assert(std::atomic_ref<PageTableEntry>::is_always_lock_free);

// CR3 with 4-level paging (Intel SDM vol. 3A §4.5, "4-Level Paging and
// 5-Level Paging", Table "Use of CR3 with 4-Level Paging and CR4.PCIDE = 1";
// §4.10.4.1 for bit 63): bits 51:12 the root table's physical address, bits
// 11:0 the PCID that tags the TLB entries made under it (with CR4.PCIDE), and
// bit 63, on a MOV to CR3 only, "keep this PCID's TLB entries".
class Cr3 {
 public:
  static constexpr std::uint64_t kKeepTlb = std::uint64_t{1} << 63;
  static constexpr std::uint64_t kPcidMask = bit_mask(11, 0);

  static constexpr Cr3 make(Gpa root, std::uint16_t pcid = 0, bool keep_tlb = false) noexcept {
    return Cr3((root.value() & PageTableEntry::kAddressMask4K) | (pcid & kPcidMask) | (keep_tlb ? kKeepTlb : 0));
  }
  static constexpr Cr3 from_raw(std::uint64_t raw) noexcept { return Cr3(raw); }

  constexpr Gpa root() const noexcept { return Gpa(raw_ & PageTableEntry::kAddressMask4K); }
  constexpr std::uint16_t pcid() const noexcept { return static_cast<std::uint16_t>(raw_ & kPcidMask); }
  constexpr bool keep_tlb() const noexcept { return (raw_ & kKeepTlb) != 0; }
  constexpr Cr3 with_keep_tlb(bool keep) const noexcept { return Cr3((raw_ & ~kKeepTlb) | (keep ? kKeepTlb : 0)); }
  constexpr std::uint64_t raw() const noexcept { return raw_; }
  constexpr bool operator==(const Cr3&) const noexcept = default;

 private:
  constexpr explicit Cr3(std::uint64_t raw) noexcept : raw_(raw) {}
  std::uint64_t raw_;
};

}  // namespace dunk::arch
