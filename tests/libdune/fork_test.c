/*
 * Fork children: a child continues in VM mode, in a VM of its own that
 * carries what its parent did to the page tables (dune_vm_map_pages,
 * dune_vm_map_phys, dune_vm_mprotect, dune_vm_unmap, dune_vm_clone) and
 * its handlers; and a fork made inside ring 3's system-call handler — by the
 * handler itself, as Dune's sandbox does, or passed on with
 * dune_passthrough_syscall — returns in the child into its copy of the
 * handler, whose return resumes the child's ring 3. The parent checks each
 * child's exit status.
 */
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "libdune/dune.h"

/* Pages of the test's own, away from every mapping of the process. */
#define PAGE_A ((volatile char *)0x500000000000) /* dune_vm_map_pages, read/write */
#define PAGE_B ((volatile char *)0x500000001000) /* dune_vm_map_phys: A's frame again */
#define PAGE_C ((volatile char *)0x500000002000) /* mapped, then read-only (dune_vm_mprotect) */
#define PAGE_D ((volatile char *)0x500000003000) /* mapped, then unmapped (dune_vm_unmap) */
#define PAGE_U ((volatile char *)0x500000004000) /* ring 3's, read/write */

static ptent_t *entry_of(ptent_t *root, volatile char *va)
{
	ptent_t *pte = NULL;
	CHECK_EQ(dune_vm_lookup(root, (void *)va, CREATE_NONE, &pte), 0);
	return pte;
}

/* The page-fault handler of ring 0: a write to C makes C writable again
 * and is retried. */
static volatile uintptr_t faulted_at;

static void on_fault(uintptr_t addr, uint64_t fec, struct dune_tf *tf)
{
	(void)tf;
	if (addr != (uintptr_t)PAGE_C || (fec & FEC_W) == 0)
		_exit(90);
	faulted_at = addr;
	if (dune_vm_mprotect(pgroot, (void *)PAGE_C, PGSIZE, PERM_R | PERM_W) != 0)
		_exit(91);
}

static ptent_t *edited_clone;

static void edit_page_tables(void)
{
	CHECK_EQ(dune_vm_map_pages(pgroot, (void *)PAGE_A, PGSIZE, PERM_R | PERM_W), 0);
	PAGE_A[0] = 'a';
	CHECK_EQ(dune_vm_map_phys(pgroot, (void *)PAGE_B, PGSIZE, (void *)PTE_ADDR(*entry_of(pgroot, PAGE_A)),
				  PERM_R | PERM_W),
		 0);
	CHECK_EQ(PAGE_B[0], 'a');
	CHECK_EQ(dune_vm_map_pages(pgroot, (void *)PAGE_C, PGSIZE, PERM_R | PERM_W), 0);
	PAGE_C[0] = 'c';
	CHECK_EQ(dune_vm_mprotect(pgroot, (void *)PAGE_C, PGSIZE, PERM_R), 0);
	CHECK_EQ(dune_vm_map_pages(pgroot, (void *)PAGE_D, PGSIZE, PERM_R | PERM_W), 0);
	PAGE_D[0] = 'd';
	dune_vm_unmap(pgroot, (void *)PAGE_D, PGSIZE);
	CHECK_EQ(dune_vm_map_pages(pgroot, (void *)PAGE_U, PGSIZE, PERM_R | PERM_W | PERM_U), 0);
	PAGE_U[0] = 'u';
	edited_clone = dune_vm_clone(pgroot);
	CHECK(edited_clone != NULL);
	dune_register_pgflt_handler(on_fault);
}

/* In the child: each edit is there, the clone too, the handler runs.
 * Returns 0 or the number of the first check that failed. */
static int child_sees_the_edits(void)
{
	if (!in_ring0())
		return 1;
	if (PAGE_A[0] != 'a' || PAGE_B[0] != 'a')
		return 2;
	PAGE_B[0] = 'b'; /* the same frame: A sees it */
	if (PAGE_A[0] != 'b')
		return 3;
	if (PAGE_C[0] != 'c' || (*entry_of(pgroot, PAGE_C) & PTE_W) != 0)
		return 4;
	ptent_t *d = NULL;
	if (dune_vm_lookup(pgroot, (void *)PAGE_D, CREATE_NONE, &d) == 0 && d != NULL && (*d & PTE_P) != 0)
		return 5;
	if (PTE_ADDR(*entry_of(edited_clone, PAGE_A)) != PTE_ADDR(*entry_of(pgroot, PAGE_A)))
		return 6;
	PAGE_C[0] = 'x'; /* read-only: the handler makes it writable */
	if (faulted_at != (uintptr_t)PAGE_C || PAGE_C[0] != 'x')
		return 7;
	/* New edits work as in any VM; dune_enter has nothing to do. */
	if (dune_vm_map_pages(pgroot, (void *)(PAGE_U + PGSIZE), PGSIZE, PERM_R | PERM_W) != 0)
		return 8;
	PAGE_U[PGSIZE] = 'n';
	if (PAGE_U[PGSIZE] != 'n' || dune_enter() != 0 || !in_ring0())
		return 9;
	return 0;
}

static void fork_child_keeps_the_page_table_edits(void)
{
	enter_or_fail();
	edit_page_tables();
	const pid_t pid = fork();
	if (pid == 0)
		_exit(child_sees_the_edits());
	CHECK(pid > 0);
	int status = 0;
	CHECK_EQ(waitpid(pid, &status, 0), pid);
	CHECK(WIFEXITED(status));
	CHECK_EQ(WEXITSTATUS(status), 0);
	/* The child wrote its own copies of the pages. */
	CHECK_EQ(PAGE_A[0], 'a');
	CHECK_EQ(PAGE_C[0], 'c');
	CHECK_EQ(faulted_at, 0);
	CHECK(in_ring0());
}

/* ---- forks from ring 3's system-call handler ---- */

static inline __attribute__((always_inline)) long r3_syscall(long nr, long a1)
{
	long ret;
	__asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a1) : "rcx", "r11", "memory");
	return ret;
}

#define SYS_FORK_IN_HANDLER 2000 /* the handler calls fork() itself */
#define SYS_U_WORD 2001		 /* the handler answers the first byte of page U */

static char ring3_stack[64 * 1024] __attribute__((aligned(16)));
static pid_t forked_child; /* what fork() returned in the parent's handler */
static int handler_forks;  /* forks the handler made, counted in each process */

static void handler(struct dune_tf *tf)
{
	switch (tf->rax) {
	case SYS_FORK_IN_HANDLER: {
		const pid_t pid = fork();
		handler_forks++;
		if (pid > 0)
			forked_child = pid;
		tf->rax = (uint64_t)(pid < 0 ? -errno : pid);
		break;
	}
	case SYS_fork:
		handler_forks++;
		dune_passthrough_syscall(tf);
		if ((long)tf->rax > 0)
			forked_child = (pid_t)tf->rax;
		break;
	case SYS_getpid:
		dune_passthrough_syscall(tf);
		break;
	case SYS_U_WORD:
		tf->rax = (uint64_t)PAGE_U[0];
		break;
	case SYS_exit:
		dune_ret_from_user((int)ARG0(tf));
		break;
	default:
		tf->rax = (uint64_t)-ENOSYS;
	}
}

/* Ring 3: forks through the handler (the call number in rdi's twin, r3_nr),
 * then, in the child, uses ring 3's page and the handler again. */
static volatile long r3_nr;

void ring3_forks(void)
{
	const long pid = r3_syscall(r3_nr, 0);
	if (pid < 0)
		r3_syscall(SYS_exit, 60);
	if (pid > 0)
		r3_syscall(SYS_exit, 7); /* the parent's ring 3 */
	/* The child's ring 3, resumed after the fork. */
	if (PAGE_U[0] != 'u')
		r3_syscall(SYS_exit, 61);
	PAGE_U[0] = 'w';
	if (r3_syscall(SYS_U_WORD, 0) != 'w')
		r3_syscall(SYS_exit, 62);
	const long me = r3_syscall(SYS_getpid, 0);
	*(volatile long *)(PAGE_U + 8) = me;
	r3_syscall(SYS_exit, 42);
}

static void fork_from_the_handler(long nr)
{
	enter_or_fail();
	edit_page_tables();
	dune_register_syscall_handler(handler);
	r3_nr = nr;
	const pid_t parent = getpid();
	struct dune_tf tf;
	memset(&tf, 0, sizeof tf);
	tf.rip = (uintptr_t)ring3_forks;
	tf.rsp = (uintptr_t)(ring3_stack + sizeof ring3_stack - 8);
	tf.rflags = 0x2;
	const int ret = dune_jump_to_user(&tf);
	if (getpid() != parent) {
		/* The child, back from its ring 3: it ran in its own process
		 * (getpid through the handler), with one fork in its copy of the
		 * handler's count, and its own copy of page U. */
		if (ret == 42 && (*(volatile long *)(PAGE_U + 8) != getpid() || handler_forks != 1 ||
				  forked_child != 0 || !in_ring0()))
			_exit(63);
		_exit(ret);
	}
	CHECK_EQ(ret, 7);
	CHECK_EQ(handler_forks, 1);
	CHECK(forked_child > 0);
	int status = 0;
	CHECK_EQ(waitpid(forked_child, &status, 0), forked_child);
	CHECK(WIFEXITED(status));
	CHECK_EQ(WEXITSTATUS(status), 42);
	CHECK_EQ(PAGE_U[0], 'u'); /* the child wrote its copy */
	CHECK(in_ring0());
}

static void fork_made_by_the_syscall_handler_resumes_ring3_in_the_child(void)
{
	fork_from_the_handler(SYS_FORK_IN_HANDLER);
}

static void fork_passed_through_from_ring3_resumes_ring3_in_the_child(void)
{
	fork_from_the_handler(SYS_fork);
}

static const struct test_case tests[] = {
	{"fork_child_keeps_the_page_table_edits", fork_child_keeps_the_page_table_edits},
	{"fork_made_by_the_syscall_handler_resumes_ring3_in_the_child",
	 fork_made_by_the_syscall_handler_resumes_ring3_in_the_child},
	{"fork_passed_through_from_ring3_resumes_ring3_in_the_child",
	 fork_passed_through_from_ring3_resumes_ring3_in_the_child},
	{NULL, NULL},
};

int main(int argc, char **argv)
{
	return run_named_test(argc, argv, tests);
}
