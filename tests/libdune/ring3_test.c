/*
 * Ring 3: dune_jump_to_user, dune_ret_from_user, the system-call and
 * page-fault handlers for ring 3, dune_passthrough_syscall, nested jumps
 * from a handler, the FS base ring 3 runs with.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "libdune/dune.h"

/* A system call made from ring 3, without libc (inlined: the partial-mode
 * test opens only its callers' pages to ring 3). */
static inline __attribute__((always_inline)) long r3_syscall(long nr, long a1, long a2, long a3, long a4, long a5, long a6)
{
	long ret;
	register long r10 __asm__("r10") = a4;
	register long r8 __asm__("r8") = a5;
	register long r9 __asm__("r9") = a6;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

#define R3_EXIT(code) r3_syscall(SYS_exit, (code), 0, 0, 0, 0, 0)
#define SYS_SUM 1000	/* the handler answers the sum of six arguments */
#define SYS_NEST 1001	/* the handler runs ring-3 code B and answers what B ended with */
#define SYS_B_DONE 1002 /* B: the handler ends B's run with rdi */
#define SYS_FS 1003	/* the handler records rdi */

static char stack_a[64 * 1024] __attribute__((aligned(16)));
static char stack_b[64 * 1024] __attribute__((aligned(16)));

static void start_frame(struct dune_tf *tf, void (*fn)(void), char *stack, size_t size)
{
	memset(tf, 0, sizeof *tf);
	tf->rip = (uintptr_t)fn;
	tf->rsp = (uintptr_t)(stack + size - 8); /* as after a call */
	tf->rflags = 0x2;
}

static long recorded;
static int handler_calls;

static void handler(struct dune_tf *tf)
{
	handler_calls++;
	CHECK_EQ(tf->cs, GD_UT | 3);
	CHECK_EQ(tf->ss, GD_UD | 3);
	switch (tf->rax) {
	case SYS_getpid:
		dune_passthrough_syscall(tf);
		break;
	case SYS_getuid:
		tf->rax = 4242; /* emulated */
		break;
	case SYS_SUM:
		/* Dune's frame: the fourth argument in rcx (ARG3). */
		tf->rax = ARG0(tf) + ARG1(tf) * 10 + ARG2(tf) * 100 + ARG3(tf) * 1000 + ARG4(tf) * 10000 +
			  ARG5(tf) * 100000;
		break;
	case SYS_NEST: {
		struct dune_tf b;
		extern void ring3_b(void);
		start_frame(&b, ring3_b, stack_b, sizeof stack_b);
		const int ret = dune_jump_to_user(&b); /* nested: this handler waits */
		tf->rax = (uint64_t)ret + 100;
		break;
	}
	case SYS_B_DONE:
		dune_ret_from_user((int)ARG0(tf));
		break;
	case SYS_FS:
		recorded = (long)ARG0(tf);
		/* what ring 3 runs with; and a new one for when it resumes */
		CHECK_EQ(dune_get_user_fs(), (unsigned long)ARG1(tf));
		dune_set_user_fs((unsigned long)ARG2(tf));
		tf->rax = 0;
		break;
	case SYS_clone:
	case SYS_vfork:
		dune_passthrough_syscall(tf); /* a thread or vfork: refused from a handler */
		break;
	case SYS_exit:
		dune_ret_from_user((int)ARG0(tf));
		break;
	default:
		tf->rax = (uint64_t)-ENOSYS;
	}
}

void ring3_a(void)
{
	if (r3_syscall(SYS_getpid, 0, 0, 0, 0, 0, 0) != getpid()) /* getpid in ring 3 is the handler's passthrough */
		R3_EXIT(1);
	if (r3_syscall(SYS_getuid, 0, 0, 0, 0, 0, 0) != 4242)
		R3_EXIT(2);
	if (r3_syscall(SYS_SUM, 1, 2, 3, 4, 5, 6) != 654321)
		R3_EXIT(3);
	/* A thread or a vfork child would start inside the handler, on its
	 * stacks: refused (a fork is passed on: fork_test.c). */
	if (r3_syscall(SYS_clone, CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD,
		       (long)(stack_b + sizeof stack_b), 0, 0, 0, 0) != -ENOSYS)
		R3_EXIT(4);
	if (r3_syscall(SYS_vfork, 0, 0, 0, 0, 0, 0) != -ENOSYS)
		R3_EXIT(5);
	R3_EXIT(77);
}

static void syscalls_reach_the_handler(void)
{
	enter_or_fail();
	dune_register_syscall_handler(handler);
	struct dune_tf tf;
	start_frame(&tf, ring3_a, stack_a, sizeof stack_a);
	CHECK_EQ(dune_jump_to_user(&tf), 77);
	CHECK_EQ(tf.cs, GD_UT | 3); /* written into the frame, as Dune did */
	CHECK_EQ(tf.ss, GD_UD | 3);
	CHECK(handler_calls >= 5);
	CHECK(in_ring0());
	/* ring 3 again, from the same thread */
	start_frame(&tf, ring3_a, stack_a, sizeof stack_a);
	CHECK_EQ(dune_jump_to_user(&tf), 77);
}

void ring3_b(void)
{
	if (r3_syscall(SYS_getuid, 0, 0, 0, 0, 0, 0) != 4242)
		r3_syscall(SYS_B_DONE, 50, 0, 0, 0, 0, 0);
	r3_syscall(SYS_B_DONE, 5, 0, 0, 0, 0, 0);
	R3_EXIT(99); /* not reached */
}

void ring3_nesting(void)
{
	const long got = r3_syscall(SYS_NEST, 0, 0, 0, 0, 0, 0);
	if (r3_syscall(SYS_getuid, 0, 0, 0, 0, 0, 0) != 4242)
		R3_EXIT(1);
	R3_EXIT(got);
}

static void a_handler_can_jump_to_user(void)
{
	enter_or_fail();
	dune_register_syscall_handler(handler);
	struct dune_tf tf;
	start_frame(&tf, ring3_nesting, stack_a, sizeof stack_a);
	/* A asks; the handler runs B, which ends with 5; A gets 105. */
	CHECK_EQ(dune_jump_to_user(&tf), 105);
}

static char fs_block_1[64] __attribute__((aligned(64)));
static char fs_block_2[64] __attribute__((aligned(64)));

void ring3_fs(void)
{
	uint64_t fs0;
	__asm__ volatile("movq %%fs:0, %0" : "=r"(fs0));
	r3_syscall(SYS_FS, (long)fs0, (long)fs_block_1, (long)fs_block_2, 0, 0, 0);
	__asm__ volatile("movq %%fs:0, %0" : "=r"(fs0));
	R3_EXIT(fs0 == (uint64_t)fs_block_2 ? 11 : 12);
}

static void ring3_runs_with_its_own_fs_base(void)
{
	enter_or_fail();
	dune_register_syscall_handler(handler);
	/* TLS blocks whose first word is their own address, as glibc's */
	*(char **)fs_block_1 = fs_block_1;
	*(char **)fs_block_2 = fs_block_2;
	const unsigned long own = dune_get_user_fs();
	unsigned long tp;
	__asm__ volatile("movq %%fs:0, %0" : "=r"(tp));
	CHECK_EQ(own, tp); /* by default, the thread's own */
	dune_set_user_fs((unsigned long)fs_block_1);
	struct dune_tf tf;
	start_frame(&tf, ring3_fs, stack_a, sizeof stack_a);
	CHECK_EQ(dune_jump_to_user(&tf), 11);
	CHECK_EQ(recorded, (long)fs_block_1);
	/* ring 0's own TLS is untouched */
	unsigned long after;
	__asm__ volatile("movq %%fs:0, %0" : "=r"(after));
	CHECK_EQ(after, tp);
}

#define R3_PAGE ((char *)0x400000000000)
static uint64_t r3_fec;
static uintptr_t r3_addr;

static void grant(uintptr_t addr, uint64_t fec, struct dune_tf *tf)
{
	r3_addr = addr;
	r3_fec = fec;
	CHECK_EQ(tf->cs, GD_UT | 3);
	ptent_t *pte;
	CHECK_EQ(dune_vm_lookup(pgroot, (void *)addr, CREATE_NONE, &pte), 0);
	*pte |= PTE_P | PTE_W | PTE_U | PTE_A | PTE_D;
}

void ring3_write(void)
{
	R3_PAGE[8] = 1;
	R3_EXIT(R3_PAGE[8] + 20);
}

static void ring3_page_faults_reach_the_handler(void)
{
	enter_or_fail();
	dune_register_syscall_handler(handler);
	dune_register_pgflt_handler(grant);
	CHECK_EQ(dune_vm_map_pages(pgroot, R3_PAGE, PGSIZE, PERM_R), 0); /* supervisor, read-only */
	struct dune_tf tf;
	start_frame(&tf, ring3_write, stack_a, sizeof stack_a);
	CHECK_EQ(dune_jump_to_user(&tf), 21);
	CHECK_EQ(r3_addr, (uintptr_t)R3_PAGE + 8);
	CHECK_EQ(r3_fec & (FEC_P | FEC_W | FEC_U), FEC_P | FEC_W | FEC_U);
}

static void fault_and_end(uintptr_t addr, uint64_t fec, struct dune_tf *tf)
{
	(void)tf;
	r3_addr = addr;
	r3_fec = fec;
	dune_ret_from_user(-EFAULT);
}

void __attribute__((aligned(4096))) ring3_simple(void)
{
	R3_EXIT(78);
}

static void partial_mode_keeps_ordinary_memory_from_ring3(void)
{
	CHECK_EQ(dune_init(false), 0);
	CHECK_EQ(dune_enter(), 0);
	dune_register_syscall_handler(handler);
	dune_register_pgflt_handler(fault_and_end);
	struct dune_tf tf;
	start_frame(&tf, ring3_simple, stack_a, sizeof stack_a);
	/* The code is the program's own, not opened to ring 3: a fetch fault. */
	CHECK_EQ(dune_jump_to_user(&tf), -EFAULT);
	CHECK_EQ(r3_addr, (uintptr_t)ring3_simple);
	CHECK_EQ(r3_fec & (FEC_U | FEC_I | FEC_P), FEC_U | FEC_I | FEC_P);
	/* Opened with PERM_U (and its stack), it runs. */
	CHECK_EQ(dune_vm_map_phys(pgroot, (void *)ring3_simple, PGSIZE, (void *)dune_va_to_pa((void *)ring3_simple),
				  PERM_R | PERM_X | PERM_U), 0);
	CHECK_EQ(dune_vm_map_phys(pgroot, stack_a, sizeof stack_a, (void *)dune_va_to_pa(stack_a),
				  PERM_R | PERM_W | PERM_U), 0);
	start_frame(&tf, ring3_simple, stack_a, sizeof stack_a);
	CHECK_EQ(dune_jump_to_user(&tf), 78);
}

void ring3_crash(void)
{
	/* a store to an address nothing maps (hidden from the compiler) */
	char *volatile nowhere = (char *)0x10;
	*nowhere = 1;
}

static void crash_in_ring3(void)
{
	enter_or_fail();
	struct dune_tf tf;
	start_frame(&tf, ring3_crash, stack_a, sizeof stack_a);
	dune_jump_to_user(&tf);
	_exit(0); /* not reached */
}

static void ret_outside(void)
{
	enter_or_fail();
	dune_ret_from_user(3);
}

static void without_handlers_ring3_dies(void)
{
	/* No page-fault handler: a dump and dune_die, as Dune did. */
	int status = run_in_child(crash_in_ring3);
	CHECK(WIFEXITED(status));
	CHECK_EQ(WEXITSTATUS(status), 1);
	/* dune_ret_from_user outside a handler of ring 3: the same. */
	status = run_in_child(ret_outside);
	CHECK(WIFEXITED(status));
	CHECK_EQ(WEXITSTATUS(status), 1);
}

static void jump_outside_vm_mode_fails(void)
{
	CHECK_EQ(dune_init(true), 0);
	struct dune_tf tf;
	start_frame(&tf, ring3_a, stack_a, sizeof stack_a);
	CHECK_EQ(dune_jump_to_user(&tf), -EPERM);
}

static const struct test_case tests[] = {
	{"syscalls_reach_the_handler", syscalls_reach_the_handler},
	{"a_handler_can_jump_to_user", a_handler_can_jump_to_user},
	{"ring3_runs_with_its_own_fs_base", ring3_runs_with_its_own_fs_base},
	{"ring3_page_faults_reach_the_handler", ring3_page_faults_reach_the_handler},
	{"partial_mode_keeps_ordinary_memory_from_ring3", partial_mode_keeps_ordinary_memory_from_ring3},
	{"without_handlers_ring3_dies", without_handlers_ring3_dies},
	{"jump_outside_vm_mode_fails", jump_outside_vm_mode_fails},
	{NULL, NULL},
};

int main(int argc, char **argv)
{
	return run_named_test(argc, argv, tests);
}
