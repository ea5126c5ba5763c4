/* A signal frame that cannot always be written (issue 12 §7's class).
   SIGHUP's handler runs on an alternate stack that a second thread keeps
   flipping between read-only and read/write; SIGSEGV's handler runs on the
   normal stack. The main thread sends itself SIGHUP ROUNDS times. When the
   kernel cannot write SIGHUP's frame it delivers SIGSEGV instead (to the
   handler, which is not on the alternate stack), and the loop goes on.
   Every round must end in exactly one of the two handlers, and the
   floating-point and vector state the main thread holds across the signal
   (x87 and XMM registers the handlers overwrite) must come back intact.
   Output and status are the same whichever handler ran. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

enum { kAltSize = 64 * 1024 };

static char* alt;
static atomic_int stop;
static volatile sig_atomic_t hups, segvs;

/* Both handlers overwrite the registers the main thread checks. They touch
   no stack of their own (leaf code, registers only): a handler running on
   the alternate stack while it is read-only must not fault itself. */
static void clobber(void) {
  __asm__ volatile(
      "pcmpeqd %%xmm15, %%xmm15\n\t"
      "pxor %%xmm8, %%xmm8\n\t"
      "fldz\n\t"
      "fstp %%st(0)\n\t"
      "fninit" ::: "xmm8", "xmm15", "st");
}

static void on_hup(int sig) {
  (void)sig;
  clobber();
  hups = hups + 1;
}

static void on_segv(int sig, siginfo_t* info, void* context) {
  (void)sig;
  (void)context;
  clobber();
  /* Only the forced SIGSEGV of an unwritable frame is expected: the kernel
     sends it with si_code SI_KERNEL. A fault of the program's own would be
     a bug in this test. */
  if (info->si_code != SI_KERNEL) {
    static const char msg[] = "SIGSEGV that is not a forced one\n";
    write(2, msg, sizeof msg - 1);
    _exit(3);
  }
  segvs = segvs + 1;
}

static void* flipper(void* arg) {
  (void)arg;
  while (!atomic_load(&stop)) {
    mprotect(alt, kAltSize, PROT_READ);
    mprotect(alt, kAltSize, PROT_READ | PROT_WRITE);
  }
  return NULL;
}

/* Sends SIGHUP to this thread with values in XMM8, XMM15 and the x87 stack
   that must survive the handler, and checks them afterwards. */
static int one_round(void) {
  const unsigned long long a = 0x0123456789abcdefull, b = 0xfedcba9876543210ull;
  unsigned long long got_a = 0, got_b = 0;
  long double x87 = 0, want = 1234.5L;
  long pid = getpid(), tid = syscall(SYS_gettid), nr = SYS_tgkill, sig = SIGHUP;
  __asm__ volatile(
      "movq %[a], %%xmm8\n\t"
      "movq %[b], %%xmm15\n\t"
      "fldt %[want]\n\t"
      "syscall\n\t"
      "fstpt %[x87]\n\t"
      "movq %%xmm8, %[got_a]\n\t"
      "movq %%xmm15, %[got_b]"
      : "+a"(nr), [got_a] "=r"(got_a), [got_b] "=r"(got_b), [x87] "=m"(x87)
      : "D"(pid), "S"(tid), "d"(sig), [a] "r"(a), [b] "r"(b), [want] "m"(want)
      : "rcx", "r11", "xmm8", "xmm15", "st", "memory");
  return nr == 0 && got_a == a && got_b == b && x87 == want;
}

int main(int argc, char** argv) {
  const long rounds = argc > 1 ? strtol(argv[1], NULL, 10) : 30000;
  alt = mmap(NULL, kAltSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (alt == MAP_FAILED) {
    perror("mmap");
    return 1;
  }
  stack_t ss = {.ss_sp = alt, .ss_size = kAltSize};
  struct sigaction hup = {.sa_handler = on_hup, .sa_flags = SA_ONSTACK | SA_NODEFER};
  struct sigaction segv = {.sa_sigaction = on_segv, .sa_flags = SA_SIGINFO | SA_NODEFER};
  if (sigaltstack(&ss, NULL) != 0 || sigaction(SIGHUP, &hup, NULL) != 0 || sigaction(SIGSEGV, &segv, NULL) != 0) {
    perror("signals");
    return 1;
  }
  pthread_t thread;
  if (pthread_create(&thread, NULL, flipper, NULL) != 0) {
    fputs("cannot start the flipping thread\n", stderr);
    return 1;
  }
  long bad = 0;
  for (long i = 0; i < rounds; ++i) {
    const long before = hups + segvs;
    if (!one_round() || hups + segvs != before + 1) ++bad;
  }
  atomic_store(&stop, 1);
  pthread_join(thread, NULL);
  if (hups + segvs != rounds || bad != 0) {
    printf("%ld rounds: %ld handled by SIGHUP's handler, %ld by SIGSEGV's, %ld with registers lost\n", rounds,
           (long)hups, (long)segvs, bad);
    return 2;
  }
  printf("%ld rounds, each ended by one handler, floating-point and vector state intact\n", rounds);
  return 0;
}
