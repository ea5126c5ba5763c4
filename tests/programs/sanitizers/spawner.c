// Runs a program twice, by fork + execvp and by posix_spawnp (which glibc
// does with vfork semantics), and reports how each run ended. Built plain
// and sanitized, it is the parent of the other's kind.
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

static void report(const char* how, int status) {
  if (WIFEXITED(status)) printf("%s: exit %d\n", how, WEXITSTATUS(status));
  else if (WIFSIGNALED(status)) printf("%s: signal %d\n", how, WTERMSIG(status));
  fflush(stdout);
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s PROGRAM [ARGS...]\n", argv[0]);
    return 2;
  }
  fflush(stdout);
  int status;
  pid_t child = fork();
  if (child == 0) {
    execvp(argv[1], argv + 1);
    _exit(127);
  }
  waitpid(child, &status, 0);
  report("fork+exec", status);
  if (posix_spawnp(&child, argv[1], NULL, NULL, argv + 1, environ) != 0) return 1;
  waitpid(child, &status, 0);
  report("posix_spawn", status);
  return 0;
}
