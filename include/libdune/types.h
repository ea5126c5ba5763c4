/*
 * libdune/types.h - the fixed-width integer and address types libdune's
 * headers use (they come from the JOS teaching kernel).
 *
 * The sized integers are <stdint.h>'s own, so that this header and the C
 * library's mix. Dune redefined PRIu64 and PRIx64 as "ld"/"lx"; they are
 * left to <inttypes.h> when it has defined them.
 */
#ifndef JOS_MACHINE_TYPES_H
#define JOS_MACHINE_TYPES_H

#include <stddef.h>
#include <stdint.h>

#ifndef NULL
#define NULL ((void *)0)
#endif

/* A truth value of int size. */
typedef int bool_t;

typedef uint64_t __uint64_t;

/* A physical address (under dunk: a guest-physical one). */
typedef uintptr_t physaddr_t;
/* A page number: an address shifted by PGSHIFT. */
typedef uint64_t ppn_t;

#ifndef PRIu64
#define PRIu64 "lu"
#endif
#ifndef PRIx64
#define PRIx64 "lx"
#endif

#endif /* !JOS_MACHINE_TYPES_H */
