// The sandbox's policy: which system calls the untrusted program may make,
// with which arguments, and what happens to the others.
//
//   policy file (OCI seccomp object, or Docker's profile format)
//     │ load_policy_file / load_policy_text (load.cc): parse, check, apply
//     │ Docker's includes/excludes for the caller's capabilities and kernel
//     ▼
//   Policy: per call number, an ordered list of rules (compiled at load)
//     │ decide(nr, args): noexcept, no allocation, no system call,
//     ▼ O(rules of that call) — usable in the monitor and in ring 0
//   Decision{action, err, rule}
//
// What a policy means is libseccomp's reading of it (the library runc and
// Docker build their filters with), and tests/unit/sandbox_differential_test.cc
// compares decide() with the BPF program libseccomp generates for the same
// policy. docs/POLICY.md describes the format, each action under dunk, and
// the few policies dunk refuses where libseccomp would guess.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dunk::sandbox {

// What happens to a call (OCI's SCMP_ACT_*), from the most to the least
// restrictive — the order in which the kernel ranks actions when several
// filters disagree.
enum class Action : std::uint8_t {
  kKillProcess,  // SCMP_ACT_KILL_PROCESS: the process dies by SIGSYS
  kKillThread,   // SCMP_ACT_KILL, SCMP_ACT_KILL_THREAD: the calling thread
                 // ends as by SIGSYS (the process with it if it was the last)
  kTrap,         // SCMP_ACT_TRAP: the call does not run; the thread takes
                 // SIGSYS (si_code SYS_SECCOMP) as the kernel would send it
  kErrno,        // SCMP_ACT_ERRNO: the call does not run and returns -err
  kTrace,        // SCMP_ACT_TRACE: asks a ptrace tracer; no tracer ever sees
                 // a sandboxed call, so, as the kernel does without a
                 // tracer, the call fails with ENOSYS (err is the message
                 // a tracer would have read)
  kLog,          // SCMP_ACT_LOG: runs, and is reported
  kAllow,        // SCMP_ACT_ALLOW: runs
};
inline constexpr std::size_t kActionCount = 7;

// The OCI spelling ("SCMP_ACT_ERRNO"); SCMP_ACT_KILL reads as kKillThread
// and is spelled SCMP_ACT_KILL_THREAD.
const char* action_name(Action a) noexcept;
// True for the actions after which the call does not run.
constexpr bool denies(Action a) noexcept { return a != Action::kAllow && a != Action::kLog; }

// An argument comparison (OCI's SCMP_CMP_*). Every comparison reads all 64
// bits of the argument register, as libseccomp does on x86-64.
enum class Compare : std::uint8_t { kNe, kLt, kLe, kEq, kGe, kGt, kMaskedEq };
const char* compare_name(Compare c) noexcept;

struct Comparison {
  std::uint8_t arg = 0;  // 0..5
  Compare op = Compare::kEq;
  std::uint64_t value = 0;      // the datum; for kMaskedEq the mask
  std::uint64_t value_two = 0;  // for kMaskedEq the datum (only its bits
                                // under the mask count, as in libseccomp)

  constexpr bool matches(std::uint64_t x) const noexcept {
    switch (op) {
      case Compare::kNe: return x != value;
      case Compare::kLt: return x < value;
      case Compare::kLe: return x <= value;
      case Compare::kEq: return x == value;
      case Compare::kGe: return x >= value;
      case Compare::kGt: return x > value;
      case Compare::kMaskedEq: return (x & value) == (value_two & value);
    }
    return false;
  }
};

using Args = std::array<std::uint64_t, 6>;

// Which rule decided: an index into the policy's rules, or one of these.
inline constexpr int kDefaultRule = -1;      // the policy's defaultAction
inline constexpr int kForeignAbiRule = -2;   // a number of another ABI (x32)

struct Decision {
  Action action = Action::kKillProcess;
  // ERRNO: the errno the call returns; TRACE: the tracer's message; TRAP:
  // the signal's si_errno; 0 otherwise.
  std::uint16_t err = 0;
  int rule = kDefaultRule;
  constexpr bool operator==(const Decision&) const noexcept = default;
};

// A rule as compiled: one call number, its action, the comparisons that must
// all hold (none: it always applies), and where it came from.
struct Rule {
  int nr = 0;
  Action action = Action::kAllow;
  std::uint16_t err = 0;
  std::uint32_t first = 0;  // into Policy::comparisons()
  std::uint8_t count = 0;
  int source = 0;           // its index in the policy's syscalls[]
};

class Policy {
 public:
  // The decision for call `nr` (as the kernel decodes RAX: its low 32 bits,
  // signed) with these argument registers. An x86-64 number gets its first
  // matching rule, or the default; a number with x32's bit 30 set (or any
  // other above it, but -1) is another ABI's, which the sandbox never runs:
  // it gets libseccomp's answer for a foreign ABI, SCMP_ACT_KILL_THREAD.
  Decision decide(int nr, const Args& args) const noexcept;

  // "syscalls[18]: clone: SCMP_ACT_ALLOW if arg0 & 0x7e020000 == 0" for a
  // Decision's rule (and texts for kDefaultRule, kForeignAbiRule). Built at
  // load time: the view costs nothing and allocates nothing.
  std::string_view describe_rule(int rule) const noexcept;

  Action default_action() const noexcept { return default_action_; }
  std::uint16_t default_err() const noexcept { return default_err_; }
  // SECCOMP_FILTER_FLAG_LOG: report every decision but ALLOW.
  bool log_flag() const noexcept { return log_flag_; }

  std::span<const Rule> rules() const noexcept { return rules_; }
  std::span<const Comparison> comparisons() const noexcept { return comparisons_; }
  // The rules of call `nr`, in the order decide() tries them.
  std::span<const Rule> rules_of(int nr) const noexcept;

  // What loading noticed but did not refuse, one line each: rules Docker's
  // includes/excludes left out, names that are no x86-64 call, runc's
  // reading of one argument compared twice, rules that can never decide.
  std::span<const std::string> notes() const noexcept { return notes_; }

 private:
  friend class PolicyBuilder;

  Action default_action_ = Action::kErrno;
  std::uint16_t default_err_ = 1;
  bool log_flag_ = false;
  // calls_[nr] = {first rule, rule count} for nr in [0, calls_.size()).
  std::vector<std::pair<std::uint32_t, std::uint32_t>> calls_;
  std::vector<Rule> rules_;
  std::vector<Comparison> comparisons_;
  std::vector<std::string> descriptions_;  // one per rule
  std::string default_description_;
  std::string foreign_description_;
  std::vector<std::string> notes_;
};

// ---- Loading ----------------------------------------------------------------

struct KernelVersion {
  unsigned major = 0;
  unsigned minor = 0;
  constexpr bool at_least(KernelVersion v) const noexcept {
    return major > v.major || (major == v.major && minor >= v.minor);
  }
};

// What Docker's per-rule includes/excludes are evaluated against. Docker
// asks the container's capability set and the host's kernel; under dunk the
// program runs with the caller's credentials on the running kernel, so the
// command passes the caller's effective capabilities and the kernel's
// release (LoadOptions::for_this_process). Tests pass their own.
struct LoadOptions {
  std::string_view source = "policy";  // the name errors begin with
  std::uint64_t capabilities = 0;      // bit N: capability N (linux/capability.h)
  KernelVersion kernel{};

  // The effective capabilities of this process and the running kernel.
  static LoadOptions for_this_process(std::string_view source);
};

// A policy, or why it was refused: one line, "SOURCE:LINE:COLUMN: PATH:
// reason" (the place omitted where there is none), ready for stderr.
class LoadResult {
 public:
  LoadResult(Policy p) : policy_(std::move(p)) {}  // NOLINT: implicit by design
  static LoadResult failure(std::string why) {
    LoadResult r;
    r.error_ = std::move(why);
    return r;
  }
  bool ok() const noexcept { return policy_.has_value(); }
  explicit operator bool() const noexcept { return ok(); }
  Policy& value() & noexcept { return *policy_; }
  Policy&& value() && noexcept { return std::move(*policy_); }
  Policy* operator->() noexcept { return &*policy_; }
  const std::string& error() const noexcept { return error_; }

 private:
  LoadResult() = default;
  std::optional<Policy> policy_;
  std::string error_;
};

LoadResult load_policy_text(std::string_view json, const LoadOptions& options);
// Reads `path` (LoadOptions::source is replaced by the path).
LoadResult load_policy_file(const std::string& path, LoadOptions options);

// ---- The built-in default ----------------------------------------------------

// dunk's default policy as written (src/sandbox/default_policy.json, embedded
// at build time): what `dunk sandbox --print-default-policy` prints.
std::string_view default_policy_text() noexcept;
LoadResult load_default_policy(const LoadOptions& options);

// ---- Learning ----------------------------------------------------------------

// A call a run made, with the arguments it first made it with.
struct ObservedCall {
  int nr = 0;
  Args first_args{};
};

// The smallest policy that lets a run which made `calls` pass: every call it
// made is allowed, every other one fails with EPERM. Names are sorted and
// grouped: the calls `reference` (dunk's default, normally) would also have
// allowed with the arguments they were first made with, then, in a rule of
// their own with a comment, those it would have denied — what the run needed
// beyond the reference (`reference_name` in its comment). Deterministic;
// loads back with load_policy_text.
std::string learn_policy(std::span<const ObservedCall> calls, const Policy* reference,
                         std::string_view reference_name = "dunk's default policy");

}  // namespace dunk::sandbox
