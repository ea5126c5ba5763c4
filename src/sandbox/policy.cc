// Deciding a call: the part of the policy the monitor runs. No allocation,
// no system call, no lock: it reads vectors that stopped changing at load.
#include "sandbox/policy.h"

#include <linux/capability.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstdio>

namespace dunk::sandbox {
namespace {

// x32 calls set bit 30 of the number; libseccomp's x86-64 filter sends every
// number from there up, but -1, to its bad-architecture action.
constexpr unsigned kForeignAbiBit = 0x40000000u;

}  // namespace

const char* action_name(Action a) noexcept {
  switch (a) {
    case Action::kKillProcess: return "SCMP_ACT_KILL_PROCESS";
    case Action::kKillThread: return "SCMP_ACT_KILL_THREAD";
    case Action::kTrap: return "SCMP_ACT_TRAP";
    case Action::kErrno: return "SCMP_ACT_ERRNO";
    case Action::kTrace: return "SCMP_ACT_TRACE";
    case Action::kLog: return "SCMP_ACT_LOG";
    case Action::kAllow: return "SCMP_ACT_ALLOW";
  }
  return "?";
}

const char* compare_name(Compare c) noexcept {
  switch (c) {
    case Compare::kNe: return "SCMP_CMP_NE";
    case Compare::kLt: return "SCMP_CMP_LT";
    case Compare::kLe: return "SCMP_CMP_LE";
    case Compare::kEq: return "SCMP_CMP_EQ";
    case Compare::kGe: return "SCMP_CMP_GE";
    case Compare::kGt: return "SCMP_CMP_GT";
    case Compare::kMaskedEq: return "SCMP_CMP_MASKED_EQ";
  }
  return "?";
}

Decision Policy::decide(int nr, const Args& args) const noexcept {
  const Decision fallback{default_action_, default_err_, kDefaultRule};
  const auto number = static_cast<unsigned>(nr);
  if (number >= kForeignAbiBit) {
    if (nr == -1) return fallback;
    return Decision{Action::kKillThread, 0, kForeignAbiRule};
  }
  if (number >= calls_.size()) return fallback;
  const auto [first, count] = calls_[number];
  for (std::uint32_t i = first; i < first + count; ++i) {
    const Rule& rule = rules_[i];
    bool all = true;
    for (std::uint32_t k = rule.first; all && k < rule.first + rule.count; ++k) {
      const Comparison& c = comparisons_[k];
      all = c.matches(args[c.arg]);
    }
    if (all) return Decision{rule.action, rule.err, static_cast<int>(i)};
  }
  return fallback;
}

std::string_view Policy::describe_rule(int rule) const noexcept {
  if (rule == kDefaultRule) return default_description_;
  if (rule == kForeignAbiRule) return foreign_description_;
  if (rule < 0 || static_cast<std::size_t>(rule) >= descriptions_.size()) return "no such rule";
  return descriptions_[rule];
}

std::span<const Rule> Policy::rules_of(int nr) const noexcept {
  const auto number = static_cast<unsigned>(nr);
  if (number >= calls_.size()) return {};
  const auto [first, count] = calls_[number];
  return std::span<const Rule>(rules_).subspan(first, count);
}

LoadOptions LoadOptions::for_this_process(std::string_view source) {
  LoadOptions o;
  o.source = source;
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
  if (syscall(SYS_capget, &header, data) == 0) {
    o.capabilities = data[0].effective | (std::uint64_t{data[1].effective} << 32);
  }
  utsname u{};
  if (uname(&u) == 0) std::sscanf(u.release, "%u.%u", &o.kernel.major, &o.kernel.minor);
  return o;
}

}  // namespace dunk::sandbox
