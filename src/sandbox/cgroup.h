// The sandbox's limits on the whole tree of processes (--cgroup-mem-max,
// --cgroup-pids-max, --cgroup-cpu-ms-per-sec, nsjail's options): a cgroup v2
// of dunk's own for the sandbox.
//
//   before anything runs   TreeCgroup::create (dunk, the parent): finds
//                          dunk's own cgroup (/proc/self/cgroup's "0::"
//                          line under a cgroup2 mount of
//                          /proc/self/mountinfo), gives the controllers the
//                          limits need to its children (cgroup.subtree_control),
//                          makes DIR/dunk-sandbox.PID and writes the limits;
//                          any failure is the command line's (exit 125)
//   the sandbox's process  TreeCgroup::enter, its first step: every process
//                          and thread of the sandbox is born inside
//   the end                TreeCgroup::finish (dunk): what is left of the tree
//                          is killed (cgroup.kill), the counts read
//                          (memory.events' oom_kill, pids.events' max), the
//                          cgroup removed; also after --time-limit
//
// The kernel lets a cgroup give controllers to its children only when it is
// the root (the one without cgroup.type) or holds no process, and dunk's
// own cgroup holds dunk. Where it holds dunk alone (a scope of its own: `systemd-run --user --scope -p
// Delegate=yes dunk sandbox ...`), dunk moves itself into a child of it,
// DIR/dunk-supervisor.PID, as nsjail does, and at the end takes back the
// controllers it gave, moves back and removes that child too. Where other
// processes share dunk's cgroup, the options are refused with the reason.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dunk::sandbox {

struct CgroupLimits {
  std::uint64_t memory_max = 0;      // bytes (memory.max; swap none); 0: no limit
  std::uint64_t pids_max = 0;        // processes and threads (pids.max); 0: no limit
  std::uint64_t cpu_ms_per_sec = 0;  // CPU time per second (cpu.max); 0: no limit
  bool any() const noexcept { return memory_max != 0 || pids_max != 0 || cpu_ms_per_sec != 0; }
};

// The directory of the calling process's cgroup v2, from the text of
// /proc/self/cgroup and /proc/self/mountinfo; empty, with `why`, when there
// is none (no "0::" line, no cgroup2 mount that holds it).
std::string cgroup_directory(std::string_view proc_cgroup, std::string_view mountinfo, std::string& why);

// What the tree met, read when it has ended.
struct TreeCounts {
  std::uint64_t oom_kills = 0;     // processes the OOM killer killed at memory.max
  std::uint64_t pids_refused = 0;  // forks and clones refused at pids.max
};

class TreeCgroup {
 public:
  // Makes the cgroup with `limits`; "" or why not.
  std::string create(const CgroupLimits& limits);
  bool active() const noexcept { return !path_.empty(); }
  const std::string& path() const noexcept { return path_; }

  // In the sandbox's process: moves the caller in. 0 or the errno.
  int enter() const noexcept;
  // Kills every process in the cgroup (cgroup.kill; nothing before Linux
  // 5.14, where dunk's own pass over its descendants does it).
  void kill_all() const noexcept;
  // After the tree ended: kills what is left, waits for the cgroup to be
  // empty, reads the counts and removes the cgroup. "" or why it could not
  // be removed.
  std::string finish(TreeCounts& counts);

 private:
  // Undoes what create did so far.
  void undo() noexcept;

  std::string path_;        // DIR/dunk-sandbox.PID
  std::string parent_;      // DIR, dunk's own cgroup
  std::string supervisor_;  // DIR/dunk-supervisor.PID where dunk moved itself, or empty
  std::vector<std::string> enabled_;  // controllers dunk gave DIR's children after moving
};

}  // namespace dunk::sandbox
