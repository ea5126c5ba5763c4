// dunk bench's sandbox rows (issue 9, "Benchmarks"): one allowed and one
// denied system call under `dunk sandbox` against the same policy enforced
// by seccomp-bpf in the kernel, by a seccomp user-notification supervisor
// and by a ptrace supervisor, with native execution (no policy) as the base.
//
//   policy    dunk's built-in default with getppid denied: ERRNO(EACCES)
//   allowed   getpid        denied   getppid      (bench/sandbox_loop.h)
//
// Every way runs the same loop (bench/sandbox_loop.h) in a process of its
// own, which times itself; dunk's way is `dunk sandbox` running
// dunk-sandbox-loop, whose statistics give the exact VM exits per call.
// Opt-in (--only "sandbox"): each way starts processes, and dunk's starts a
// sandbox four times.
#pragma once

#include <cstdint>

#include "bench/bench.h"

namespace dunk::bench {

// The rows' policy, as a policy file holds it.
std::string sandbox_rows_policy();

// Appends the rows when options.only asks for them by name.
void run_sandbox_rows(std::uint64_t iterations, const Options& options, Report& report);

}  // namespace dunk::bench
