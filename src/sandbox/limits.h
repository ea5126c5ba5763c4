// The sandbox's resource limits (`--rlimit-*`, `--max-threads`), and the
// program's view of its limits (getrlimit, setrlimit, prlimit64), served by
// the supervisor.
//
//   the command line            parse_limit: nsjail's values ("max", "soft",
//                               "inf", a number of units) -> soft and hard
//   the sandbox's process       set on the host before the program's first
//                               instruction (tools/sandbox.cc), but
//                               RLIMIT_AS, which the supervisor serves
//   the program's calls         sys_prlimit: a hard limit dunk set cannot
//                               be raised (even by root); RLIMIT_AS and a
//                               limited RLIMIT_NOFILE's hard limit are the
//                               supervisor's own values
//
// RLIMIT_AS cannot be the host's: the untrusted region's reservation (up to
// 64 TiB of PROT_NONE) and dunk's own mappings count against it there, so a
// host limit would make every mapping fail. The supervisor keeps the
// program's RLIMIT_AS and counts the program's mappings in the region
// against it (Region::set_address_space_limit): an mmap, brk, mremap or
// shmat that would take them past it fails with ENOMEM, as natively.
//
// RLIMIT_NOFILE is the host's soft limit (the kernel's EMFILE comes where it
// would natively), but its hard limit stays the one dunk inherited, so that
// dunk can still place its own descriptors (a vCPU's for each new thread)
// above the program's range (base/fd_placement.h); the program sees, and is
// held to, the hard limit --rlimit-nofile gave.
#pragma once

#include <sys/resource.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "abi/walk.h"
#include "base/lock.h"

namespace dunk::sandbox {

inline constexpr std::uint64_t kNoLimit = RLIM_INFINITY;
inline constexpr unsigned kResourceCount = RLIM_NLIMITS;

// ---- The command line --------------------------------------------------------

// An --rlimit-* option: nsjail's spelling and unit.
struct LimitOption {
  const char* name;    // "--rlimit-as"
  int resource;        // RLIMIT_AS
  std::uint64_t unit;  // bytes (or seconds, descriptors, ...) per unit of the value
  const char* unit_name;
};
// --rlimit-as, -cpu, -fsize, -nofile, -nproc, -stack, in that order.
const std::array<LimitOption, 6>& limit_options() noexcept;

struct ParsedLimit {
  bool ok = false;
  std::uint64_t value = 0;  // in the resource's own unit (bytes, seconds, ...)
  bool keyword = false;     // "max", "hard", "def", "soft" or "inf" (not a number)
  std::string error;        // why not, when !ok
};
// nsjail's reading of an --rlimit-* value: a decimal number of `unit`s;
// "max" or "hard": the current hard limit; "def" or "soft": the current
// soft limit; "inf": no limit. `current` is the limit dunk inherited.
ParsedLimit parse_limit(std::string_view text, std::uint64_t unit, const rlimit& current);

// ---- The runtime -------------------------------------------------------------

// What the command line asked for, as the sandbox's process gets it.
struct LimitSettings {
  // Per resource: the hard limit dunk set (the most the program may raise
  // its own to), or kNoLimit where dunk set none.
  std::array<std::uint64_t, kResourceCount> ceiling{};
  // RLIMIT_AS as the program starts with it; set: --rlimit-as was given.
  bool address_space_set = false;
  rlimit address_space{kNoLimit, kNoLimit};
  // RLIMIT_NOFILE's hard limit the program sees; set: --rlimit-nofile.
  bool nofile_set = false;
  std::uint64_t nofile_hard = kNoLimit;
  // Threads a process may run besides its first (-1: no limit).
  std::int64_t max_threads = -1;

  LimitSettings() { ceiling.fill(kNoLimit); }
};

// The process's limits as the supervisor keeps them (Sandbox::limits).
class Limits {
 public:
  // At start: `settings` and the RLIMIT_AS the process inherited.
  void configure(const LimitSettings& settings) noexcept;

  const LimitSettings& settings() const noexcept { return settings_; }
  // What the program's getrlimit(RLIMIT_AS) says.
  rlimit address_space() const noexcept { return address_space_; }
  std::uint64_t nofile_hard() const noexcept { return nofile_hard_; }
  Lock& lock() noexcept { return lock_; }
  void set_address_space(const rlimit& value) noexcept { address_space_ = value; }
  void set_nofile_hard(std::uint64_t value) noexcept { nofile_hard_ = value; }
  void reset_after_fork() noexcept { lock_.reset_after_fork(); }

 private:
  LimitSettings settings_;
  rlimit address_space_{kNoLimit, kNoLimit};
  std::uint64_t nofile_hard_ = kNoLimit;
  Lock lock_;
};

// ---- The calls ----------------------------------------------------------------

struct ProgramThread;

// getrlimit, setrlimit and prlimit64, served: the program's own limits on
// copies of its structures (RLIMIT_AS and a limited RLIMIT_NOFILE's hard
// limit from Limits, the others from the host); another process's passed
// on, but no change to a limit dunk set (a root program could raise a
// sandboxed child's hard limit there).
void sys_prlimit(ProgramThread& t, const abi::Call& call) noexcept;

// --max-threads: counts a new thread of the process (Sandbox::threads) if
// the limit leaves room, else refuses `call` (EAGAIN, with a report) and
// returns false. release_thread_slot undoes it when the thread could not
// start.
bool claim_thread_slot(ProgramThread& t, const abi::Call& call) noexcept;
void release_thread_slot() noexcept;

}  // namespace dunk::sandbox
