// Helpers for kvm-tier tests.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>

namespace dunk::test {

// Enters VM mode or fails the current test with dunk's explanation.
void enter_or_fail();

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

}  // namespace dunk::test
