/*
 * libdune/local.h - libdune's internals that Dune's programs reach for:
 * the APIC routing table of project-dune's posted IPIs. The kernel-module
 * entry routines Dune declared here do not exist under dunk.
 */
#ifndef DUNK_LIBDUNE_LOCAL_H
#define DUNK_LIBDUNE_LOCAL_H

#include <stdbool.h>

#define __str_t(x...) #x
#define __str(x...) __str_t(x)

#ifdef __cplusplus
extern "C" {
#endif

extern int arch_prctl(int code, unsigned long *addr);

/* The page pool (dune_init sets it up). */
extern int dune_page_init(void);

/* Host CPU -> APIC ID routing for dune_apic_id_for_cpu (dune_init sets
 * the table up; each thread enters its own line). */
extern bool dune_setup_apic(void);
extern void dune_apic_free(void);
/* Records the calling thread's APIC ID under the host CPU it runs on
 * (pin the thread to one CPU first, as project-dune's programs do). */
extern void dune_apic_init_rt_entry(void);

#ifdef __cplusplus
}
#endif

#endif /* DUNK_LIBDUNE_LOCAL_H */
