#include "sandbox/limits.h"

#include <sys/syscall.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>

#include "base/syscall.h"
#include "sandbox/supervisor.h"

namespace dunk::sandbox {

// ---- The command line --------------------------------------------------------

namespace {

constexpr std::uint64_t kMiB = std::uint64_t{1} << 20;

constexpr std::array<LimitOption, 6> kOptions = {{
    {"--rlimit-as", RLIMIT_AS, kMiB, "MiB"},
    {"--rlimit-cpu", RLIMIT_CPU, 1, "seconds"},
    {"--rlimit-fsize", RLIMIT_FSIZE, kMiB, "MiB"},
    {"--rlimit-nofile", RLIMIT_NOFILE, 1, "descriptors"},
    {"--rlimit-nproc", RLIMIT_NPROC, 1, "processes"},
    {"--rlimit-stack", RLIMIT_STACK, kMiB, "MiB"},
}};

bool same_word(std::string_view text, std::string_view word) noexcept {
  if (text.size() != word.size()) return false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i] >= 'A' && text[i] <= 'Z' ? static_cast<char>(text[i] - 'A' + 'a') : text[i];
    if (c != word[i]) return false;
  }
  return true;
}

ParsedLimit keyword(std::uint64_t value) {
  ParsedLimit p;
  p.ok = true;
  p.value = value;
  p.keyword = true;
  return p;
}

ParsedLimit bad(std::string why) {
  ParsedLimit p;
  p.error = std::move(why);
  return p;
}

}  // namespace

const std::array<LimitOption, 6>& limit_options() noexcept { return kOptions; }

ParsedLimit parse_limit(std::string_view text, std::uint64_t unit, const rlimit& current) {
  // nsjail compares the words without case.
  if (same_word(text, "inf")) return keyword(kNoLimit);
  if (same_word(text, "def") || same_word(text, "soft")) return keyword(current.rlim_cur);
  if (same_word(text, "max") || same_word(text, "hard")) return keyword(current.rlim_max);
  if (text.empty()) return bad("an empty value (a number, or max, hard, def, soft or inf)");
  std::uint64_t n = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') {
      return bad("'" + std::string(text) + "' is not a number (nor max, hard, def, soft or inf)");
    }
    const auto digit = static_cast<std::uint64_t>(c - '0');
    if (n > (kNoLimit - digit) / 10) return bad("'" + std::string(text) + "' is too large");
    n = n * 10 + digit;
  }
  // RLIM_INFINITY is the largest value; a limit must stay below it.
  if (unit != 0 && n > (kNoLimit - 1) / unit) return bad("'" + std::string(text) + "' is too large");
  ParsedLimit p;
  p.ok = true;
  p.value = n * unit;
  return p;
}

// ---- The runtime -------------------------------------------------------------

void Limits::configure(const LimitSettings& settings) noexcept {
  settings_ = settings;
  if (settings.address_space_set) {
    address_space_ = settings.address_space;
  } else {
    // What the process inherited: the program's own, as natively.
    rlimit inherited{kNoLimit, kNoLimit};
    sys::call(SYS_prlimit64, 0, RLIMIT_AS, 0, reinterpret_cast<long>(&inherited));
    address_space_ = inherited;
  }
  nofile_hard_ = settings.nofile_set ? settings.nofile_hard : kNoLimit;
}

namespace {

void answer(ProgramThread& t, long value) noexcept { t.frame.rax = static_cast<std::uint64_t>(value); }

const char* option_of(unsigned resource) noexcept {
  for (const LimitOption& o : kOptions) {
    if (o.resource == static_cast<int>(resource)) return o.name;
  }
  return "a limit";
}

// A hard limit raised past what dunk set: refused, whoever the program runs
// as (natively root could).
void refuse_raise(ProgramThread& t, const abi::Call& call, unsigned resource, std::uint64_t ceiling) noexcept {
  char why[160];
  std::snprintf(why, sizeof why, "raises the hard limit %s set (%" PRIu64 ")", option_of(resource), ceiling);
  refuse(t, call, -EPERM, why);
}

// The limits the supervisor keeps itself, for the program's own process.
bool served_here(const Limits& limits, unsigned resource) noexcept {
  return resource == RLIMIT_AS || (resource == RLIMIT_NOFILE && limits.settings().nofile_set);
}

// RLIMIT_AS: never the host's (limits.h).
long address_space(ProgramThread& t, const abi::Call& call, const rlimit* set, rlimit& old) noexcept {
  Sandbox& s = sandbox();
  // The region's lock first, as fork takes them (process_calls.cc).
  LockGuard region(s.region.lock());
  LockGuard hold(s.limits.lock());
  old = s.limits.address_space();
  if (set == nullptr) return 0;
  if (set->rlim_cur > set->rlim_max) return -EINVAL;
  if (set->rlim_max > old.rlim_max) {
    if (s.limits.settings().address_space_set) return refuse_raise(t, call, RLIMIT_AS, old.rlim_max), -EPERM;
    return -EPERM;
  }
  s.limits.set_address_space(*set);
  s.region.set_address_space_limit(set->rlim_cur);
  return 0;
}

// RLIMIT_NOFILE under --rlimit-nofile: the host's soft limit, dunk's hard one.
long nofile(ProgramThread& t, const abi::Call& call, const rlimit* set, rlimit& old) noexcept {
  Sandbox& s = sandbox();
  LockGuard hold(s.limits.lock());
  rlimit host{};
  if (const long r = sys::call(SYS_prlimit64, 0, RLIMIT_NOFILE, 0, reinterpret_cast<long>(&host)); r != 0) return r;
  old = rlimit{host.rlim_cur, s.limits.nofile_hard()};
  if (set == nullptr) return 0;
  if (set->rlim_cur > set->rlim_max) return -EINVAL;
  if (set->rlim_max > s.limits.nofile_hard()) {
    return refuse_raise(t, call, RLIMIT_NOFILE, s.limits.nofile_hard()), -EPERM;
  }
  const rlimit applied{set->rlim_cur, host.rlim_max};
  if (const long r = sys::call(SYS_prlimit64, 0, RLIMIT_NOFILE, reinterpret_cast<long>(&applied), 0); r != 0) return r;
  s.limits.set_nofile_hard(set->rlim_max);
  return 0;
}

}  // namespace

void sys_prlimit(ProgramThread& t, const abi::Call& call) noexcept {
  Sandbox& s = sandbox();
  long pid = 0;
  unsigned resource = 0;
  std::uint64_t new_address = 0, old_address = 0;
  switch (abi::kernel_number(call.number)) {
    case SYS_getrlimit:
      resource = static_cast<unsigned>(call.args[0]);
      old_address = call.args[1];
      break;
    case SYS_setrlimit:
      resource = static_cast<unsigned>(call.args[0]);
      new_address = call.args[1];
      break;
    default:  // prlimit64
      pid = static_cast<int>(call.args[0]);
      resource = static_cast<unsigned>(call.args[1]);
      new_address = call.args[2];
      old_address = call.args[3];
  }
  if (resource >= kResourceCount) return answer(t, -EINVAL);
  const bool own = pid == 0 || pid == static_cast<long>(s.pid) || pid == t.tid;
  const LimitSettings& settings = s.limits.settings();
  const bool limited = settings.ceiling[resource] != kNoLimit || served_here(s.limits, resource);
  if (!own) {
    // Another process (a sandboxed child among them): its limits are the
    // host's to read; none dunk set may change there.
    if (new_address != 0 && limited) {
      return refuse(t, call, -EPERM, "changes a limit dunk set, of another process");
    }
    answer_forwarded(t, call);
    return;
  }
  if (refuse_outside(t, call, new_address, sizeof(rlimit)) || refuse_outside(t, call, old_address, sizeof(rlimit))) {
    return;
  }
  // The new value is decided on and used as copied, once.
  rlimit set{};
  if (new_address != 0 && !read_program(&set, new_address, sizeof set)) return answer(t, -EFAULT);
  const rlimit* wanted = new_address != 0 ? &set : nullptr;
  rlimit old{};
  long ret;
  if (resource == RLIMIT_AS) {
    ret = address_space(t, call, wanted, old);
  } else if (served_here(s.limits, resource)) {
    ret = nofile(t, call, wanted, old);
  } else {
    if (wanted != nullptr && wanted->rlim_max > settings.ceiling[resource]) {
      return refuse_raise(t, call, resource, settings.ceiling[resource]), answer(t, -EPERM);
    }
    ret = sys::call(SYS_prlimit64, 0, resource, reinterpret_cast<long>(wanted), reinterpret_cast<long>(&old));
  }
  if (ret != 0) return answer(t, ret);
  if (old_address != 0 && !write_program(old_address, &old, sizeof old)) return answer(t, -EFAULT);
  answer(t, 0);
}

bool claim_thread_slot(ProgramThread& t, const abi::Call& call) noexcept {
  Sandbox& s = sandbox();
  const std::int64_t max = s.limits.settings().max_threads;
  int running = s.threads.load();
  do {
    if (max >= 0 && running > max) {
      char why[160];
      std::snprintf(why, sizeof why,
                    "--max-threads %" PRId64 ": the process runs %d threads already (its first and %" PRId64
                    " more)",
                    max, running, max);
      refuse(t, call, -EAGAIN, why);
      return false;
    }
  } while (!s.threads.compare_exchange_weak(running, running + 1));
  return true;
}

void release_thread_slot() noexcept { sandbox().threads.fetch_sub(1); }

}  // namespace dunk::sandbox
