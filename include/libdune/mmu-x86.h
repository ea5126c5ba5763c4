/*
 * libdune/mmu-x86.h - x86-64 paging, control registers, flags and segment
 * descriptors, as constants and bit-building macros (Intel SDM vol. 3A
 * chapters 3, 4 and 6; AMD APM vol. 2).
 *
 * Include libdune/mmu.h, which defines NPTBITS and the types first.
 *
 * Under dunk two of Dune's software bits of a page-table entry move (see
 * PTE_COW below): bits 11:9 carry dunk's owner tag, and bits 62:59 are the
 * protection key when the CPU has PKU (dunk enables it).
 */
#ifndef JOS_MACHINE_MMU_X86_H
#define JOS_MACHINE_MMU_X86_H

/* ---- Page-table indices, pages and page-table entries ---- */

/* Index of address `la` into its level-n table: n = 0 the page table,
 * 1 the page directory, 2 the page-directory-pointer table, 3 the PML4. */
#define PDXMASK ((1 << NPTBITS) - 1)
#define PDSHIFT(n) (12 + NPTBITS * (n))
#define PDX(n, la) ((((uintptr_t)(la)) >> PDSHIFT(n)) & PDXMASK)

#define NPTENTRIES (1 << NPTBITS)

/* 4 KiB pages. */
#define PGSHIFT 12
#define PGSIZE (1 << PGSHIFT)
#define PGMASK (PGSIZE - 1)
#define PPN(la) ((la) >> PGSHIFT)
#define PGOFF(la) (((uintptr_t)(la)) & PGMASK)
#define PGADDR(la) (((uintptr_t)(la)) & ~CAST64(PGMASK))

/* 2 MiB pages. */
#define BIG_PGSHIFT 21
#define BIG_PGSIZE (1 << BIG_PGSHIFT)
#define BIG_PGMASK (BIG_PGSIZE - 1)
#define BIG_PGOFF(la) (((uintptr_t)(la)) & BIG_PGMASK)
#define BIG_PGADDR(la) (((uintptr_t)(la)) & ~CAST64(BIG_PGMASK))

/* Entry bits the CPU defines. */
#define PTE_P 0x0001   /* present */
#define PTE_W 0x0002   /* writable */
#define PTE_U 0x0004   /* reachable from ring 3 */
#define PTE_PWT 0x0008 /* write-through */
#define PTE_PCD 0x0010 /* cache disabled */
#define PTE_A 0x0020   /* accessed */
#define PTE_D 0x0040   /* dirty (leaves) */
#define PTE_PS 0x0080  /* a large page (directory entries) */
#define PTE_PAT 0x0080 /* PAT index bit (4 KiB entries) */
#define PTE_G 0x0100   /* global */
#define PTE_PAT_PS 0x1000 /* PAT index bit (large pages) */
#define PTE_NX UINT64(0x8000000000000000) /* not executable */
/* Bits the CPU ignores: 11:9 (dunk's owner tag under dunk) and 62:52
 * (dunk's bit 52 marks a hidden page; 62:59 are the protection key with
 * PKU). What a program may use of them under dunk: bits 58:53. */
#define PTE_AVAIL 0x0E00
#define PTE_AVAIL2 UINT64(0x7FF0000000000000)

/*
 * Dune's software bits. Dune had them at bit 9 (COW) and bits 62:60
 * (USR1-3); under dunk those are its owner tag and the protection key, so
 * they live in bits the CPU and dunk both leave alone. Programs that use the
 * names need no change.
 */
#define PTE_COW UINT64(0x0080000000000000)  /* bit 55: copy on write (read-only) */
#define PTE_USR1 UINT64(0x0400000000000000) /* bit 58 */
#define PTE_USR2 UINT64(0x0200000000000000) /* bit 57 */
#define PTE_USR3 UINT64(0x0100000000000000) /* bit 56 */

/* The physical address an entry holds (bits 51:12) and its flags. */
#define PTE_ADDR(pte) ((physaddr_t)(pte) & UINT64(0xffffffffff000))
#define PTE_FLAGS(pte) ((physaddr_t)(pte) & UINT64(0xfff0000000000fff))

/* ---- Control registers ---- */

#define CR0_PE 0x1        /* protected mode */
#define CR0_MP 0x2        /* monitor coprocessor */
#define CR0_EM 0x4        /* x87 emulation */
#define CR0_TS 0x8        /* task switched */
#define CR0_ET 0x10       /* extension type */
#define CR0_NE 0x20       /* numeric error */
#define CR0_WP 0x10000    /* write protect in ring 0 */
#define CR0_AM 0x40000    /* alignment mask */
#define CR0_NW 0x20000000 /* not write-through */
#define CR0_CD 0x40000000 /* cache disable */
#define CR0_PG 0x80000000 /* paging */

#define CR3_PWT 0x8  /* root table write-through */
#define CR3_PCD 0x10 /* root table cache disabled */

#define CR4_VME 0x1     /* virtual-8086 mode extensions */
#define CR4_PVI 0x2     /* protected-mode virtual interrupts */
#define CR4_TSD 0x4     /* RDTSC in ring 0 only */
#define CR4_DE 0x8      /* debugging extensions */
#define CR4_PSE 0x10    /* page size extensions */
#define CR4_PAE 0x20    /* physical address extension */
#define CR4_MCE 0x40    /* machine check */
#define CR4_PGE 0x80    /* global pages */
#define CR4_PCE 0x100   /* RDPMC in any ring */
#define CR4_OSFXSR 0x200 /* FXSAVE/FXRSTOR */
#define CR4_OSX 0x400   /* unmasked SIMD exceptions */

/* ---- Memory type range registers ---- */

#define MTRR_CAP 0xfe
#define MTRR_CAP_VCNT_MASK 0xff
#define MTRR_CAP_FIX 0x100
#define MTRR_CAP_WC 0x400
#define MTRR_BASE(i) (0x200 + 2 * (i))
#define MTRR_BASE_UC 0x00
#define MTRR_BASE_WC 0x01
#define MTRR_BASE_WT 0x04
#define MTRR_BASE_WP 0x05
#define MTRR_BASE_WB 0x06
#define MTRR_MASK(i) (0x201 + 2 * (i))
#define MTRR_MASK_FULL PGADDR((ONE << 36) - 1)
#define MTRR_MASK_VALID 0x800

/* ---- EFER and other MSRs ---- */

#define EFER 0xc0000080
#define EFER_SCE 0x1     /* SYSCALL/SYSRET */
#define EFER_LME 0x100   /* long mode enabled */
#define EFER_LMA 0x400   /* long mode active */
#define EFER_NXE 0x800   /* no-execute */
#define EFER_FFXSR 0x4000 /* fast FXSAVE/FXRSTOR */

#define MSR_FS_BASE 0xc0000100
#define MSR_GS_BASE 0xc0000101

#define MSR_DEBUG_CTL 0x1d9
#define DEBUG_CTL_LBR (1 << 0) /* last-branch recording */
#define MSR_LBR_FROM_IP 0x1db
#define MSR_LBR_TO_IP 0x1dc
#define MSR_LEX_FROM_IP 0x1dd
#define MSR_LEX_TO_IP 0x1de

/* ---- Debug register 7 ---- */

#define DR7_L(n) (ONE << ((n) * 2))     /* local enable of breakpoint n */
#define DR7_G(n) (ONE << ((n) * 2 + 1)) /* global enable of breakpoint n */
#define DR7_LE (ONE << 8)
#define DR7_GE (ONE << 9)
#define DR7_GD (ONE << 13)
#define DR7_RW_SHIFT(n) ((n) * 4 + 16)
#define DR7_LEN_SHIFT(n) ((n) * 4 + 18)

#define DR7_RW_EXEC 0x0
#define DR7_RW_WRITE 0x1
#define DR7_RW_IO 0x2
#define DR7_RW_RW 0x3

#define DR7_LEN_1 0x0
#define DR7_LEN_2 0x1
#define DR7_LEN_8 0x2
#define DR7_LEN_4 0x3

/* ---- RFLAGS ---- */

#define FL_CF 0x00000001
#define FL_PF 0x00000004
#define FL_AF 0x00000010
#define FL_ZF 0x00000040
#define FL_SF 0x00000080
#define FL_TF 0x00000100
#define FL_IF 0x00000200
#define FL_DF 0x00000400
#define FL_OF 0x00000800
#define FL_IOPL_MASK 0x00003000
#define FL_IOPL_0 0x00000000
#define FL_IOPL_1 0x00001000
#define FL_IOPL_2 0x00002000
#define FL_IOPL_3 0x00003000
#define FL_NT 0x00004000
#define FL_RF 0x00010000
#define FL_VM 0x00020000
#define FL_AC 0x00040000
#define FL_VIF 0x00080000
#define FL_VIP 0x00100000
#define FL_ID 0x00200000

/* ---- Page-fault error code (Intel SDM vol. 3A §4.7) ---- */

#define FEC_P 0x1   /* a protection violation (else: not present) */
#define FEC_W 0x2   /* a write */
#define FEC_U 0x4   /* from ring 3 */
#define FEC_RSV 0x8 /* a reserved bit was set */
#define FEC_I 0x10  /* an instruction fetch */

/* ---- Segment and gate descriptors ---- */

/* Type bits of a segment (STA_) and the same in place in a descriptor (SEG_). */
#define STA_A (ONE << 0) /* accessed */
#define STA_W (ONE << 1) /* writable data */
#define STA_E (ONE << 2) /* expand-down data */
#define STA_X (ONE << 3) /* code */
#define STA_R (ONE << 1) /* readable code */
#define STA_C (ONE << 2) /* conforming code */

#define SEG_A (STA_A << 40)
#define SEG_W (STA_W << 40)
#define SEG_E (STA_E << 40)
#define SEG_X (STA_X << 40)
#define SEG_R (STA_R << 40)
#define SEG_C (STA_C << 40)
#define SEG_S (ONE << 44) /* code or data (not a system segment) */

/* System descriptor types. */
#define SEG_LDT (UINT64(0x2) << 40)
#define SEG_TSSA (UINT64(0x9) << 40) /* available 64-bit TSS */
#define SEG_TSSB (UINT64(0xa) << 40) /* busy 64-bit TSS */
#define SEG_CG (UINT64(0xc) << 40)   /* call gate */
#define SEG_IG (UINT64(0xe) << 40)   /* interrupt gate */
#define SEG_TG (UINT64(0xf) << 40)   /* trap gate */

#define SEG_DPL(x) (((x) & UINT64(3)) << 45)
#define SEG_P (ONE << 47)
#define SEG_L (ONE << 53) /* 64-bit code */
#define SEG_D (ONE << 54) /* 32-bit default size */
#define SEG_G (ONE << 55) /* limit in 4 KiB units */

/* Base and limit fields of a descriptor's low (and high) quadword. */
#define SEG_LIM(x) (((x) & 0xffff) | ((x) & UINT64(0xf0000)) << 32)
#define SEG_BASELO(x) (((CAST64(x) & 0xffffff) << 16) | ((CAST64(x) & 0xff000000) << 32))
#define SEG_BASEHI(x) (CAST64(x) >> 32)

/* A flat 32-bit segment, for assembly source. */
#define SEG32_ASM(type, base, lim)                                  \
	.word (((lim) >> 12) & 0xffff), ((base) & 0xffff);          \
	.byte (((base) >> 16) & 0xff), (0x90 | (type)),             \
	    (0xC0 | (((lim) >> 28) & 0xf)), (((base) >> 24) & 0xff)

#define SEG32(type, base, lim, dpl)                                                        \
	((type) | SEG_S | SEG_P | SEG_D | SEG_G | SEG_A | SEG_DPL(dpl) | SEG_BASELO(base) | \
	 SEG_LIM((lim) >> 12))

#define SEG64(type, dpl) ((type) | SEG_S | SEG_P | SEG_G | SEG_L | SEG_A | SEG_DPL(dpl) | SEG_LIM(0xffffffff))

/* Gates: the target's selector and offset. */
#define SEG_SEL(x) (((x) & 0xffff) << 16)
#define SEG_TARGETLO(x) ((CAST64(x) & 0xffff) | ((CAST64(x) & 0xffff0000) << 32))
#define SEG_TARGETHI(x) (CAST64(x) >> 32)

#define GATE32(type, sel, target, dpl) ((type) | SEG_DPL(dpl) | SEG_P | SEG_SEL(sel) | SEG_TARGETLO(target))
#define SETGATE(gate, type, sel, target, dpl)                  \
	do {                                                   \
		(gate).gd_lo = GATE32(type, sel, target, dpl); \
		(gate).gd_hi = SEG_TARGETHI(target);           \
	} while (0)

#ifndef __ASSEMBLER__

/* The FXSAVE image (512 bytes; Intel SDM vol. 1 §10.5.1). */
struct Fpregs {
	uint16_t cwd;
	uint16_t swd;
	uint16_t twd;
	uint16_t fop;
	uint64_t rip;
	uint64_t rdp;
	uint32_t mxcsr;
	uint32_t mxcsr_mask;
	uint32_t st_space[32];  /* ST0-ST7, 16 bytes each */
	uint32_t xmm_space[64]; /* XMM0-XMM15, 16 bytes each */
	uint32_t padding[24];
};

#endif /* !__ASSEMBLER__ */

#endif /* !JOS_MACHINE_MMU_X86_H */
