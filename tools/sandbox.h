// `dunk sandbox`: runs an untrusted program in ring 3 of a VM under a policy
// (src/sandbox/runtime.h, docs/SANDBOX.md). dunk forks; the child becomes the
// sandbox (the program's process); dunk waits and ends as it ended.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace dunk::cli {

struct SandboxCommandOptions {
  std::vector<std::string> command;  // PROG ARGS...
  std::string policy_path;           // empty: the built-in default
  bool print_default_policy = false;
  std::string log_path;              // empty: stderr
  std::string log_format = "text";   // text | json
  std::string on_violation;          // empty: the policy's action; kill | errno | log
  bool stats = false;                // VM exits and calls on stderr when the program ends
  std::string stats_json_path;
  // Resource limits, nsjail's spellings and units (soft = hard): CPU
  // seconds, largest file in MiB. Absent: the inherited ones.
  std::optional<std::uint64_t> rlimit_cpu;
  std::optional<std::uint64_t> rlimit_fsize;

  // File system (docs/SANDBOX.md, "The file-system view"): bubblewrap's
  // --ro-bind/--bind/--dev-bind SRC [DST], in command-line order (a later
  // bind of the same destination wins); --chdir DIR, the directory in the
  // view the program starts in (default: dunk's own, if the view has it).
  struct Bind {
    std::string option;
    std::string source;
    std::string destination;  // empty: the same as source
    bool writable = false;
  };
  std::vector<Bind> binds;
  std::string chdir;
  // A bind's SRC and DST as CLI11 hands them over, or why they are wrong.
  std::string bind_error;
};

// dunk's exit status: the program's; 125 when the sandbox could not be set
// up, 126/127 when the program cannot be executed / is not found (one
// "dunk: " line on stderr each). When the program was killed by a signal —
// SIGSYS for a policy violation — dunk dies by it (a shell sees 128+N).
int run_sandbox_command(const SandboxCommandOptions& options);

}  // namespace dunk::cli
