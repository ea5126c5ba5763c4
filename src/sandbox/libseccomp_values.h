// A policy's actions and argument comparisons as libseccomp spells them,
// for code that builds the same rules with libseccomp (dunk bench's
// seccomp-bpf rows, the differential test against libseccomp's filters).
#pragma once

#include <seccomp.h>

#include <cstdint>

#include "sandbox/policy.h"

namespace dunk::sandbox {

inline std::uint32_t libseccomp_action(Action a, std::uint16_t err) noexcept {
  switch (a) {
    case Action::kKillProcess: return SCMP_ACT_KILL_PROCESS;
    case Action::kKillThread: return SCMP_ACT_KILL_THREAD;
    case Action::kTrap: return SCMP_ACT_TRAP;
    case Action::kErrno: return SCMP_ACT_ERRNO(err);
    case Action::kTrace: return SCMP_ACT_TRACE(err);
    case Action::kLog: return SCMP_ACT_LOG;
    case Action::kAllow: return SCMP_ACT_ALLOW;
  }
  return SCMP_ACT_KILL_PROCESS;
}

inline scmp_compare libseccomp_compare(Compare c) noexcept {
  switch (c) {
    case Compare::kNe: return SCMP_CMP_NE;
    case Compare::kLt: return SCMP_CMP_LT;
    case Compare::kLe: return SCMP_CMP_LE;
    case Compare::kEq: return SCMP_CMP_EQ;
    case Compare::kGe: return SCMP_CMP_GE;
    case Compare::kGt: return SCMP_CMP_GT;
    case Compare::kMaskedEq: return SCMP_CMP_MASKED_EQ;
  }
  return _SCMP_CMP_MIN;
}

}  // namespace dunk::sandbox
