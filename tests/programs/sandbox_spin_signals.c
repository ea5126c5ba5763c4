/* Signals that reach a program looping without a system call: under
 * `dunk sandbox` the loop runs in ring 3 and makes no VM exit, so the
 * signal has to stop ring 3 to be delivered (Ring3Options::interruptible).
 * Three loops, each ended only by a handler:
 *  1. a timer's SIGALRM (setitimer) sets the flag the loop spins on;
 *  2. a second thread sends SIGUSR1 to the spinning main thread (tgkill);
 *  3. SIGALRM comes every 2 ms while the loop counts with x87, SSE and
 *     general registers: ROUNDS handlers interrupt it, and every register
 *     the loop keeps is intact when the handler returns.
 * The output is the same natively and under the sandbox. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

static volatile sig_atomic_t flag, alarms;

static void on_signal(int sig) {
  (void)sig;
  flag = 1;
}

static void on_tick(int sig) {
  (void)sig;
  /* A handler that uses the registers the loop keeps. */
  volatile double x = 1.5;
  x = x * x + (double)alarms;
  alarms = alarms + 1;
}

static void set_timer(long first_us, long every_us) {
  struct itimerval t = {{0, every_us}, {0, first_us}};
  setitimer(ITIMER_REAL, &t, NULL);
}

static void* send_usr1(void* arg) {
  const pid_t tid = (pid_t)(long)arg;
  struct timespec pause = {0, 50 * 1000 * 1000};
  nanosleep(&pause, NULL);
  syscall(SYS_tgkill, getpid(), tid, SIGUSR1);
  return NULL;
}

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? atoi(argv[1]) : 200;
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGALRM, &sa, NULL);
  sigaction(SIGUSR1, &sa, NULL);

  /* 1 */
  flag = 0;
  set_timer(20000, 0);
  while (!flag) {
  }
  puts("a timer's signal ended a loop that makes no system call");

  /* 2 */
  flag = 0;
  pthread_t thread;
  pthread_create(&thread, NULL, send_usr1, (void*)(long)syscall(SYS_gettid));
  while (!flag) {
  }
  pthread_join(thread, NULL);
  puts("another thread's signal ended it");

  /* 3: the loop's state lives in registers across the handlers. */
  struct sigaction tick = {.sa_handler = on_tick};
  sigaction(SIGALRM, &tick, NULL);
  alarms = 0;
  set_timer(2000, 2000);
  unsigned long n = 0;
  double sum = 0;
  long double wide = 0;
  unsigned long mix = 0x9e3779b97f4a7c15ul;
  while (alarms < rounds) {
    ++n;
    sum += 0.5;
    wide += 0.25L;
    mix = mix * 6364136223846793005ul + 1442695040888963407ul;
  }
  set_timer(0, 0);
  /* Recompute what the loop must have reached in n rounds. */
  unsigned long check = 0x9e3779b97f4a7c15ul;
  for (unsigned long i = 0; i < n; ++i) check = check * 6364136223846793005ul + 1442695040888963407ul;
  const int intact = sum == 0.5 * (double)n && wide == 0.25L * (long double)n && mix == check;
  printf("%d timer signals interrupted a counting loop: registers %s\n", rounds, intact ? "intact" : "CORRUPTED");
  return intact ? 0 : 1;
}
