// A sandbox policy (src/sandbox/policy.h) as the kernel's seccomp-bpf
// enforces it: libseccomp's BPF program for the policy's rules, built as
// runc builds it (tests/unit/sandbox_differential_test.cc checks that
// dunk's decide() and this program agree). For dunk bench's sandbox rows
// (bench/sandbox_bench.h) and for dunk-policy-bpf, which hands the program
// to bubblewrap (scripts/sandbox-bench).
#pragma once

#include <linux/filter.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dunk::bench {

// libseccomp's program for the policy in `json` (an OCI or Docker seccomp
// profile, read as `dunk sandbox --policy` reads it, for this process's
// capabilities and kernel); empty, with `why`, when it cannot be built.
// The program does not set no_new_privs: whoever installs it does.
std::vector<sock_filter> policy_bpf(std::string_view json, std::string& why);

// A program that sends every x86-64 system call to `action` (a
// SECCOMP_RET_* value: SECCOMP_RET_USER_NOTIF, SECCOMP_RET_TRACE) and kills
// the process at a call of another ABI: what a supervisor that decides
// every call with the policy installs.
std::vector<sock_filter> every_call_bpf(std::uint32_t action);

// Installs `program` on the calling thread, no_new_privs first; returns the
// seccomp() result (a listener descriptor with SECCOMP_FILTER_FLAG_NEW_LISTENER
// in `flags`), or -errno.
long install_bpf(const std::vector<sock_filter>& program, unsigned flags);

}  // namespace dunk::bench
