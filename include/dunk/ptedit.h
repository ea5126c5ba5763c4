/* PTEditor's API (the page-table editing library of Schwarz et al.) served by
 * dunk in VM mode: the same calls on the process's own guest page tables,
 * with plain loads and stores instead of a kernel module's ioctls.
 *
 *   #include <dunk/ptedit.h>
 *   if (ptedit_init()) return 1;              // enters VM mode if needed
 *   ptedit_entry_t e = ptedit_resolve(p, 0);  // every level's entry
 *   ptedit_pte_clear_bit(p, 0, PTEDIT_PAGE_BIT_RW);  // p read-only (TLB flushed)
 *   size_t pfn = ptedit_pte_get_pfn(p, 0);    // a guest-physical frame
 *   ptedit_cleanup();
 *
 * What differs from PTEditor on a native kernel, and why:
 * - Frame numbers are guest-physical (dunk's GPA space), the addresses the
 *   guest's page tables hold. ptedit_read/write_physical_page reach them.
 * - Only the calling process exists: pid must be 0 or getpid(); other pids
 *   are refused with a message on stderr.
 * - 4-level paging: pgd and p4d both hold the PML4 entry (as Linux folds
 *   its p4d), pud the PDPT entry, pmd the PD entry, pte the PT entry.
 * - The ptedit_pte_* calls act on the entry that maps the address, a 2 MiB
 *   or 1 GiB leaf included (PTEditor's act on the PT level only).
 * - Bits 11:9 (SOFTW1-3) hold dunk's owner tag: a leaf written through
 *   this API becomes the program's (dunk/paging.h), whatever those bits said.
 * - ptedit_invalidate_tlb and ptedit_set_mts act on the calling vCPU only
 *   (dunk::flush_tlb_all_cpus in dunk/interrupts.h flushes every vCPU's TLB
 *   in a VM with interrupts).
 * - ptedit_set_paging_root accepts the roots of dunk's address spaces
 *   (dunk::AddressSpace::root()), which dunk's monitor keeps current.
 */
#ifndef DUNK_PTEDIT_H
#define DUNK_PTEDIT_H

#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* All levels' entries of one virtual address (Intel SDM vol. 3A §4.5). */
typedef struct {
  size_t pid;
  size_t vaddr;
  union {
    size_t pgd;
    size_t pml5;
  };
  union {
    size_t p4d;
    size_t pml4;
  };
  union {
    size_t pud;
    size_t pdpt;
  };
  union {
    size_t pmd;
    size_t pd;
  };
  size_t pte;
  size_t valid; /* PTEDIT_VALID_MASK_*: which entries are filled / to write */
} ptedit_entry_t;

#define PTEDIT_VALID_MASK_PGD (1 << 0)
#define PTEDIT_VALID_MASK_P4D (1 << 1)
#define PTEDIT_VALID_MASK_PUD (1 << 2)
#define PTEDIT_VALID_MASK_PMD (1 << 3)
#define PTEDIT_VALID_MASK_PTE (1 << 4)

/* Entry bits (SDM vol. 3A Tables 4-15 to 4-20). */
#define PTEDIT_PAGE_BIT_PRESENT 0
#define PTEDIT_PAGE_BIT_RW 1
#define PTEDIT_PAGE_BIT_USER 2
#define PTEDIT_PAGE_BIT_PWT 3
#define PTEDIT_PAGE_BIT_PCD 4
#define PTEDIT_PAGE_BIT_ACCESSED 5
#define PTEDIT_PAGE_BIT_DIRTY 6
#define PTEDIT_PAGE_BIT_PSE 7
#define PTEDIT_PAGE_BIT_PAT 7
#define PTEDIT_PAGE_BIT_GLOBAL 8
#define PTEDIT_PAGE_BIT_SOFTW1 9
#define PTEDIT_PAGE_BIT_SOFTW2 10
#define PTEDIT_PAGE_BIT_SOFTW3 11
#define PTEDIT_PAGE_BIT_PAT_LARGE 12
#define PTEDIT_PAGE_BIT_SOFTW4 58
#define PTEDIT_PAGE_BIT_PKEY_BIT0 59
#define PTEDIT_PAGE_BIT_PKEY_BIT1 60
#define PTEDIT_PAGE_BIT_PKEY_BIT2 61
#define PTEDIT_PAGE_BIT_PKEY_BIT3 62
#define PTEDIT_PAGE_BIT_NX 63

/* Memory types an IA32_PAT entry may hold (SDM vol. 3A §13.12.2, Table
 * "Memory Types That Can Be Encoded With PAT"). */
#define PTEDIT_MT_UC 0
#define PTEDIT_MT_WC 1
#define PTEDIT_MT_WT 4
#define PTEDIT_MT_WP 5
#define PTEDIT_MT_WB 6
#define PTEDIT_MT_UCMINUS 7

/* Accepted for source compatibility; dunk has one implementation. */
#define PTEDIT_IMPL_KERNEL 0
#define PTEDIT_IMPL_USER_PREAD 1
#define PTEDIT_IMPL_USER 2

/* 0 when the calling thread is (now) in VM mode, -1 otherwise. */
int ptedit_init(void);
void ptedit_cleanup(void);
void ptedit_use_implementation(int implementation);

ptedit_entry_t ptedit_resolve(void* address, pid_t pid);
/* Writes the entries `vm->valid` selects, then flushes the address's TLB entry. */
void ptedit_update(void* address, pid_t pid, ptedit_entry_t* vm);
void ptedit_pte_set_bit(void* address, pid_t pid, int bit);
void ptedit_pte_clear_bit(void* address, pid_t pid, int bit);
unsigned char ptedit_pte_get_bit(void* address, pid_t pid, int bit);
size_t ptedit_pte_get_pfn(void* address, pid_t pid);
void ptedit_pte_set_pfn(void* address, pid_t pid, size_t pfn);

int ptedit_get_pagesize(void);
size_t ptedit_set_pfn(size_t entry, size_t pfn);
size_t ptedit_get_pfn(size_t entry);

void ptedit_read_physical_page(size_t pfn, char* buffer);
void ptedit_write_physical_page(size_t pfn, char* content);

size_t ptedit_get_paging_root(pid_t pid);
void ptedit_set_paging_root(pid_t pid, size_t root);

void ptedit_invalidate_tlb(void* address);
void ptedit_full_serializing_barrier(void);

size_t ptedit_get_mts(void);
void ptedit_set_mts(size_t mts);
char ptedit_get_mt(unsigned char mt);
void ptedit_set_mt(unsigned char mt, unsigned char value);
unsigned char ptedit_find_mt(unsigned char type);
int ptedit_find_first_mt(unsigned char type);
size_t ptedit_apply_mt(size_t entry, unsigned char mt);
unsigned char ptedit_extract_mt(size_t entry);
const char* ptedit_mt_to_string(unsigned char mt);

void ptedit_print_entry_t(ptedit_entry_t entry);
void ptedit_print_entry(size_t entry);
void ptedit_print_entry_line(size_t entry, int line);

#ifdef __cplusplus
}
#endif

#endif /* DUNK_PTEDIT_H */
