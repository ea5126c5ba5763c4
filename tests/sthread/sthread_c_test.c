/* Wedge's C API from C: the cases of Dune's apps/wedge/test.c (written
 * anew): an sthread's argument and result, the snapshot of globals, its own
 * zeroed stack, a granted tag, a granted descriptor, a granted system call,
 * two sthreads that need each other (they run concurrently). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sthread.h"

#define CHECK(cond)                                                         \
	do {                                                                \
		if (!(cond)) {                                              \
			fprintf(stderr, "%s:%d: failed: %s\n", __FILE__,    \
				__LINE__, #cond);                           \
			exit(1);                                            \
		}                                                           \
	} while (0)

static int counter = 10;

static void *echo_plus_one(void *arg) { return (char *)arg + 1; }

static void *bump_counter(void *arg)
{
	(void)arg;
	int seen = counter;
	counter = 99;
	return (void *)(long)seen;
}

static void *stack_probe(void *arg)
{
	(void)arg;
	/* A byte well below this frame: no call made here reaches it. */
	volatile unsigned char *below = (unsigned char *)__builtin_frame_address(0) - 3000;
	unsigned char before = *below;
	*below = 0x5a;
	return (void *)(long)before;
}

static void *upcase(void *arg)
{
	for (char *p = arg; *p; p++)
		*p = (char)(*p - 'a' + 'A');
	return NULL;
}

static void *say(void *arg)
{
	int fd = (int)(long)arg;
	return (void *)(long)write(fd, "hello", 5);
}

static void *read_passwd(void *arg)
{
	int fd = open("/etc/passwd", O_RDONLY);
	if (fd < 0)
		return (void *)-1L;
	long n = read(fd, arg, 100);
	close(fd);
	return (void *)n;
}

static void *reader(void *arg)
{
	char buf[16];
	long n = read((int)(long)arg, buf, 4);
	return (void *)(long)(n == 4 && memcmp(buf, "ping", 4) == 0);
}

static void *writer(void *arg) { return (void *)(long)write((int)(long)arg, "ping", 4); }

static void *run(stcb_t cb, sc_t *sc, void *arg)
{
	sthread_t st;
	void *ret = NULL;
	CHECK(sthread_create(&st, sc, cb, arg) == 0);
	CHECK(sthread_join(st, &ret) == 0);
	return ret;
}

int main(void)
{
	sc_t sc;
	CHECK(sthread_init() == 0);

	sc_init(&sc);
	CHECK(run(echo_plus_one, &sc, (void *)0x100) == (void *)0x101);

	counter = 20; /* after the snapshot: sthreads see 10 */
	CHECK(run(bump_counter, &sc, NULL) == (void *)10L);
	CHECK(run(bump_counter, &sc, NULL) == (void *)10L);
	CHECK(counter == 20);

	CHECK(run(stack_probe, &sc, NULL) == (void *)0L);
	CHECK(run(stack_probe, &sc, NULL) == (void *)0L);

	tag_t t = tag_new();
	CHECK(t > 0);
	char *text = smalloc(t, 64);
	CHECK(text != NULL);
	strcpy(text, "quiet");
	sc_init(&sc);
	sc_mem_add(&sc, t, PROT_READ | PROT_WRITE);
	run(upcase, &sc, text);
	CHECK(strcmp(text, "QUIET") == 0);

	int p[2];
	CHECK(pipe(p) == 0);
	sc_init(&sc);
	sc_fd_add(&sc, p[1], PROT_WRITE);
	CHECK(run(say, &sc, (void *)(long)p[1]) == (void *)5L);
	char got[8] = {0};
	CHECK(read(p[0], got, 5) == 5 && memcmp(got, "hello", 5) == 0);

	char *buf = smalloc(t, 128);
	sc_init(&sc);
	sc_mem_add(&sc, t, PROT_READ | PROT_WRITE);
	sc_sys_add(&sc, SYS_open);
	sc_sys_add(&sc, SYS_close);
	CHECK((long)run(read_passwd, &sc, buf) > 4);
	CHECK(strncmp(buf, "root", 4) == 0);

	sthread_t a, b;
	sc_t sa, sb;
	void *ra = NULL, *rb = NULL;
	sc_init(&sa);
	sc_fd_add(&sa, p[0], PROT_READ);
	sc_init(&sb);
	sc_fd_add(&sb, p[1], PROT_WRITE);
	CHECK(sthread_create(&a, &sa, reader, (void *)(long)p[0]) == 0);
	CHECK(sthread_create(&b, &sb, writer, (void *)(long)p[1]) == 0);
	CHECK(sthread_join(a, &ra) == 0 && sthread_join(b, &rb) == 0);
	CHECK(ra == (void *)1L && rb == (void *)4L);

	sfree(text);
	sfree(buf);
	tag_delete(t);
	printf("sthread C API: all checks passed\n");
	return 0;
}
