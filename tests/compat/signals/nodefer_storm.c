/* SIGUSR1 sent again and again to a thread whose handler may be interrupted
   by its own signal (SA_NODEFER), so that signals land everywhere: in the
   thread's loop, in the handler, between the handler's last instruction and
   the end of its rt_sigreturn, and at the first instruction of a handler
   that has just been entered.

   The target thread holds values in XMM8, XMM15 and the x87 stack across a
   short spin and checks them afterwards; the handler overwrites those
   registers, and computes with x87 and SSE itself, checking that it starts
   from the initial floating-point state a new handler gets (MXCSR 0x1f80,
   x87 control word 0x37f, an empty x87 stack) and that its results come out
   right. The sending thread sends ROUNDS signals with tgkill; before each
   one it waits until the handler has been entered for every signal sent so
   far (so that none is lost to a pending one: the count is exact) and for a
   few iterations of a spin whose length varies from round to round (so
   that the signal lands at different points), and it lets at most three
   handlers be in progress at once (SA_NODEFER nests them, and a sender
   that never waits would nest them until the stack runs out).

   Usage: nodefer_storm nodefer|defer [ROUNDS [verbose]]   (default 2000)
   Prints one line, the same natively and under dunk exec; exit status 0 when
   every signal was handled once and no state was lost, 2 otherwise. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

enum { kMaxDepth = 3 };

static atomic_long entered, left, sent;
static atomic_int target_tid, done;
static atomic_long handler_bad, loop_bad, wrong_info;
static atomic_int depth_seen;

/* The handler's own floating-point work: it must start from the initial
   state and compute the same results every time. */
static int handler_fp_ok(void) {
  uint32_t mxcsr = 0;
  uint16_t fcw = 0, fsw = 0;
  __asm__ volatile("stmxcsr %0\n\tfnstcw %1\n\tfnstsw %2" : "=m"(mxcsr), "=m"(fcw), "=m"(fsw));
  /* x87 TOP (bits 11-13 of the status word) is 0 on an empty stack. */
  int ok = mxcsr == 0x1f80 && fcw == 0x37f && (fsw & 0x3800) == 0;
  volatile double a = 1.5, b = 2.25;
  volatile long double c = 3.0L, d = 0.5L;
  for (int i = 0; i < 8; ++i) {
    double s = a * b + (double)i;  /* SSE */
    long double t = c * d + i;    /* x87 */
    if (s != 3.375 + i || t != 1.5L + i) ok = 0;
  }
  /* And overwrite what the interrupted code holds. */
  __asm__ volatile(
      "pcmpeqd %%xmm15, %%xmm15\n\t"
      "pxor %%xmm8, %%xmm8\n\t"
      "fldz\n\t"
      "fstp %%st(0)\n\t"
      "fninit" ::: "xmm8", "xmm15", "st");
  return ok;
}

static void on_usr1(int sig, siginfo_t* info, void* context) {
  (void)context;
  const long depth = atomic_fetch_add(&entered, 1) + 1 - atomic_load(&left);
  int seen = atomic_load(&depth_seen);
  while (depth > seen && !atomic_compare_exchange_weak(&depth_seen, &seen, (int)depth)) {
  }
  if (sig != SIGUSR1 || info->si_signo != SIGUSR1 || info->si_code != SI_TKILL || info->si_pid != getpid()) {
    atomic_fetch_add(&wrong_info, 1);
  }
  if (!handler_fp_ok()) atomic_fetch_add(&handler_bad, 1);
  atomic_fetch_add(&left, 1);
}

/* Values in XMM8, XMM15 and on the x87 stack across a spin of `spin`
   iterations, during which signals come; 1 if they are intact after. */
static int hold_state(long spin) {
  const unsigned long long a = 0x0123456789abcdefull, b = 0xfedcba9876543210ull;
  unsigned long long got_a = 0, got_b = 0;
  long double x87 = 0, want = 1234.5L;
  __asm__ volatile(
      "movq %[a], %%xmm8\n\t"
      "movq %[b], %%xmm15\n\t"
      "fldt %[want]\n\t"
      "1: pause\n\t"
      "dec %[spin]\n\t"
      "jnz 1b\n\t"
      "fstpt %[x87]\n\t"
      "movq %%xmm8, %[got_a]\n\t"
      "movq %%xmm15, %[got_b]"
      : [spin] "+r"(spin), [got_a] "=r"(got_a), [got_b] "=r"(got_b), [x87] "=m"(x87)
      : [a] "r"(a), [b] "r"(b), [want] "m"(want)
      : "xmm8", "xmm15", "st", "cc", "memory");
  return got_a == a && got_b == b && x87 == want;
}

static void* target(void* arg) {
  const int nodefer = *(const int*)arg;
  struct sigaction action = {.sa_sigaction = on_usr1, .sa_flags = SA_SIGINFO | (nodefer ? SA_NODEFER : 0)};
  sigemptyset(&action.sa_mask);
  if (sigaction(SIGUSR1, &action, NULL) != 0) {
    perror("sigaction");
    exit(1);
  }
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  pthread_sigmask(SIG_UNBLOCK, &usr1, NULL);
  atomic_store(&target_tid, (int)syscall(SYS_gettid));
  while (!atomic_load(&done)) {
    if (!hold_state(200)) atomic_fetch_add(&loop_bad, 1);
  }
  return NULL;
}

int main(int argc, char** argv) {
  if (argc < 2 || (strcmp(argv[1], "nodefer") != 0 && strcmp(argv[1], "defer") != 0)) {
    fputs("usage: nodefer_storm nodefer|defer [ROUNDS]\n", stderr);
    return 1;
  }
  static int nodefer;
  nodefer = strcmp(argv[1], "nodefer") == 0;
  const long rounds = argc > 2 ? strtol(argv[2], NULL, 10) : 2000;
  /* Only the target thread takes SIGUSR1: it is blocked here, and in the
     target thread, which inherits the mask, unblocked once its handler is
     installed. */
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &usr1, NULL);
  pthread_t thread;
  if (pthread_create(&thread, NULL, target, &nodefer) != 0) {
    fputs("cannot start the target thread\n", stderr);
    return 1;
  }
  while (atomic_load(&target_tid) == 0) {
  }
  const pid_t pid = getpid(), tid = atomic_load(&target_tid);
  uint32_t seed = 12345;
  for (long i = 0; i < rounds; ++i) {
    while (atomic_load(&entered) < atomic_load(&sent) || atomic_load(&entered) - atomic_load(&left) >= kMaxDepth) {
    }
    seed = seed * 1103515245u + 12345u;
    for (volatile unsigned spin = (seed >> 16) % 512; spin > 0; --spin) {
    }
    atomic_fetch_add(&sent, 1);
    if (syscall(SYS_tgkill, pid, tid, SIGUSR1) != 0) {
      perror("tgkill");
      return 1;
    }
  }
  while (atomic_load(&left) < rounds) {
  }
  atomic_store(&done, 1);
  pthread_join(thread, NULL);
  const long got = atomic_load(&left);
  const int ok = got == rounds && atomic_load(&handler_bad) == 0 && atomic_load(&loop_bad) == 0 &&
                 atomic_load(&wrong_info) == 0;
  if (!ok) {
    printf("%s: %ld signals sent, %ld handled; %ld handlers with a wrong initial state or result, %ld loops "
           "with state lost, %ld wrong siginfo\n",
           argv[1], rounds, got, atomic_load(&handler_bad), atomic_load(&loop_bad), atomic_load(&wrong_info));
    return 2;
  }
  printf("%s: %ld signals sent, each handled once; floating-point and vector state intact\n", argv[1], rounds);
  /* How deep handlers nested varies from run to run: on stderr only when
     asked for. */
  if (argc > 3 && strcmp(argv[3], "verbose") == 0) fprintf(stderr, "deepest nesting: %d\n", atomic_load(&depth_seen));
  return 0;
}
