/* The loop of dunk bench's sandbox rows (bench/sandbox_bench.cc), shared by
 * the program run under `dunk sandbox` (bench/sandbox_loop.c) and the
 * processes run under seccomp-bpf, a user-notification supervisor and a
 * ptrace supervisor, so that every way runs the same instructions: N raw
 * system calls of one number, each answer checked against the first. C and
 * C++. */
#ifndef DUNK_BENCH_SANDBOX_LOOP_H
#define DUNK_BENCH_SANDBOX_LOOP_H

#include <errno.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* The policy of the rows allows the first and denies the second, with this
 * errno: two calls that cost the same natively. */
#define DUNK_SANDBOX_ALLOWED_CALL SYS_getpid
#define DUNK_SANDBOX_DENIED_CALL SYS_getppid
#define DUNK_SANDBOX_DENIED_ERRNO EACCES

struct dunk_sandbox_loop_result {
  long long ns;       /* the loop's time (CLOCK_MONOTONIC) */
  long first_return;  /* the first call's answer (-1 when it failed) */
  int first_errno;    /* its errno when it failed, else 0 */
  long mismatches;    /* calls whose answer differed from the first's */
};

static inline long long dunk_sandbox_loop_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline struct dunk_sandbox_loop_result dunk_sandbox_loop(long nr, long n) {
  struct dunk_sandbox_loop_result r = {0, 0, 0, 0};
  long long t0 = dunk_sandbox_loop_now_ns();
  for (long i = 0; i < n; ++i) {
    errno = 0;
    long ret = syscall(nr);
    int err = ret < 0 ? errno : 0;
    if (i == 0) {
      r.first_return = ret;
      r.first_errno = err;
    } else if (ret != r.first_return || err != r.first_errno) {
      ++r.mismatches;
    }
  }
  r.ns = dunk_sandbox_loop_now_ns() - t0;
  return r;
}

#endif
