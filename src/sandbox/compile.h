// From a parsed policy to the decision structure (PolicyBuilder), and the
// satisfiability test it refuses ambiguous policies with (common_value).
// Internal to the layer: load.cc parses into a SourcePolicy, this compiles it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sandbox/policy.h"

namespace dunk::sandbox {

// One rule of the policy file as written, after Docker's includes/excludes
// kept it and its names were looked up.
struct SourceRule {
  int index = 0;                   // syscalls[index]
  std::vector<int> numbers;        // the x86-64 numbers of its names
  std::vector<std::string> names;  // the same names, for descriptions
  Action action = Action::kAllow;
  std::uint16_t err = 0;
  std::vector<Comparison> args;    // in the file's order
};

struct SourcePolicy {
  Action default_action = Action::kErrno;
  std::uint16_t default_err = 1;
  bool log_flag = false;
  std::vector<SourceRule> rules;
  std::vector<std::string> notes;
};

// Reads a policy as load_policy_text does, without compiling it: the rules
// in file order, after Docker's includes/excludes and runc's splitting (for
// tests that build the same rules with libseccomp).
bool read_source_policy(std::string_view json, const LoadOptions& options, SourcePolicy& out,
                        std::string& error);

// Why compiling failed: the JSON path of the rule to blame and the reason.
struct CompileError {
  std::string path;
  std::string reason;
};

class PolicyBuilder {
 public:
  // Compiles `source` with libseccomp's reading (docs/POLICY.md, "What a
  // policy means"); on failure `error` says why and the result is empty.
  static std::optional<Policy> build(SourcePolicy source, CompileError& error);
};

// A value of one argument that satisfies both comparisons (either may be
// absent: no constraint), or nullopt when none does. The smallest such
// value, so error messages and tests are deterministic.
std::optional<std::uint64_t> common_value(const Comparison* a, const Comparison* b) noexcept;

// "arg0 & 0x7e020000 == 0", "arg1 != 0x5412".
std::string describe_comparison(const Comparison& c);
// "SCMP_ACT_ERRNO(1)", "SCMP_ACT_ALLOW".
std::string describe_action(Action a, std::uint16_t err);

}  // namespace dunk::sandbox
