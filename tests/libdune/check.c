#include "check.h"

#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "libdune/dune.h"

int run_named_test(int argc, char **argv, const struct test_case *tests)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s TEST\n", argv[0]);
		return 2;
	}
	for (const struct test_case *t = tests; t->name != NULL; t++) {
		if (strcmp(t->name, argv[1]) == 0) {
			t->run();
			fflush(NULL);
			return 0;
		}
	}
	fprintf(stderr, "no test named %s\n", argv[1]);
	return 2;
}

void enter_or_fail(void)
{
	int ret = dune_init_and_enter();
	if (ret != 0) {
		fprintf(stderr, "dune_init_and_enter() = %d\n", ret);
		_exit(1);
	}
	CHECK(in_ring0());
}

int in_ring0(void)
{
	uint16_t cs;
	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	return (cs & 3) == 0;
}

int run_in_child(void (*fn)(void))
{
	fflush(NULL);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		fn();
		fflush(NULL);
		_exit(0);
	}
	int status;
	CHECK_EQ(waitpid(pid, &status, 0), pid);
	return status;
}

int capture_child_output(void (*fn)(void), char *buf, size_t size)
{
	int fds[2];
	CHECK_EQ(pipe(fds), 0);
	fflush(NULL);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		dup2(fds[1], 1);
		close(fds[1]);
		fn();
		fflush(NULL);
		_exit(0);
	}
	close(fds[1]);
	size_t have = 0;
	ssize_t n;
	while (have + 1 < size && (n = read(fds[0], buf + have, size - 1 - have)) > 0)
		have += (size_t)n;
	buf[have] = '\0';
	close(fds[0]);
	int status;
	CHECK_EQ(waitpid(pid, &status, 0), pid);
	return status;
}
