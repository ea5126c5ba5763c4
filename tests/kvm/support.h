// Helpers for kvm-tier tests.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>

namespace dunk::test {

// Enters VM mode or fails the current test with dunk's explanation.
void enter_or_fail();

// Leaves VM mode and tears the VM down (dunk::shutdown), waiting for the
// kernel to reap threads that exited in VM mode; fails the test if the VM
// cannot go. The next test's enter() builds a new one.
void shutdown_or_fail();

// Puts every signal disposition back to SIG_DFL, unblocks every signal,
// removes the alternate stack and stops the interval timers: what a test
// that plays with signals leaves behind for the next one in the process.
void reset_signal_state();

// Whether the calling code runs in VM mode, by the hardware's word: guest
// ring 0 has CPL 0 in CS, where the host runs user code at CPL 3.
bool in_guest_ring0();

// The outcome of running `body` in a forked child: how it ended.
struct ChildResult {
  bool exited = false;
  int exit_code = -1;
  bool signaled = false;
  int signal = 0;
  std::string output;  // what the child wrote to stdout and stderr
};

// Forks; the child runs `body` and exits with its return value. The parent
// waits and reports the status as waitpid saw it, with the child's output.
ChildResult run_in_child(const std::function<int()>& body);

// How many rounds a loop that hunts for a race or a leak runs. The test
// tiers run `bounded` (scripts/test must stay within CI's time); the stress
// command (scripts/stress, DUNK_TEST_STRESS=1) runs `stress`; the variable
// named `env`, when set to a positive number, overrides both.
int rounds(const char* env, int bounded, int stress);

}  // namespace dunk::test
