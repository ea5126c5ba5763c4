/* sthreads: Wedge's privilege separation inside one process, on dunk.
 *
 * The names and signatures of Dune's port of Wedge (sthread_init,
 * sthread_create, sthread_join, sc_init, sc_mem_add, sc_fd_add, sc_sys_add,
 * tag_new, smalloc), so that programs written for it build unchanged, and
 * what Wedge had beside them (tag_delete, sfree, callgates with a trusted
 * argument, recycled sthreads).
 *
 *   sthread_init();                       enters VM mode, snapshots globals
 *   tag_t t = tag_new();
 *   char *buf = smalloc(t, 1024);
 *   sc_t sc;
 *   sc_init(&sc);
 *   sc_mem_add(&sc, t, PROT_READ | PROT_WRITE);
 *   sc_fd_add(&sc, client_fd, PROT_READ | PROT_WRITE);
 *   sc_sys_add(&sc, SYS_open);
 *   sthread_create(&st, &sc, handler, buf);
 *   sthread_join(st, &ret);
 *
 * An sthread runs in ring 3 on a page table of its own: the program's
 * read-only image, its own stack, a private copy-on-write view of the
 * writable memory as it was at sthread_init(), and the tags its policy
 * grants, with the granted protection. Nothing else is reachable. Its system
 * calls are checked in ring 0 against its policy: the call, every
 * descriptor, and every pointer against its own view (EFAULT otherwise). A
 * fault ends that sthread alone; sthread_join reports it.
 * docs/STHREADS.md has the model and the guarantees.
 *
 * Link with libsthread.so (pkg-config sthread). The supervisor's state lives
 * in libsthread.so and libdunk.so, whose memory no sthread sees; a program
 * that links dunk statically cannot use sthreads (sthread_init: EINVAL). */
#ifndef STHREAD_STHREAD_H
#define STHREAD_STHREAD_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Limits of one security context. Adding past them marks the context
 * overflowed, and sthread_create refuses it (E2BIG). */
#define STHREAD_MAX_MEM 32
#define STHREAD_MAX_FD 64
#define STHREAD_MAX_CGATE 16
#define STHREAD_MAX_SYSCALL 512

typedef int sthread_t;
typedef int tag_t;

/* An sthread's function. */
typedef void *(*stcb_t)(void *);
/* A callgate's function: the trusted argument the supervisor holds (given
 * to sc_cgate_add), then the caller's argument. */
typedef void *(*cg_t)(void *trusted, void *arg);

struct sc_mem_grant {
	tag_t tag;
	int prot; /* PROT_READ, PROT_WRITE, PROT_EXEC */
};

struct sc_fd_grant {
	int fd;
	int prot; /* PROT_READ: calls that read from it; PROT_WRITE: that write */
};

struct sc_cgate_grant {
	cg_t entry;
	void *trusted;
	int context; /* the callgate's own security context, held by the supervisor */
};

/* A security context: what an sthread may touch. */
typedef struct sc {
	unsigned int sc_nmem;
	unsigned int sc_nfd;
	unsigned int sc_ncgate;
	unsigned int sc_overflow;
	struct sc_mem_grant sc_mem[STHREAD_MAX_MEM];
	struct sc_fd_grant sc_fd[STHREAD_MAX_FD];
	struct sc_cgate_grant sc_cgate[STHREAD_MAX_CGATE];
	unsigned char sc_sys[STHREAD_MAX_SYSCALL / 8];
} sc_t;

extern void sc_init(sc_t *sc);
extern void sc_mem_add(sc_t *sc, tag_t t, int prot);
extern void sc_fd_add(sc_t *sc, int fd, int prot);
/* read and write are always allowed (on granted descriptors), as in Dune's
 * port; SYS_open also admits openat, which glibc's open() makes. */
extern void sc_sys_add(sc_t *sc, int sysno);
/* Lets sthreads of `sc` call `cgate`, which then runs with the context
 * `cgsc` (copied now) and receives `targ` as its trusted argument. */
extern void sc_cgate_add(sc_t *sc, cg_t cgate, sc_t *cgsc, void *targ);

/* Enters VM mode and takes the snapshot of writable memory sthreads start
 * from. 0, or -1 with errno. */
extern int sthread_init(void);
extern int sthread_create(sthread_t *st, sc_t *sc, stcb_t cb, void *arg);
/* 0 when the sthread returned (*ret: its value) or called exit (*ret: the
 * status); -1 with errno EFAULT when it was ended by a fault (the report
 * says where), or another errno when `st` is not joinable. */
extern int sthread_join(sthread_t st, void **ret);

/* From an sthread: calls a callgate of its context. `perms` may be NULL or
 * name descriptors and tags of the caller's own context (with no more
 * rights) that the callgate gets for this call. NULL when the supervisor
 * refuses (errno EPERM) or the callgate faulted (errno EFAULT). */
extern void *cgate(cg_t cb, sc_t *perms, void *arg);

extern tag_t tag_new(void);
/* The tag's memory goes away once no running sthread holds it. */
extern void tag_delete(tag_t t);
extern void *smalloc(tag_t t, size_t size);
extern void sfree(void *p);

/* How an sthread ended (sthread_join_report). */
enum sthread_end {
	STHREAD_RETURNED = 0,
	STHREAD_EXITED = 1,  /* exit() or exit_group(): `value` is the status */
	STHREAD_FAULTED = 2, /* vector, address, rip, tag */
};

struct sthread_report {
	int end;                      /* enum sthread_end */
	unsigned long value;          /* returned value or exit status */
	int vector;                   /* the exception (14: page fault) */
	unsigned long address;        /* CR2 of a page fault */
	unsigned long rip;
	tag_t tag;                    /* the tag that holds `address`, or -1 */
	unsigned long violations;     /* system calls refused */
	long last_call;               /* the last refused call's number, or -1 */
	unsigned long last_address;   /* its offending pointer (EFAULT), or 0 */
	int last_fd;                  /* its offending descriptor (EBADF), or -1 */
	int last_errno;               /* what the sthread got */
	int recycled;                 /* it ran on a recycled compartment */
};

/* sthread_join, and how the sthread ended. */
extern int sthread_join_report(sthread_t st, void **ret, struct sthread_report *report);

#ifdef __cplusplus
}
#endif

#endif /* STHREAD_STHREAD_H */
