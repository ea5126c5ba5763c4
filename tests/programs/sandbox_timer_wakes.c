/* Rounds of: a one-shot timer armed (1 to 200 us), then a blocking read of a
 * pipe that only the timer's SIGALRM handler writes to. Natively each read
 * returns its handler's byte. Under a supervisor, a signal that comes while
 * it forwards the read must reach the program's handler before the read
 * blocks, and the read must then run again (SA_RESTART): a signal kept
 * queued behind the read hangs it; a restart done wrong fails it.
 *
 *   sandbox_timer_wakes ROUNDS          the read of a pipe
 *   sandbox_timer_wakes ROUNDS DIR      a blocking sendto by path to a full
 *                                       AF_UNIX datagram socket bound at
 *                                       DIR/sink, of which the handler
 *                                       reads one datagram (a call a
 *                                       file-system view serves itself) */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

static int pipe_fds[2];
static int sink = -1;

static void on_alarm_receive(int sig) {
  (void)sig;
  char c;
  if (recv(sink, &c, 1, MSG_DONTWAIT) != 1) _exit(3);
}

// The sendto rounds: each blocks on the full socket until its handler has
// taken one datagram out, which fills it again.
static int sends(int rounds, const char *dir) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "%s/sink", dir);
  unlink(a.sun_path);
  sink = socket(AF_UNIX, SOCK_DGRAM, 0);
  const int source = socket(AF_UNIX, SOCK_DGRAM, 0);
  if (sink < 0 || source < 0 || bind(sink, (struct sockaddr *)&a, sizeof a) != 0) return 2;
  int queued = 0;
  while (sendto(source, "x", 1, MSG_DONTWAIT, (struct sockaddr *)&a, sizeof a) == 1) ++queued;
  if (errno != EAGAIN || queued == 0) return 2;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm_receive;
  sa.sa_flags = SA_RESTART;
  if (sigaction(SIGALRM, &sa, NULL) != 0) return 2;
  for (int i = 0; i < rounds; ++i) {
    struct itimerval once = {{0, 0}, {0, 1 + (i * 7) % 200}};
    if (setitimer(ITIMER_REAL, &once, NULL) != 0) return 2;
    const long sent = sendto(source, "x", 1, 0, (struct sockaddr *)&a, sizeof a);
    if (sent != 1) {
      printf("round %d: sendto returned %ld (%s)\n", i, sent, sent < 0 ? strerror(errno) : "no byte");
      return 4;
    }
  }
  unlink(a.sun_path);
  printf("%d rounds, each send woken by its own handler\n", rounds);
  return 0;
}

static void on_alarm(int sig) {
  (void)sig;
  char c = 'x';
  if (write(pipe_fds[1], &c, 1) != 1) _exit(3);
}

int main(int argc, char **argv) {
  const int rounds = argc > 1 ? atoi(argv[1]) : 1000;
  if (argc > 2) return sends(rounds, argv[2]);
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
