// Running the program as dunk's child and passing its fate on: dunk's own
// exit status is the child's, and a child killed by a signal kills dunk with
// the same signal.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "dunk/result.h"

namespace dunk::cli {

// Forks; the child execve()s `path` with `argv` and `envp` (execvp's /bin/sh
// fallback included). Until the child ends, SIGINT and SIGQUIT are ignored
// (the terminal sends them to the whole process group: the child decides)
// and SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 are passed on to the child.
// Returns the child's wait status.
Result<int> run_child(const std::string& path, const std::vector<std::string>& argv,
                      const std::vector<std::string>& envp);

// A wall-clock limit on the child: when `seconds` pass before it ends,
// `expired(child, cookie)` runs (it kills what must die) and the wait goes on.
struct TimeLimit {
  std::uint64_t seconds = 0;
  void (*expired)(pid_t child, void* cookie) = nullptr;
  void* cookie = nullptr;
};

// Forks; the child runs `child(arg)` with dunk's original signal mask and
// dispositions and exits with what it returns (or never returns). Signals
// are managed as for run_child. Returns the child's wait status.
Result<int> run_function_child(int (*child)(void*), void* arg, const TimeLimit* limit = nullptr);

// Ends dunk the way the child ended: exit(code), or death by the same signal
// (without a core file of dunk's own).
[[noreturn]] void end_like(int wait_status);

}  // namespace dunk::cli
