// Compiling a policy: libseccomp's reading of an OCI rule list, as runc
// builds its filter from it, turned into per-call rule lists.
//
// What libseccomp 2.5 does with the rules of one call (db.c, db_rule_add;
// runc's libcontainer/seccomp adds the rules one by one in file order):
//   - a rule whose action is the default action is refused by the library
//     (-EACCES) and skipped by runc: it changes nothing;
//   - the first rule without argument comparisons decides the call: a later
//     rule for the call is dropped, an earlier one with comparisons is
//     discarded when it arrives;
//   - rules with comparisons are merged into a tree whose levels are sorted
//     by argument, comparison and value, not by the policy's order. Where
//     two of them with different actions can match the same arguments, the
//     one libseccomp's BPF reaches first wins, or adding the second fails
//     (-EEXIST). dunk refuses such a policy instead of imitating the tree:
//     the policy's author cannot have meant either, and with exclusive
//     conditions the order does not matter — every matching rule has the
//     same action, which is what decide() returns.
//   - one rule may compare an argument once (libseccomp refuses more); runc
//     turns a rule that names an index twice into one rule per comparison,
//     and so does the loader (load.cc), with a note.
#include "sandbox/compile.h"

#include <algorithm>
#include <bit>
#include <cinttypes>
#include <cstdio>
#include <limits>
#include <utility>

#include "sandbox/syscall_names.h"

namespace dunk::sandbox {
namespace {

constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();

struct Interval {
  std::uint64_t lo, hi;
};

// The values a comparison accepts: up to two intervals, or a masked pattern.
struct ValueSet {
  bool masked = false;
  std::uint64_t mask = 0, bits = 0;  // masked: x & mask == bits
  Interval intervals[2]{};
  int count = 0;

  static ValueSet of(const Comparison& c) noexcept {
    ValueSet s;
    auto add = [&s](std::uint64_t lo, std::uint64_t hi) { s.intervals[s.count++] = {lo, hi}; };
    const std::uint64_t v = c.value;
    switch (c.op) {
      case Compare::kEq: add(v, v); break;
      case Compare::kNe:
        if (v > 0) add(0, v - 1);
        if (v < kMax) add(v + 1, kMax);
        break;
      case Compare::kLt:
        if (v > 0) add(0, v - 1);
        break;
      case Compare::kLe: add(0, v); break;
      case Compare::kGt:
        if (v < kMax) add(v + 1, kMax);
        break;
      case Compare::kGe: add(v, kMax); break;
      case Compare::kMaskedEq:
        s.masked = true;
        s.mask = c.value;
        s.bits = c.value_two & c.value;
        break;
    }
    return s;
  }
  static ValueSet everything() noexcept {
    ValueSet s;
    s.intervals[s.count++] = {0, kMax};
    return s;
  }
};

// The smallest x >= lo with (x & mask) == bits (bits within mask).
std::optional<std::uint64_t> masked_at_least(std::uint64_t mask, std::uint64_t bits,
                                             std::uint64_t lo) noexcept {
  const std::uint64_t diff = (lo ^ bits) & mask;
  if (diff == 0) return lo;
  const int p = 63 - std::countl_zero(diff);  // the highest fixed bit lo gets wrong
  const std::uint64_t below_p = (std::uint64_t{1} << p) - 1;
  auto keep_above = [lo](int q) { return q == 63 ? 0 : (lo >> (q + 1)) << (q + 1); };
  if ((bits >> p) & 1) {
    // lo has 0 where a 1 is required: raise that bit, the lowest pattern below.
    return keep_above(p) | (std::uint64_t{1} << p) | (bits & below_p);
  }
  // lo has 1 where a 0 is required: carry into the lowest free bit above p
  // that lo has clear.
  const std::uint64_t above_p = p == 63 ? 0 : ~((std::uint64_t{2} << p) - 1);
  const std::uint64_t candidates = ~lo & ~mask & above_p;
  if (candidates == 0) return std::nullopt;
  const int q = std::countr_zero(candidates);
  return keep_above(q) | (std::uint64_t{1} << q) | (bits & ((std::uint64_t{1} << q) - 1));
}

std::optional<std::uint64_t> intersect(const ValueSet& a, const ValueSet& b) noexcept {
  if (a.masked && b.masked) {
    if (((a.bits ^ b.bits) & a.mask & b.mask) != 0) return std::nullopt;
    return a.bits | b.bits;
  }
  if (a.masked || b.masked) {
    const ValueSet& m = a.masked ? a : b;
    const ValueSet& r = a.masked ? b : a;
    for (int i = 0; i < r.count; ++i) {
      auto x = masked_at_least(m.mask, m.bits, r.intervals[i].lo);
      if (x && *x <= r.intervals[i].hi) return x;
    }
    return std::nullopt;
  }
  std::optional<std::uint64_t> best;
  for (int i = 0; i < a.count; ++i) {
    for (int j = 0; j < b.count; ++j) {
      std::uint64_t lo = std::max(a.intervals[i].lo, b.intervals[j].lo);
      std::uint64_t hi = std::min(a.intervals[i].hi, b.intervals[j].hi);
      if (lo <= hi && (!best || lo < *best)) best = lo;
    }
  }
  return best;
}

const Comparison* comparison_of(const SourceRule& r, unsigned arg) noexcept {
  for (const Comparison& c : r.args) {
    if (c.arg == arg) return &c;
  }
  return nullptr;
}

std::string hex(std::uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, v < 0x10000 ? "%" PRIu64 : "0x%" PRIx64, v);
  return buf;
}

// Arguments both rules accept, or nullopt: "arg0 = 2, arg1 = 0x7fff0000".
std::optional<std::string> common_arguments(const SourceRule& a, const SourceRule& b) {
  std::string example;
  for (unsigned arg = 0; arg < 6; ++arg) {
    const Comparison* ca = comparison_of(a, arg);
    const Comparison* cb = comparison_of(b, arg);
    auto v = common_value(ca, cb);
    if (!v) return std::nullopt;
    if (ca || cb) {
      if (!example.empty()) example += ", ";
      example += "arg" + std::to_string(arg) + " = " + hex(*v);
    }
  }
  return example;
}

bool always_true(const Comparison& c) noexcept {
  // libseccomp generates no code for a masked comparison with an empty
  // mask (db.c, _db_arg_cmp_need_hi/_lo): the rule has no condition.
  return c.op == Compare::kMaskedEq && c.value == 0;
}

bool same_action(const SourceRule& r, Action a, std::uint16_t err) noexcept {
  return r.action == a && r.err == err;
}

std::string where(const SourceRule& r) { return "syscalls[" + std::to_string(r.index) + "]"; }

}  // namespace

std::optional<std::uint64_t> common_value(const Comparison* a, const Comparison* b) noexcept {
  return intersect(a ? ValueSet::of(*a) : ValueSet::everything(),
                   b ? ValueSet::of(*b) : ValueSet::everything());
}

std::string describe_comparison(const Comparison& c) {
  std::string arg = "arg" + std::to_string(c.arg);
  switch (c.op) {
    case Compare::kNe: return arg + " != " + hex(c.value);
    case Compare::kLt: return arg + " < " + hex(c.value);
    case Compare::kLe: return arg + " <= " + hex(c.value);
    case Compare::kEq: return arg + " == " + hex(c.value);
    case Compare::kGe: return arg + " >= " + hex(c.value);
    case Compare::kGt: return arg + " > " + hex(c.value);
    case Compare::kMaskedEq: return arg + " & " + hex(c.value) + " == " + hex(c.value_two & c.value);
  }
  return arg;
}

std::string describe_action(Action a, std::uint16_t err) {
  std::string s = action_name(a);
  if (a == Action::kErrno || a == Action::kTrace) s += "(" + std::to_string(err) + ")";
  return s;
}

std::optional<Policy> PolicyBuilder::build(SourcePolicy source, CompileError& error) {
  Policy p;
  p.default_action_ = source.default_action;
  p.default_err_ = source.default_err;
  p.log_flag_ = source.log_flag;
  p.notes_ = std::move(source.notes);
  p.default_description_ = "defaultAction: " + describe_action(p.default_action_, p.default_err_);
  p.foreign_description_ =
      "a call of another ABI (x32's bit 30 set): SCMP_ACT_KILL_THREAD, libseccomp's answer "
      "for an architecture the filter does not name";

  // The rules of each call, in file order; rules with the default action
  // and always-true comparisons dropped as libseccomp drops them.
  const int max_nr = x86_64_max_number();
  std::vector<std::vector<const SourceRule*>> per_call(max_nr + 1);
  std::vector<SourceRule> cleaned = std::move(source.rules);
  for (SourceRule& r : cleaned) {
    std::erase_if(r.args, always_true);
    if (same_action(r, p.default_action_, p.default_err_)) {
      p.notes_.push_back(where(r) + ": its action is the default action: it changes nothing");
      continue;
    }
    for (int nr : r.numbers) per_call[nr].push_back(&r);
  }

  p.calls_.assign(max_nr + 1, {0, 0});
  for (int nr = 0; nr <= max_nr; ++nr) {
    std::vector<const SourceRule*>& rules = per_call[nr];
    if (rules.empty()) continue;
    const char* name = x86_64_name(nr);
    auto unconditional = std::find_if(rules.begin(), rules.end(),
                                      [](const SourceRule* r) { return r->args.empty(); });
    if (unconditional != rules.end()) {
      const SourceRule* decider = *unconditional;
      for (const SourceRule* r : rules) {
        if (r != decider && !same_action(*r, decider->action, decider->err)) {
          p.notes_.push_back(where(*r) + ": " + name + ": never decides: " + where(*decider) +
                             " applies to every call of it");
        }
      }
      rules.assign(1, decider);
    } else {
      for (std::size_t i = 0; i < rules.size(); ++i) {
        for (std::size_t j = i + 1; j < rules.size(); ++j) {
          if (same_action(*rules[j], rules[i]->action, rules[i]->err)) continue;
          if (auto example = common_arguments(*rules[i], *rules[j])) {
            error.path = where(*rules[j]);
            error.reason = "rules " + where(*rules[i]) + " and " + where(*rules[j]) + " give " +
                           name + " different actions (" +
                           describe_action(rules[i]->action, rules[i]->err) + ", " +
                           describe_action(rules[j]->action, rules[j]->err) +
                           ") for the same arguments, e.g. " + *example +
                           ": libseccomp would choose by its internal rule order, not the "
                           "policy's; make their conditions exclusive";
            return std::nullopt;
          }
        }
      }
    }
    p.calls_[nr] = {static_cast<std::uint32_t>(p.rules_.size()), static_cast<std::uint32_t>(rules.size())};
    for (const SourceRule* r : rules) {
      Rule compiled{.nr = nr,
                    .action = r->action,
                    .err = r->err,
                    .first = static_cast<std::uint32_t>(p.comparisons_.size()),
                    .count = static_cast<std::uint8_t>(r->args.size()),
                    .source = r->index};
      p.comparisons_.insert(p.comparisons_.end(), r->args.begin(), r->args.end());
      std::string text = where(*r) + ": " + name + ": " + describe_action(r->action, r->err);
      for (std::size_t k = 0; k < r->args.size(); ++k) {
        text += (k == 0 ? " if " : " and ") + describe_comparison(r->args[k]);
      }
      p.rules_.push_back(compiled);
      p.descriptions_.push_back(std::move(text));
    }
  }
  return p;
}

}  // namespace dunk::sandbox
