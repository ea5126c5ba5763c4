// execve from a process with several threads, natively and under `dunk
// sandbox` (tests/cli/sandbox_test.sh compares the two outputs). Natively
// the kernel ends every other thread wherever it is, and the new program
// runs as the process's only thread with the pid as its tid and the
// calling thread's signal mask.
//
//   sandbox_exec_threads SELF MODE
//     from-thread   a thread other than the first calls execve while the
//                   others spin in a loop without calls, wait in read() on
//                   a pipe, in a condition variable, in nanosleep
//     from-main     the first thread calls it, the same others around
//     race          four threads call it at once: one program runs after
//     blocked       a thread blocks signal 32 with a raw rt_sigprocmask and
//                   waits in pause(): natively execve succeeds; under the
//                   sandbox it fails with EAGAIN, reported, and the program
//                   prints so; then the thread unblocks it (its SIGUSR1
//                   handler edits the mask it returns to) and execve goes
//                   through
//     leader-gone   the first thread has ended (pthread_exit) when another
//                   calls execve
//     cancel        pthread_cancel of a thread blocked in read() (glibc's
//                   SIGCANCEL, the signal the sandbox stops threads with)
//     sig32         signal 32 sent to the process with its default action
//     sigpending    RLIMIT_SIGPENDING's soft limit at 0 while a thread
//                   spins and another waits in read(): natively execve
//                   succeeds; under the sandbox, whose signal 32 cannot be
//                   queued then, it fails with EAGAIN, reported; then the
//                   limit comes back and execve goes through
//     fifo DIR      execve and execveat(AT_EMPTY_PATH) of a FIFO made in
//                   DIR: EACCES at once, as natively (no open of the FIFO
//                   that blocks for ever)
//     sig32-reporting  20 children, each killed by signal 32 (default
//                   action) sent to a thread that makes getppid in a loop
//                   (denied and reported under the test's policy): each
//                   dies by 32, none hangs (the parent kills one that is
//                   still there after 20 s and says so)
//     chain         16 rounds: a thread calls execve once the process's
//                   first thread (the last round's execve caller) has
//                   ended with pthread_exit; the host memory (VmSize)
//                   must not grow by the round (a host thread's stack)
//                   over the last 12
//   sandbox_exec_threads SELF after PID MODE   (the new program)
//   sandbox_exec_threads SELF chain LEFT TOTAL VMSIZE_KB   (chain's rounds)
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

static const char* self;
static char pid_text[32];
static const char* mode;
static atomic_int ready;
static atomic_int go;
static int pipe_fds[2];
static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;

static int count_tasks(void) {
  DIR* d = opendir("/proc/self/task");
  if (d == NULL) return -1;
  int n = 0;
  for (struct dirent* e; (e = readdir(d)) != NULL;) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n;
}

static int after(const char* old_pid, const char* old_mode) {
  const long pid = getpid(), tid = syscall(SYS_gettid);
  sigset_t mask;
  pthread_sigmask(SIG_BLOCK, NULL, &mask);
  printf("after %s: same pid %d", old_mode, pid == atol(old_pid));
  // With the first thread gone before the execve, the sandbox runs the new
  // program on the calling thread (docs/SANDBOX.md): tid and task count
  // are not compared there.
  if (strcmp(old_mode, "leader-gone") != 0) printf(", tid is pid %d, tasks %d", tid == pid, count_tasks());
  printf(", SIGUSR2 blocked %d, SIGUSR1 blocked %d\n", sigismember(&mask, SIGUSR2), sigismember(&mask, SIGUSR1));
  if (strcmp(old_mode, "timer") == 0) {
    // The old program's periodic SIGALRM timer is gone with it.
    fflush(stdout);
    usleep(400000);
    printf("no timer's signal after the execve\n");
  }
  return 0;
}

// The execve of "after" with SIGUSR2 blocked (the caller's mask goes over
// to the new program; another thread's not); it returns only if it failed.
static void exec_after(void) {
  sigset_t block;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &block, NULL);
  char* argv[] = {(char*)self, (char*)self, "after", pid_text, (char*)mode, NULL};
  fflush(stdout);
  execv(self, argv);
}

static void do_exec(void) {
  exec_after();
  printf("execv failed: %s\n", strerror(errno));
  fflush(stdout);
  _exit(1);
}

// An execve the sandbox may refuse once (natively it does not come back):
// says why, then goes on.
static void exec_once_more(const char* with) {
  exec_after();
  printf("execve with %s: %s\n", with, strerror(errno));
  fflush(stdout);
}

static void* spinner(void* arg) {
  (void)arg;
  atomic_fetch_add(&ready, 1);
  volatile unsigned long n = 0;
  for (;;) ++n;
  return NULL;
}

static void* reader(void* arg) {
  (void)arg;
  atomic_fetch_add(&ready, 1);
  char c;
  for (;;) {
    if (read(pipe_fds[0], &c, 1) == 1) printf("reader woke\n");  // never written
  }
  return NULL;
}

static void* waiter(void* arg) {
  (void)arg;
  pthread_mutex_lock(&mutex);
  atomic_fetch_add(&ready, 1);
  for (;;) pthread_cond_wait(&cond, &mutex);
  return NULL;
}

static void* sleeper(void* arg) {
  (void)arg;
  // SIGUSR1 blocked here only: the new program must not get this mask.
  sigset_t block;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &block, NULL);
  atomic_fetch_add(&ready, 1);
  for (;;) {
    struct timespec t = {100, 0};
    nanosleep(&t, NULL);
  }
  return NULL;
}

static void* execer(void* arg) {
  (void)arg;
  atomic_fetch_add(&ready, 1);
  while (!atomic_load(&go)) {
  }
  do_exec();
  return NULL;
}

static void start(void* (*fn)(void*)) {
  pthread_t id;
  if (pthread_create(&id, NULL, fn, NULL) != 0) {
    perror("pthread_create");
    exit(2);
  }
}

static void start_others(void) {
  start(spinner);
  start(reader);
  start(waiter);
  start(sleeper);
}

static void wait_ready(int n) {
  while (atomic_load(&ready) < n) sched_yield();
  // Give the readers and waiters time to block in the kernel.
  struct timespec t = {0, 50 * 1000 * 1000};
  nanosleep(&t, NULL);
}

static long raw_block_32(int how) {
  unsigned long set = 1ul << 31;  // signal 32
  return syscall(SYS_rt_sigprocmask, how, &set, NULL, 8);
}

// SIGUSR1's handler takes signal 32 out of the mask its thread returns to.
static void unblock_32_on_return(int sig, siginfo_t* info, void* context) {
  (void)sig;
  (void)info;
  ucontext_t* uc = context;
  ((unsigned long*)&uc->uc_sigmask)[0] &= ~(1ul << 31);
  atomic_fetch_add(&ready, 1);
}

static pthread_t blocker;

static void* blocking_thread(void* arg) {
  (void)arg;
  raw_block_32(SIG_BLOCK);
  atomic_fetch_add(&ready, 1);
  for (;;) pause();
  return NULL;
}

static void* cancelled(void* arg) {
  (void)arg;
  atomic_fetch_add(&ready, 1);
  char c;
  (void)!read(pipe_fds[0], &c, 1);
  return NULL;
}

// The process's VmSize, as a fork child of it finds its own: under the
// sandbox the child is a copy of the host process, and there /proc/self is
// the child's first thread (in the process itself it names a first thread
// that may have ended, which the sandbox's /proc guard refuses).
static long vm_size_kb(void) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  fflush(stdout);
  const pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    long kb = -1;
    FILE* f = fopen("/proc/self/status", "r");
    if (f != NULL) {
      char line[256];
      while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "VmSize:", 7) == 0) kb = atol(line + 7);
      }
      fclose(f);
    }
    (void)!write(fds[1], &kb, sizeof kb);
    _exit(0);
  }
  close(fds[1]);
  long kb = -1;
  if (read(fds[0], &kb, sizeof kb) != sizeof kb) kb = -1;
  close(fds[0]);
  waitpid(pid, NULL, 0);
  return kb;
}

static atomic_int main_leaving;
static char chain_args[3][32];

static void* chain_execer(void* arg) {
  (void)arg;
  while (!atomic_load(&main_leaving)) sched_yield();
  // The first thread is gone well before this (pthread_exit right after
  // the flag).
  struct timespec t = {0, 100 * 1000 * 1000};
  nanosleep(&t, NULL);
  char* args[] = {(char*)self, (char*)self, "chain", chain_args[0], chain_args[1], chain_args[2], NULL};
  execv(self, args);
  printf("execv failed: %s\n", strerror(errno));
  fflush(stdout);
  _exit(1);
}

// One round of chain: LEFT rounds to go of TOTAL, VmSize as measured after
// the first four (what the host's allocator sets up for new threads, its
// arenas and stack cache, comes in those), -1 before.
static int chain(int left, int total, long first_kb) {
  const int warm_up = 4;
  if (left == total - warm_up) first_kb = vm_size_kb();
  if (left == 0) {
    const long now_kb = vm_size_kb();
    if (now_kb < 0 || first_kb < 0) {
      printf("chain: no VmSize\n");
      return 1;
    }
    const long growth = now_kb - first_kb;
    const int rounds = total - warm_up;
    // A leaked host thread stack is 1 MiB (and more with its arena).
    printf("chain of %d rounds: VmSize grew less than 256 KiB a round over the last %d %d\n", total, rounds,
           growth < rounds * 256L);
    if (growth >= rounds * 256L) fprintf(stderr, "VmSize grew by %ld KiB over %d rounds\n", growth, rounds);
    return 0;
  }
  snprintf(chain_args[0], sizeof chain_args[0], "%d", left - 1);
  snprintf(chain_args[1], sizeof chain_args[1], "%d", total);
  snprintf(chain_args[2], sizeof chain_args[2], "%ld", first_kb);
  start(chain_execer);
  atomic_store(&main_leaving, 1);
  pthread_exit(NULL);
}

static atomic_long reporting_tid;

static void* reporting(void* arg) {
  (void)arg;
  atomic_store(&reporting_tid, syscall(SYS_gettid));
  for (;;) syscall(SYS_getppid);
  return NULL;
}

static int sig32_reporting(void) {
  const int children = 20;
  int by_32 = 0;
  for (int i = 0; i < children; ++i) {
    fflush(stdout);
    const pid_t pid = fork();
    if (pid < 0) return 2;
    if (pid == 0) {
      start(reporting);
      while (atomic_load(&reporting_tid) == 0) sched_yield();
      // A few milliseconds into the loop, differently each child.
      struct timespec t = {0, (1 + (i * 7) % 20) * 1000 * 1000};
      nanosleep(&t, NULL);
      syscall(SYS_tgkill, getpid(), atomic_load(&reporting_tid), 32);
      for (;;) pause();
    }
    int status = 0;
    int waited = 0;
    for (; waited < 2000; ++waited) {  // 20 s
      if (waitpid(pid, &status, WNOHANG) == pid) break;
      struct timespec t = {0, 10 * 1000 * 1000};
      nanosleep(&t, NULL);
    }
    if (waited == 2000) {
      printf("child %d still there 20 s after signal 32\n", i);
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      continue;
    }
    if (WIFSIGNALED(status) && WTERMSIG(status) == 32) ++by_32;
  }
  printf("children killed by signal 32: %d of %d\n", by_32, children);
  return 0;
}

int main(int argc, char** argv) {
  if (argc >= 5 && strcmp(argv[2], "after") == 0) return after(argv[3], argv[4]);
  if (argc == 6 && strcmp(argv[2], "chain") == 0) {
    self = argv[1];
    return chain(atoi(argv[3]), atoi(argv[4]), atol(argv[5]));
  }
  if (argc == 4 && strcmp(argv[2], "fifo") == 0) {
    char path[4096];
    snprintf(path, sizeof path, "%s/fifo-for-exec", argv[3]);
    if (mkfifo(path, 0755) != 0) {
      perror("mkfifo");
      return 2;
    }
    char* args[] = {path, NULL};
    execv(path, args);
    printf("execve of a FIFO: %s\n", strerror(errno));
    const int fd = open(path, O_PATH | O_CLOEXEC);
    if (fd < 0) return 2;
    char* env[] = {NULL};
    syscall(SYS_execveat, fd, "", args, env, AT_EMPTY_PATH);
    printf("execveat of a FIFO's descriptor: %s\n", strerror(errno));
    unlink(path);
    return 0;
  }
  if (argc != 3) {
    fprintf(stderr, "usage: %s SELF MODE\n", argv[0]);
    return 2;
  }
  self = argv[1];
  mode = argv[2];
  snprintf(pid_text, sizeof pid_text, "%ld", (long)getpid());
  if (pipe(pipe_fds) != 0) return 2;
  if (strcmp(mode, "from-thread") == 0) {
    start_others();
    start(execer);
    wait_ready(5);
    atomic_store(&go, 1);
    for (;;) pause();
  }
  if (strcmp(mode, "from-main") == 0) {
    start_others();
    wait_ready(4);
    do_exec();
  }
  if (strcmp(mode, "race") == 0) {
    start_others();
    for (int i = 0; i < 4; ++i) start(execer);
    wait_ready(8);
    atomic_store(&go, 1);
    for (;;) pause();
  }
  if (strcmp(mode, "blocked") == 0) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = unblock_32_on_return;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR1, &sa, NULL);
    if (pthread_create(&blocker, NULL, blocking_thread, NULL) != 0) return 2;
    start(spinner);
    wait_ready(2);
    exec_once_more("a thread blocking signal 32");
    // The blocking thread unblocks it (a mask is per thread); then the
    // execve goes through.
    pthread_kill(blocker, SIGUSR1);
    while (atomic_load(&ready) < 3) sched_yield();
    do_exec();
  }
  if (strcmp(mode, "leader-gone") == 0) {
    start_others();
    start(execer);
    wait_ready(5);
    atomic_store(&go, 1);
    pthread_exit(NULL);
  }
  if (strcmp(mode, "cancel") == 0) {
    pthread_t id;
    if (pthread_create(&id, NULL, cancelled, NULL) != 0) return 2;
    wait_ready(1);
    pthread_cancel(id);
    void* result = NULL;
    pthread_join(id, &result);
    printf("cancelled: %d\n", result == PTHREAD_CANCELED);
    return 0;
  }
  if (strcmp(mode, "sig32") == 0) {
    printf("sending 32\n");
    fflush(stdout);
    syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), 32);
    printf("still here\n");
    return 0;
  }
  if (strcmp(mode, "sigpending") == 0) {
    struct rlimit old, zero;
    if (getrlimit(RLIMIT_SIGPENDING, &old) != 0) return 2;
    zero.rlim_cur = 0;
    zero.rlim_max = old.rlim_max;
    start(spinner);
    start(reader);
    wait_ready(2);
    if (setrlimit(RLIMIT_SIGPENDING, &zero) != 0) {
      perror("setrlimit");
      return 2;
    }
    exec_once_more("no room in the signal queue");
    if (setrlimit(RLIMIT_SIGPENDING, &old) != 0) return 2;
    do_exec();
  }
  if (strcmp(mode, "timer") == 0) {
    // A POSIX timer firing every 50 ms with SIGALRM's default action.
    timer_t id;
    struct sigevent event;
    memset(&event, 0, sizeof event);
    event.sigev_notify = SIGEV_SIGNAL;
    event.sigev_signo = SIGALRM;
    const struct itimerspec every = {{0, 50000000}, {0, 50000000}};
    if (timer_create(CLOCK_MONOTONIC, &event, &id) != 0 || timer_settime(id, 0, &every, NULL) != 0) return 2;
    do_exec();
  }
  if (strcmp(mode, "sig32-reporting") == 0) return sig32_reporting();
  if (strcmp(mode, "chain") == 0) return chain(16, 16, -1);
  fprintf(stderr, "unknown mode %s\n", mode);
  return 2;
}
