// Reading a policy file: JSON (nlohmann, for parsing only, without
// exceptions), then every field checked against the OCI runtime-spec's
// seccomp object and Docker's profile format, then compiled (compile.cc).
//
// Every refusal names the place: the JSON path of the value to blame
// (`syscalls[12].args[0].op`) and its line and column. nlohmann 3.11 keeps
// no positions in its values, so the parser below records them while it
// reads: an iterator tells it how far the lexer has got, and each value's
// start is the first character after the previous token that is not a
// separator.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <linux/capability.h>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "sandbox/compile.h"
#include "sandbox/policy.h"
#include "sandbox/syscall_names.h"

namespace dunk::sandbox {
namespace {

using Json = nlohmann::json;

// ---- JSON with positions ------------------------------------------------------

// Walks the text for nlohmann's lexer and remembers the furthest character
// it has read.
class TrackingIterator {
 public:
  using iterator_category = std::input_iterator_tag;
  using value_type = char;
  using difference_type = std::ptrdiff_t;
  using pointer = const char*;
  using reference = const char&;

  TrackingIterator(const char* p, const char** furthest) : p_(p), furthest_(furthest) {}
  reference operator*() const { return *p_; }
  TrackingIterator& operator++() {
    ++p_;
    if (p_ > *furthest_) *furthest_ = p_;
    return *this;
  }
  TrackingIterator operator++(int) {
    TrackingIterator before = *this;
    ++*this;
    return before;
  }
  bool operator==(const TrackingIterator& o) const { return p_ == o.p_; }

 private:
  const char* p_;
  const char** furthest_;
};

struct Place {
  std::size_t key = std::string::npos;    // where the member's key starts
  std::size_t value = std::string::npos;  // where the value starts
};

// A SAX handler that builds the document with nlohmann's own DOM builder and
// records, for every value, its JSON path and where it starts.
class PositionedParser {
 public:
  using number_integer_t = Json::number_integer_t;
  using number_unsigned_t = Json::number_unsigned_t;
  using number_float_t = Json::number_float_t;
  using string_t = Json::string_t;
  using binary_t = Json::binary_t;

  PositionedParser(std::string_view text, const char** furthest, Json& root)
      : text_(text), furthest_(furthest), dom_(root, false) {}

  bool null() { return value_at() && dom_.null(); }
  bool boolean(bool v) { return value_at() && dom_.boolean(v); }
  bool number_integer(number_integer_t v) { return value_at() && dom_.number_integer(v); }
  bool number_unsigned(number_unsigned_t v) { return value_at() && dom_.number_unsigned(v); }
  bool number_float(number_float_t v, const string_t& s) { return value_at() && dom_.number_float(v, s); }
  bool string(string_t& v) { return value_at() && dom_.string(v); }
  bool binary(binary_t& v) { return value_at() && dom_.binary(v); }
  bool start_object(std::size_t n) {
    if (!value_at()) return false;
    frames_.push_back(Frame{false, path(), {}, -1, {}});
    return dom_.start_object(n);
  }
  bool key(string_t& k) {
    Frame& f = frames_.back();
    if (std::find(f.keys.begin(), f.keys.end(), k) != f.keys.end()) {
      duplicate_ = child(f, k, -1);
      places_[duplicate_].key = start();
      mark();
      return false;
    }
    f.keys.push_back(k);
    f.key = k;
    places_[child(f, k, -1)].key = start();
    mark();
    return dom_.key(k);
  }
  bool end_object() {
    frames_.pop_back();
    mark();
    return dom_.end_object();
  }
  bool start_array(std::size_t n) {
    if (!value_at()) return false;
    frames_.push_back(Frame{true, path(), {}, -1, {}});
    return dom_.start_array(n);
  }
  bool end_array() {
    frames_.pop_back();
    mark();
    return dom_.end_array();
  }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& ex) {
    error_at_ = position == 0 ? 0 : position - 1;
    error_ = ex.what();
    // "[json.exception.parse_error.101] parse error at line 1, column 2: why"
    if (auto colon = error_.find(": "); colon != std::string::npos) error_.erase(0, colon + 2);
    return false;
  }

  const std::string& error() const { return error_; }
  std::size_t error_at() const { return error_at_; }
  const std::string& duplicate() const { return duplicate_; }
  std::map<std::string, Place>& places() { return places_; }

 private:
  struct Frame {
    bool array;
    std::string path;
    std::string key;
    long index;
    std::vector<std::string> keys;
  };

  static std::string child(const Frame& f, const std::string& key, long index) {
    if (f.array) return f.path + "[" + std::to_string(index) + "]";
    return f.path.empty() ? key : f.path + "." + key;
  }
  std::string path() const {
    if (frames_.empty()) return "";
    const Frame& f = frames_.back();
    return child(f, f.key, f.index);
  }
  std::size_t consumed() const { return static_cast<std::size_t>(*furthest_ - text_.data()); }
  // The start of the token after the previous one: past blanks, ',' and ':'.
  std::size_t start() const {
    std::size_t i = mark_;
    while (i < text_.size() && std::string_view(" \t\r\n,:").find(text_[i]) != std::string_view::npos) ++i;
    return i;
  }
  void mark() { mark_ = consumed(); }
  bool value_at() {
    if (!frames_.empty() && frames_.back().array) ++frames_.back().index;
    places_[path()].value = start();
    mark();
    return true;
  }

  std::string_view text_;
  const char** furthest_;
  nlohmann::detail::json_sax_dom_parser<Json> dom_;
  std::vector<Frame> frames_;
  std::size_t mark_ = 0;
  std::map<std::string, Place> places_;
  std::string error_;
  std::size_t error_at_ = 0;
  std::string duplicate_;
};

// ---- Names --------------------------------------------------------------------

struct NamedAction {
  std::string_view name;
  Action action;
};
// SCMP_ACT_NOTIFY is known but refused (see Loader::action).
constexpr NamedAction kActions[] = {
    {"SCMP_ACT_KILL", Action::kKillThread},     {"SCMP_ACT_KILL_PROCESS", Action::kKillProcess},
    {"SCMP_ACT_KILL_THREAD", Action::kKillThread}, {"SCMP_ACT_TRAP", Action::kTrap},
    {"SCMP_ACT_ERRNO", Action::kErrno},         {"SCMP_ACT_TRACE", Action::kTrace},
    {"SCMP_ACT_ALLOW", Action::kAllow},         {"SCMP_ACT_LOG", Action::kLog},
};
constexpr std::string_view kNotify = "SCMP_ACT_NOTIFY";
constexpr std::string_view kKnownActions =
    "SCMP_ACT_KILL, SCMP_ACT_KILL_PROCESS, SCMP_ACT_KILL_THREAD, SCMP_ACT_TRAP, SCMP_ACT_ERRNO, "
    "SCMP_ACT_TRACE, SCMP_ACT_ALLOW, SCMP_ACT_LOG, SCMP_ACT_NOTIFY";

constexpr Compare kCompares[] = {Compare::kNe, Compare::kLt, Compare::kLe, Compare::kEq,
                                 Compare::kGe, Compare::kGt, Compare::kMaskedEq};
constexpr std::string_view kKnownCompares =
    "SCMP_CMP_NE, SCMP_CMP_LT, SCMP_CMP_LE, SCMP_CMP_EQ, SCMP_CMP_GE, SCMP_CMP_GT, "
    "SCMP_CMP_MASKED_EQ";

// The runtime-spec's architecture names.
constexpr std::string_view kArchitectures[] = {
    "SCMP_ARCH_X86",     "SCMP_ARCH_X86_64",    "SCMP_ARCH_X32",     "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS",      "SCMP_ARCH_MIPS64",  "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",  "SCMP_ARCH_MIPSEL64",  "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",   "SCMP_ARCH_PPC64LE",   "SCMP_ARCH_S390",    "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC",  "SCMP_ARCH_PARISC64",  "SCMP_ARCH_RISCV64", "SCMP_ARCH_LOONGARCH64",
    "SCMP_ARCH_M68K",    "SCMP_ARCH_SH",        "SCMP_ARCH_SHEB",
};
// The names Docker's includes/excludes "arches" use (libseccomp's
// architecture strings, some in Go's spelling). dunk's is "amd64".
constexpr std::string_view kDockerArches[] = {
    "x86",       "amd64",    "x32",       "arm",        "arm64",  "loong64", "loongarch64",
    "m68k",      "mips",     "mipsle",    "mipsel",     "mips64", "mips64n32", "mipsel64",
    "mipsel64n32", "mips3l64n32", "parisc", "parisc64", "ppc",    "ppc64",   "ppc64le",
    "riscv64",   "s390",     "s390x",     "sh",         "sheb",
};
constexpr std::string_view kNativeDockerArch = "amd64";

constexpr std::string_view kFlags[] = {
    "SECCOMP_FILTER_FLAG_TSYNC",      // every thread: always so under dunk
    "SECCOMP_FILTER_FLAG_LOG",        // report every decision but ALLOW
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",  // lifts a hardware mitigation: dunk keeps it
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",  // about notification listeners: none here
};

struct NamedCapability {
  std::string_view name;
  int bit;
};
constexpr NamedCapability kCapabilities[] = {
    {"CAP_CHOWN", CAP_CHOWN}, {"CAP_DAC_OVERRIDE", CAP_DAC_OVERRIDE},
    {"CAP_DAC_READ_SEARCH", CAP_DAC_READ_SEARCH}, {"CAP_FOWNER", CAP_FOWNER},
    {"CAP_FSETID", CAP_FSETID}, {"CAP_KILL", CAP_KILL}, {"CAP_SETGID", CAP_SETGID},
    {"CAP_SETUID", CAP_SETUID}, {"CAP_SETPCAP", CAP_SETPCAP},
    {"CAP_LINUX_IMMUTABLE", CAP_LINUX_IMMUTABLE}, {"CAP_NET_BIND_SERVICE", CAP_NET_BIND_SERVICE},
    {"CAP_NET_BROADCAST", CAP_NET_BROADCAST}, {"CAP_NET_ADMIN", CAP_NET_ADMIN},
    {"CAP_NET_RAW", CAP_NET_RAW}, {"CAP_IPC_LOCK", CAP_IPC_LOCK}, {"CAP_IPC_OWNER", CAP_IPC_OWNER},
    {"CAP_SYS_MODULE", CAP_SYS_MODULE}, {"CAP_SYS_RAWIO", CAP_SYS_RAWIO},
    {"CAP_SYS_CHROOT", CAP_SYS_CHROOT}, {"CAP_SYS_PTRACE", CAP_SYS_PTRACE},
    {"CAP_SYS_PACCT", CAP_SYS_PACCT}, {"CAP_SYS_ADMIN", CAP_SYS_ADMIN},
    {"CAP_SYS_BOOT", CAP_SYS_BOOT}, {"CAP_SYS_NICE", CAP_SYS_NICE},
    {"CAP_SYS_RESOURCE", CAP_SYS_RESOURCE}, {"CAP_SYS_TIME", CAP_SYS_TIME},
    {"CAP_SYS_TTY_CONFIG", CAP_SYS_TTY_CONFIG}, {"CAP_MKNOD", CAP_MKNOD}, {"CAP_LEASE", CAP_LEASE},
    {"CAP_AUDIT_WRITE", CAP_AUDIT_WRITE}, {"CAP_AUDIT_CONTROL", CAP_AUDIT_CONTROL},
    {"CAP_SETFCAP", CAP_SETFCAP}, {"CAP_MAC_OVERRIDE", CAP_MAC_OVERRIDE},
    {"CAP_MAC_ADMIN", CAP_MAC_ADMIN}, {"CAP_SYSLOG", CAP_SYSLOG},
    {"CAP_WAKE_ALARM", CAP_WAKE_ALARM}, {"CAP_BLOCK_SUSPEND", CAP_BLOCK_SUSPEND},
    {"CAP_AUDIT_READ", CAP_AUDIT_READ}, {"CAP_PERFMON", CAP_PERFMON}, {"CAP_BPF", CAP_BPF},
    {"CAP_CHECKPOINT_RESTORE", CAP_CHECKPOINT_RESTORE},
};

// The largest errno libseccomp accepts in SCMP_ACT_ERRNO (below the
// kernel's MAX_ERRNO, 4095), and the 16 bits of SCMP_ACT_TRACE's message.
constexpr std::uint64_t kMaxErrno = 4094;
constexpr std::uint64_t kMaxTraceMessage = 0xffff;
constexpr std::uint16_t kEperm = 1;

template <class Range>
bool contains(const Range& r, std::string_view s) {
  return std::find(std::begin(r), std::end(r), s) != std::end(r);
}

std::string in_quotes(std::string_view s) { return "\"" + std::string(s) + "\""; }

const char* type_name(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::object: return "an object";
    case Json::value_t::array: return "an array";
    case Json::value_t::string: return "a string";
    case Json::value_t::boolean: return "a boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned: return "an integer";
    case Json::value_t::number_float: return "a number with a fraction or exponent";
    default: return "something else";
  }
}

// ---- The loader -------------------------------------------------------------------

class Loader {
 public:
  Loader(std::string_view text, const LoadOptions& options) : text_(text), options_(options) {}

  // The policy as written, checked and filtered, before compiling.
  bool read(SourcePolicy& source) {
    Json root;
    return parse(root) && read_policy(root, source);
  }
  const std::string& error() const { return error_; }

  LoadResult run() {
    SourcePolicy source;
    if (!read(source)) return LoadResult::failure(error_);
    CompileError why;
    std::optional<Policy> policy = PolicyBuilder::build(std::move(source), why);
    if (!policy) {
      fail(why.path, why.reason);
      return LoadResult::failure(error_);
    }
    return LoadResult(std::move(*policy));
  }

 private:
  // ---- errors

  std::string location(std::size_t offset) const {
    if (offset == std::string::npos) return std::string(options_.source);
    offset = std::min(offset, text_.size());
    unsigned line = 1, column = 1;
    for (std::size_t i = 0; i < offset; ++i) {
      if (text_[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    return std::string(options_.source) + ":" + std::to_string(line) + ":" + std::to_string(column);
  }
  // Blames the value at `path` (its key with at_key, for unknown keys).
  bool fail(const std::string& path, const std::string& reason, bool at_key = false) {
    std::size_t offset = std::string::npos;
    if (auto it = places_.find(path); it != places_.end()) {
      offset = at_key && it->second.key != std::string::npos ? it->second.key : it->second.value;
      if (offset == std::string::npos) offset = it->second.key;
    }
    error_ = location(offset) + ": " + (path.empty() ? "" : path + ": ") + reason;
    return false;
  }

  // ---- JSON

  bool parse(Json& root) {
    const char* furthest = text_.data();
    PositionedParser handler(text_, &furthest, root);
    TrackingIterator first(text_.data(), &furthest), last(text_.data() + text_.size(), &furthest);
    const bool ok = Json::sax_parse(first, last, &handler);
    places_ = std::move(handler.places());
    if (!handler.duplicate().empty()) {
      return fail(handler.duplicate(), "the key appears twice in this object", true);
    }
    if (!ok) {
      error_ = location(handler.error_at()) + ": not JSON: " + handler.error();
      return false;
    }
    return true;
  }

  static std::string member_path(const std::string& path, std::string_view key) {
    return path.empty() ? std::string(key) : path + "." + std::string(key);
  }
  static std::string element_path(const std::string& path, std::size_t i) {
    return path + "[" + std::to_string(i) + "]";
  }

  bool expect(const Json& v, Json::value_t type, const std::string& path, const char* what) {
    if (v.type() == type) return true;
    return fail(path, std::string("expected ") + what + ", found " + type_name(v));
  }
  bool known_keys(const Json& object, const std::string& path,
                  std::initializer_list<std::string_view> known) {
    for (const auto& [key, value] : object.items()) {
      if (contains(known, key)) continue;
      std::string list;
      for (std::string_view k : known) list += (list.empty() ? "" : ", ") + std::string(k);
      return fail(member_path(path, key), "unknown key (known here: " + list + ")", true);
    }
    return true;
  }
  // A member, or nullptr; null reads as absent (Go's encoder writes an
  // empty list as null, and Docker's profiles have such lists).
  const Json* member(const Json& object, std::string_view key) {
    auto it = object.find(key);
    return it == object.end() || it->is_null() ? nullptr : &*it;
  }
  const Json* required(const Json& object, const std::string& path, std::string_view key) {
    const Json* v = member(object, key);
    if (!v) fail(path, in_quotes(key) + " is missing");
    return v;
  }
  std::optional<std::uint64_t> unsigned_value(const Json& v, const std::string& path) {
    if (v.is_number_unsigned()) return v.get<std::uint64_t>();
    if (v.is_number_integer()) {
      fail(path, "expected an unsigned 64-bit integer, found " + std::to_string(v.get<std::int64_t>()));
    } else if (v.is_number_float()) {
      fail(path, "expected an unsigned 64-bit integer, found " + v.dump());
    } else {
      fail(path, std::string("expected an unsigned 64-bit integer, found ") + type_name(v));
    }
    return std::nullopt;
  }
  // An array of strings, each checked by `accept(element, path)`.
  template <class Accept>
  bool strings(const Json& v, const std::string& path, Accept accept) {
    if (!expect(v, Json::value_t::array, path, "an array of strings")) return false;
    for (std::size_t i = 0; i < v.size(); ++i) {
      const std::string p = element_path(path, i);
      if (!expect(v[i], Json::value_t::string, p, "a string")) return false;
      if (!accept(v[i].get_ref<const std::string&>(), p)) return false;
    }
    return true;
  }

  // ---- the policy

  bool read_policy(const Json& root, SourcePolicy& out) {
    if (!root.is_object()) {
      return fail("", std::string("a policy is a JSON object (an OCI seccomp object or a Docker "
                                  "profile), not ") + type_name(root));
    }
    if (!known_keys(root, "", {"defaultAction", "defaultErrnoRet", "architectures", "archMap",
                               "flags", "listenerPath", "listenerMetadata", "syscalls"})) {
      return false;
    }
    for (std::string_view key : {"listenerPath", "listenerMetadata"}) {
      if (member(root, key)) {
        return fail(std::string(key),
                    "not supported: a seccomp notification listener receives the calls of "
                    "SCMP_ACT_NOTIFY rules, and dunk's supervisor decides every call itself");
      }
    }
    const Json* action_value = required(root, "", "defaultAction");
    if (!action_value) return false;
    auto action = read_action(*action_value, "defaultAction");
    if (!action) return false;
    out.default_action = *action;
    auto err = read_err(root, "", "defaultErrnoRet", *action);
    if (!err) return false;
    out.default_err = *err;

    if (!read_architectures(root)) return false;
    if (const Json* flags = member(root, "flags")) {
      bool ok = strings(*flags, "flags", [&](const std::string& f, const std::string& p) {
        if (!contains(kFlags, f)) {
          return fail(p, "unknown flag " + in_quotes(f) +
                             " (known: SECCOMP_FILTER_FLAG_TSYNC, SECCOMP_FILTER_FLAG_LOG, "
                             "SECCOMP_FILTER_FLAG_SPEC_ALLOW, SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV)");
        }
        if (f == "SECCOMP_FILTER_FLAG_LOG") out.log_flag = true;
        return true;
      });
      if (!ok) return false;
    }
    if (const Json* rules = member(root, "syscalls")) {
      if (!expect(*rules, Json::value_t::array, "syscalls", "an array of rules")) return false;
      for (std::size_t i = 0; i < rules->size(); ++i) {
        if (!read_rule((*rules)[i], static_cast<int>(i), out)) return false;
      }
    }
    return true;
  }

  std::optional<Action> read_action(const Json& v, const std::string& path) {
    if (!expect(v, Json::value_t::string, path, "a string")) return std::nullopt;
    const std::string& name = v.get_ref<const std::string&>();
    for (const NamedAction& a : kActions) {
      if (a.name == name) return a.action;
    }
    if (name == kNotify) {
      fail(path, "SCMP_ACT_NOTIFY is not supported: it hands the call to a seccomp "
                 "notification listener, and dunk's supervisor decides every call itself");
    } else {
      fail(path, "unknown action " + in_quotes(name) + " (known: " + std::string(kKnownActions) + ")");
    }
    return std::nullopt;
  }

  // errnoRet / defaultErrnoRet: EPERM unless given; only ERRNO and TRACE
  // have a value to return (the runtime-spec requires refusing it elsewhere).
  std::optional<std::uint16_t> read_err(const Json& object, const std::string& path,
                                        std::string_view key, Action action) {
    const Json* v = member(object, key);
    const bool has_value = action == Action::kErrno || action == Action::kTrace;
    if (!v) return has_value ? kEperm : 0;
    const std::string p = member_path(path, key);
    if (!has_value) {
      fail(p, std::string("only SCMP_ACT_ERRNO and SCMP_ACT_TRACE return a value; the action "
                          "here is ") + action_name(action));
      return std::nullopt;
    }
    auto n = unsigned_value(*v, p);
    if (!n) return std::nullopt;
    if (action == Action::kErrno && *n > kMaxErrno) {
      fail(p, std::to_string(*n) + " is not an errno libseccomp accepts (0 to 4094)");
      return std::nullopt;
    }
    if (*n > kMaxTraceMessage) {
      fail(p, std::to_string(*n) + " does not fit the 16 bits a tracer reads");
      return std::nullopt;
    }
    return static_cast<std::uint16_t>(*n);
  }

  bool read_architectures(const Json& root) {
    const Json* list = member(root, "architectures");
    const Json* map = member(root, "archMap");
    if (list && map) {
      return fail("archMap", "both \"architectures\" and \"archMap\" are given; use one");
    }
    auto known = [this](const std::string& a, const std::string& p) {
      if (contains(kArchitectures, a)) return true;
      return fail(p, "unknown architecture " + in_quotes(a));
    };
    // Only x86-64 calls are ever decided (decide() answers other ABIs
    // itself), so the names are checked and otherwise change nothing.
    if (list) return strings(*list, "architectures", known);
    if (!map) return true;
    if (!expect(*map, Json::value_t::array, "archMap", "an array")) return false;
    for (std::size_t i = 0; i < map->size(); ++i) {
      const std::string p = element_path("archMap", i);
      const Json& entry = (*map)[i];
      if (!expect(entry, Json::value_t::object, p, "an object")) return false;
      if (!known_keys(entry, p, {"architecture", "subArchitectures"})) return false;
      const Json* arch = required(entry, p, "architecture");
      if (!arch) return false;
      const std::string ap = member_path(p, "architecture");
      if (!expect(*arch, Json::value_t::string, ap, "a string")) return false;
      if (!known(arch->get_ref<const std::string&>(), ap)) return false;
      if (const Json* subs = member(entry, "subArchitectures")) {
        if (!strings(*subs, member_path(p, "subArchitectures"), known)) return false;
      }
    }
    return true;
  }

  bool read_rule(const Json& rule, int index, SourcePolicy& out) {
    const std::string path = element_path("syscalls", index);
    if (!expect(rule, Json::value_t::object, path, "an object")) return false;
    if (!known_keys(rule, path, {"names", "name", "action", "errnoRet", "args", "comment",
                                 "includes", "excludes"})) {
      return false;
    }
    SourceRule r;
    r.index = index;
    if (const Json* comment = member(rule, "comment")) {
      if (!expect(*comment, Json::value_t::string, member_path(path, "comment"), "a string")) return false;
    }
    const Json* action = required(rule, path, "action");
    if (!action) return false;
    auto a = read_action(*action, member_path(path, "action"));
    if (!a) return false;
    r.action = *a;
    auto err = read_err(rule, path, "errnoRet", r.action);
    if (!err) return false;
    r.err = *err;

    std::vector<std::string> other_names;
    if (!read_names(rule, path, r, other_names)) return false;
    bool split = false;
    if (const Json* args = member(rule, "args")) {
      if (!read_args(*args, member_path(path, "args"), r.args, split)) return false;
    }
    std::string reason;
    bool applies = true;
    for (std::string_view which : {"excludes", "includes"}) {
      if (const Json* filter = member(rule, which)) {
        if (!read_filter(*filter, member_path(path, which), which == "includes", applies, reason)) {
          return false;
        }
      }
    }
    if (!applies) {
      out.notes.push_back(path + ": left out: " + reason);
      return true;
    }
    if (!other_names.empty()) {
      std::string list;
      for (const std::string& n : other_names) list += (list.empty() ? "" : ", ") + n;
      out.notes.push_back(path + ": not x86-64 calls, ignored: " + list);
    }
    if (split) {
      out.notes.push_back(path + ": args compares one argument more than once: as runc does, "
                                 "each comparison is a rule of its own (any one suffices)");
      for (const Comparison& c : r.args) {
        SourceRule one = r;
        one.args.assign(1, c);
        out.rules.push_back(std::move(one));
      }
    } else {
      out.rules.push_back(std::move(r));
    }
    return true;
  }

  bool read_names(const Json& rule, const std::string& path, SourceRule& r,
                  std::vector<std::string>& other_names) {
    const Json* names = member(rule, "names");
    const Json* name = member(rule, "name");
    if (names && name) return fail(path, "both \"name\" and \"names\" are given; use \"names\"");
    if (!names && !name) return fail(path, "\"names\" is missing");
    auto add = [&](const std::string& n, const std::string& p) {
      if (auto nr = x86_64_number(n)) {
        r.numbers.push_back(*nr);
        r.names.push_back(n);
        return true;
      }
      if (is_other_linux_call(n)) {
        other_names.push_back(n);
        return true;
      }
      return fail(p, "unknown system call " + in_quotes(n));
    };
    if (name) {
      const std::string p = member_path(path, "name");
      return expect(*name, Json::value_t::string, p, "a string") &&
             add(name->get_ref<const std::string&>(), p);
    }
    const std::string p = member_path(path, "names");
    if (!strings(*names, p, add)) return false;
    if (names->empty()) return fail(p, "no system call named: the list is empty");
    return true;
  }

  bool read_args(const Json& args, const std::string& path, std::vector<Comparison>& out,
                 bool& split) {
    if (!expect(args, Json::value_t::array, path, "an array of comparisons")) return false;
    bool seen[6] = {};
    for (std::size_t i = 0; i < args.size(); ++i) {
      const std::string p = element_path(path, i);
      const Json& arg = args[i];
      if (!expect(arg, Json::value_t::object, p, "an object")) return false;
      if (!known_keys(arg, p, {"index", "value", "valueTwo", "op"})) return false;
      Comparison c;
      const Json* index = required(arg, p, "index");
      if (!index) return false;
      auto n = unsigned_value(*index, member_path(p, "index"));
      if (!n) return false;
      if (*n > 5) return fail(member_path(p, "index"), std::to_string(*n) + " is not an argument index (0 to 5)");
      c.arg = static_cast<std::uint8_t>(*n);
      const Json* value = required(arg, p, "value");
      if (!value) return false;
      auto v = unsigned_value(*value, member_path(p, "value"));
      if (!v) return false;
      c.value = *v;
      if (const Json* two = member(arg, "valueTwo")) {
        auto v2 = unsigned_value(*two, member_path(p, "valueTwo"));
        if (!v2) return false;
        c.value_two = *v2;
      }
      const Json* op = required(arg, p, "op");
      if (!op) return false;
      const std::string op_path = member_path(p, "op");
      if (!expect(*op, Json::value_t::string, op_path, "a string")) return false;
      const std::string& op_name = op->get_ref<const std::string&>();
      auto known = std::find_if(std::begin(kCompares), std::end(kCompares),
                                [&](Compare k) { return op_name == compare_name(k); });
      if (known == std::end(kCompares)) {
        return fail(op_path, "unknown comparison " + in_quotes(op_name) + " (known: " +
                                 std::string(kKnownCompares) + ")");
      }
      c.op = *known;
      if (seen[c.arg]) split = true;
      seen[c.arg] = true;
      out.push_back(c);
    }
    return true;
  }

  // Docker's includes/excludes, read as Docker reads them for a default
  // container (moby's seccomp profile loader): an exclusion drops the rule
  // when any of its conditions holds, an inclusion keeps it only when all do.
  bool read_filter(const Json& filter, const std::string& path, bool include, bool& applies,
                   std::string& reason) {
    if (!expect(filter, Json::value_t::object, path, "an object")) return false;
    if (!known_keys(filter, path, {"caps", "arches", "minKernel"})) return false;
    auto note = [&](const std::string& why) {
      if (applies) reason = why;
      applies = false;
    };
    if (const Json* arches = member(filter, "arches")) {
      bool native = false;
      const std::string p = member_path(path, "arches");
      bool ok = strings(*arches, p, [&](const std::string& a, const std::string& ap) {
        if (!contains(kDockerArches, a)) return fail(ap, "unknown architecture " + in_quotes(a));
        native = native || a == kNativeDockerArch;
        return true;
      });
      if (!ok) return false;
      if (include && !arches->empty() && !native) note(p + " does not name amd64");
      if (!include && native) note(p + " names amd64");
    }
    if (const Json* caps = member(filter, "caps")) {
      const std::string p = member_path(path, "caps");
      bool ok = strings(*caps, p, [&](const std::string& c, const std::string& cp) {
        auto it = std::find_if(std::begin(kCapabilities), std::end(kCapabilities),
                               [&](const NamedCapability& k) { return k.name == c; });
        if (it == std::end(kCapabilities)) return fail(cp, "unknown capability " + in_quotes(c));
        const bool held = (options_.capabilities >> it->bit) & 1;
        if (include && !held) note(p + ": " + c + " is not held");
        if (!include && held) note(p + ": " + c + " is held");
        return true;
      });
      if (!ok) return false;
    }
    if (const Json* min = member(filter, "minKernel")) {
      const std::string p = member_path(path, "minKernel");
      if (!expect(*min, Json::value_t::string, p, "a string")) return false;
      auto version = kernel_version(min->get_ref<const std::string&>());
      if (!version) {
        return fail(p, in_quotes(min->get_ref<const std::string&>()) +
                           " is not a kernel version \"<kernel>.<major>\"");
      }
      if (version->major != 0 || version->minor != 0) {
        const bool at_least = options_.kernel.at_least(*version);
        const std::string running =
            std::to_string(options_.kernel.major) + "." + std::to_string(options_.kernel.minor);
        if (include && !at_least) note(p + ": the kernel is " + running);
        if (!include && at_least) note(p + ": the kernel is " + running);
      }
    }
    return true;
  }

  // "4.8" → {4, 8}; "" → {0, 0} (no condition), as Docker reads it. Each
  // part an integer below 256; 0.0 is refused.
  static std::optional<KernelVersion> kernel_version(const std::string& s) {
    if (s.empty()) return KernelVersion{};
    unsigned major = 0, minor = 0;
    int used = 0;
    if (std::sscanf(s.c_str(), "%3u.%3u%n", &major, &minor, &used) != 2 ||
        static_cast<std::size_t>(used) != s.size() || !std::isdigit(static_cast<unsigned char>(s[0])) ||
        major > 255 || minor > 255 || (major == 0 && minor == 0) ||
        s.find_first_not_of("0123456789.") != std::string::npos) {
      return std::nullopt;
    }
    return KernelVersion{major, minor};
  }

  std::string_view text_;
  const LoadOptions& options_;
  std::map<std::string, Place> places_;
  std::string error_;
};

}  // namespace

bool read_source_policy(std::string_view json, const LoadOptions& options, SourcePolicy& out,
                        std::string& error) {
  Loader loader(json, options);
  if (loader.read(out)) return true;
  error = loader.error();
  return false;
}

LoadResult load_policy_text(std::string_view json, const LoadOptions& options) {
  return Loader(json, options).run();
}

LoadResult load_policy_file(const std::string& path, LoadOptions options) {
  options.source = path;
  std::ifstream in(path, std::ios::binary);
  if (!in) return LoadResult::failure(path + ": cannot read the policy: " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return LoadResult::failure(path + ": cannot read the policy: " + std::strerror(errno));
  return load_policy_text(text.str(), options);
}

}  // namespace dunk::sandbox
