/*
 * The utilities: dune_printf, dune_die, dune_mmap, dune_signal,
 * dune_get_ticks, the procmap and ELF helpers, fpu.h, cpu-x86.h.
 */
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "check.h"
#include "libdune/cpu-x86.h"
#include "libdune/dune.h"

static void print_in_vm_mode(void)
{
	enter_or_fail();
	CHECK_EQ(dune_printf("dune_printf %d %s\n", 42, "works"), 21);
}

static void printf_writes_with_one_system_call(void)
{
	char out[256];
	int status = capture_child_output(print_in_vm_mode, out, sizeof out);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(strcmp(out, "dune_printf 42 works\n") == 0);
}

static void die_now(void)
{
	enter_or_fail();
	dune_die();
}

static void assert_fails(void)
{
	enter_or_fail();
	int one = 1;
	assert(one == 2);
	_exit(0);
}

static void die_ends_the_process_with_status_1(void)
{
	int status = run_in_child(die_now);
	CHECK(WIFEXITED(status));
	CHECK_EQ(WEXITSTATUS(status), 1);
	char out[512];
	status = capture_child_output(assert_fails, out, sizeof out);
	CHECK(WIFEXITED(status));
	CHECK_EQ(WEXITSTATUS(status), 1);
	CHECK(strstr(out, "ASSERT(one == 2)") != NULL);
}

static void mmap_is_the_system_call(void)
{
	enter_or_fail();
	char *p = dune_mmap(NULL, 3 * PGSIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK((long)p > 0);
	p[2 * PGSIZE] = 9;
	CHECK_EQ(p[2 * PGSIZE], 9);
	void *bad = dune_mmap(NULL, PGSIZE, PROT_READ, MAP_PRIVATE, -1, 0); /* no file */
	CHECK_EQ((long)bad, -EBADF);
}

static volatile sig_atomic_t caught;
static void on_usr1(int sig)
{
	caught = sig;
}

static void signal_handlers_run_before_kill_returns(void)
{
	enter_or_fail();
	CHECK(dune_signal(SIGUSR1, on_usr1) == NULL);
	CHECK_EQ(kill(getpid(), SIGUSR1), 0);
	CHECK_EQ(caught, SIGUSR1);
	CHECK(dune_signal(SIGKILL, on_usr1) == SIG_ERR);
}

static void ticks_and_msrs(void)
{
	enter_or_fail();
	unsigned long a = dune_get_ticks();
	unsigned long b = dune_get_ticks();
	CHECK(b > a);
	unsigned long fs, tp;
	rdmsrl(MSR_FS_BASE, fs);
	__asm__ volatile("movq %%fs:0, %0" : "=r"(tp));
	CHECK_EQ(fs, tp);
}

static int saw_stack, saw_self, entries;
static void count_entry(const struct dune_procmap_entry *e)
{
	entries++;
	if (e->type == PROCMAP_TYPE_STACK)
		saw_stack = 1;
	if (e->type == PROCMAP_TYPE_FILE && e->x && (uintptr_t)count_entry >= e->begin &&
	    (uintptr_t)count_entry < e->end && strstr(e->path, "util_test") != NULL)
		saw_self = 1;
}

static void procmap_lists_the_mappings(void)
{
	enter_or_fail();
	dune_procmap_iterate(count_entry);
	CHECK(entries > 5);
	CHECK(saw_stack);
	CHECK(saw_self);
}

static void dump_map(void)
{
	dune_procmap_dump();
}

static void procmap_dump_prints_them(void)
{
	char out[65536];
	int status = capture_child_output(dump_map, out, sizeof out);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(strstr(out, "[stack]") != NULL);
	CHECK(strstr(out, "util_test") != NULL);
}

static int loads, texts;
static int count_ph(struct dune_elf *elf, Elf64_Phdr *ph)
{
	(void)elf;
	if (ph->p_type == PT_LOAD)
		loads++;
	return 0;
}
static int find_text(struct dune_elf *elf, const char *name, int n, Elf64_Shdr *sh)
{
	(void)elf;
	(void)n;
	if (strcmp(name, ".text") == 0 && sh->sh_type == SHT_PROGBITS)
		texts++;
	return 0;
}
static int stop_at_first(struct dune_elf *elf, Elf64_Phdr *ph)
{
	(void)elf;
	(void)ph;
	return 5;
}

static void elf_reads_this_program(void)
{
	struct dune_elf elf;
	memset(&elf, 0, sizeof elf);
	CHECK_EQ(dune_elf_open(&elf, "/proc/self/exe"), 0);
	CHECK_EQ(elf.hdr.e_machine, EM_X86_64);
	CHECK_EQ(dune_elf_iter_ph(&elf, count_ph), 0);
	CHECK(loads >= 2);
	CHECK_EQ(dune_elf_iter_sh(&elf, find_text), 0);
	CHECK_EQ(texts, 1);
	CHECK_EQ(dune_elf_iter_ph(&elf, stop_at_first), 5);
	CHECK_EQ(dune_elf_close(&elf), 0);
	CHECK(dune_elf_open(&elf, "/nonexistent") < 0);
	/* not an ELF file */
	CHECK(dune_elf_open(&elf, "/proc/self/cmdline") < 0);
	/* from memory */
	int fd = open("/proc/self/exe", O_RDONLY);
	struct stat st;
	CHECK_EQ(fstat(fd, &st), 0);
	void *image = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	CHECK(image != MAP_FAILED);
	memset(&elf, 0, sizeof elf);
	CHECK_EQ(dune_elf_open_mem(&elf, image, (int)st.st_size), 0);
	texts = 0;
	CHECK_EQ(dune_elf_iter_sh(&elf, find_text), 0);
	CHECK_EQ(texts, 1);
	loads = 0;
	CHECK_EQ(dune_elf_iter_ph(&elf, count_ph), 0);
	CHECK(loads >= 2);
	CHECK_EQ(dune_elf_close(&elf), 0);
}

static struct dune_elf loaded;
static int load_writable(struct dune_elf *elf, Elf64_Phdr *ph)
{
	/* This program's writable segment, loaded again 64 TiB higher. */
	if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_W))
		return 0;
	const off_t off = (off_t)0x400000000000 - (off_t)(ph->p_vaddr & ~(uint64_t)PGMASK);
	CHECK_EQ(dune_elf_load_ph(elf, ph, off), 0);
	const unsigned char *copy = (const unsigned char *)(ph->p_vaddr + off);
	/* The file's bytes, then zeros for the bss. */
	unsigned char file_bytes[64];
	CHECK_EQ(pread(elf->fd, file_bytes, sizeof file_bytes, (off_t)ph->p_offset), (ssize_t)sizeof file_bytes);
	CHECK(memcmp(copy, file_bytes, sizeof file_bytes) == 0);
	for (uint64_t i = ph->p_filesz; i < ph->p_memsz; i++)
		CHECK_EQ(copy[i], 0);
	return 1;
}

static void elf_load_ph_maps_a_segment(void)
{
	enter_or_fail();
	memset(&loaded, 0, sizeof loaded);
	CHECK_EQ(dune_elf_open(&loaded, "/proc/self/exe"), 0);
	CHECK_EQ(dune_elf_iter_ph(&loaded, load_writable), 1);
	Elf64_Phdr not_load = {.p_type = PT_NOTE};
	CHECK_EQ(dune_elf_load_ph(&loaded, &not_load, 0), -EINVAL);
	CHECK_EQ(dune_elf_dump(&loaded), 0);
	dune_elf_close(&loaded);
}

static void fpu_state_round_trips(void)
{
	enter_or_fail();
	static struct fpu_area saved, init;
	dune_fpu_init(&init);
	CHECK_EQ(init.xsave.fxsave.mxcsr, 0x1f80);
	double x = 1.5;
	__asm__ volatile("movsd %0, %%xmm3" : : "m"(x) : "xmm3");
	dune_fpu_save_safe(&saved);
	double zero = 0;
	__asm__ volatile("movsd %0, %%xmm3" : : "m"(zero) : "xmm3");
	dune_fpu_load(&saved);
	double back;
	__asm__ volatile("movsd %%xmm3, %0" : "=m"(back));
	CHECK(back == 1.5);
	dune_fpu_save(&saved); /* XSAVEOPT after the load */
	CHECK(memcmp(&saved.xsave.fxsave.xmm_regs[12], &x, sizeof x) == 0);
}

static const struct test_case tests[] = {
	{"printf_writes_with_one_system_call", printf_writes_with_one_system_call},
	{"die_ends_the_process_with_status_1", die_ends_the_process_with_status_1},
	{"mmap_is_the_system_call", mmap_is_the_system_call},
	{"signal_handlers_run_before_kill_returns", signal_handlers_run_before_kill_returns},
	{"ticks_and_msrs", ticks_and_msrs},
	{"procmap_lists_the_mappings", procmap_lists_the_mappings},
	{"procmap_dump_prints_them", procmap_dump_prints_them},
	{"elf_reads_this_program", elf_reads_this_program},
	{"elf_load_ph_maps_a_segment", elf_load_ph_maps_a_segment},
	{"fpu_state_round_trips", fpu_state_round_trips},
	{NULL, NULL},
};

int main(int argc, char **argv)
{
	return run_named_test(argc, argv, tests);
}
