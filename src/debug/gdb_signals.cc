#include "debug/gdb_signals.h"

#include <signal.h>

namespace dunk::debug {
namespace {

// GDB's numbers for Linux's signals 1-31.
constexpr int kClassic[32] = {
    0,
    1,   // SIGHUP
    2,   // SIGINT
    3,   // SIGQUIT
    4,   // SIGILL
    5,   // SIGTRAP
    6,   // SIGABRT
    10,  // SIGBUS
    8,   // SIGFPE
    9,   // SIGKILL
    30,  // SIGUSR1
    11,  // SIGSEGV
    31,  // SIGUSR2
    13,  // SIGPIPE
    14,  // SIGALRM
    15,  // SIGTERM
    kGdbSignalUnknown,  // SIGSTKFLT: GDB has no name for it
    20,  // SIGCHLD
    19,  // SIGCONT
    17,  // SIGSTOP
    18,  // SIGTSTP
    21,  // SIGTTIN
    22,  // SIGTTOU
    16,  // SIGURG
    24,  // SIGXCPU
    25,  // SIGXFSZ
    26,  // SIGVTALRM
    27,  // SIGPROF
    28,  // SIGWINCH
    23,  // SIGIO
    32,  // SIGPWR
    12,  // SIGSYS
};
static_assert(SIGBUS == 7 && SIGUSR1 == 10 && SIGCHLD == 17 && SIGSYS == 31, "Linux x86-64 numbering");

// Real-time signals: GDB numbers 33-63 as 45-75 (after its historical
// names), 32 as 77 and 64 as 78.
constexpr int kGdbRealtime33 = 45;
constexpr int kGdbRealtime32 = 77;
constexpr int kGdbRealtime64 = 78;

}  // namespace

int gdb_signal_from_host(int sig) noexcept {
  if (sig == 0) return kGdbSignalNone;
  if (sig >= 1 && sig <= 31) return kClassic[sig];
  if (sig == 32) return kGdbRealtime32;
  if (sig >= 33 && sig <= 63) return kGdbRealtime33 + (sig - 33);
  if (sig == 64) return kGdbRealtime64;
  return kGdbSignalUnknown;
}

int host_signal_from_gdb(int signal) noexcept {
  for (int sig = 1; sig <= 64; ++sig) {
    if (gdb_signal_from_host(sig) == signal && signal != kGdbSignalUnknown) return sig;
  }
  return 0;
}

}  // namespace dunk::debug
