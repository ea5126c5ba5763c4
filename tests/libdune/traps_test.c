/*
 * Exception handlers (dune_register_intr_handler for vectors 0-31), struct
 * dune_tf, the page-fault handler's routing, dune_dump_trap_frame,
 * dune_pop_trap_frame.
 */
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "check.h"
#include "libdune/cpu-x86.h"
#include "libdune/dune.h"

/* struct dune_tf is Dune's, byte for byte. */
_Static_assert(sizeof(struct dune_tf) == 168, "dune_tf size");
_Static_assert(offsetof(struct dune_tf, rax) == 0x70, "dune_tf rax");
_Static_assert(offsetof(struct dune_tf, err) == 0x78, "dune_tf err");
_Static_assert(offsetof(struct dune_tf, rip) == 0x80, "dune_tf rip");
_Static_assert(offsetof(struct dune_tf, cs) == 0x88, "dune_tf cs");
_Static_assert(offsetof(struct dune_tf, rflags) == 0x90, "dune_tf rflags");
_Static_assert(offsetof(struct dune_tf, rsp) == 0x98, "dune_tf rsp");
_Static_assert(offsetof(struct dune_tf, ss) == 0xa0, "dune_tf ss");

/* A divide error at a known place, and where to continue. */
__asm__(".pushsection .text\n"
	".globl divide_here, divide_resume\n"
	"divide_here:\n"
	"  movl $7, %eax\n"
	"  xorl %edx, %edx\n"
	"  xorl %ecx, %ecx\n"
	"  movq $0x1234, %rsi\n"
	"divide_insn:\n"
	"  divl %ecx\n"
	"divide_resume:\n"
	"  ret\n"
	".popsection\n");
extern void divide_here(void);
extern char divide_insn[], divide_resume[];

static struct dune_tf seen;
static int calls;

static void on_divide(struct dune_tf *tf)
{
	seen = *tf;
	calls++;
	tf->rip = (uintptr_t)divide_resume;
}

static void handlers_see_dunes_frame_and_resume_where_told(void)
{
	enter_or_fail();
	CHECK_EQ(dune_register_intr_handler(T_DIVIDE, on_divide), 0);
	divide_here();
	CHECK_EQ(calls, 1);
	CHECK_EQ(seen.rip, (uintptr_t)divide_insn);
	CHECK_EQ(seen.rsi, 0x1234);
	CHECK_EQ(seen.rax, 7);
	CHECK_EQ(seen.err, 0);
	CHECK_EQ(seen.cs, GD_KT);
	CHECK_EQ(seen.ss & ~3, GD_KD);
	CHECK(seen.rsp != 0);
	divide_here();
	CHECK_EQ(calls, 2);
}

static void on_ud(struct dune_tf *tf)
{
	calls++;
	tf->rip += 2; /* ud2 */
	tf->rax = 0x5ca1ab1e;
}

static void handlers_can_change_registers(void)
{
	enter_or_fail();
	CHECK_EQ(dune_register_intr_handler(T_ILLOP, on_ud), 0);
	unsigned long rax = 0;
	__asm__ volatile("ud2" : "+a"(rax));
	CHECK_EQ(rax, 0x5ca1ab1e);
	CHECK_EQ(calls, 1);
}

static void refused_vectors(void)
{
	enter_or_fail();
	CHECK_EQ(dune_register_intr_handler(-1, on_ud), -EINVAL);
	CHECK_EQ(dune_register_intr_handler(256, on_ud), -EINVAL);
	/* NMI, double fault and machine check cannot be handled under dunk */
	CHECK_EQ(dune_register_intr_handler(T_NMI, on_ud), -EINVAL);
	CHECK_EQ(dune_register_intr_handler(T_DBLFLT, on_ud), -EINVAL);
	CHECK_EQ(dune_register_intr_handler(T_MCHK, on_ud), -EINVAL);
	/* dunk's own interrupt vectors */
	CHECK_EQ(dune_register_intr_handler(254, on_ud), -EINVAL);
	CHECK_EQ(dune_register_intr_handler(255, on_ud), -EINVAL);
	CHECK_EQ(dune_register_signal_handler(60, on_ud), -EINVAL); /* 260 */
	CHECK_EQ(dune_register_signal_handler(SIGUSR1, on_ud), 0);
}

static void ud_without_handler(void)
{
	enter_or_fail();
	CHECK_EQ(dune_register_intr_handler(T_ILLOP, on_ud), 0);
	CHECK_EQ(dune_register_intr_handler(T_ILLOP, NULL), 0);
	__asm__ volatile("ud2");
	_exit(0); /* not reached */
}

static void unregistered_handler_gives_the_native_signal(void)
{
	int status = run_in_child(ud_without_handler);
	CHECK(WIFSIGNALED(status));
	CHECK_EQ(WTERMSIG(status), SIGILL);
}

/* ---- page faults ---- */

#define GUEST_ONLY ((char *)0x400000000000)

static uintptr_t fault_addr;
static uint64_t fault_fec;
static int faults;

static void grant_write(uintptr_t addr, uint64_t fec, struct dune_tf *tf)
{
	(void)tf;
	fault_addr = addr;
	fault_fec = fec;
	faults++;
	ptent_t *pte;
	CHECK_EQ(dune_vm_lookup(pgroot, (void *)addr, CREATE_NONE, &pte), 0);
	*pte |= PTE_P | PTE_W | PTE_A | PTE_D;
}

static void page_fault_handler_gets_address_and_error_code(void)
{
	enter_or_fail();
	CHECK_EQ(dune_vm_map_pages(pgroot, GUEST_ONLY, 4 * PGSIZE, PERM_R), 0);
	dune_register_pgflt_handler(grant_write);
	GUEST_ONLY[PGSIZE + 5] = 1;
	CHECK_EQ(faults, 1);
	CHECK_EQ(fault_addr, (uintptr_t)GUEST_ONLY + PGSIZE + 5);
	CHECK_EQ(fault_fec & (FEC_P | FEC_W | FEC_U), FEC_P | FEC_W);
	GUEST_ONLY[PGSIZE + 6] = 2; /* now writable: no fault */
	CHECK_EQ(faults, 1);
	/* The entry the handler rewrote is the program's now: dunk's tag. */
	ptent_t *pte;
	CHECK_EQ(dune_vm_lookup(pgroot, GUEST_ONLY + PGSIZE, CREATE_NONE, &pte), 0);
	CHECK_EQ(*pte & 0xe00, 0x400);
	/* Not present: a fault without FEC_P. */
	dune_vm_mprotect(pgroot, GUEST_ONLY, PGSIZE, PERM_NONE);
	GUEST_ONLY[0] = 3;
	CHECK_EQ(faults, 2);
	CHECK_EQ(fault_fec & FEC_P, 0);
	CHECK_EQ(GUEST_ONLY[0], 3);
}

static void dunks_own_faults_never_reach_the_handler(void)
{
	enter_or_fail();
	dune_register_pgflt_handler(grant_write);
	/* Memory mapped and touched as usual: resolved by dunk and KVM. */
	char *heap = mmap(NULL, 64 * PGSIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(heap != MAP_FAILED);
	for (int i = 0; i < 64; i++)
		heap[i * PGSIZE] = (char)i;
	/* A stack growing well below its bottom. */
	volatile char big[512 * 1024];
	big[0] = 1;
	big[sizeof big - 1] = 2;
	CHECK_EQ(big[0] + big[sizeof big - 1], 3);
	CHECK_EQ(faults, 0);
}

/* A load whose instruction the handler below skips: movq (%rax), %rax. */
static uint64_t probe(const void *p)
{
	uint64_t v;
	__asm__ volatile("movq (%%rax), %%rax" : "=a"(v) : "a"(p) : "memory");
	return v;
}

static void skip_probe(uintptr_t addr, uint64_t fec, struct dune_tf *tf)
{
	fault_addr = addr;
	fault_fec = fec;
	faults++;
	tf->rip += 3;
	tf->rax = 0xdead;
}

static void faults_dunk_cannot_resolve_go_to_the_handler(void)
{
	enter_or_fail();
	dune_register_pgflt_handler(skip_probe);
	CHECK_EQ(probe((void *)0x10), 0xdead); /* nothing mapped there */
	CHECK_EQ(faults, 1);
	CHECK_EQ(fault_addr, 0x10);
	CHECK_EQ(fault_fec & FEC_P, 0);
	/* A host mapping without PROT_READ: not dunk's to resolve either. */
	char *none = mmap(NULL, PGSIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(none != MAP_FAILED);
	CHECK_EQ(probe(none), 0xdead);
	CHECK_EQ(faults, 2);
	CHECK_EQ(fault_addr, (uintptr_t)none);
	/* Once readable on the host, the monitor mirrors it: dunk's again. */
	CHECK_EQ(mprotect(none, PGSIZE, PROT_READ), 0);
	CHECK_EQ(probe(none), 0);
	CHECK_EQ(faults, 2);
}

static void on_pf_vector(struct dune_tf *tf)
{
	(void)tf;
	calls++;
	ptent_t *pte;
	CHECK_EQ(dune_vm_lookup(pgroot, GUEST_ONLY, CREATE_NONE, &pte), 0);
	*pte |= PTE_W;
}

static void a_vector_handler_takes_precedence_over_the_page_fault_handler(void)
{
	enter_or_fail();
	CHECK_EQ(dune_vm_map_pages(pgroot, GUEST_ONLY, PGSIZE, PERM_R), 0);
	dune_register_pgflt_handler(grant_write);
	CHECK_EQ(dune_register_intr_handler(T_PGFLT, on_pf_vector), 0);
	GUEST_ONLY[0] = 1;
	CHECK_EQ(calls, 1);
	CHECK_EQ(faults, 0);
}

static void dump_a_frame(void)
{
	enter_or_fail();
	struct dune_tf tf;
	memset(&tf, 0, sizeof tf);
	tf.rip = (uintptr_t)divide_here;
	tf.rsp = (uintptr_t)__builtin_frame_address(0);
	tf.rax = 0xabcdef;
	tf.cs = GD_KT;
	dune_dump_trap_frame(&tf);
}

static void dump_trap_frame_prints_registers_stack_and_code(void)
{
	char out[8192];
	int status = capture_child_output(dump_a_frame, out, sizeof out);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	char rip[64];
	snprintf(rip, sizeof rip, "RIP 0x%016lx", (unsigned long)divide_here);
	CHECK(strstr(out, rip) != NULL);
	CHECK(strstr(out, "RAX 0x0000000000abcdef") != NULL);
	CHECK(strstr(out, "RSP+0") != NULL);
	/* the code at RIP: divide_here starts with movl $7, %eax (b8 07 00 00 00) */
	CHECK(strstr(out, "b8 07 00 00 00") != NULL);
}

/* dune_pop_trap_frame to ring 0: every register from the frame. pop_test
 * keeps its caller's registers, pops `tf` and comes back from pop_target. */
uint64_t popped_rbx, popped_r15, pop_saved_rsp;
__asm__(".pushsection .text\n"
	".globl pop_test, pop_target\n"
	"pop_test:\n"
	"  pushq %rbx\n"
	"  pushq %rbp\n"
	"  pushq %r12\n"
	"  pushq %r13\n"
	"  pushq %r14\n"
	"  pushq %r15\n"
	"  movq %rsp, pop_saved_rsp(%rip)\n"
	"  subq $8, %rsp\n"
	"  call dune_pop_trap_frame@PLT\n"
	"  ud2\n"
	"pop_target:\n"
	"  movq %rbx, popped_rbx(%rip)\n"
	"  movq %r15, popped_r15(%rip)\n"
	"  movq pop_saved_rsp(%rip), %rsp\n"
	"  popq %r15\n"
	"  popq %r14\n"
	"  popq %r13\n"
	"  popq %r12\n"
	"  popq %rbp\n"
	"  popq %rbx\n"
	"  ret\n"
	".popsection\n");
extern void pop_test(struct dune_tf *tf);
extern void pop_target(void);

static void pop_trap_frame_loads_a_ring0_frame(void)
{
	static char stack[16384] __attribute__((aligned(16)));
	enter_or_fail();
	struct dune_tf tf;
	memset(&tf, 0, sizeof tf);
	tf.rip = (uintptr_t)pop_target;
	tf.cs = GD_KT;
	tf.ss = GD_KD;
	tf.rflags = 0x202;
	tf.rsp = (uintptr_t)(stack + sizeof stack);
	tf.rbx = 0x1111;
	tf.r15 = 0xf0f0;
	pop_test(&tf);
	CHECK_EQ(popped_rbx, 0x1111);
	CHECK_EQ(popped_r15, 0xf0f0);
	CHECK(in_ring0());
}

static const struct test_case tests[] = {
	{"handlers_see_dunes_frame_and_resume_where_told", handlers_see_dunes_frame_and_resume_where_told},
	{"handlers_can_change_registers", handlers_can_change_registers},
	{"refused_vectors", refused_vectors},
	{"unregistered_handler_gives_the_native_signal", unregistered_handler_gives_the_native_signal},
	{"page_fault_handler_gets_address_and_error_code", page_fault_handler_gets_address_and_error_code},
	{"dunks_own_faults_never_reach_the_handler", dunks_own_faults_never_reach_the_handler},
	{"faults_dunk_cannot_resolve_go_to_the_handler", faults_dunk_cannot_resolve_go_to_the_handler},
	{"a_vector_handler_takes_precedence_over_the_page_fault_handler",
	 a_vector_handler_takes_precedence_over_the_page_fault_handler},
	{"dump_trap_frame_prints_registers_stack_and_code", dump_trap_frame_prints_registers_stack_and_code},
	{"pop_trap_frame_loads_a_ring0_frame", pop_trap_frame_loads_a_ring0_frame},
	{NULL, NULL},
};

int main(int argc, char **argv)
{
	return run_named_test(argc, argv, tests);
}
