/* Forked children that block on a shared futex, and a parent that knows they
   block by watching /proc/PID/stat show state S — the way many test suites
   wait for a child to reach its call — then wakes them (FUTEX_WAKE) or moves
   them to a second word and wakes them there (FUTEX_CMP_REQUEUE). Natively
   every child is in its futex wait once it shows S, so each call reaches
   all of them. A child that showed S anywhere else (inside code run before
   its call, such as a VM being built for it) would be missed and never
   woken by the call meant for it.

   Prints one line per round and exits 0 when every call reached every child.
   For each child seen in state S the parent also reads /proc/PID/syscall and
   reports a child whose sleep was not its futex wait. Children still waiting
   at the end are released, so that the program never hangs.

   Usage: fork_sleepers [CHILDREN [ROUNDS]]   (defaults 24 and 2) */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

enum { kMaxChildren = 256 };

static long futex(uint32_t* word, int op, uint32_t val, uintptr_t val2, uint32_t* word2, uint32_t val3) {
  return syscall(SYS_futex, word, op, val, val2, word2, val3);
}

static int read_file(const char* path, char* buf, size_t size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, size - 1);
  close(fd);
  if (n < 0) return -1;
  buf[n] = '\0';
  return 0;
}

/* The state letter of /proc/PID/stat (after the command's closing
   parenthesis), or '?'. */
static char state_of(pid_t pid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  if (read_file(path, buf, sizeof buf) != 0) return '?';
  const char* p = strrchr(buf, ')');
  return p != NULL && p[1] == ' ' ? p[2] : '?';
}

/* Whether the system call PID sleeps in is a futex call on `word`. */
static int sleeps_on(pid_t pid, const uint32_t* word) {
  char path[64], buf[256], expect[64];
  snprintf(path, sizeof path, "/proc/%d/syscall", (int)pid);
  if (read_file(path, buf, sizeof buf) != 0) return 1; /* unreadable: no verdict */
  snprintf(expect, sizeof expect, "%d 0x%lx ", SYS_futex, (unsigned long)word);
  return strncmp(buf, expect, strlen(expect)) == 0;
}

/* Each child waits on words[0] while it is 0 (the parent's release makes it
   1), then exits. */
static void child(uint32_t* words) {
  while (__atomic_load_n(&words[0], __ATOMIC_ACQUIRE) == 0) {
    futex(&words[0], FUTEX_WAIT, 0, 0, NULL, 0);
  }
  _exit(0);
}

static int round_of(uint32_t* words, int n, int requeue, int round) {
  pid_t pids[kMaxChildren];
  words[0] = words[1] = 0;
  for (int i = 0; i < n; ++i) {
    pids[i] = fork();
    if (pids[i] < 0) {
      perror("fork");
      exit(2);
    }
    if (pids[i] == 0) child(words);
  }
  int elsewhere = 0;
  for (int i = 0; i < n; ++i) {
    while (state_of(pids[i]) != 'S') {
    }
    if (!sleeps_on(pids[i], &words[0])) {
      printf("round %d: child %d showed state S outside its futex wait\n", round, i);
      ++elsewhere;
    }
  }
  long reached;
  if (requeue) {
    /* One woken at once, the others moved to words[1] and woken there. */
    reached = futex(&words[0], FUTEX_CMP_REQUEUE, 1, (uintptr_t)n, &words[1], 0);
    const long requeued_woken = futex(&words[1], FUTEX_WAKE, n, 0, NULL, 0);
    printf("round %d: FUTEX_CMP_REQUEUE reached %ld of %d children, %ld of them woken after the requeue\n", round,
           reached, n, requeued_woken);
    if (requeued_woken != reached - 1) reached = -1;
  } else {
    reached = futex(&words[0], FUTEX_WAKE, n, 0, NULL, 0);
    printf("round %d: FUTEX_WAKE reached %ld of %d children\n", round, reached, n);
  }
  /* Release every child: the call's and any it missed (a child woken
     before this store waits again on words[0], which no longer holds 0). */
  __atomic_store_n(&words[0], 1, __ATOMIC_RELEASE);
  futex(&words[0], FUTEX_WAKE, n, 0, NULL, 0);
  futex(&words[1], FUTEX_WAKE, n, 0, NULL, 0);
  int failed = 0;
  for (int i = 0; i < n; ++i) {
    int status = 0;
    if (waitpid(pids[i], &status, 0) != pids[i] || !WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failed;
  }
  if (failed != 0) printf("round %d: %d children did not exit with status 0\n", round, failed);
  return reached == n && elsewhere == 0 && failed == 0;
}

int main(int argc, char** argv) {
  int n = argc > 1 ? atoi(argv[1]) : 24;
  int rounds = argc > 2 ? atoi(argv[2]) : 2;
  if (n < 1 || n > kMaxChildren || rounds < 1) {
    fprintf(stderr, "usage: fork_sleepers [CHILDREN (1-%d) [ROUNDS]]\n", kMaxChildren);
    return 2;
  }
  /* Shared between parent and children: the wait word (1 releases them) and
     the requeue target. */
  uint32_t* words = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (words == MAP_FAILED) {
    perror("mmap");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  int ok = 1;
  for (int r = 0; r < rounds; ++r) ok &= round_of(words, n, r % 2 == 1, r);
  return ok ? 0 : 1;
}
