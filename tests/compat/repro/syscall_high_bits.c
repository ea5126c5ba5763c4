// dunk bug reproducer (docs/compat/x86-selftests.md, "System-call numbers"):
// the kernel decodes a 64-bit system call from the low 32 bits of RAX only,
// so RAX = (1 << 32) | SYS_fork is fork(). dunk's monitor dispatches on all
// 64 bits: such a fork misses its clone handling and is forwarded as is, so
// the host thread that serves the vCPU forks, and the child dies of SIGABRT
// ("dunk: fatal: unexpected VM exit [exit run-failed reason=0 errno=5]").
// Build: gcc -O2 -o syscall_high_bits syscall_high_bits.c;
// run: dunk exec -- ./syscall_high_bits
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static long raw_syscall0(unsigned long nr) {
  long ret;
  asm volatile("syscall" : "=a"(ret) : "a"(nr) : "rcx", "r11", "memory");
  return ret;
}

int main(void) {
  const unsigned long high = 1UL << 32;
  printf("getpid with bit 32 set: %s\n", raw_syscall0(high | SYS_getpid) == getpid() ? "same as getpid()" : "differs");
  fflush(stdout);
  long pid = raw_syscall0(high | SYS_fork);
  if (pid == 0) _exit(7);
  if (pid < 0) {
    printf("fork with bit 32 set failed: %ld\n", pid);
    return 1;
  }
  int status;
  waitpid((pid_t)pid, &status, 0);
  if (WIFSIGNALED(status)) {
    printf("fork with bit 32 set: child killed by signal %d\n", WTERMSIG(status));
    return 1;
  }
  printf("fork with bit 32 set: child exited with status %d\n", WEXITSTATUS(status));
  return WEXITSTATUS(status) != 7;
}
