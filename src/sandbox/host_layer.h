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

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "dunk/result.h"
#include "sandbox/fs_view.h"
#include "sandbox/policy.h"
#include "sandbox/runtime.h"

namespace dunk::sandbox {

// The Landlock ABI the running kernel offers: 0 when it has none (not
// built, or not enabled at boot).
int landlock_abi() noexcept;

// Confines the calling thread (and what it starts) to `view`'s trees, to
// the files the program holds at its start (each for what its descriptor
// allows: reopened through /proc/self/fd/N), and to `extra_file` (read and
// write; empty: none) — dunk's own statistics file, which every process of
// the sandbox opens. Call with one thread.
Status apply_landlock(const FsView& view, const std::string& extra_file) noexcept;

// ---- seccomp -------------------------------------------------------------------

// What the sandbox runs with besides its policy, which adds calls dunk
// makes for the program.
struct HostFilterFor {
  bool view = false;     // a file-system view (fs_view.h)
  bool network = false;  // --unshare-net, --allow-connect or --allow-bind (network.h)
};

// The system calls the host filter lets through, in increasing order:
// those `policy` may allow (for some arguments: the filter works per call,
// ring 0 decides on the arguments), those the file-system view makes in
// their place, those the supervisor makes to decide a call the policy may
// allow (getsockname for listen under the network options), and dunk's
// own (host_layer.cc, kDunkCalls). Empty when every call may run
// (--on-violation log): then there is no filter. dunk builds the BPF
// program from this with libseccomp (tools/), which libdunk does not link.
std::vector<int> host_filter_calls(const Policy& policy, OnViolation on_violation, HostFilterFor with);

// Installs a BPF program (`count` struct sock_filter) on the calling
// thread, and with TSYNC on its others; no_new_privs first.
Status install_host_filter(const void* program, std::size_t count) noexcept;

}  // namespace dunk::sandbox
