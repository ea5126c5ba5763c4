/* Rounds of: a one-shot timer armed (1 to 200 us), then a blocking read of a
 * pipe that only the timer's SIGALRM handler writes to. Natively each read
 * returns its handler's byte. Under a supervisor, a signal that comes while
 * it forwards the read must reach the program's handler before the read
 * blocks, and the read must then run again (SA_RESTART): a signal kept
 * queued behind the read hangs it; a restart done wrong fails it. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

static int pipe_fds[2];

static void on_alarm(int sig) {
  (void)sig;
  char c = 'x';
  if (write(pipe_fds[1], &c, 1) != 1) _exit(3);
}

int main(int argc, char **argv) {
  const int rounds = argc > 1 ? atoi(argv[1]) : 1000;
  if (pipe(pipe_fds) != 0) return 2;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;
  sa.sa_flags = SA_RESTART;
  if (sigaction(SIGALRM, &sa, NULL) != 0) return 2;
  for (int i = 0; i < rounds; ++i) {
    struct itimerval once = {{0, 0}, {0, 1 + (i * 7) % 200}};
    if (setitimer(ITIMER_REAL, &once, NULL) != 0) return 2;
    char c;
    const long got = read(pipe_fds[0], &c, 1);
    if (got != 1) {
      printf("round %d: read returned %ld (%s)\n", i, got, got < 0 ? strerror(errno) : "no byte");
      return 4;
    }
  }
  printf("%d rounds, each read woken by its own handler\n", rounds);
  return 0;
}
