/* A program for dunk sandbox's tests (tests/cli/sandbox_test.sh), built
 * dynamic PIE, non-PIE, static and static-PIE. Each mode prints what it
 * found; the tests compare the output with a native run, or with what the
 * sandbox must make of it.
 *
 *   sandbox_probe facts          process facts that must be as natively
 *   sandbox_probe auxv           the auxiliary vector's checks
 *   sandbox_probe errno NAME     calls NAME (getppid, uname) and prints the result
 *   sandbox_probe loop CALL N    N calls of getpid or getppid
 *   sandbox_probe pointers       system calls aimed at dunk's memory
 *   sandbox_probe touch          a ring-3 load and store of dunk's memory
 *   sandbox_probe insn NAME      one privileged instruction (cli, hlt, ...)
 *   sandbox_probe masks          SIGCHLD, blocked, taken inside sigsuspend, ppoll
 *                                and pselect6 whose temporary masks unblock it
 */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/select.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

static void *square(void *arg) {
  long *v = arg;
  *v = *v * *v;
  return NULL;
}

static volatile sig_atomic_t got;
static void on_usr1(int sig) { got = sig; }

static int facts(int argc, char **argv) {
  printf("argc=%d", argc);
  for (int i = 1; i < argc; ++i) printf(" [%s]", argv[i]);
  printf("\nPROBE_VAR=%s\n", getenv("PROBE_VAR") ? getenv("PROBE_VAR") : "(unset)");
  /* Files: written, read back, stat'ed, removed. */
  char name[] = "probe-file";
  int fd = open(name, O_CREAT | O_TRUNC | O_RDWR, 0600);
  const char text[] = "written by the probe\n";
  if (fd < 0 || write(fd, text, sizeof text - 1) != sizeof text - 1) return perror("write"), 1;
  char back[64] = {0};
  struct stat st;
  if (pread(fd, back, sizeof back - 1, 0) != sizeof text - 1 || fstat(fd, &st) != 0) return perror("read"), 1;
  printf("file: %s size=%lld mode=%o\n", strcmp(back, text) == 0 ? "same" : "differs", (long long)st.st_size,
         st.st_mode & 0777);
  close(fd);
  unlink(name);
  /* A pipe and an iovec. */
  int p[2];
  if (pipe(p) != 0) return perror("pipe"), 1;
  struct iovec out[2] = {{"vec", 3}, {"tor\n", 4}};
  if (writev(p[1], out, 2) != 7) return perror("writev"), 1;
  char in[8] = {0};
  if (read(p[0], in, 7) != 7) return perror("read pipe"), 1;
  printf("pipe: %s", in);
  /* Threads. */
  pthread_t threads[4];
  long values[4] = {1, 2, 3, 4};
  for (int i = 0; i < 4; ++i) pthread_create(&threads[i], NULL, square, &values[i]);
  for (int i = 0; i < 4; ++i) pthread_join(threads[i], NULL);
  printf("threads: %ld %ld %ld %ld\n", values[0], values[1], values[2], values[3]);
  /* A signal to its own handler. */
  signal(SIGUSR1, on_usr1);
  raise(SIGUSR1);
  printf("signal: %d\n", (int)got);
  /* A child. */
  fflush(stdout);
  pid_t child = fork();
  if (child == 0) _exit(7);
  int status = 0;
  waitpid(child, &status, 0);
  printf("child: exited=%d status=%d\n", WIFEXITED(status), WEXITSTATUS(status));
  /* Memory. */
  char *big = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (big == MAP_FAILED) return perror("mmap"), 1;
  memset(big, 0x5a, 1 << 20);
  big = mremap(big, 1 << 20, 4 << 20, MREMAP_MAYMOVE);
  printf("mremap: %s byte=%#x\n", big == MAP_FAILED ? "failed" : "ok", big == MAP_FAILED ? 0 : big[12345] & 0xff);
  void *grown = malloc(64 << 20);
  printf("malloc 64 MiB: %s\n", grown ? "ok" : "failed");
  free(grown);
  printf("uid=%d gid=%d\n", (int)getuid(), (int)getgid());
  return 0;
}

static int find_phdr(struct dl_phdr_info *info, size_t size, void *data) {
  (void)size;
  if (info->dlpi_name == NULL || info->dlpi_name[0] == '\0') *(const void **)data = info->dlpi_phdr;
  return 1;  /* the first is the program */
}

static int auxv(void) {
  const unsigned char *random = (const unsigned char *)getauxval(AT_RANDOM);
  const void *phdr = (const void *)getauxval(AT_PHDR);
  int nonzero = 0;
  for (int i = 0; i < 16; ++i) nonzero |= random[i];
  printf("AT_RANDOM: %s, %s the program headers\n", nonzero ? "set" : "all zero",
         memcmp(random, phdr, 16) == 0 ? "same bytes as" : "not");
  const void *seen = NULL;
  dl_iterate_phdr(find_phdr, &seen);
  printf("AT_PHDR: %s the loader's\n", seen == phdr ? "matches" : "differs from");
  printf("AT_PHNUM=%lu AT_PHENT=%lu AT_PAGESZ=%lu AT_SECURE=%lu\n", getauxval(AT_PHNUM), getauxval(AT_PHENT),
         getauxval(AT_PAGESZ), getauxval(AT_SECURE));
  printf("AT_HWCAP=%#lx AT_HWCAP2=%#lx AT_CLKTCK=%lu AT_MINSIGSTKSZ=%lu\n", getauxval(AT_HWCAP), getauxval(AT_HWCAP2),
         getauxval(AT_CLKTCK), getauxval(AT_MINSIGSTKSZ));
  printf("AT_UID=%lu AT_EUID=%lu AT_GID=%lu AT_EGID=%lu\n", getauxval(AT_UID), getauxval(AT_EUID), getauxval(AT_GID),
         getauxval(AT_EGID));
  printf("AT_PLATFORM=%s AT_EXECFN=%s\n", (const char *)getauxval(AT_PLATFORM), (const char *)getauxval(AT_EXECFN));
  const unsigned char *vdso = (const unsigned char *)getauxval(AT_SYSINFO_EHDR);
  printf("AT_SYSINFO_EHDR: %s\n", vdso != NULL && memcmp(vdso, ELFMAG, SELFMAG) == 0 ? "an ELF image" : "missing");
  struct timespec ts;
  printf("clock_gettime: %s\n", clock_gettime(CLOCK_MONOTONIC, &ts) == 0 && ts.tv_sec + ts.tv_nsec > 0 ? "ok" : "failed");
  printf("AT_ENTRY: %s\n", getauxval(AT_ENTRY) != 0 ? "set" : "zero");
  return 0;
}

static int call_by_name(const char *name) {
  long ret;
  if (strcmp(name, "getppid") == 0) {
    ret = syscall(SYS_getppid);
  } else if (strcmp(name, "uname") == 0) {
    struct utsname u;
    ret = syscall(SYS_uname, &u);
  } else {
    fprintf(stderr, "unknown call %s\n", name);
    return 2;
  }
  printf("%s: %s (errno %d)\n", name, ret < 0 ? "failed" : "ok", ret < 0 ? errno : 0);
  return 0;
}

static int loop(const char *name, long n) {
  long nr = strcmp(name, "getppid") == 0 ? SYS_getppid : SYS_getpid;
  for (long i = 0; i < n; ++i) syscall(nr);
  return 0;
}

/* An address of dunk's: the start of the dunk executable's mapping, as the
 * host process's /proc/self/maps (this process's) lists it. */
static uintptr_t dunk_address(void) {
  FILE *f = fopen("/proc/self/maps", "r");
  if (f == NULL) return 0;
  char line[512];
  uintptr_t found = 0;
  while (found == 0 && fgets(line, sizeof line, f) != NULL) {
    char *path = strchr(line, '/');
    if (path == NULL) continue;
    path[strcspn(path, "\n")] = '\0';
    const char *base = strrchr(path, '/') + 1;
    if (strcmp(base, "dunk") == 0) found = strtoull(line, NULL, 16);
  }
  fclose(f);
  return found;
}

static void show(const char *what, long ret) {
  printf("%s: %s\n", what, ret == -1 ? strerror(errno) : "succeeded");
}

static int pointers(void) {
  uintptr_t a = dunk_address();
  if (a == 0) return printf("no dunk mapping found\n"), 1;
  void *dunk = (void *)a;
  show("write from dunk's memory", write(1, dunk, 16));
  int p[2];
  if (pipe(p) != 0) return 1;
  if (write(p[1], "0123456789abcdef", 16) != 16) return 1;
  show("read into dunk's memory", read(p[0], dunk, 16));
  char left[17] = {0};
  printf("the pipe still holds: %s\n", read(p[0], left, 16) == 16 ? left : "nothing");
  struct iovec local = {left, 16}, remote = {dunk, 16};
  show("process_vm_readv of dunk's memory", process_vm_readv(getpid(), &local, 1, &remote, 1, 0));
  struct iovec vec = {dunk, 16};
  show("writev from dunk's memory", writev(1, &vec, 1));
  show("mmap MAP_FIXED over dunk's memory",
       mmap(dunk, 4096, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED ? -1 : 0);
  show("munmap of dunk's memory", munmap(dunk, 4096));
  show("mprotect of dunk's memory", mprotect(dunk, 4096, PROT_READ | PROT_WRITE));
  show("open /proc/self/mem", open("/proc/self/mem", O_RDWR));
  return 0;
}

static sigjmp_buf escape;
static void on_segv(int sig) { siglongjmp(escape, sig); }

static int touch(void) {
  uintptr_t a = dunk_address();
  if (a == 0) return printf("no dunk mapping found\n"), 1;
  struct sigaction sa = {0};
  sa.sa_handler = on_segv;
  sigaction(SIGSEGV, &sa, NULL);
  volatile unsigned char *dunk = (volatile unsigned char *)a;
  if (sigsetjmp(escape, 1) == 0) {
    printf("load: read %#x\n", *dunk);
  } else {
    printf("load: SIGSEGV\n");
  }
  if (sigsetjmp(escape, 1) == 0) {
    *dunk = 0x90;
    printf("store: done\n");
  } else {
    printf("store: SIGSEGV\n");
  }
  return 0;
}

static int insn(const char *name) {
  unsigned long rax = SYS_getpid;
  fflush(stdout);
  if (strcmp(name, "cli") == 0) __asm__ volatile("cli");
  else if (strcmp(name, "hlt") == 0) __asm__ volatile("hlt");
  else if (strcmp(name, "out") == 0) __asm__ volatile("outb %%al, $0xd0" : : "a"(0));
  else if (strcmp(name, "vmcall") == 0) __asm__ volatile("vmcall" : "+a"(rax) : : "memory");
  else if (strcmp(name, "vmmcall") == 0) __asm__ volatile("vmmcall" : "+a"(rax) : : "memory");
  else if (strcmp(name, "wrmsr") == 0) __asm__ volatile("wrmsr" : : "c"(0xc0000100), "a"(0), "d"(0));
  else if (strcmp(name, "int80") == 0) __asm__ volatile("int $0x80" : "+a"(rax) : : "memory");
  else return fprintf(stderr, "unknown instruction %s\n", name), 2;
  /* Only reached when the instruction did not fault: say what it left. */
  printf("%s: survived, rax=%ld (getpid is %d)\n", name, (long)rax, (int)getpid());
  return 0;
}

static volatile sig_atomic_t children_ended;
static void on_chld(int sig) {
  (void)sig;
  children_ended = children_ended + 1;
}

/* Each call waits with SIGCHLD blocked outside it and unblocked by its
 * temporary mask, as a shell's `wait` does (dash: sigsuspend): natively the
 * handler runs before the call returns EINTR, and the saved mask comes back
 * afterwards. The alarm ends a run that never sees the handler. */
static int masks(void) {
  struct sigaction sa = {0};
  sa.sa_handler = on_chld;
  sigaction(SIGCHLD, &sa, NULL);
  sigset_t chld, during;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  sigprocmask(SIG_BLOCK, NULL, &during);
  sigdelset(&during, SIGCHLD);
  alarm(60);
  static const char *const kCalls[] = {"sigsuspend", "ppoll", "pselect6"};
  for (int i = 0; i < 3; ++i) {
    const int before = children_ended;
    const pid_t child = fork();
    if (child < 0) return perror("fork"), 1;
    if (child == 0) _exit(0);
    int ret = 0, rounds = 0;
    while (children_ended == before && rounds++ < 1000) {
      if (i == 0) ret = sigsuspend(&during);
      else if (i == 1) ret = ppoll(NULL, 0, NULL, &during);
      else ret = pselect(0, NULL, NULL, NULL, NULL, &during);
    }
    const int err = errno;
    sigset_t after;
    sigprocmask(SIG_BLOCK, NULL, &after);
    waitpid(child, NULL, 0);
    printf("%s: handler ran %d time(s) after %d call(s), ret %d (%s), SIGCHLD blocked after: %s\n", kCalls[i],
           children_ended - before, rounds, ret, strerror(err), sigismember(&after, SIGCHLD) ? "yes" : "no");
  }
  return 0;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc < 2) return fprintf(stderr, "usage: %s MODE ...\n", argv[0]), 2;
  const char *mode = argv[1];
  if (strcmp(mode, "facts") == 0) return facts(argc, argv);
  if (strcmp(mode, "auxv") == 0) return auxv();
  if (strcmp(mode, "errno") == 0 && argc == 3) return call_by_name(argv[2]);
  if (strcmp(mode, "loop") == 0 && argc == 4) return loop(argv[2], atol(argv[3]));
  if (strcmp(mode, "pointers") == 0) return pointers();
  if (strcmp(mode, "touch") == 0) return touch();
  if (strcmp(mode, "insn") == 0 && argc == 3) return insn(argv[2]);
  if (strcmp(mode, "masks") == 0) return masks();
  fprintf(stderr, "unknown mode %s\n", mode);
  return 2;
}
