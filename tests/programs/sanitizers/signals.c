// Signals in a sanitized program: 50 SIGALRMs from a 10 ms interval timer,
// handled while a second thread spins and the main thread makes
// intercepted library calls. ThreadSanitizer defers a signal's handler to
// a safe point of the thread it arrives on; the counter is atomic, so there
// is nothing to report.
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#define SIGNALS 50

static atomic_int handled;

static void on_alarm(int sig) {
  (void)sig;
  atomic_fetch_add_explicit(&handled, 1, memory_order_relaxed);
}

static void* spin(void* arg) {
  while (atomic_load_explicit(&handled, memory_order_relaxed) < SIGNALS) {
  }
  return arg;
}

int main(void) {
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = on_alarm;
  action.sa_flags = SA_RESTART;
  sigaction(SIGALRM, &action, NULL);
  struct itimerval every_10ms = {{0, 10000}, {0, 10000}};
  setitimer(ITIMER_REAL, &every_10ms, NULL);
  pthread_t thread;
  pthread_create(&thread, NULL, spin, NULL);
  char text[32];
  while (atomic_load_explicit(&handled, memory_order_relaxed) < SIGNALS) {
    snprintf(text, sizeof text, "%d", atomic_load_explicit(&handled, memory_order_relaxed));
  }
  struct itimerval stop = {{0, 0}, {0, 0}};
  setitimer(ITIMER_REAL, &stop, NULL);
  pthread_join(thread, NULL);
  printf("handled at least %d signals\n", SIGNALS);
  return 0;
}
