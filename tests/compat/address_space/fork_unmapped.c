/* Maps 3 pages of a file (in the current directory) MAP_SHARED without
   touching them, unmaps them, forks; the child writes the first byte. It
   must die of SIGSEGV at once; the parent reports how it ended. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
  char path[] = "three-pages-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0 || ftruncate(fd, 3 * 4096) != 0) {
    perror("file");
    return 1;
  }
  char* p = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    perror("mmap");
    return 1;
  }
  munmap(p, 3 * 4096);
  close(fd);
  unlink(path);
  pid_t pid = fork();
  if (pid == 0) {
    p[0] = 1;
    _exit(0);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) {
    perror("waitpid");
    return 1;
  }
  if (WIFSIGNALED(status)) {
    printf("child killed by signal %d\n", WTERMSIG(status));
  } else {
    printf("child exited with status %d\n", WEXITSTATUS(status));
  }
  return 0;
}
