/* The program tests/cli/sandbox_limits_test.sh runs under `dunk sandbox`'s
 * limits (--rlimit-*, --max-threads, --time-limit), and natively under the
 * same limits (prlimit) where the two must agree. Each mode prints what it
 * met, in words that do not change from run to run:
 *
 *   as              RLIMIT_AS: mmap, brk, mremap and malloc past the limit
 *   nofile          RLIMIT_NOFILE: opens until EMFILE
 *   stack           RLIMIT_STACK: the limit, then a recursion deeper than it
 *   nproc           RLIMIT_NPROC: forks until one fails (16 at most)
 *   raise RESOURCE  tries to raise the hard limit of as|nofile|cpu|nproc
 *   threads N       starts N threads that wait, then lets them go
 *   sleep [PIDFILE] a tree: a child in a session of its own, its orphaned
 *                   grandchild, and this process, all sleeping for ever
 *                   (their pids in PIDFILE)
 *   orphan [PIDFILE] the same tree, but this process exits at once, leaving
 *                   the grandchild behind
 *   chain           a fork bomb across processes: each process forks the
 *                   next and waits for it, until a fork fails (64 at most);
 *                   how many forks worked, and the failure's errno
 *   hog MIB         allocates and touches MIB MiB, 8 MiB at a time
 *   cgroup DIR      its cgroup's limits (DIR: where cgroup2 is mounted),
 *                   then spins until cpu.stat counts a throttled period
 *                   (at most 60 s)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <fcntl.h>
#include <time.h>

#define MiB (1024UL * 1024UL)

static const char *outcome(int ok) {
  static char text[64];
  if (ok) return "ok";
  snprintf(text, sizeof text, "%s", strerrorname_np(errno) ? strerrorname_np(errno) : "?");
  return text;
}

static void print_limit(const char *name, int resource, unsigned long unit) {
  struct rlimit r;
  if (getrlimit(resource, &r) != 0) {
    printf("%s: getrlimit failed: %s\n", name, outcome(0));
    return;
  }
  printf("%s:", name);
  if (r.rlim_cur == RLIM_INFINITY) printf(" soft unlimited"); else printf(" soft %lu", (unsigned long)(r.rlim_cur / unit));
  if (r.rlim_max == RLIM_INFINITY) printf(" hard unlimited\n"); else printf(" hard %lu\n", (unsigned long)(r.rlim_max / unit));
}

static void *map(unsigned long size) {
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

static int address_space(void) {
  print_limit("RLIMIT_AS (MiB)", RLIMIT_AS, MiB);
  void *p = map(16 * MiB);
  printf("mmap 16 MiB: %s\n", outcome(p != NULL));
  printf("mmap 256 MiB: %s\n", outcome(map(256 * MiB) != NULL));
  errno = 0;
  printf("sbrk 256 MiB: %s\n", outcome(sbrk(256 * MiB) != (void *)-1));
  if (p != NULL) {
    void *q = mremap(p, 16 * MiB, 256 * MiB, MREMAP_MAYMOVE);
    printf("mremap 16 -> 256 MiB: %s\n", outcome(q != MAP_FAILED));
    munmap(p, 16 * MiB);
  }
  /* Small mappings until the limit: more than 16 MiB of them fit. */
  void *chunks[4096];
  unsigned n = 0;
  while (n < 4096 && (chunks[n] = map(MiB)) != NULL) ++n;
  printf("1 MiB mappings until one fails: %s, more than 16: %s\n", outcome(0), n > 16 ? "yes" : "no");
  while (n > 0) munmap(chunks[--n], MiB);
  printf("malloc 256 MiB: %s\n", outcome(malloc(256 * MiB) != NULL));
  /* A lower soft limit binds at once. */
  struct rlimit r;
  getrlimit(RLIMIT_AS, &r);
  r.rlim_cur = 32 * MiB;
  printf("setrlimit(RLIMIT_AS, soft 32 MiB): %s\n", outcome(setrlimit(RLIMIT_AS, &r) == 0));
  print_limit("RLIMIT_AS (MiB)", RLIMIT_AS, MiB);
  printf("mmap 40 MiB: %s\n", outcome(map(40 * MiB) != NULL));
  return 0;
}

static int descriptors(void) {
  print_limit("RLIMIT_NOFILE", RLIMIT_NOFILE, 1);
  int last = -1, fd;
  while ((fd = open("/dev/null", O_RDONLY)) >= 0) last = fd;
  printf("opened up to fd %d, then %s\n", last, outcome(0));
  return 0;
}

static int deep(int n) {
  volatile char frame[64 * 1024];
  frame[0] = (char)n;
  frame[sizeof frame - 1] = (char)n;
  return n == 0 ? frame[0] : deep(n - 1) + frame[sizeof frame - 1];
}

static int stack(void) {
  print_limit("RLIMIT_STACK (MiB)", RLIMIT_STACK, MiB);
  printf("256 KiB deep: %d\n", deep(4));
  fflush(stdout);
  printf("64 MiB deep: %d\n", deep(1024));  /* dies of SIGSEGV under a smaller limit */
  return 0;
}

static int processes(void) {
  print_limit("RLIMIT_NPROC", RLIMIT_NPROC, 1);
  fflush(stdout);
  pid_t children[16];
  int made = 0;
  for (; made < 16; ++made) {
    pid_t pid = fork();
    if (pid < 0) break;
    if (pid == 0) {
      pause();
      _exit(0);
    }
    children[made] = pid;
  }
  int err = errno;
  printf("forks: %s, then %s\n", made < 8 ? "fewer than 8" : "8 or more", made == 16 ? "no failure" : strerrorname_np(err));
  for (int i = 0; i < made; ++i) kill(children[i], SIGKILL);
  while (wait(NULL) > 0) {
  }
  return 0;
}

static int raise_hard(const char *name) {
  int resource = strcmp(name, "as") == 0       ? RLIMIT_AS
                 : strcmp(name, "nofile") == 0 ? RLIMIT_NOFILE
                 : strcmp(name, "cpu") == 0    ? RLIMIT_CPU
                                               : RLIMIT_NPROC;
  struct rlimit r;
  getrlimit(resource, &r);
  struct rlimit more = {r.rlim_max, r.rlim_max + 1};
  printf("raise %s: %s\n", name, outcome(setrlimit(resource, &more) == 0));
  /* Lowering stays allowed. */
  struct rlimit less = {r.rlim_cur > 1 ? r.rlim_cur - 1 : 0, r.rlim_max > 1 ? r.rlim_max - 1 : 0};
  if (less.rlim_cur > less.rlim_max) less.rlim_cur = less.rlim_max;
  printf("lower %s: %s\n", name, outcome(setrlimit(resource, &less) == 0));
  struct rlimit now;
  getrlimit(resource, &now);
  printf("now: soft %s, hard %s\n", now.rlim_cur == less.rlim_cur ? "lowered" : "unchanged",
         now.rlim_max == less.rlim_max ? "lowered" : "unchanged");
  return 0;
}

static pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
static void *waiter(void *arg) {
  (void)arg;
  pthread_mutex_lock(&gate);
  pthread_mutex_unlock(&gate);
  return NULL;
}

static int threads(int count) {
  pthread_t t[256];
  int ok[256];
  pthread_mutex_lock(&gate);
  for (int i = 0; i < count && i < 256; ++i) {
    int err = pthread_create(&t[i], NULL, waiter, NULL);
    ok[i] = err == 0;
    printf("thread %d: %s\n", i + 1, err == 0 ? "ok" : strerrorname_np(err));
  }
  pthread_mutex_unlock(&gate);
  for (int i = 0; i < count && i < 256; ++i) {
    if (ok[i]) pthread_join(t[i], NULL);
  }
  /* The slots come back when the threads end. */
  pthread_t again;
  int err = pthread_create(&again, NULL, waiter, NULL);
  printf("after they ended: %s\n", err == 0 ? "ok" : strerrorname_np(err));
  if (err == 0) pthread_join(again, NULL);
  return 0;
}

static int sleep_tree(const char *pidfile, int leave) {
  int p[2];
  if (pipe(p) != 0) return 2;
  pid_t child = fork();
  if (child == 0) {
    setsid();
    if (fork() == 0) {
      /* The grandchild, orphaned when the child exits. */
      char line[32];
      int n = snprintf(line, sizeof line, "%d\n", getpid());
      (void)!write(p[1], line, (size_t)n);
      for (;;) pause();
    }
    _exit(0);
  }
  waitpid(child, NULL, 0);
  char line[32] = {0};
  (void)!read(p[0], line, sizeof line - 1);
  if (pidfile != NULL) {
    FILE *f = fopen(pidfile, "w");
    fprintf(f, "%d\n%s", getpid(), line);
    fclose(f);
  }
  if (leave) {
    printf("leaving\n");
    return 0;
  }
  printf("sleeping\n");
  fflush(stdout);
  for (;;) pause();
}

/* Each process of the chain: fork the next, wait for it; the one whose fork
 * fails writes its depth and errno to the pipe all share. */
static int chain(void) {
  int out[2];
  if (pipe(out) != 0) return 1;
  int depth = 0, err = 0;
  for (;;) {
    if (depth == 64) break;
    pid_t child = fork();
    if (child < 0) {
      err = errno;
      break;
    }
    if (child == 0) {
      ++depth;
      continue;
    }
    int status = 0;
    waitpid(child, &status, 0);
    if (depth != 0) _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
    close(out[1]);
    int got[2] = {-1, 0};
    if (read(out[0], got, sizeof got) != sizeof got) {
      printf("chain: no report\n");
      return 1;
    }
    errno = got[1];
    printf("forks: %d, then %s\n", got[0], got[1] != 0 ? outcome(0) : "no failure");
    return 0;
  }
  int report[2] = {depth, err};
  if (write(out[1], report, sizeof report) != sizeof report) _exit(1);
  if (depth == 0) {
    errno = err;
    printf("forks: 0, then %s\n", outcome(0));
    return 0;
  }
  _exit(0);
}

static int hog(unsigned long mib) {
  unsigned long done = 0;
  while (done < mib) {
    char *p = malloc(8 * MiB);
    if (p == NULL) {
      printf("malloc after %lu MiB: %s\n", done, outcome(0));
      return 1;
    }
    memset(p, 1, 8 * MiB);
    done += 8;
  }
  printf("touched %lu MiB\n", done);
  return 0;
}

static void print_file(const char *dir, const char *name) {
  char path[1024], text[256] = "";
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "r");
  if (f == NULL || fgets(text, sizeof text, f) == NULL) {
    printf("%s: %s\n", name, outcome(0));
  } else {
    text[strcspn(text, "\n")] = '\0';
    printf("%s: %s\n", name, text);
  }
  if (f != NULL) fclose(f);
}

static unsigned long throttled(const char *dir) {
  char path[1024], key[64];
  unsigned long value = 0, found = 0;
  snprintf(path, sizeof path, "%s/cpu.stat", dir);
  FILE *f = fopen(path, "r");
  while (f != NULL && fscanf(f, "%63s %lu", key, &value) == 2) {
    if (strcmp(key, "nr_throttled") == 0) found = value;
  }
  if (f != NULL) fclose(f);
  return found;
}

static int own_cgroup(const char *mount) {
  char line[1024] = "", dir[2048];
  FILE *f = fopen("/proc/self/cgroup", "r");
  while (f != NULL && fgets(line, sizeof line, f) != NULL && strncmp(line, "0::", 3) != 0) {
  }
  if (f != NULL) fclose(f);
  if (strncmp(line, "0::", 3) != 0) {
    printf("no cgroup v2\n");
    return 1;
  }
  line[strcspn(line, "\n")] = '\0';
  snprintf(dir, sizeof dir, "%s%s", mount, line + 3);
  const char *slash = strrchr(line + 3, '/');
  printf("cgroup: %.*s\n", (int)strcspn(slash + 1, "."), slash + 1);
  print_file(dir, "memory.max");
  print_file(dir, "pids.max");
  print_file(dir, "cpu.max");
  time_t start = time(NULL);
  while (throttled(dir) == 0 && time(NULL) - start < 60) {
    for (volatile int i = 0; i < 1000000; ++i) {
    }
  }
  printf("throttled: %s\n", throttled(dir) != 0 ? "yes" : "no");
  return 0;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  const char *mode = argc > 1 ? argv[1] : "";
  if (strcmp(mode, "as") == 0) return address_space();
  if (strcmp(mode, "nofile") == 0) return descriptors();
  if (strcmp(mode, "stack") == 0) return stack();
  if (strcmp(mode, "nproc") == 0) return processes();
  if (strcmp(mode, "raise") == 0 && argc > 2) return raise_hard(argv[2]);
  if (strcmp(mode, "threads") == 0 && argc > 2) return threads(atoi(argv[2]));
  if (strcmp(mode, "sleep") == 0) return sleep_tree(argc > 2 ? argv[2] : NULL, 0);
  if (strcmp(mode, "orphan") == 0) return sleep_tree(argc > 2 ? argv[2] : NULL, 1);
  if (strcmp(mode, "chain") == 0) return chain();
  if (strcmp(mode, "hog") == 0 && argc > 2) return hog(strtoul(argv[2], NULL, 10));
  if (strcmp(mode, "cgroup") == 0 && argc > 2) return own_cgroup(argv[2]);
  fprintf(stderr, "usage: %s as|nofile|stack|nproc|raise RESOURCE|threads N|sleep|orphan [PIDFILE]|chain|hog MIB|cgroup DIR\n", argv[0]);
  return 2;
}
