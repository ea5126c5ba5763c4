// The sandbox's second line of defence, in the host kernel (docs/SANDBOX.md,
// "The host layer"): what the supervisor in ring 0 decides is decided once
// more by the host kernel for the sandbox's host threads, so that a mistake
// in ring 0 still meets the kernel's check.
//
//   Landlock   the file-system view's trees (read-only or read-write) and
//              what dunk itself opens after the program starts, nothing
//              else: a path the supervisor let through by mistake fails
//              with EACCES
//   seccomp    the system calls the policy may allow plus those dunk needs
//              (docs/SANDBOX.md lists them), every other one kills the
//              process (SIGSYS)
//
// Both are installed on the sandbox's one thread before the program's first
// instruction; its threads and fork children inherit them.
#pragma once

#include <cstdint>
#include <string>

#include "dunk/result.h"
#include "sandbox/fs_view.h"
#include "sandbox/policy.h"

namespace dunk::sandbox {

// The Landlock ABI the running kernel offers: 0 when it has none (not
// built, or not enabled at boot).
int landlock_abi() noexcept;

// Confines the calling thread (and what it starts) to `view`'s trees, and
// to `extra_file` (read and write; empty: none) — dunk's own statistics
// file, which every process of the sandbox opens. Call with one thread.
Status apply_landlock(const FsView& view, const std::string& extra_file) noexcept;

}  // namespace dunk::sandbox
