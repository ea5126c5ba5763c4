// Finding the program `dunk exec` is asked to run, and refusing, before
// anything is started, programs that would silently run outside VM mode.
#pragma once

#include <string>

namespace dunk::cli {

// Exit statuses, as shells use them.
inline constexpr int kExitCannotRun = 125;       // dunk itself failed, or VM mode is unavailable
inline constexpr int kExitNotExecutable = 126;
inline constexpr int kExitNotFound = 127;

struct Program {
  std::string path;   // what to execve(); empty when refused
  int status = 0;     // exit status when refused
  std::string error;  // "PROG: reason", when refused

  bool ok() const { return error.empty(); }
};

// Resolves `name` as execvp() would (PATH search when it has no slash) and
// checks that what it finds can run in VM mode: dunk enters VM mode through
// the dynamic linker (LD_PRELOAD), which static executables lack and which
// ignores LD_PRELOAD in set-user-ID programs. A script is checked through its
// interpreter.
Program find_program(const std::string& name);

}  // namespace dunk::cli
