// PTEditor's calls (dunk/ptedit.h) on dunk's guest page tables.
#include "dunk/ptedit.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "arch/x86_64/paging.h"
#include "arch/x86_64/registers.h"
#include "core/mirror.h"
#include "dunk/dunk.h"
#include "dunk/paging.h"
#include "priv/internal.h"

namespace {

using dunk::arch::PageTableEntry;
using dunk::arch::kPagingLevels;

constexpr std::uint8_t kProgramOwned = static_cast<std::uint8_t>(dunk::core::Owner::kUser);
constexpr std::size_t kPage = dunk::arch::kPageSize4K;

pid_t own_pid = 0;  // set by ptedit_init, so that pid checks make no system call

bool refuse(const char* why) {
  std::fprintf(stderr, "dunk ptedit: %s\n", why);
  return false;
}

bool usable(pid_t pid) {
  if (!dunk::in_vm()) return refuse("not in VM mode (call ptedit_init first)");
  if (pid != 0 && pid != own_pid) return refuse("only the calling process's own page tables (pid 0) can be edited");
  return dunk::priv::mirror() != nullptr;
}

dunk::arch::PageTable* current_tree() {
  return dunk::priv::mirror()->tree(dunk::AddressSpace::current().id());
}

// The entries a walk of `address` reads; n == 0 when there is no tree.
struct Walk {
  PageTableEntry* entry[kPagingLevels];
  unsigned n = 0;
  PageTableEntry* deciding() const { return n == 0 ? nullptr : entry[n - 1]; }
  unsigned deciding_level() const { return kPagingLevels + 1 - n; }
};

Walk walk(void* address) {
  Walk w;
  if (dunk::arch::PageTable* tree = current_tree()) {
    w.n = tree->path(dunk::Gva(reinterpret_cast<std::uint64_t>(address)), w.entry);
  }
  return w;
}

// A leaf (or a not-present entry in its place) the program wrote: the
// monitor leaves it alone from now on (dunk/paging.h's rule).
PageTableEntry owned(PageTableEntry e, unsigned level) {
  if (!e.present() || e.is_leaf(level)) e.set_software(kProgramOwned);
  return e;
}

void store(PageTableEntry* slot, PageTableEntry value, unsigned level) {
  dunk::core::Mirror* m = dunk::priv::mirror();
  m->note_user_edits();
  dunk::LockGuard hold(m->lock());
  dunk::arch::store_entry(slot, owned(value, level));
}

// Changes the entry that maps `address` with `change` and flushes it.
template <class F>
void edit_leaf(void* address, pid_t pid, F change) {
  if (!usable(pid)) return;
  Walk w = walk(address);
  if (w.n == 0) return (void)refuse("no page-table entry for that address");
  PageTableEntry e = dunk::arch::load_entry(w.deciding());
  change(e, w.deciding_level());
  store(w.deciding(), e, w.deciding_level());
  dunk::flush_tlb(address);
}

std::uint64_t read_pat() {
  std::uint32_t lo, hi;
  asm volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(dunk::arch::msr::kPat));
  return (std::uint64_t{hi} << 32) | lo;
}

void* host_page(size_t pfn) {
  dunk::core::Mirror* m = dunk::priv::mirror();
  auto host = m != nullptr ? m->host_of(dunk::Gpa(pfn * kPage)) : std::nullopt;
  if (!host) refuse("no memory at that guest-physical frame");
  return host ? host->as_ptr<void>() : nullptr;
}

}  // namespace

extern "C" {

int ptedit_init(void) {
  if (!dunk::in_vm()) {
    if (dunk::Status s = dunk::enter(); !s) {
      char buf[512];
      std::fprintf(stderr, "dunk ptedit: cannot enter VM mode: %s\n", dunk::describe(s.error(), buf, sizeof buf));
      return -1;
    }
  }
  own_pid = static_cast<pid_t>(syscall(SYS_getpid));
  return 0;
}

void ptedit_cleanup(void) {}
void ptedit_use_implementation(int) {}

ptedit_entry_t ptedit_resolve(void* address, pid_t pid) {
  ptedit_entry_t e{};
  e.pid = static_cast<size_t>(pid);
  e.vaddr = reinterpret_cast<size_t>(address);
  if (!usable(pid)) return e;
  Walk w = walk(address);
  size_t* slots[] = {&e.p4d, &e.pud, &e.pmd, &e.pte};
  const size_t masks[] = {PTEDIT_VALID_MASK_P4D, PTEDIT_VALID_MASK_PUD, PTEDIT_VALID_MASK_PMD, PTEDIT_VALID_MASK_PTE};
  for (unsigned i = 0; i < w.n; ++i) {
    *slots[i] = dunk::arch::load_entry(w.entry[i]).raw();
    e.valid |= masks[i];
  }
  if (w.n > 0) {
    e.pgd = e.p4d;  // 4-level paging: the PGD level is folded into the PML4
    e.valid |= PTEDIT_VALID_MASK_PGD;
  }
  return e;
}

void ptedit_update(void* address, pid_t pid, ptedit_entry_t* vm) {
  if (!usable(pid)) return;
  Walk w = walk(address);
  const size_t values[] = {(vm->valid & PTEDIT_VALID_MASK_P4D) ? vm->p4d : vm->pgd, vm->pud, vm->pmd, vm->pte};
  const size_t masks[] = {PTEDIT_VALID_MASK_P4D | PTEDIT_VALID_MASK_PGD, PTEDIT_VALID_MASK_PUD,
                          PTEDIT_VALID_MASK_PMD, PTEDIT_VALID_MASK_PTE};
  for (unsigned i = 0; i < w.n; ++i) {
    if ((vm->valid & masks[i]) != 0) store(w.entry[i], PageTableEntry(values[i]), kPagingLevels - i);
  }
  dunk::flush_tlb(address);
}

void ptedit_pte_set_bit(void* address, pid_t pid, int bit) {
  edit_leaf(address, pid, [bit](PageTableEntry& e, unsigned) { e = PageTableEntry(e.raw() | (size_t{1} << bit)); });
}

void ptedit_pte_clear_bit(void* address, pid_t pid, int bit) {
  edit_leaf(address, pid, [bit](PageTableEntry& e, unsigned) { e = PageTableEntry(e.raw() & ~(size_t{1} << bit)); });
}

unsigned char ptedit_pte_get_bit(void* address, pid_t pid, int bit) {
  if (!usable(pid)) return 0;
  Walk w = walk(address);
  if (w.n == 0) return 0;
  return static_cast<unsigned char>((dunk::arch::load_entry(w.deciding()).raw() >> bit) & 1);
}

size_t ptedit_pte_get_pfn(void* address, pid_t pid) {
  if (!usable(pid)) return 0;
  Walk w = walk(address);
  if (w.n == 0) return 0;
  const PageTableEntry e = dunk::arch::load_entry(w.deciding());
  return e.page_address(dunk::arch::leaf_size(w.deciding_level())).value() / kPage;
}

void ptedit_pte_set_pfn(void* address, pid_t pid, size_t pfn) {
  edit_leaf(address, pid, [pfn](PageTableEntry& e, unsigned level) {
    e.set_page_address(dunk::Gpa(pfn * kPage), dunk::arch::leaf_size(level));
  });
}

int ptedit_get_pagesize(void) { return static_cast<int>(kPage); }

size_t ptedit_set_pfn(size_t entry, size_t pfn) {
  return PageTableEntry(entry).set_table_address(dunk::Gpa(pfn * kPage)).raw();
}

size_t ptedit_get_pfn(size_t entry) { return PageTableEntry(entry).table_address().value() / kPage; }

void ptedit_read_physical_page(size_t pfn, char* buffer) {
  if (void* page = host_page(pfn)) std::memcpy(buffer, page, kPage);
}

void ptedit_write_physical_page(size_t pfn, char* content) {
  if (void* page = host_page(pfn)) std::memcpy(page, content, kPage);
}

size_t ptedit_get_paging_root(pid_t pid) {
  if (!usable(pid)) return 0;
  return dunk::AddressSpace::current().root();
}

void ptedit_set_paging_root(pid_t pid, size_t root) {
  if (!usable(pid)) return;
  auto id = dunk::priv::mirror()->tree_of_root(dunk::arch::Cr3::from_raw(root).root());
  if (!id || root == 0) return (void)refuse("not the root of one of dunk's address spaces (AddressSpace::root())");
  if (dunk::Status s = dunk::priv::address_space(*id).activate(); !s) refuse(s.error().what);
}

void ptedit_invalidate_tlb(void* address) { dunk::flush_tlb(address); }

void ptedit_full_serializing_barrier(void) {
  // CPUID serializes (SDM vol. 3A §9.3 "Serializing Instructions"); in a
  // guest it exits to KVM, which answers it in the kernel.
  std::uint32_t a = 0, b, c = 0, d;
  asm volatile("mfence\n\tcpuid\n\tmfence" : "+a"(a), "=b"(b), "+c"(c), "=d"(d) : : "memory");
}

size_t ptedit_get_mts(void) { return dunk::in_vm() ? read_pat() : 0; }

void ptedit_set_mts(size_t mts) {
  if (!dunk::in_vm()) return (void)refuse("not in VM mode");
  asm volatile("wrmsr" : : "c"(dunk::arch::msr::kPat), "a"(static_cast<std::uint32_t>(mts)),
               "d"(static_cast<std::uint32_t>(mts >> 32))
               : "memory");
}

char ptedit_get_mt(unsigned char mt) { return static_cast<char>((ptedit_get_mts() >> (mt * 8)) & 0x7); }

void ptedit_set_mt(unsigned char mt, unsigned char value) {
  size_t mts = ptedit_get_mts();
  mts &= ~(size_t{0xff} << (mt * 8));
  ptedit_set_mts(mts | (size_t{value} << (mt * 8)));
}

unsigned char ptedit_find_mt(unsigned char type) {
  const size_t mts = ptedit_get_mts();
  unsigned char found = 0;
  for (unsigned i = 0; i < 8; ++i) {
    if (((mts >> (i * 8)) & 0x7) == type) found |= static_cast<unsigned char>(1u << i);
  }
  return found;
}

int ptedit_find_first_mt(unsigned char type) {
  const unsigned char found = ptedit_find_mt(type);
  return found == 0 ? -1 : __builtin_ctz(found);
}

// The PAT index of a 4 KiB entry is PAT:PCD:PWT, bits 7, 4, 3 (SDM vol. 3A
// §13.12.3 "Selecting a Memory Type from the PAT").
size_t ptedit_apply_mt(size_t entry, unsigned char mt) {
  PageTableEntry e(entry);
  e.set_write_through(mt & 1).set_cache_disable((mt >> 1) & 1).set_pat_4k((mt >> 2) & 1);
  return e.raw();
}

unsigned char ptedit_extract_mt(size_t entry) {
  const PageTableEntry e(entry);
  return static_cast<unsigned char>(e.write_through() | (e.cache_disable() << 1) | (e.pat_4k() << 2));
}

const char* ptedit_mt_to_string(unsigned char mt) {
  switch (mt) {
    case PTEDIT_MT_UC: return "UC";
    case PTEDIT_MT_WC: return "WC";
    case PTEDIT_MT_WT: return "WT";
    case PTEDIT_MT_WP: return "WP";
    case PTEDIT_MT_WB: return "WB";
    case PTEDIT_MT_UCMINUS: return "UC-";
    default: return "unknown";
  }
}

void ptedit_print_entry_line(size_t entry, int line) {
  const PageTableEntry e(entry);
  switch (line) {
    case 0: std::printf("entry %#018zx", entry); break;
    case 1: std::printf(" %s%s%s%s", e.present() ? "P" : "-", e.writable() ? "W" : "-", e.user() ? "U" : "-",
                        e.execute_disable() ? "-" : "X"); break;
    case 2: std::printf(" A=%d D=%d PS=%d G=%d PCD=%d PWT=%d", e.accessed(), e.dirty(), e.page_size(), e.global(),
                        e.cache_disable(), e.write_through()); break;
    case 3: std::printf(" pfn=%#zx", ptedit_get_pfn(entry)); break;
    default: break;
  }
}

void ptedit_print_entry(size_t entry) {
  for (int line = 0; line < 4; ++line) ptedit_print_entry_line(entry, line);
  std::printf("\n");
}

void ptedit_print_entry_t(ptedit_entry_t entry) {
  std::printf("vaddr %#zx pid %zu\n", entry.vaddr, entry.pid);
  const struct {
    const char* name;
    size_t value, mask;
  } levels[] = {{"PGD", entry.pgd, PTEDIT_VALID_MASK_PGD}, {"P4D", entry.p4d, PTEDIT_VALID_MASK_P4D},
                {"PUD", entry.pud, PTEDIT_VALID_MASK_PUD}, {"PMD", entry.pmd, PTEDIT_VALID_MASK_PMD},
                {"PTE", entry.pte, PTEDIT_VALID_MASK_PTE}};
  for (const auto& l : levels) {
    if ((entry.valid & l.mask) == 0) continue;
    std::printf("  %s ", l.name);
    ptedit_print_entry(l.value);
  }
}

}  // extern "C"
