/* A page made MADV_DONTFORK is not in a fork child: the child's write to it
   is a SIGSEGV at that address, fatal without a handler, delivered to the
   child's handler with one. The parent's page is untouched. (Under dunk a
   child keeps its parent's page tables, in which the page is still mapped:
   the access must still fault as natively.) */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile char* page;

static void on_segv(int sig, siginfo_t* info, void* context) {
  (void)context;
  printf("child: signal %d at %s\n", sig, info->si_addr == (void*)page ? "the page" : "another address");
  fflush(stdout);
  _exit(3);
}

int main(void) {
  page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) {
    perror("mmap");
    return 1;
  }
  page[0] = 1;
  if (madvise((void*)page, 4096, MADV_DONTFORK) != 0) {
    perror("madvise");
    return 1;
  }
  for (int with_handler = 0; with_handler < 2; ++with_handler) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      if (with_handler) {
        struct sigaction sa = {0};
        sa.sa_sigaction = on_segv;
        sa.sa_flags = SA_SIGINFO;
        sigaction(SIGSEGV, &sa, NULL);
      }
      page[0] = 2;
      _exit(0);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) {
      perror("fork/waitpid");
      return 1;
    }
    if (WIFSIGNALED(status)) {
      printf("child %s a handler: killed by signal %d\n", with_handler ? "with" : "without", WTERMSIG(status));
    } else {
      printf("child %s a handler: exited with status %d\n", with_handler ? "with" : "without", WEXITSTATUS(status));
    }
  }
  printf("parent's page: %d\n", page[0]);
  return 0;
}
