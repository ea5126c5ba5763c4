// `dunk sandbox`: an untrusted, unmodified program run entirely in ring 3 of
// this process's VM, under a ring-0 supervisor that sees every system call
// it makes first (docs/SANDBOX.md).
//
//   SandboxOptions options{.policy = &policy, .path = "/usr/bin/python3", .argv = {...}, ...};
//   run_sandbox(options);   // returns only when the sandbox could not start
//
// The calling process becomes the sandbox: it reserves the untrusted region,
// enters VM mode, loads the program's ELF (and its interpreter) into the
// region itself and runs it in ring 3. The process then ends as the program
// does: with its exit status, or by the signal that kills it (SIGSYS when a
// policy violation kills it, 159 to a shell).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "sandbox/call_log.h"
#include "sandbox/limits.h"
#include "sandbox/network.h"
#include "sandbox/policy.h"
#include "sandbox/report.h"

namespace dunk::sandbox {

// What happens to a call the policy denies.
enum class OnViolation {
  kPolicy,  // what the policy's action says
  kKill,    // the process dies by SIGSYS (a shell sees 159)
  kErrno,   // the call fails: the rule's errno, or EPERM for kill and trap actions
  kLog,     // the call runs anyway, and is reported
};

struct SandboxOptions {
  const Policy* policy = nullptr;  // required
  OnViolation on_violation = OnViolation::kPolicy;
  int log_fd = 2;                  // where reports go
  LogFormat log_format = LogFormat::kText;
  std::string path;                // the program, as execve() would take it
  std::vector<std::string> argv;   // argv[0] included
  std::vector<std::string> envp;
  // ---- limits/network ----
  LimitSettings limits;  // limits.h; the host limits are set by the caller
  const NetworkPolicy* network = nullptr;  // network.h; null or inactive: no decision
  CallLog* learn = nullptr;  // --learn: where every call the program makes is noted (shared memory)
};

// Why the sandbox could not start, and the exit status for it: 125 (the
// sandbox itself), 126 (the program cannot be executed), 127 (not found).
struct StartFailure {
  int status = 125;
  std::string message;  // one line, without "dunk: "
};

// Runs the program; on success does not return (the process ends with the
// program). Call from a process that has not mapped anything below 64 TiB
// (the untrusted region) and has a single thread.
StartFailure run_sandbox(const SandboxOptions& options);

}  // namespace dunk::sandbox
