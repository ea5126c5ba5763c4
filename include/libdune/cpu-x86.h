/*
 * libdune/cpu-x86.h - MSR access, descriptor-table registers, IDT gates and
 * the CPU's exception vectors. The MSR instructions are ring 0's: in VM mode
 * (after dune_enter) they run in the guest.
 *
 * Needs <stdint.h> (or libdune/dune.h) first, as Dune's did.
 */
#ifndef DUNK_LIBDUNE_CPU_X86_H
#define DUNK_LIBDUNE_CPU_X86_H

#include <stdint.h>

static inline void native_write_msr(unsigned int msr, unsigned low, unsigned high)
{
	__asm__ volatile("wrmsr" : : "c"(msr), "a"(low), "d"(high) : "memory");
}

typedef uint64_t u64;

/* Helpers for RDMSR's EDX:EAX pair. */
#define DECLARE_ARGS(val, low, high) unsigned low, high
#define EAX_EDX_VAL(val, low, high) ((low) | ((u64)(high) << 32))
#define EAX_EDX_ARGS(val, low, high) "a"(low), "d"(high)
#define EAX_EDX_RET(val, low, high) "=a"(low), "=d"(high)

static inline unsigned long long native_read_msr(unsigned int msr)
{
	unsigned low, high;
	__asm__ volatile("rdmsr" : "=a"(low), "=d"(high) : "c"(msr));
	return low | ((u64)high << 32);
}

#define wrmsrl(msr, val) native_write_msr((msr), (uint32_t)((uint64_t)(val)), (uint32_t)((uint64_t)(val) >> 32))
#define rdmsrl(msr, val) ((val) = native_read_msr((msr)))

#define MSR_FS_BASE 0xc0000100
#define MSR_GS_BASE 0xc0000101
#define MSR_KERNEL_GS_BASE 0xc0000102
#define MSR_LSTAR 0xc0000082 /* SYSCALL's target in 64-bit mode */

/* The operand of LGDT/LIDT. */
struct tptr {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

/* A 64-bit IDT gate. */
#define IDTD_P (1 << 7)
#define IDTD_CPL3 (3 << 5)
#define IDTD_TRAP_GATE 0xF
#define IDTD_INTERRUPT_GATE 0xE

#define IDT_ENTRIES 256

struct idtd {
	uint16_t low;
	uint16_t selector;
	uint8_t ist;
	uint8_t type;
	uint16_t middle;
	uint32_t high;
	uint32_t zero;
} __attribute__((packed)) __attribute__((aligned));

/* Exception vectors (Intel SDM vol. 3A §6.3.1). */
#define T_DIVIDE 0   /* divide error */
#define T_DEBUG 1    /* debug */
#define T_NMI 2      /* non-maskable interrupt */
#define T_BRKPT 3    /* breakpoint */
#define T_OFLOW 4    /* overflow */
#define T_BOUND 5    /* bound range exceeded */
#define T_ILLOP 6    /* invalid opcode */
#define T_DEVICE 7   /* device not available */
#define T_DBLFLT 8   /* double fault */
#define T_TSS 10     /* invalid TSS */
#define T_SEGNP 11   /* segment not present */
#define T_STACK 12   /* stack-segment fault */
#define T_GPFLT 13   /* general protection */
#define T_PGFLT 14   /* page fault */
#define T_FPERR 16   /* x87 floating-point error */
#define T_ALIGN 17   /* alignment check */
#define T_MCHK 18    /* machine check */
#define T_SIMDERR 19 /* SIMD floating-point exception */

/* Dune's number for a system call, outside the CPU's vectors. */
#define T_SYSCALL 48

#endif /* DUNK_LIBDUNE_CPU_X86_H */
