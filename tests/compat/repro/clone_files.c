// dunk bug reproducer (docs/compat/stress-ng.md): children made by
// clone(CLONE_FILES | SIGCHLD), a new process (own memory) that shares the
// parent's file-descriptor table, as stress-ng's clone stressor makes them.
// Under dunk exec each should run in a VM of its own; started several at a
// time, some print "dunk: a fork child cannot enter VM mode (...)" and run
// outside VM mode. Build: gcc -O2 -o clone_files clone_files.c;
// run: dunk exec -- ./clone_files 5 4
// Usage: clone_files [ROUNDS [AT_ONCE]]
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static int child(void *arg) {
  (void)arg;
  return getppid() <= 0;
}
int main(int argc, char **argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 10, at_once = argc > 2 ? atoi(argv[2]) : 1, bad = 0;
  static char stacks[16][64 * 1024];
  if (at_once > 16) at_once = 16;
  for (int r = 0; r < rounds; r++) {
    pid_t pids[16];
    for (int j = 0; j < at_once; j++) {
      pids[j] = clone(child, stacks[j] + sizeof stacks[j], CLONE_FILES | SIGCHLD, NULL);
      if (pids[j] < 0) { perror("clone"); return 2; }
    }
    for (int j = 0; j < at_once; j++) {
      int st;
      if (waitpid(pids[j], &st, 0) != pids[j] || !WIFEXITED(st) || WEXITSTATUS(st) != 0) bad++;
    }
  }
  printf("%d of %d CLONE_FILES children failed; parent fine\n", bad, rounds * at_once);
  return bad != 0;
}
