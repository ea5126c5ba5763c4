/*
 * libdune/dune.h - Dune's C library (libdune), on dunk.
 *
 * The API of Dune's libdune (github ix-project/dune, with project-dune's
 * x2APIC calls), so that a Dune program is rebuilt, not rewritten: the
 * process enters a KVM virtual machine through /dev/kvm instead of Dune's
 * kernel module, and keeps running in guest ring 0 with the same memory,
 * descriptors and threads. Link with -ldune (pkg-config libdune).
 *
 *   if (dune_init_and_enter())          // 0, or a negative errno (and why, on stderr)
 *           return 1;
 *   dune_register_pgflt_handler(on_fault);
 *   dune_vm_mprotect(pgroot, page, PGSIZE, PERM_R);
 *
 * What differs from Dune is listed in dunk's README ("Dune programs on
 * dunk"); the main points:
 * - Under KVM a guest's VMCALL is KVM's hypercall: libdune makes system
 *   calls with SYSCALL, and a program that issues VMCALL itself must too
 *   (replace the instruction; nothing else changes).
 * - Dune's guest-physical layout holds where programs rely on it: the page
 *   pool at PAGEBASE and every page table have guest-physical addresses
 *   equal to their virtual ones, so pgroot, PTE_ADDR() of an entry above a
 *   table, CR3 and pool pages can be dereferenced. Other memory's physical
 *   address is dune_va_to_pa()'s answer, not Dune's window formulas.
 * - dunk keeps an owner tag in bits 11:9 of every entry: PTE_COW and
 *   PTE_USR1-3 have other values (mmu-x86.h), and entries libdune writes
 *   carry 0x400 there. Entries the program writes through pointers libdune
 *   handed out are tagged when control comes back to libdune.
 * - dunk resolves its own page faults (a stack growing, a mapping not yet
 *   mirrored) before the program's page-fault handler sees any.
 */
#ifndef DUNK_LIBDUNE_DUNE_H
#define DUNK_LIBDUNE_DUNE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "mmu.h"
#include "elf.h"
#include "fpu.h"
#include "../kern/dune.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*sighandler_t)(int);

/* ---- Utilities ---- */

/* The time-stamp counter (RDTSC, not serialising). In VM mode it reads as
 * on the host (dunk's guests have a TSC offset of 0). */
static inline unsigned long dune_get_ticks(void)
{
	unsigned int a, d;
	__asm__ volatile("rdtsc" : "=a"(a), "=d"(d));
	return ((unsigned long)a) | (((unsigned long)d) << 32);
}

/* printf to standard output with a single write(2) and no stdio (usable
 * where stdio's lock may be held); at most 1023 bytes. */
extern int dune_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Ends the process at once (exit_group with status 1). */
extern void dune_die(void) __attribute__((noreturn));
/* mmap(2) as a raw system call: returns -errno (as a pointer) on failure. */
extern void *dune_mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset);
/* signal(2), and the vector DUNE_SIGNAL_INTR_BASE + sig registered with
 * `cb` as Dune did; returns NULL, or SIG_ERR. Signals are delivered to
 * their handlers in VM mode as natively. */
extern sighandler_t dune_signal(int sig, sighandler_t cb);
/* The FS base ring 3 runs with (its TLS pointer): set it before
 * dune_jump_to_user, or in a handler to emulate arch_prctl(ARCH_SET_FS). */
extern unsigned long dune_get_user_fs(void);
extern void dune_set_user_fs(unsigned long fs_base);

#ifndef assert
#define assert(expr)                                                                                    \
	do {                                                                                            \
		if (!(expr)) {                                                                          \
			dune_printf("ASSERT(" #expr ") at %s:%d in function %s\n", __FILE__, __LINE__, \
				    __func__);                                                          \
			dune_die();                                                                     \
		}                                                                                       \
	} while (0)
#endif

/* ---- Traps ---- */

/* Linux's GDT layout, which dunk's guests use too. */
#define GD_KT 0x10
#define GD_KD 0x18
#define GD_UD 0x28
#define GD_UT 0x30
#define GD_TSS 0x38
#define GD_TSS2 0x40
#define NR_GDT_ENTRIES 9

/*
 * The registers of interrupted code, as a handler sees and may change them
 * (changes take effect when it returns). For a system call made in ring 3,
 * rax is the number (the handler puts the result there), rcx holds the
 * fourth argument (what the caller had in r10) and rip the return address;
 * for vectors without an error code, err is 0.
 */
struct dune_tf {
	/* arguments */
	uint64_t rdi;
	uint64_t rsi;
	uint64_t rdx;
	uint64_t rcx;
	uint64_t r8;
	uint64_t r9;
	uint64_t r10;
	uint64_t r11;

	/* callee-saved */
	uint64_t rbx;
	uint64_t rbp;
	uint64_t r12;
	uint64_t r13;
	uint64_t r14;
	uint64_t r15;

	/* system call number and result */
	uint64_t rax;

	/* the CPU's exception frame */
	uint32_t err;
	uint32_t pad1;
	uint64_t rip;
	uint16_t cs;
	uint16_t pad2[3];
	uint64_t rflags;
	uint64_t rsp;
	uint16_t ss;
	uint16_t pad3[3];
} __attribute__((packed));

/* A system call's arguments in a frame. */
#define ARG0(tf) ((tf)->rdi)
#define ARG1(tf) ((tf)->rsi)
#define ARG2(tf) ((tf)->rdx)
#define ARG3(tf) ((tf)->rcx)
#define ARG4(tf) ((tf)->r8)
#define ARG5(tf) ((tf)->r9)

typedef void (*dune_intr_cb)(struct dune_tf *tf);
typedef void (*dune_pgflt_cb)(uintptr_t addr, uint64_t fec, struct dune_tf *tf);
typedef void (*dune_syscall_cb)(struct dune_tf *tf);

#define DUNE_SIGNAL_INTR_BASE 200

/*
 * Handlers are process-wide and run in guest ring 0 with interrupts
 * disabled; returning resumes the interrupted code through the (edited)
 * frame. Vectors 0-31 are exceptions (NMI, double fault and machine check
 * cannot be handled: -EINVAL); 32-253 are interrupts, which the handler
 * ends itself with dune_apic_eoi(); 254 and 255 are dunk's (-EINVAL).
 * A handler registered for T_PGFLT takes precedence over the page-fault
 * handler, as in Dune.
 */
extern int dune_register_intr_handler(int vec, dune_intr_cb cb);
extern int dune_register_signal_handler(int signum, dune_intr_cb cb);
/* Called with the address and error code (FEC_*) of every page fault, in
 * ring 0 or ring 3, that dunk does not resolve itself; the faulting
 * instruction runs again when it returns. */
extern void dune_register_pgflt_handler(dune_pgflt_cb cb);
/* Called for each system call made in ring 3 (dune_jump_to_user). */
extern void dune_register_syscall_handler(dune_syscall_cb cb);

/* Loads every register from `tf` and continues there: in ring 0 (cs
 * GD_KT) directly; in ring 3 as dune_jump_to_user does, dying when that
 * run ends. Does not return. */
extern void dune_pop_trap_frame(struct dune_tf *tf) __attribute__((noreturn));
/*
 * Runs ring 3 from `tf` (rip, rsp, the general registers; cs and ss are
 * written into `tf`; interrupts stay enabled) until a handler calls
 * dune_ret_from_user(ret); returns ret. May be called from a handler (a
 * nested run): the handler then continues when the nested run ends. A
 * negative errno when ring 3 cannot run (not in VM mode).
 */
extern int dune_jump_to_user(struct dune_tf *tf);
/* From a handler serving ring 3: ends the innermost dune_jump_to_user,
 * which returns `ret`. */
extern void dune_ret_from_user(int ret) __attribute__((noreturn));
/* Prints a frame's registers, the top of its stack and the code at its
 * rip with dune_printf. */
extern void dune_dump_trap_frame(struct dune_tf *tf);
/* Makes the system call a ring-3 frame asks for (number rax, arguments
 * rdi rsi rdx rcx r8 r9) on the host and puts the result in tf->rax. */
extern void dune_passthrough_syscall(struct dune_tf *tf);

/* ---- Page allocation ---- */

SLIST_HEAD(page_head, page);
typedef SLIST_ENTRY(page) page_entry_t;

struct page {
	page_entry_t link;
	uint64_t ref;
};

extern struct page *pages;
extern int num_pages;

/* The page pool: host memory at PAGEBASE whose guest-physical address is
 * its virtual address, up to MAX_PAGES pages, reference-counted. */
#define PAGEBASE 0x200000000
#define MAX_PAGES (1ul << 20)

/* A page with one reference, or NULL when the pool is exhausted. */
extern struct page *dune_page_alloc(void);
extern void dune_page_free(struct page *pg);
extern void dune_page_stats(void);

static inline struct page *dune_pa2page(physaddr_t pa)
{
	return &pages[PPN(pa - PAGEBASE)];
}

static inline physaddr_t dune_page2pa(struct page *pg)
{
	return PAGEBASE + ((pg - pages) << PGSHIFT);
}

extern bool dune_page_isfrompool(physaddr_t pa);

static inline struct page *dune_page_get(struct page *pg)
{
	assert(pg >= pages);
	assert(pg < (pages + num_pages));
	pg->ref++;
	return pg;
}

static inline void dune_page_put(struct page *pg)
{
	assert(pg >= pages);
	assert(pg < (pages + num_pages));
	pg->ref--;
	if (!pg->ref)
		dune_page_free(pg);
}

/* ---- Virtual memory ---- */

/* The process's page tables: the root table, at once a pointer and (with
 * the identity layout libdune asks for) its guest-physical address, what
 * CR3 holds. Valid after dune_init; a fork child's dune_enter renews it. */
extern ptent_t *pgroot;
/* 1 << the CPU's physical address width. */
extern uintptr_t phys_limit;
/* Dune's layout quantities, computed the same way from this process's map:
 * the start of the 63 GiB below the mmap area's top, and of the GiB below
 * the stack's top. */
extern uintptr_t mmap_base;
extern uintptr_t stack_base;

/* ix's page for the host's local APIC (none under dunk). */
#define APIC_BASE 0xfffffffffffff000

/* The guest-physical address behind a host address: itself in low memory
 * (below the physical width), elsewhere where dunk put it (an address the
 * host does not map yet gets one, as every address of Dune's windows had).
 * Not Dune's window formulas (their windows do not exist under dunk): the
 * real address, which entries may hold. */
extern uintptr_t dune_va_to_pa(void *ptr);
extern uintptr_t dune_mmap_addr_to_pa(void *ptr);
extern uintptr_t dune_stack_addr_to_pa(void *ptr);
/* dunk's addition: the host address behind a guest-physical address, or
 * NULL. */
extern void *dune_pa_to_va(uintptr_t pa);

/* Rights for the dune_vm_* calls. Without PERM_R a page is not present;
 * without PERM_X it is not executable. */
#define PERM_NONE 0
#define PERM_R 0x0001
#define PERM_W 0x0002
#define PERM_X 0x0004
#define PERM_U 0x0008     /* reachable from ring 3 */
#define PERM_UC 0x0010    /* uncached */
#define PERM_COW 0x0020   /* copy on write (PTE_COW) */
#define PERM_USR1 0x1000  /* PTE_USR1 */
#define PERM_USR2 0x2000  /* PTE_USR2 */
#define PERM_USR3 0x3000  /* PTE_USR3; also sets USR1 and USR2, as Dune's did */
#define PERM_BIG 0x0100   /* 2 MiB pages */
#define PERM_BIG_1GB 0x0200 /* 1 GiB pages */

#define PERM_SCODE (PERM_R | PERM_X)
#define PERM_STEXT (PERM_R | PERM_W)
#define PERM_SSTACK PERM_STEXT
#define PERM_UCODE (PERM_R | PERM_U | PERM_X)
#define PERM_UTEXT (PERM_R | PERM_U | PERM_W)
#define PERM_USTACK PERM_UTEXT

/* INVLPG and a CR3 reload: the calling vCPU's TLB (ring 0 instructions). */
static inline void dune_flush_tlb_one(unsigned long addr)
{
	__asm__ volatile("invlpg (%0)" : : "r"(addr) : "memory");
}

static inline void dune_flush_tlb(void)
{
	__asm__ volatile("mov %%cr3, %%rax\n\tmov %%rax, %%cr3" : : : "rax", "memory");
}

#define CR3_NOFLUSH (1UL << 63)

/* Switches the calling vCPU to the page tables whose root is `cr3` (pgroot
 * or a dune_vm_clone; the PCID bits and CR3_NOFLUSH are dunk's to choose),
 * so that dunk keeps serving them; a root dunk does not know is loaded as
 * it is. */
extern void dune_load_cr3(unsigned long cr3);
static inline void load_cr3(unsigned long cr3)
{
	dune_load_cr3(cr3);
}

static inline void __invpcid(int mode, unsigned long addr)
{
	struct {
		unsigned long pcid, address;
	} operand = {1, addr};
	__asm__ volatile("invpcid (%%rax), %%rcx" : : "a"(&operand), "c"(mode) : "cc", "memory");
}

/* The whole address space, for dune_vm_page_walk. */
#define VA_START ((void *)0)
#define VA_END ((void *)-1)

/* dune_vm_lookup's `create`: make missing tables (down to a 4 KiB slot,
 * or a 2 MiB or 1 GiB one in dune_vm_page_walk's internal use). */
enum {
	CREATE_NONE = 0,
	CREATE_NORMAL = 1,
	CREATE_BIG = 2,
	CREATE_BIG_1GB = 3,
};

/*
 * The page-table calls, on `root` (pgroot or a dune_vm_clone). Entries they
 * write are the program's: dunk's monitor leaves them alone. None may touch
 * dunk's own memory (-EPERM).
 *
 * mprotect: new rights for every entry in [va, va + len) that holds
 * something (frame and page size kept); PERM_W without PERM_R is -EINVAL;
 * flushes the calling vCPU's TLB.
 * map_phys: maps [va, va + len) to guest-physical [pa, pa + len), with 2 MiB
 * or 1 GiB pages when asked (PERM_BIG, PERM_BIG_1GB); no flush.
 * map_pages: a fresh pool page for each 4 KiB of [va, va + len).
 * unmap: empties the entries (dropping pool pages' references); flushes.
 * lookup: a pointer to the entry of `va` (the 4 KiB slot even when nothing
 * is mapped, or the large page that maps it); -ENOENT when a table on the
 * way is missing and `create` is 0.
 */
extern int dune_vm_mprotect(ptent_t *root, void *va, size_t len, int perm);
extern int dune_vm_map_phys(ptent_t *root, void *va, size_t len, void *pa, int perm);
extern int dune_vm_map_pages(ptent_t *root, void *va, size_t len, int perm);
extern void dune_vm_unmap(ptent_t *root, void *va, size_t len);
extern int dune_vm_lookup(ptent_t *root, void *va, int create, ptent_t **pte_out);

/* A pool page at `va` / the pool page mapped at `va` (declared by Dune,
 * defined here). */
extern int dune_vm_insert_page(ptent_t *root, void *va, struct page *pg, int perm);
extern struct page *dune_vm_lookup_page(ptent_t *root, void *va);

/* A copy of the page tables (dunk keeps it current with the host's
 * mappings, as it does pgroot; the program's own entries are copied), and
 * its release. */
extern ptent_t *dune_vm_clone(ptent_t *root);
extern void dune_vm_free(ptent_t *root);
/* Resolves a write fault on a PTE_COW page (a copy, unless the pool page
 * has one reference). */
extern void dune_vm_default_pgflt_handler(uintptr_t addr, uint64_t fec);

/* Calls cb(arg, entry, va) for every entry in [start_va, end_va] (end
 * included) that holds something: 4 KiB entries and large pages; a
 * non-zero return stops the walk and is returned. The callback may rewrite
 * the entry. */
typedef int (*page_walk_cb)(const void *arg, ptent_t *ptep, void *va);
extern int dune_vm_page_walk(ptent_t *root, void *start_va, void *end_va, page_walk_cb cb, const void *arg);

/* ---- Process memory maps ---- */

#define PROCMAP_TYPE_UNKNOWN 0x00
#define PROCMAP_TYPE_FILE 0x01
#define PROCMAP_TYPE_ANONYMOUS 0x02
#define PROCMAP_TYPE_HEAP 0x03
#define PROCMAP_TYPE_STACK 0x04
#define PROCMAP_TYPE_VSYSCALL 0x05
#define PROCMAP_TYPE_VDSO 0x06
#define PROCMAP_TYPE_VVAR 0x07

struct dune_procmap_entry {
	uintptr_t begin;
	uintptr_t end;
	uint64_t offset;
	bool r; /* readable */
	bool w; /* writable */
	bool x; /* executable */
	bool p; /* private (else shared) */
	char *path; /* valid during the callback only */
	int type;
};

typedef void (*dune_procmap_cb)(const struct dune_procmap_entry *);

/* Calls cb for each line of /proc/self/maps, in order. */
extern void dune_procmap_iterate(dune_procmap_cb cb);
extern void dune_procmap_dump(void);

/* ---- ELF ---- */

struct dune_elf {
	int fd;
	unsigned char *mem;
	int len;
	Elf64_Ehdr hdr;
	Elf64_Phdr *phdr;
	Elf64_Shdr *shdr;
	char *shdrstr;
	void *priv;
};

typedef int (*dune_elf_phcb)(struct dune_elf *elf, Elf64_Phdr *phdr);
typedef int (*dune_elf_shcb)(struct dune_elf *elf, const char *sname, int snum, Elf64_Shdr *shdr);

/* 0 or a negative errno. open checks for a little-endian x86-64 ELF64
 * file; the iterators stop at a callback's non-zero return and return it;
 * load_ph maps a PT_LOAD segment at p_vaddr + off with its protections and
 * zeroes its bss. */
extern int dune_elf_open(struct dune_elf *elf, const char *path);
extern int dune_elf_open_mem(struct dune_elf *elf, void *mem, int len);
extern int dune_elf_close(struct dune_elf *elf);
extern int dune_elf_dump(struct dune_elf *elf);
extern int dune_elf_iter_sh(struct dune_elf *elf, dune_elf_shcb cb);
extern int dune_elf_iter_ph(struct dune_elf *elf, dune_elf_phcb cb);
extern int dune_elf_load_ph(struct dune_elf *elf, Elf64_Phdr *phdr, off_t off);

/* ---- x2APIC (project-dune) ---- */

/* The calling thread's APIC ID (its vCPU's). */
extern uint32_t dune_apic_id(void);
/* The APIC ID a thread pinned to host CPU `cpu` recorded with
 * dune_apic_init_rt_entry (libdune/local.h); (uint32_t)-1 when none did.
 * *error is set when cpu is beyond the host's CPUs. */
extern uint32_t dune_apic_id_for_cpu(uint32_t cpu, bool *error);
/* Sends `vector` to the vCPU with that APIC ID (no exit: one WRMSR). */
extern void dune_apic_send_ipi(uint8_t vector, uint32_t destination_apic_id);
/* Ends the interrupt in service on the calling vCPU. */
extern void dune_apic_eoi(void);

/* ---- Entering ---- */

/*
 * Prepares the process's VM (page tables, page pool, layout globals) and
 * returns 0, or a negative errno after saying why on stderr. map_full
 * true: ring 3 may reach all of the process's memory, as Dune's full mode
 * mapped it; false: only what the program maps with PERM_U. Either way the
 * mirror follows the host's mappings and protections as they change.
 */
extern int dune_init(bool map_full);
/*
 * Moves the calling thread into VM mode (guest ring 0); 0, or a negative
 * errno after saying why (the thread then goes on outside). Threads
 * started in VM mode are in it already (0); a fork child builds a VM of
 * its own, without the parent's page-table edits.
 */
extern int dune_enter(void);

/* dune_init(true), then dune_enter(). */
static inline int dune_init_and_enter(void)
{
	int ret = dune_init(1);
	if (ret)
		return ret;
	return dune_enter();
}

/* ix's switch for host interrupts in the guest: nothing to switch under
 * dunk (no host interrupt reaches the guest). */
extern void dune_control_guest_ints(bool enable);

#ifdef __cplusplus
}
#endif

#endif /* DUNK_LIBDUNE_DUNE_H */
