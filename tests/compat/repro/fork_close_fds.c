// dunk bug reproducer (docs/compat/cpython.md, test_subprocess): a fork()
// child that closes every descriptor above 2 - as Python's subprocess does
// after fork() when it cannot use vfork() (preexec_fn, user, group,
// extra_groups), and as daemons and closefrom() do - must go on running.
// Under dunk exec the child's own VM lives in such descriptors: the child
// dies of SIGABRT ("dunk: fatal: unexpected VM exit [exit run-failed ...
// errno=9]"). Build: gcc -O2 -o fork_close_fds fork_close_fds.c;
// run: dunk exec -- ./fork_close_fds
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void) {
  pid_t pid = fork();
  if (pid == 0) {
    syscall(SYS_close_range, 3u, ~0u, 0u);
    static const char msg[] = "child: still running after closing descriptors 3 and up\n";
    write(1, msg, sizeof msg - 1);
    _exit(0);
  }
  int status;
  waitpid(pid, &status, 0);
  if (WIFSIGNALED(status)) {
    printf("parent: child killed by signal %d\n", WTERMSIG(status));
    return 1;
  }
  printf("parent: child exited with status %d\n", WEXITSTATUS(status));
  return WEXITSTATUS(status) != 0;
}
