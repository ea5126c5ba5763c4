// A signal that arrives while dunk's monitor serves a system call, before
// it forwards the call, must not change what the call sees: here
// rt_sigprocmask's old mask, which glibc's pthread_create saves when it
// blocks every signal around clone and sets back afterwards (in the parent
// and in the new thread).
//
// A 50 us ITIMER_REAL keeps SIGALRM coming while the main thread creates
// and joins threads; after each pthread_create the main thread and the new
// thread check that SIGALRM is not blocked. Natively it never is.
//
// Usage: sigmask_syscall_race [ROUNDS]   (default 2000)
// Prints "N of ROUNDS rounds left SIGALRM blocked"; exit status 1 if N > 0.
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

static atomic_int alarms;
static atomic_int thread_saw_blocked;

static void on_alarm(int sig) {
  (void)sig;
  atomic_fetch_add(&alarms, 1);
}

static int alarm_blocked(void) {
  sigset_t now;
  pthread_sigmask(SIG_SETMASK, NULL, &now);
  return sigismember(&now, SIGALRM);
}

static void* thread_main(void* arg) {
  if (alarm_blocked()) atomic_store(&thread_saw_blocked, 1);
  return arg;
}

int main(int argc, char** argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 2000;
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = on_alarm;
  action.sa_flags = SA_RESTART;
  sigaction(SIGALRM, &action, NULL);
  struct itimerval every_50us = {{0, 50}, {0, 50}};
  setitimer(ITIMER_REAL, &every_50us, NULL);
  int bad = 0;
  for (int round = 0; round < rounds; ++round) {
    atomic_store(&thread_saw_blocked, 0);
    pthread_t thread;
    if (pthread_create(&thread, NULL, thread_main, NULL) != 0) return 2;
    int parent = alarm_blocked();
    pthread_join(thread, NULL);
    int child = atomic_load(&thread_saw_blocked);
    if (parent || child) {
      if (bad < 5) printf("round %d: SIGALRM blocked in the %s\n", round, parent ? "parent" : "new thread");
      ++bad;
      // Unblock it again, so that later rounds test afresh.
      sigset_t alarm_only;
      sigemptyset(&alarm_only);
      sigaddset(&alarm_only, SIGALRM);
      pthread_sigmask(SIG_UNBLOCK, &alarm_only, NULL);
    }
  }
  struct itimerval stop = {{0, 0}, {0, 0}};
  setitimer(ITIMER_REAL, &stop, NULL);
  printf("%d of %d rounds left SIGALRM blocked\n", bad, rounds);
  return bad > 0;
}
