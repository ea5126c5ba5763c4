/*
 * project-dune's x2APIC calls: APIC IDs, the routing table by host CPU,
 * IPIs between threads, EOI; interrupt handlers (vectors 32-253).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/sysinfo.h>

#include "check.h"
#include "libdune/cpu-x86.h"
#include "libdune/dune.h"
#include "libdune/local.h"

#define VECTOR 0xf2

static atomic_int received;
static atomic_int ready;
static atomic_uint target_vector;
static atomic_int stop;

static void on_ipi(struct dune_tf *tf)
{
	(void)tf;
	atomic_fetch_add(&received, 1);
	dune_apic_eoi();
}

static void *receiver(void *arg)
{
	(void)arg;
	cpu_set_t one;
	CPU_ZERO(&one);
	CPU_SET(1, &one);
	if (pthread_setaffinity_np(pthread_self(), sizeof one, &one) != 0)
		return (void *)1;
	if (dune_enter() != 0)
		return (void *)2;
	dune_apic_init_rt_entry();
	atomic_store(&ready, 1);
	while (!atomic_load(&stop))
		__asm__ volatile("pause");
	return NULL;
}

static void ipis_reach_the_thread_pinned_to_a_cpu(void)
{
	CHECK(get_nprocs() >= 2);
	cpu_set_t zero;
	CPU_ZERO(&zero);
	CPU_SET(0, &zero);
	CHECK_EQ(pthread_setaffinity_np(pthread_self(), sizeof zero, &zero), 0);
	enter_or_fail();
	dune_apic_init_rt_entry();
	CHECK_EQ(dune_apic_id_for_cpu(0, NULL), dune_apic_id());
	bool error = false;
	CHECK_EQ(dune_apic_id_for_cpu(1, &error), (uint32_t)-1); /* nobody there yet */
	CHECK(!error);
	dune_apic_id_for_cpu(100000, &error);
	CHECK(error);
	CHECK_EQ(dune_register_intr_handler(VECTOR, on_ipi), 0);
	pthread_t t;
	CHECK_EQ(pthread_create(&t, NULL, receiver, NULL), 0);
	while (!atomic_load(&ready))
		__asm__ volatile("pause");
	const uint32_t id = dune_apic_id_for_cpu(1, NULL);
	CHECK(id != (uint32_t)-1);
	CHECK(id != dune_apic_id());
	for (int i = 1; i <= 3; i++) {
		dune_apic_send_ipi(VECTOR, id);
		while (atomic_load(&received) < i)
			__asm__ volatile("pause");
	}
	atomic_store(&stop, 1);
	void *ret;
	CHECK_EQ(pthread_join(t, &ret), 0);
	CHECK(ret == NULL);
	CHECK_EQ(atomic_load(&received), 3);
	/* x2APIC ID by MSR, in ring 0: the same */
	unsigned long msr;
	rdmsrl(0x802, msr);
	CHECK_EQ((uint32_t)msr, dune_apic_id());
	/* vector 2 was Dune's NMI: refused, and nothing breaks */
	dune_apic_send_ipi(2, id);
	dune_apic_free();
	CHECK(dune_setup_apic());
}

static void on_self(struct dune_tf *tf)
{
	atomic_store(&target_vector, (unsigned)tf->err + 1000);
	atomic_fetch_add(&received, 1);
	dune_apic_eoi();
}

static void a_handler_sees_the_interrupted_frame(void)
{
	enter_or_fail();
	CHECK_EQ(dune_register_intr_handler(0x40, on_self), 0);
	dune_apic_send_ipi(0x40, dune_apic_id());
	while (atomic_load(&received) < 1)
		__asm__ volatile("pause");
	CHECK_EQ(atomic_load(&target_vector), 1000); /* err 0 */
	/* unregistered: the next one is dropped */
	CHECK_EQ(dune_register_intr_handler(0x40, NULL), 0);
	dune_apic_send_ipi(0x40, dune_apic_id());
	for (volatile int i = 0; i < 100000; i++)
		;
	CHECK_EQ(atomic_load(&received), 1);
}

static const struct test_case tests[] = {
	{"ipis_reach_the_thread_pinned_to_a_cpu", ipis_reach_the_thread_pinned_to_a_cpu},
	{"a_handler_sees_the_interrupted_frame", a_handler_sees_the_interrupted_frame},
	{NULL, NULL},
};

int main(int argc, char **argv)
{
	return run_named_test(argc, argv, tests);
}
