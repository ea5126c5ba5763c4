// dunk bug reproducer (docs/compat/cpython.md): CPython test_signal's
// StressTest.test_stress_delivery_simultaneous in C. Each round arms a 1-11 us
// ITIMER_REAL and sends SIGUSR1 to the process, then waits (up to 2 s) until
// both handlers ran. Natively no round ever loses a signal; under dunk exec,
// after some rounds SIGUSR1 stays blocked (and pending) in the mask for good.
// Build: gcc -O2 -o sigmask_leak sigmask_leak.c; run: dunk exec -- ./sigmask_leak 40
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
static volatile sig_atomic_t usr1, alrm;
static void handler(int sig) { if (sig == SIGUSR1) usr1++; else alrm++; }
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 500, lost = 0;
  struct sigaction sa = {0};
  sa.sa_handler = handler;
  sigaction(SIGUSR1, &sa, NULL);
  sigaction(SIGALRM, &sa, NULL);
  srand(1);
  setvbuf(stdout, NULL, _IONBF, 0);
  for (int i = 0; i < rounds; i++) {
    int want_usr1 = usr1 + 1, want_alrm = alrm + 1;
    struct itimerval it = {{0, 0}, {0, 1 + rand() % 10}};
    setitimer(ITIMER_REAL, &it, NULL);
    kill(getpid(), SIGUSR1);
    double deadline = now() + 2;
    while ((usr1 < want_usr1 || alrm < want_alrm) && now() < deadline) usleep(10);
    if (usr1 < want_usr1 || alrm < want_alrm) {
      sigset_t blocked, pending;
      sigprocmask(SIG_BLOCK, NULL, &blocked);
      sigpending(&pending);
      if (++lost <= 5)
        printf("round %d: %s lost (waited 2 s); SIGUSR1 blocked %d pending %d, SIGALRM blocked %d pending %d\n", i,
               usr1 < want_usr1 ? (alrm < want_alrm ? "both" : "SIGUSR1") : "SIGALRM", sigismember(&blocked, SIGUSR1),
               sigismember(&pending, SIGUSR1), sigismember(&blocked, SIGALRM), sigismember(&pending, SIGALRM));
      usr1 = want_usr1; alrm = want_alrm;  // resynchronise
    }
  }
  printf("%d of %d rounds lost a signal\n", lost, rounds);
  return lost != 0;
}
