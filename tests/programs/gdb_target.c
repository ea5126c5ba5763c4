// The program tests/cli/gdb_test.sh debugs under `dunk exec --gdb`: a call to
// break in and step through, a global to watch change twice, a second
// thread that gets a signal, an exit status of its own. Built with -O0 -g
// so that gdb sees every line and variable.
#include <pthread.h>
#include <signal.h>
#include <stdio.h>

int counter;  // watched: 0, then 49, then 50
static volatile sig_atomic_t caught;

int square(int x) {
  int y = x * x;
  return y;
}

void bump(int by) {
  counter += by;
}

static void on_signal(int sig) { caught = sig; }

// Sends itself SIGUSR1: gdb stops the program for it, then delivers it.
static void* signalled(void* arg) {
  raise(SIGUSR1);
  return arg;
}

int main(void) {
  int s = square(7);
  bump(s);
  bump(1);
  signal(SIGUSR1, on_signal);
  pthread_t thread;
  if (pthread_create(&thread, NULL, signalled, NULL) != 0 || pthread_join(thread, NULL) != 0) return 2;
  printf("counter %d, caught %d\n", counter, caught);
  return counter == 50 && caught == SIGUSR1 ? 3 : 1;
}
