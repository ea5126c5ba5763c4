/*
 * Page tables (dune_vm_*), physical addresses, the page pool, load_cr3.
 */
#include <sys/mman.h>
#include <sys/wait.h>

#include "check.h"
#include "libdune/dune.h"

#define ALIAS ((char *)0x400000000000)

static uint64_t probe(const void *p)
{
	uint64_t v;
	__asm__ volatile("movq (%%rax), %%rax" : "=a"(v) : "a"(p) : "memory");
	return v;
}

static int faults;
static uintptr_t fault_addr;
static void skip_probe(uintptr_t addr, uint64_t fec, struct dune_tf *tf)
{
	(void)fec;
	faults++;
	fault_addr = addr;
	tf->rip += 3;
	tf->rax = 0xdead;
}

/* A page of host memory, touched, and its guest-physical address. */
static char *host_page(uintptr_t *pa)
{
	char *p = mmap(NULL, PGSIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	CHECK(p != MAP_FAILED);
	p[0] = 1;
	*pa = dune_va_to_pa(p);
	return p;
}

static void map_phys_makes_an_alias(void)
{
	enter_or_fail();
	uintptr_t pa;
	char *page = host_page(&pa);
	CHECK(pa != 0);
	CHECK_EQ(dune_pa_to_va(pa), (uintptr_t)page);
	CHECK_EQ(dune_mmap_addr_to_pa(page), pa);
	int local = 0;
	CHECK_EQ(dune_stack_addr_to_pa(&local), dune_va_to_pa(&local));
	CHECK_EQ(dune_vm_map_phys(pgroot, ALIAS, PGSIZE, (void *)pa, PERM_R | PERM_W), 0);
	strcpy(page + 100, "seen twice");
	CHECK(strcmp(ALIAS + 100, "seen twice") == 0);
	ALIAS[200] = 'x';
	CHECK_EQ(page[200], 'x');
	/* The entry: frame, rights, no execute, and dunk's tag for the program. */
	ptent_t *pte;
	CHECK_EQ(dune_vm_lookup(pgroot, ALIAS, CREATE_NONE, &pte), 0);
	CHECK_EQ(PTE_ADDR(*pte), pa);
	CHECK_EQ(*pte & (PTE_P | PTE_W | PTE_U | PTE_NX), PTE_P | PTE_W | PTE_NX);
	CHECK_EQ(*pte & 0xe00, 0x400);
	/* An unaligned start maps the pages that hold [va, va + len). */
	CHECK_EQ(dune_vm_map_phys(pgroot, ALIAS + 3 * PGSIZE + 10, 20, (void *)(pa + 10), PERM_R), 0);
	CHECK_EQ(ALIAS[3 * PGSIZE + 200], 'x');
}

static void map_phys_with_big_pages(void)
{
	enter_or_fail();
	/* 2 MiB of host memory, 2 MiB aligned. */
	char *raw = mmap(NULL, 4 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(raw != MAP_FAILED);
	char *big = (char *)(((uintptr_t)raw + (2 << 20) - 1) & ~(uintptr_t)((2 << 20) - 1));
	big[12345] = 7;
	uintptr_t pa = dune_va_to_pa(big);
	CHECK_EQ(pa % (2 << 20), 0); /* chunks are 1 GiB aligned */
	char *va = (char *)0x400040000000;
	CHECK_EQ(dune_vm_map_phys(pgroot, va, 2 << 20, (void *)pa, PERM_R | PERM_W | PERM_BIG), 0);
	ptent_t *pte;
	CHECK_EQ(dune_vm_lookup(pgroot, va + 12345, CREATE_NONE, &pte), 0);
	CHECK(*pte & PTE_PS);
	CHECK_EQ(PTE_ADDR(*pte), pa);
	CHECK_EQ(va[12345], 7);
}

static void mprotect_changes_rights_and_keeps_frames(void)
{
	enter_or_fail();
	dune_register_pgflt_handler(skip_probe);
	CHECK_EQ(dune_vm_map_pages(pgroot, ALIAS, 4 * PGSIZE, PERM_R | PERM_W), 0);
	ALIAS[PGSIZE] = 5;
	ptent_t *pte;
	CHECK_EQ(dune_vm_lookup(pgroot, ALIAS + PGSIZE, CREATE_NONE, &pte), 0);
	const uintptr_t frame = PTE_ADDR(*pte);
	CHECK_EQ(dune_vm_mprotect(pgroot, ALIAS, 4 * PGSIZE, PERM_NONE), 0);
	CHECK_EQ(*pte & PTE_P, 0);
	CHECK_EQ(PTE_ADDR(*pte), frame);
	CHECK_EQ(probe(ALIAS + PGSIZE), 0xdead);
	CHECK_EQ(faults, 1);
	CHECK_EQ(dune_vm_mprotect(pgroot, ALIAS, 4 * PGSIZE, PERM_R), 0);
	CHECK_EQ(probe(ALIAS + PGSIZE), 5);
	CHECK_EQ(*pte & (PTE_P | PTE_W), PTE_P);
	/* Write without read: x86 has no such page. */
	CHECK_EQ(dune_vm_mprotect(pgroot, ALIAS, PGSIZE, PERM_W), -EINVAL);
	/* Dune's software bits live where dunk leaves them alone. */
	CHECK_EQ(dune_vm_mprotect(pgroot, ALIAS, PGSIZE, PERM_R | PERM_USR1 | PERM_USR2 | PERM_COW | PERM_U), 0);
	CHECK_EQ(dune_vm_lookup(pgroot, ALIAS, CREATE_NONE, &pte), 0);
	CHECK_EQ(*pte & (PTE_USR1 | PTE_USR2 | PTE_USR3 | PTE_COW), PTE_USR1 | PTE_USR2 | PTE_USR3 | PTE_COW);
	CHECK_EQ(*pte & 0xe00, 0x400);
	CHECK_EQ((*pte >> 59) & 0xf, 0); /* no protection key */
	CHECK_EQ(probe(ALIAS), 0);
	CHECK_EQ(faults, 1);
	/* An invalid root. */
	CHECK_EQ(dune_vm_mprotect((ptent_t *)ALIAS, ALIAS, PGSIZE, PERM_R), -EINVAL);
}

static void unmap_and_lookup(void)
{
	enter_or_fail();
	dune_register_pgflt_handler(skip_probe);
	ptent_t *pte;
	CHECK_EQ(dune_vm_lookup(pgroot, ALIAS, CREATE_NONE, &pte), -ENOENT);
	CHECK_EQ(dune_vm_lookup(pgroot, ALIAS, CREATE_NORMAL, &pte), 0);
	CHECK_EQ(*pte & ~(uint64_t)0xe00, 0); /* a slot, empty */
	CHECK_EQ(dune_vm_map_pages(pgroot, ALIAS, 2 * PGSIZE, PERM_R | PERM_W), 0);
	ALIAS[0] = 1;
	struct page *pg = dune_vm_lookup_page(pgroot, ALIAS);
	CHECK(pg != NULL);
	CHECK_EQ(pg->ref, 1);
	CHECK_EQ(dune_page2pa(pg), PTE_ADDR(*pte));
	dune_vm_unmap(pgroot, ALIAS, 2 * PGSIZE);
	CHECK_EQ(pg->ref, 0); /* back in the pool */
	CHECK_EQ(probe(ALIAS), 0xdead);
	CHECK_EQ(faults, 1);
	CHECK(dune_vm_lookup_page(pgroot, ALIAS) == NULL);
	/* insert_page: a pool page with a reference more */
	struct page *mine = dune_page_alloc();
	CHECK(mine != NULL);
	*(int *)dune_page2pa(mine) = 99;
	CHECK_EQ(dune_vm_insert_page(pgroot, ALIAS + PGSIZE, mine, PERM_R), 0);
	CHECK_EQ(mine->ref, 2);
	CHECK_EQ(*(int *)(ALIAS + PGSIZE), 99);
	CHECK(dune_vm_lookup_page(pgroot, ALIAS + PGSIZE) == mine);
}

static int walk_count;
static int walk_visit(const void *arg, ptent_t *ptep, void *va)
{
	const uintptr_t stop_at = (uintptr_t)arg;
	walk_count++;
	if ((uintptr_t)va == stop_at)
		return 77;
	/* the callback may rewrite entries (here only the test's own) */
	if ((char *)va >= ALIAS && (char *)va < ALIAS + 8 * PGSIZE)
		*ptep |= PTE_D;
	return 0;
}

static void page_walk_visits_entries_that_hold_something(void)
{
	enter_or_fail();
	CHECK_EQ(dune_vm_map_pages(pgroot, ALIAS, 8 * PGSIZE, PERM_R), 0);
	dune_vm_unmap(pgroot, ALIAS + 2 * PGSIZE, PGSIZE);
	CHECK_EQ(dune_vm_page_walk(pgroot, ALIAS, ALIAS + 8 * PGSIZE - 1, walk_visit, NULL), 0);
	CHECK_EQ(walk_count, 7); /* the emptied one is skipped; end included */
	ptent_t *pte;
	CHECK_EQ(dune_vm_lookup(pgroot, ALIAS + 5 * PGSIZE, CREATE_NONE, &pte), 0);
	CHECK(*pte & PTE_D);
	CHECK_EQ(*pte & 0xe00, 0x400);
	walk_count = 0;
	CHECK_EQ(dune_vm_page_walk(pgroot, ALIAS, ALIAS + 8 * PGSIZE - 1, walk_visit,
				   (const void *)(ALIAS + 4 * PGSIZE)),
		 77);
	CHECK_EQ(walk_count, 4);
	/* The whole address space: this page table's own entries too. */
	walk_count = 0;
	CHECK_EQ(dune_vm_page_walk(pgroot, VA_START, VA_END, walk_visit, (const void *)(ALIAS + 7 * PGSIZE)), 77);
	CHECK(walk_count > 7);
}

static int clone_faults;
static void clone_fault(uintptr_t addr, uint64_t fec, struct dune_tf *tf)
{
	(void)addr;
	(void)fec;
	clone_faults++;
	tf->rip += 3;
	tf->rax = 0xc10e;
}

static void clones_and_load_cr3(void)
{
	enter_or_fail();
	dune_register_pgflt_handler(clone_fault);
	CHECK_EQ(dune_vm_map_pages(pgroot, ALIAS, 2 * PGSIZE, PERM_R | PERM_W), 0);
	ALIAS[0] = 11;
	ALIAS[PGSIZE] = 22;
	struct page *pg = dune_vm_lookup_page(pgroot, ALIAS);
	CHECK_EQ(pg->ref, 1);
	ptent_t *copy = dune_vm_clone(pgroot);
	CHECK(copy != NULL && copy != pgroot);
	CHECK_EQ(dune_va_to_pa(copy), (uintptr_t)copy);
	CHECK_EQ(pg->ref, 2); /* the copy references it too */
	dune_vm_unmap(copy, ALIAS + PGSIZE, PGSIZE);
	load_cr3((unsigned long)copy | CR3_NOFLUSH | 5);
	uint64_t cr3;
	__asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
	CHECK_EQ(cr3 & PTE_ADDR(~0ul), (uintptr_t)copy);
	CHECK_EQ(probe(ALIAS) & 0xff, 11);
	CHECK_EQ(probe(ALIAS + PGSIZE), 0xc10e); /* gone in the copy */
	CHECK_EQ(clone_faults, 1);
	/* ordinary memory works on the copy: dunk keeps it current */
	char *fresh = malloc(1 << 20);
	CHECK(fresh != NULL);
	fresh[(1 << 20) - 1] = 3;
	load_cr3((unsigned long)pgroot);
	CHECK_EQ(probe(ALIAS + PGSIZE) & 0xff, 22); /* still there in the original */
	CHECK_EQ(fresh[(1 << 20) - 1], 3);
	dune_vm_free(copy);
	CHECK_EQ(pg->ref, 1);
}

static void tables_are_at_their_physical_addresses(void)
{
	enter_or_fail();
	CHECK_EQ(dune_vm_map_pages(pgroot, ALIAS, PGSIZE, PERM_R | PERM_W), 0);
	strcpy(ALIAS, "walked by hand");
	/* CR3 walked with plain loads, as Dune's programs do. */
	uint64_t cr3;
	__asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
	CHECK_EQ(PTE_ADDR(cr3), (uintptr_t)pgroot);
	ptent_t *table = (ptent_t *)PTE_ADDR(cr3);
	for (int level = 3; level > 0; level--) {
		ptent_t e = table[PDX(level, ALIAS)];
		CHECK(e & PTE_P);
		CHECK(!(e & PTE_PS));
		table = (ptent_t *)PTE_ADDR(e);
	}
	ptent_t leaf = table[PDX(0, ALIAS)];
	CHECK(leaf & PTE_P);
	/* a pool page: its physical address is where it is */
	CHECK(dune_page_isfrompool(PTE_ADDR(leaf)));
	CHECK(strcmp((const char *)PTE_ADDR(leaf), "walked by hand") == 0);
}

static void the_monitor_leaves_the_programs_entries_alone(void)
{
	enter_or_fail();
	/* The program maps an alias over a host mapping... */
	char *host = mmap(NULL, 2 * PGSIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(host != MAP_FAILED);
	uintptr_t pa;
	char *other = host_page(&pa);
	other[8] = 'o';
	CHECK_EQ(dune_vm_map_phys(pgroot, host, PGSIZE, (void *)pa, PERM_R | PERM_W), 0);
	CHECK_EQ(host[8], 'o');
	/* ...then the host's mapping changes: dunk's monitor follows the host
	 * everywhere else, but not in the program's entry. */
	CHECK_EQ(mprotect(host, 2 * PGSIZE, PROT_READ), 0);
	CHECK_EQ(mprotect(host, 2 * PGSIZE, PROT_READ | PROT_WRITE), 0);
	CHECK_EQ(host[8], 'o');
	host[PGSIZE] = 'h'; /* the other page is the host's, as ever */
	/* Raw stores through a pointer lookup handed out, claimed for the
	 * program when control comes back to libdune. */
	ptent_t *pte;
	CHECK_EQ(dune_vm_lookup(pgroot, host + PGSIZE, CREATE_NONE, &pte), 0);
	CHECK((*pte & 0xe00) != 0x400);
	*pte = PTE_ADDR(pa) | PTE_P | PTE_W | PTE_NX;
	dune_flush_tlb_one((unsigned long)(host + PGSIZE));
	CHECK_EQ(dune_vm_mprotect(pgroot, ALIAS, PGSIZE, PERM_R), 0); /* any call into libdune */
	CHECK_EQ(*pte & 0xe00, 0x400);
	CHECK_EQ(mprotect(host, 2 * PGSIZE, PROT_READ), 0);
	CHECK_EQ(host[PGSIZE + 8], 'o');
}

static void page_pool(void)
{
	CHECK_EQ(dune_init(true), 0);
	CHECK(pages != NULL);
	CHECK(num_pages > 0);
	struct page *a = dune_page_alloc();
	struct page *b = dune_page_alloc();
	CHECK(a != NULL && b != NULL && a != b);
	CHECK_EQ(a->ref, 1);
	const physaddr_t pa = dune_page2pa(a);
	CHECK(pa >= PAGEBASE && pa < PAGEBASE + MAX_PAGES * PGSIZE);
	CHECK(dune_page_isfrompool(pa));
	CHECK(!dune_page_isfrompool(PAGEBASE - PGSIZE));
	CHECK(dune_pa2page(pa) == a);
	CHECK(dune_pa2page(pa + 123) == a);
	CHECK_EQ(dune_va_to_pa((void *)pa), pa); /* physical == virtual */
	dune_page_get(a);
	CHECK_EQ(a->ref, 2);
	dune_page_put(a);
	dune_page_put(a);
	CHECK_EQ(a->ref, 0);
	/* freed: handed out again */
	struct page *c = dune_page_alloc();
	CHECK(c == a);
	/* the pool grows past its first 512 pages */
	for (int i = 0; i < 600; i++)
		CHECK(dune_page_alloc() != NULL);
	CHECK(num_pages >= 1024);
	dune_page_stats();
}

static uint64_t cow_fecs;
static void cow_fault(uintptr_t addr, uint64_t fec, struct dune_tf *tf)
{
	(void)tf;
	cow_fecs = fec;
	dune_vm_default_pgflt_handler(addr, fec);
}

static void copy_on_write(void)
{
	enter_or_fail();
	dune_register_pgflt_handler(cow_fault);
	struct page *pg = dune_page_alloc();
	strcpy((char *)dune_page2pa(pg), "original");
	/* the same pool page at two addresses, both copy-on-write */
	CHECK_EQ(dune_vm_insert_page(pgroot, ALIAS, pg, PERM_R | PERM_COW), 0);
	CHECK_EQ(dune_vm_insert_page(pgroot, ALIAS + PGSIZE, pg, PERM_R | PERM_COW), 0);
	dune_page_put(pg); /* the mappings hold it */
	CHECK_EQ(pg->ref, 2);
	ALIAS[0] = 'O'; /* a copy for this one */
	CHECK(cow_fecs & FEC_W);
	CHECK(strcmp(ALIAS, "Original") == 0);
	CHECK(strcmp(ALIAS + PGSIZE, "original") == 0);
	CHECK_EQ(pg->ref, 1);
	ALIAS[PGSIZE] = 'X'; /* the last reference: written in place */
	CHECK(strcmp((char *)dune_page2pa(pg), "Xriginal") == 0);
}

static const struct test_case tests[] = {
	{"map_phys_makes_an_alias", map_phys_makes_an_alias},
	{"map_phys_with_big_pages", map_phys_with_big_pages},
	{"mprotect_changes_rights_and_keeps_frames", mprotect_changes_rights_and_keeps_frames},
	{"unmap_and_lookup", unmap_and_lookup},
	{"page_walk_visits_entries_that_hold_something", page_walk_visits_entries_that_hold_something},
	{"clones_and_load_cr3", clones_and_load_cr3},
	{"tables_are_at_their_physical_addresses", tables_are_at_their_physical_addresses},
	{"the_monitor_leaves_the_programs_entries_alone", the_monitor_leaves_the_programs_entries_alone},
	{"page_pool", page_pool},
	{"copy_on_write", copy_on_write},
	{NULL, NULL},
};

int main(int argc, char **argv)
{
	return run_named_test(argc, argv, tests);
}
