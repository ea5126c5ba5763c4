/*
 * A small harness for libdune's C tests: each test is a function run as its
 * own process (`test_binary NAME`, one ctest entry per name); CHECK stops the
 * test with the failed condition's text and location, and exit status 1.
 */
#ifndef DUNK_TESTS_LIBDUNE_CHECK_H
#define DUNK_TESTS_LIBDUNE_CHECK_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#define CHECK(cond)                                                                             \
	do {                                                                                    \
		if (!(cond)) {                                                                  \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
			fflush(stderr);                                                         \
			_exit(1);                                                               \
		}                                                                               \
	} while (0)

#define CHECK_EQ(a, b)                                                                              \
	do {                                                                                        \
		long long check_a_ = (long long)(a), check_b_ = (long long)(b);                     \
		if (check_a_ != check_b_) {                                                         \
			fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s (%lld vs %lld, %#llx vs %#llx)\n", \
				__FILE__, __LINE__, #a, #b, check_a_, check_b_, check_a_, check_b_);        \
			fflush(stderr);                                                             \
			_exit(1);                                                                   \
		}                                                                                   \
	} while (0)

struct test_case {
	const char *name;
	void (*run)(void);
};

/* Runs the test named by argv[1] from `tests` (null-terminated). */
int run_named_test(int argc, char **argv, const struct test_case *tests);

/* dune_init_and_enter() or the test fails, saying what libdune said. */
void enter_or_fail(void);

/* Whether the caller runs in ring 0 (VM mode; natively user code is ring 3). */
int in_ring0(void);

/* Runs fn in a forked child; returns its wait status. */
int run_in_child(void (*fn)(void));

/* The output of fn (stdout) when run in a forked child, in buf; its status. */
int capture_child_output(void (*fn)(void), char *buf, size_t size);

#endif
