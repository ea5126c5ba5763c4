// --learn's writer: the policy a run needs, as an OCI seccomp object.
#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "sandbox/policy.h"
#include "sandbox/syscall_names.h"

namespace dunk::sandbox {

std::string learn_policy(std::span<const ObservedCall> calls, const Policy* reference,
                         std::string_view reference_name) {
  // The first arguments of each call, in number order.
  std::map<int, const Args*> first;
  for (const ObservedCall& c : calls) first.emplace(c.nr, &c.first_args);

  std::vector<std::string> within, beyond, unnamed;
  std::string why_beyond;
  for (const auto& [nr, args] : first) {
    const char* name = x86_64_name(nr);
    if (!name) {
      unnamed.push_back(std::to_string(nr));
      continue;
    }
    if (reference) {
      const Decision d = reference->decide(nr, *args);
      if (denies(d.action)) {
        beyond.emplace_back(name);
        continue;
      }
    }
    within.emplace_back(name);
  }
  std::sort(within.begin(), within.end());
  std::sort(beyond.begin(), beyond.end());

  // ordered_json keeps the keys in the order a reader expects them.
  using Json = nlohmann::ordered_json;
  Json policy;
  policy["defaultAction"] = "SCMP_ACT_ERRNO";
  policy["defaultErrnoRet"] = 1;
  policy["architectures"] = Json::array({"SCMP_ARCH_X86_64"});
  Json rules = Json::array();
  std::string comment = "the calls the learning run made";
  if (!unnamed.empty()) {
    comment += "; numbers without a name, which a policy cannot allow:";
    for (const std::string& n : unnamed) comment += " " + n;
  }
  if (!within.empty() || !unnamed.empty()) {
    Json rule;
    rule["names"] = within;
    rule["action"] = "SCMP_ACT_ALLOW";
    rule["comment"] = comment;
    // A rule must name a call: with only unnamed numbers, the comment goes
    // on the next rule, or there is no rule at all.
    if (!within.empty()) rules.push_back(rule);
  }
  if (!beyond.empty()) {
    Json rule;
    rule["names"] = beyond;
    rule["action"] = "SCMP_ACT_ALLOW";
    rule["comment"] = "calls the learning run made that " + std::string(reference_name) +
                      " denies with the arguments they were first made with";
    rules.push_back(rule);
  }
  // A program of more than one thread or process waits on a futex when a
  // lock or a wait is contended, which depends on timing: a run that never
  // met contention still needs the call the next time.
  const auto made = [&](std::string_view name) {
    return std::any_of(first.begin(), first.end(), [&](const auto& call) {
      const char* n = x86_64_name(call.first);
      return n != nullptr && name == n;
    });
  };
  if (!made("futex") && (made("clone") || made("clone3") || made("fork") || made("vfork"))) {
    Json rule;
    rule["names"] = Json::array({"futex"});
    rule["action"] = "SCMP_ACT_ALLOW";
    rule["comment"] =
        "not made by the learning run, which made other threads or processes: their futex waits come with "
        "contention, which depends on timing";
    rules.push_back(rule);
  }
  policy["syscalls"] = rules;
  return policy.dump(2) + "\n";
}

}  // namespace dunk::sandbox
