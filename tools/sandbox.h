// `dunk sandbox`: runs an untrusted program in ring 3 of a VM under a policy
// (src/sandbox/runtime.h, docs/SANDBOX.md). dunk forks; the child becomes the
// sandbox (the program's process); dunk waits and ends as it ended.
#pragma once

#include <array>
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
  // ---- limits/network ----
  // --rlimit-as, -cpu, -fsize, -nofile, -nproc, -stack as given (in the
  // order of sandbox::limit_options()), nsjail's values and units: a
  // number, max/hard, def/soft or inf. Empty: the inherited limit.
  std::array<std::string, 6> rlimits;
  std::string time_limit;   // --time-limit SECONDS (wall clock); empty or 0: none
  std::string max_threads;  // --max-threads N; empty: no limit
  bool unshare_net = false;                // no network (sandbox/network.h)
  std::vector<std::string> allow_connect;  // ADDR[/PREFIX]:PORT, repeatable
  std::vector<std::string> allow_bind;     // PORT, repeatable
  // --learn FILE: run allowing every call, then write the policy the run
  // needed (the --policy, or the default, is the reference it is compared to).
  std::string learn_path;
};

// The --rlimit-* options, in SandboxCommandOptions::rlimits' order.
struct RlimitOption {
  const char* name;       // "--rlimit-as"
  const char* unit_name;  // "MiB", "N", "SECONDS"
};
RlimitOption rlimit_option(std::size_t index);

// dunk's exit status: the program's; 124 when --time-limit ended it; 125
// when the sandbox could not be set up, 126/127 when the program cannot be
// executed / is not found (one "dunk: " line on stderr each). When the program was killed by a signal —
// SIGSYS for a policy violation — dunk dies by it (a shell sees 128+N).
int run_sandbox_command(const SandboxCommandOptions& options);

}  // namespace dunk::cli
