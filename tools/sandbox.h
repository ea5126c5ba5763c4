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
  // --cgroup-mem-max BYTES, --cgroup-pids-max N, --cgroup-cpu-ms-per-sec MS
  // (nsjail's): limits on the whole tree, in a cgroup v2 (sandbox/cgroup.h).
  // Empty or 0: none.
  std::string cgroup_mem_max, cgroup_pids_max, cgroup_cpu_ms_per_sec;
  bool unshare_net = false;                // a network namespace of its own (sandbox/network.h)
  std::vector<std::string> allow_connect;  // ADDR[/PREFIX]:PORT, repeatable
  std::vector<std::string> allow_bind;     // PORT, repeatable
  // --learn FILE: run allowing every call, then write the policy the run
  // needed (the --policy, or the default, is the reference it is compared to).
  std::string learn_path;

  // File system (docs/SANDBOX.md, "The file-system view"): bubblewrap's
  // --ro-bind/--bind/--dev-bind SRC [DST], in command-line order (a later
  // bind of the same destination wins); --chdir DIR, the directory in the
  // view the program starts in (default: dunk's own, if the view has it).
  // Also --*-bind-try, --tmpfs DST, --dir DST, --symlink TEXT DST, --dev
  // DST, --proc DST, --file/--bind-data/--ro-bind-data FD DST and
  // --remount-ro DST, in the same order (sandbox::BindSpec::Kind, in that
  // order too), and --perms OCTAL for the next form that makes something.
  enum class Form : std::uint8_t { kBind, kTmpfs, kDir, kSymlink, kDev, kProc, kData, kRemountRo };
  struct Bind {
    std::string option;
    std::string source;       // --symlink: the link's text; --file and co: the FD
    std::string destination;  // empty: the same as source
    bool writable = false;
    Form form = Form::kBind;
    bool optional = false;  // --*-bind-try
    int perms = -1;         // --perms before it; -1: none
  };
  std::vector<Bind> binds;
  std::string chdir;
  // A bind's SRC and DST as CLI11 hands them over, or why they are wrong.
  std::string bind_error;
  int pending_perms = -1;  // --perms given, not yet used by a form

  // The program's environment (bubblewrap's --clearenv, --setenv VAR VALUE,
  // --unsetenv VAR, in command-line order: {"", ""} clears, {VAR, VALUE}
  // sets, {VAR} unsets) and --new-session (setsid before it starts).
  std::vector<std::vector<std::string>> environment;
  bool new_session = false;
  // A bubblewrap option dunk knows and does not offer, with the reason.
  std::string unsupported;
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
