/*
 * Entering: dune_init, dune_enter, dune_init_and_enter, the layout globals,
 * threads and fork children.
 */
#include <pthread.h>
#include <stdbool.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "libdune/dune.h"

static void init_sets_the_globals_and_enter_moves_to_ring0(void)
{
	CHECK(!in_ring0());
	CHECK_EQ(dune_init(true), 0);
	CHECK(!in_ring0()); /* dune_init prepares; it does not enter */
	CHECK(pgroot != NULL);
	/* Dune's layout: the root table is its own physical address. */
	CHECK_EQ(dune_va_to_pa(pgroot), (uintptr_t)pgroot);
	CHECK(phys_limit >= (1ul << 36) && (phys_limit & (phys_limit - 1)) == 0);
	CHECK_EQ(mmap_base % (1ul << 30), 0);
	CHECK_EQ(stack_base % (1ul << 30), 0);
	CHECK(stack_base > mmap_base);
	int local;
	CHECK((uintptr_t)&local >= stack_base && (uintptr_t)&local < stack_base + GPA_STACK_SIZE);
	CHECK_EQ(dune_init(true), 0); /* once is enough */
	CHECK_EQ(dune_enter(), 0);
	CHECK(in_ring0());
	CHECK_EQ(dune_enter(), 0); /* again: nothing to do */
	/* ring 0 instructions work: a TLB flush, an MSR read */
	dune_flush_tlb();
	dune_flush_tlb_one((unsigned long)&local);
	dune_control_guest_ints(true);
	CHECK(in_ring0());
}

static void enter_before_init_fails(void)
{
	CHECK_EQ(dune_enter(), -EINVAL);
	CHECK(!in_ring0());
}

static void *thread_enters(void *arg)
{
	(void)arg;
	/* A thread started in VM mode is in it already; dune_enter says 0. */
	if (!in_ring0())
		return (void *)1;
	if (dune_enter() != 0)
		return (void *)2;
	dune_flush_tlb();
	return (void *)0x666;
}

static void *native_thread_enters(void *arg)
{
	(void)arg;
	if (in_ring0())
		return (void *)1;
	if (dune_enter() != 0)
		return (void *)2;
	if (!in_ring0())
		return (void *)3;
	return (void *)0x667;
}

static void threads_enter(void)
{
	CHECK_EQ(dune_init(true), 0);
	/* A thread created outside VM mode enters with dune_enter. */
	pthread_t t;
	void *ret;
	CHECK_EQ(pthread_create(&t, NULL, native_thread_enters, NULL), 0);
	CHECK_EQ(pthread_join(t, &ret), 0);
	CHECK_EQ((uintptr_t)ret, 0x667);
	CHECK_EQ(dune_enter(), 0);
	CHECK_EQ(pthread_create(&t, NULL, thread_enters, NULL), 0);
	CHECK_EQ(pthread_join(t, &ret), 0);
	CHECK_EQ((uintptr_t)ret, 0x666);
	CHECK(in_ring0());
}

static void fork_child_body(void)
{
	/* A fork child continues in VM mode, in a VM of its own that carries
	 * its parent's page tables (fork_test.c), where Dune's child had them
	 * in its copy of the memory and entered again; dune_enter, which
	 * Dune's children call, finds it in VM mode. */
	if (!in_ring0())
		_exit(10);
	if (dune_enter() != 0)
		_exit(11);
	if (!in_ring0())
		_exit(12);
	if (pgroot == NULL || dune_va_to_pa(pgroot) != (uintptr_t)pgroot)
		_exit(13);
	/* Its page tables work: map a pool page and use it. */
	if (dune_vm_map_pages(pgroot, (void *)0x500000000000, PGSIZE, PERM_R | PERM_W) != 0)
		_exit(14);
	*(volatile int *)0x500000000000 = 7;
	if (*(volatile int *)0x500000000000 != 7)
		_exit(15);
	_exit(69);
}

static void fork_children_continue_in_a_vm_of_their_own(void)
{
	enter_or_fail();
	int status = run_in_child(fork_child_body);
	CHECK(WIFEXITED(status));
	CHECK_EQ(WEXITSTATUS(status), 69);
	CHECK(in_ring0());
}

static const struct test_case tests[] = {
	{"init_sets_the_globals_and_enter_moves_to_ring0", init_sets_the_globals_and_enter_moves_to_ring0},
	{"enter_before_init_fails", enter_before_init_fails},
	{"threads_enter", threads_enter},
	{"fork_children_continue_in_a_vm_of_their_own", fork_children_continue_in_a_vm_of_their_own},
	{NULL, NULL},
};

int main(int argc, char **argv)
{
	return run_named_test(argc, argv, tests);
}
