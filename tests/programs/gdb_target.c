// The program tests/cli/gdb_test.sh debugs under `dunk exec --gdb`: a call to
// break in and step through, a global to watch change twice, a second
// thread that gets a signal, an exit status of its own. Built with -O0 -g
// so that gdb sees every line and variable.
#include <pthread.h>
#include <signal.h>
#include <stdio.h>

int counter;  // watched: 0, then 49, then 50
static volatile sig_atomic_t caught;
static volatile int spinning;

int square(int x) {
  int y = x * x;
  return y;
}

void bump(int by) {
  counter += by;
}

static void on_signal(int sig) { caught = sig; }

// Sends itself SIGUSR1 once the main thread spins: gdb stops the program
// for it, then delivers it.
static void* signalled(void* arg) {
  while (!spinning) {
  }
  raise(SIGUSR1);
  return arg;
}

int main(void) {
  int s = square(7);
  bump(s);
  bump(1);
  signal(SIGUSR1, on_signal);
  pthread_t thread;
  if (pthread_create(&thread, NULL, signalled, NULL) != 0) return 2;
  // Runs guest code until the handler has run: when the other thread stops
  // for its signal, the stub kicks this one out of KVM_RUN.
  spinning = 1;
  while (!caught) {
  }
  if (pthread_join(thread, NULL) != 0) return 2;
  printf("counter %d, caught %d\n", counter, caught);
  return counter == 50 && caught == SIGUSR1 ? 3 : 1;
}
