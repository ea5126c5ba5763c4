/*
 * libdune/fpu.h - saving and loading the FPU/SSE/AVX registers with XSAVE.
 *
 * struct fpu_area holds the x87, SSE and AVX state (832 bytes), so the
 * dune_fpu_* functions save and load exactly those components (XCR0 bits
 * 0-2). Dune asked for every component (mask -1), which on a CPU with
 * AVX-512 or AMX writes past the structure.
 */
#ifndef DUNK_LIBDUNE_FPU_H
#define DUNK_LIBDUNE_FPU_H

#include <stdint.h>
#include <string.h>

/* The legacy FXSAVE region (Intel SDM vol. 1 §13.4.1). */
struct fxsave_area {
	uint16_t cwd;
	uint16_t swd;
	uint16_t twd;
	uint16_t fop;
	uint64_t rip;
	uint64_t rdp;
	uint32_t mxcsr;
	uint32_t mxcsr_mask;
	uint32_t st_regs[32];  /* ST0-ST7 */
	uint32_t xmm_regs[64]; /* XMM0-XMM15 */
	uint32_t padding[24];
} __attribute__((packed));

/* The XSAVE header (Intel SDM vol. 1 §13.4.2). */
struct xsave_header {
	uint64_t xstate_bv;
	uint64_t reserved_zero[2];
	uint64_t reserved[5];
} __attribute__((packed));

/* Standard-format XSAVE area up to the AVX component. */
struct xsave_area {
	struct fxsave_area fxsave;
	struct xsave_header header;
	uint32_t ymm_regs[64]; /* upper halves of YMM0-YMM15 */
} __attribute__((packed, aligned(64)));

struct fpu_area {
	struct xsave_area xsave;
};

/* The components struct fpu_area has room for: x87, SSE, AVX. */
#define DUNE_FPU_XSAVE_MASK UINT64_C(0x7)

static inline void fpu_xsave(struct fpu_area *fp, uint64_t mask)
{
	__asm__ volatile("xsaveq %0" : "=m"(fp->xsave) : "a"((uint32_t)mask), "d"((uint32_t)(mask >> 32)) : "memory");
}

static inline void fpu_xsaveopt(struct fpu_area *fp, uint64_t mask)
{
	__asm__ volatile("xsaveoptq %0" : "=m"(fp->xsave) : "a"((uint32_t)mask), "d"((uint32_t)(mask >> 32)) : "memory");
}

static inline void fpu_xrstor(struct fpu_area *fp, uint64_t mask)
{
	__asm__ volatile("xrstorq %0" : : "m"(fp->xsave), "a"((uint32_t)mask), "d"((uint32_t)(mask >> 32)) : "memory");
}

/* An area holding the FPU's initial state (control words at their reset
 * values, every register zero). */
static inline void dune_fpu_init(struct fpu_area *fp)
{
	memset(fp, 0, sizeof(*fp));
	fp->xsave.fxsave.cwd = 0x37f;
	fp->xsave.fxsave.mxcsr = 0x1f80;
}

/* Loads the registers from `fp`. */
static inline void dune_fpu_load(struct fpu_area *fp)
{
	fpu_xrstor(fp, DUNE_FPU_XSAVE_MASK);
}

/* Saves the registers into an area last loaded with dune_fpu_load (XSAVEOPT
 * may skip what it knows to be unchanged since that load). */
static inline void dune_fpu_save(struct fpu_area *fp)
{
	fpu_xsaveopt(fp, DUNE_FPU_XSAVE_MASK);
}

/* Saves the registers into any area. */
static inline void dune_fpu_save_safe(struct fpu_area *fp)
{
	fpu_xsave(fp, DUNE_FPU_XSAVE_MASK);
}

#endif /* DUNK_LIBDUNE_FPU_H */
