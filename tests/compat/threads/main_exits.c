// The process's first thread ends with pthread_exit while the others go
// on: natively the process lives as long as one thread does, and its pid
// names a zombie from then on. The remaining threads make calls whose
// memory the kernel reads and writes (a pipe round trip, clock_gettime,
// sigprocmask's old mask), take signals whose handlers run on their stacks
// with x87/XMM state kept, and one of them ends the process with a status.
//
//   main_exits ROUNDS
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int rounds;
static atomic_int handled;
static atomic_int main_gone;
static pthread_t worker_id;

static void on_usr1(int sig) {
  (void)sig;
  volatile double x = 1.5;
  x = x * 3.0;  // the handler's own floating-point work
  atomic_fetch_add(&handled, 1);
}

// Whether the first thread has ended: a zombie in /proc (it stays listed
// until the process ends).
static int first_thread_ended(void) {
  char path[64], text[256] = {0};
  snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)getpid());
  FILE* f = fopen(path, "r");
  if (f == NULL) return 1;
  size_t n = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[n] = '\0';
  const char* state = strrchr(text, ')');
  return state != NULL && (state[2] == 'Z' || state[2] == 'X');
}

static void* worker(void* arg) {
  (void)arg;
  while (!atomic_load(&main_gone) || !first_thread_ended()) sched_yield();
  int fds[2];
  if (pipe(fds) != 0) return (void*)1;
  volatile double kept = 2.25;
  long errors = 0;
  for (int i = 0; i < rounds; ++i) {
    char out[64], in[64] = {0};
    int n = snprintf(out, sizeof out, "round %d", i);
    if (write(fds[1], out, n) != n || read(fds[0], in, sizeof in) != n || memcmp(in, out, n) != 0) ++errors;
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) ++errors;
    sigset_t old;
    if (pthread_sigmask(SIG_BLOCK, NULL, &old) != 0) ++errors;
    // Process-directed: only this thread is left to take it, on the
    // return from kill(), as natively.
    kill(getpid(), SIGUSR1);
  }
  printf("worker: %d rounds, %ld errors, %d signals handled, floating point %s\n", rounds, errors,
         atomic_load(&handled), kept == 2.25 ? "kept" : "LOST");
  fflush(stdout);
  exit(errors == 0 ? 3 : 1);
}

int main(int argc, char** argv) {
  rounds = argc > 1 ? atoi(argv[1]) : 100;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sigaction(SIGUSR1, &sa, NULL);
  if (pthread_create(&worker_id, NULL, worker, NULL) != 0) return 2;
  printf("main: leaving\n");
  fflush(stdout);
  atomic_store(&main_gone, 1);
  pthread_exit(NULL);
}
