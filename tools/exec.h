// `dunk exec`: runs an unmodified, dynamically linked program in VM mode
// from before its main(), through LD_PRELOAD=libdunk-preload.so.
#pragma once

#include <string>
#include <vector>

namespace dunk::cli {

struct ExecOptions {
  std::vector<std::string> command;  // PROG ARGS...
  bool stats = false;                // report the counters when the program ends
  std::string stats_path;            // where to: a file; "-" or empty: stderr
  std::string stats_json_path;       // the same as JSON; empty: none
  bool strace = false;               // a line for every system call of the tree
  std::string strace_path;           // where to: a file; "-" or empty: stderr
  std::string gdb;                   // serve PROG to gdb at this address; empty: no
};

// Returns dunk's exit status: the program's, or 125/126/127 when it could
// not be started (with one "dunk: " line on stderr). When the program was
// killed by a signal, does not return: dunk dies by the same signal.
int run_exec(const ExecOptions& options);

}  // namespace dunk::cli
