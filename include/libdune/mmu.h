/*
 * libdune/mmu.h - page-table entries and the x86-64 structures of the JOS
 * kernel libdune's headers descend from. Includes libdune/types.h and
 * libdune/mmu-x86.h.
 */
#ifndef JOS_MACHINE_MMU_H
#define JOS_MACHINE_MMU_H

#define UINT64(x) ((uint64_t)x)
#define CAST64(x) ((uint64_t)x)
#define ONE UINT64(1)

/* Four levels of 512 entries (the levels below the PML4: NPTLVLS). */
#define NPTBITS 9
#define NPTLVLS 3
#define PD_SKIP 6 /* where pd_lim starts in struct Pseudodesc */

#include "types.h"
#include "mmu-x86.h"

/* A page-table entry of any level. */
typedef uint64_t ptent_t;

#ifndef __ASSEMBLER__

/* The operand of LGDT/LIDT, padded so that the base is 8-byte aligned. */
struct Pseudodesc {
	uint16_t pd__garbage1;
	uint16_t pd__garbage2;
	uint16_t pd__garbage3;
	uint16_t pd_lim;
	uint64_t pd_base;
} __attribute__((packed));

/* The 64-bit task-state segment. */
struct Tss {
	char tss__ign1[4];
	uint64_t tss_rsp[3]; /* stacks for rings 0-2 */
	uint64_t tss_ist[8]; /* interrupt stacks 1-7 (0 unused) */
	char tss__ign2[10];
	uint16_t tss_iomb; /* offset of the I/O permission bitmap */
	uint8_t tss_iopb[];
} __attribute__((packed));

/* An interrupt or trap gate (SETGATE fills one). */
struct Gatedesc {
	uint64_t gd_lo;
	uint64_t gd_hi;
};

struct Trapframe_aux {};

/* JOS's trap frame (not libdune's: that is struct dune_tf in dune.h). */
struct Trapframe {
	uint64_t tf_rcx;
	uint64_t tf_rdx;
	uint64_t tf_rdi;
	uint64_t tf_r8;
	uint64_t tf_r9;
	uint64_t tf_r10;
	uint64_t tf_r11;

	uint64_t tf_rbx;
	uint64_t tf_rbp;
	uint64_t tf_r12;
	uint64_t tf_r13;
	uint64_t tf_r14;
	uint64_t tf_r15;

	union {
		uint64_t tf_rsi;
		uint64_t tf__trapentry_rip;
	};

	uint64_t tf_rax;

	uint32_t tf_err;
	uint32_t tf__pad1;
	uint64_t tf_rip;
	uint16_t tf_cs;
	uint16_t tf_ds;
	uint16_t tf_es;
	uint16_t tf_fs;
	uint64_t tf_rflags;
	uint64_t tf_rsp;
	uint16_t tf_ss;
	uint16_t tf_gs;
	uint16_t tf__pad3[2];
};

#endif /* !__ASSEMBLER__ */

#endif /* !JOS_MACHINE_MMU_H */
