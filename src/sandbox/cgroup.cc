#include "sandbox/cgroup.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "abi/names.h"
#include "sandbox/text_files.h"

namespace dunk::sandbox {
namespace {

std::string errno_text(int err) {
  const char* name = abi::errno_name(err);
  return std::string(name != nullptr ? name : std::to_string(err)) + " (" + std::strerror(err) + ")";
}

std::vector<std::string_view> words(std::string_view line) {
  std::vector<std::string_view> out;
  while (!line.empty()) {
    const std::size_t start = line.find_first_not_of(" \t");
    if (start == std::string_view::npos) break;
    line.remove_prefix(start);
    const std::size_t end = line.find_first_of(" \t");
    out.push_back(line.substr(0, end));
    line.remove_prefix(end == std::string_view::npos ? line.size() : end);
  }
  return out;
}

// mountinfo's escapes (\040 for a space, \011, \012, \134).
std::string unescape(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 3 < text.size() && text[i + 1] >= '0' && text[i + 1] <= '7') {
      out += static_cast<char>((text[i + 1] - '0') * 64 + (text[i + 2] - '0') * 8 + (text[i + 3] - '0'));
      i += 3;
    } else {
      out += text[i];
    }
  }
  return out;
}

template <typename Each>
void for_each_line(std::string_view text, Each each) {
  while (!text.empty()) {
    const std::size_t end = text.find('\n');
    each(text.substr(0, end));
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
  }
}

// "KEY VALUE" of a flat-keyed cgroup file (memory.events, pids.events).
std::uint64_t keyed_value(const std::string& path, std::string_view key) {
  std::string text;
  if (!read_text(path, text)) return 0;
  std::uint64_t value = 0;
  for_each_line(text, [&](std::string_view line) {
    const std::vector<std::string_view> w = words(line);
    if (w.size() == 2 && w[0] == key) value = std::strtoull(std::string(w[1]).c_str(), nullptr, 10);
  });
  return value;
}

bool has_word(std::string_view text, std::string_view word) {
  for (std::string_view w : words(text)) {
    if (!w.empty() && w.back() == '\n') w.remove_suffix(1);
    if (w == word) return true;
  }
  return false;
}

}  // namespace

std::string cgroup_directory(std::string_view proc_cgroup, std::string_view mountinfo, std::string& why) {
  // "0::/PATH": the cgroup v2 hierarchy's line.
  std::string path;
  bool found = false;
  for_each_line(proc_cgroup, [&](std::string_view line) {
    if (line.starts_with("0::")) {
      path = std::string(line.substr(3));
      found = true;
    }
  });
  if (!found) {
    why = "this process is in no cgroup v2 (no \"0::\" line in /proc/self/cgroup)";
    return {};
  }
  // "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [TAGS...] - FSTYPE SOURCE SUPER": the
  // cgroup2 mount whose ROOT holds PATH, the longest ROOT first.
  std::string best;
  std::size_t best_root = 0;
  bool any = false;
  for_each_line(mountinfo, [&](std::string_view line) {
    const std::vector<std::string_view> w = words(line);
    std::size_t dash = 0;
    while (dash < w.size() && w[dash] != "-") ++dash;
    if (dash < 5 || dash + 1 >= w.size() || w[dash + 1] != "cgroup2") return;
    any = true;
    const std::string root = unescape(w[3]);
    const bool holds = root == "/" || path == root || path.starts_with(root + "/");
    if (!holds || (!best.empty() && root.size() <= best_root)) return;
    best_root = root.size();
    const std::string rest = root == "/" ? path : path.substr(root.size());
    best = unescape(w[4]);
    if (rest != "/" && !rest.empty()) best += rest;
  });
  if (best.empty()) {
    why = any ? "no cgroup2 mount holds this process's cgroup " + path
              : "no cgroup v2 file system is mounted (e.g. mount -t cgroup2 none /sys/fs/cgroup)";
  }
  return best;
}

std::string TreeCgroup::create(const CgroupLimits& limits) {
  std::string proc_cgroup, mountinfo;
  if (!read_text("/proc/self/cgroup", proc_cgroup) || !read_text("/proc/self/mountinfo", mountinfo)) {
    return "cannot read /proc/self/cgroup and /proc/self/mountinfo: " + errno_text(errno);
  }
  std::string why;
  parent_ = cgroup_directory(proc_cgroup, mountinfo, why);
  if (parent_.empty()) return why;
  const std::string& parent = parent_;
  if (access((parent + "/cgroup.procs").c_str(), W_OK) != 0) {
    return "dunk's cgroup " + parent + " is not writable: " + errno_text(errno);
  }
  std::vector<const char*> wanted;
  if (limits.memory_max != 0) wanted.push_back("memory");
  if (limits.pids_max != 0) wanted.push_back("pids");
  if (limits.cpu_ms_per_sec != 0) wanted.push_back("cpu");
  std::string available, enabled;
  if (!read_text(parent + "/cgroup.controllers", available) ||
      !read_text(parent + "/cgroup.subtree_control", enabled)) {
    return "cannot read the controllers of " + parent + ": " + errno_text(errno);
  }
  // Below the root (which the kernel lets hold processes and give
  // controllers at once: it alone has no cgroup.type), dunk's cgroup may
  // not do both: dunk moves itself into a child first, where it is alone.
  if (access((parent + "/cgroup.type").c_str(), F_OK) == 0) {
    std::string procs;
    if (!read_text(parent + "/cgroup.procs", procs)) {
      return "cannot read the processes of " + parent + ": " + errno_text(errno);
    }
    std::size_t others = 0;
    const std::string self = std::to_string(getpid());
    for_each_line(procs, [&](std::string_view pid) { others += !pid.empty() && pid != self; });
    if (others != 0) {
      return "dunk's cgroup " + parent + " holds " + std::to_string(others) + " process" +
             (others == 1 ? "" : "es") +
             " besides dunk: the kernel lets only the root cgroup, or one without processes, give controllers to "
             "its children (run dunk in a cgroup of its own, e.g. systemd-run --user --scope -p Delegate=yes)";
    }
    const std::string supervisor = parent + "/dunk-supervisor." + self;
    if (mkdir(supervisor.c_str(), 0755) != 0) return "cannot make the cgroup " + supervisor + ": " + errno_text(errno);
    supervisor_ = supervisor;
    if (const int e = write_text(supervisor + "/cgroup.procs", "0"); e != 0) {
      undo();
      return "cannot move dunk into the cgroup " + supervisor + ": " + errno_text(e);
    }
  }
  for (const char* controller : wanted) {
    if (has_word(enabled, controller)) continue;
    if (!has_word(available, controller)) {
      while (!available.empty() && available.back() == '\n') available.pop_back();
      undo();
      return std::string("the ") + controller + " controller is not available in " + parent +
             " (its cgroup.controllers: \"" + available + "\")";
    }
    if (const int err = write_text(parent + "/cgroup.subtree_control", std::string("+") + controller); err != 0) {
      undo();
      return std::string("cannot give the ") + controller + " controller to the children of " + parent + ": " +
             errno_text(err);
    }
    if (!supervisor_.empty()) enabled_.push_back(controller);
  }
  const std::string path = parent + "/dunk-sandbox." + std::to_string(getpid());
  if (mkdir(path.c_str(), 0755) != 0) {
    const int e = errno;
    undo();
    return "cannot make the cgroup " + path + ": " + errno_text(e);
  }
  path_ = path;
  auto set = [&](const char* file, const std::string& value) -> std::string {
    if (const int err = write_text(path + "/" + file, value); err != 0) {
      return std::string("cannot set ") + file + " of " + path + " to " + value + ": " + errno_text(err);
    }
    return {};
  };
  if (limits.memory_max != 0) {
    why = set("memory.max", std::to_string(limits.memory_max));
    // The tree's memory is its RAM: no swap beyond it (where the kernel
    // has swap accounting).
    if (why.empty() && access((path + "/memory.swap.max").c_str(), F_OK) == 0) why = set("memory.swap.max", "0");
  }
  if (why.empty() && limits.pids_max != 0) why = set("pids.max", std::to_string(limits.pids_max));
  if (why.empty() && limits.cpu_ms_per_sec != 0) {
    why = set("cpu.max", std::to_string(limits.cpu_ms_per_sec * 1000) + " 1000000");
  }
  if (!why.empty()) undo();
  return why;
}

void TreeCgroup::undo() noexcept {
  if (!path_.empty()) rmdir(path_.c_str());
  path_.clear();
  if (supervisor_.empty()) return;
  // The controllers dunk gave, taken back, so that dunk may live in its
  // cgroup again; then back there, and its own child removed.
  for (auto c = enabled_.rbegin(); c != enabled_.rend(); ++c) {
    write_text(parent_ + "/cgroup.subtree_control", "-" + *c);
  }
  enabled_.clear();
  write_text(parent_ + "/cgroup.procs", "0");
  rmdir(supervisor_.c_str());
  supervisor_.clear();
}

int TreeCgroup::enter() const noexcept { return write_text(path_ + "/cgroup.procs", "0"); }

void TreeCgroup::kill_all() const noexcept {
  if (!path_.empty()) write_text(path_ + "/cgroup.kill", "1");
}

std::string TreeCgroup::finish(TreeCounts& counts) {
  if (path_.empty()) return {};
  kill_all();
  // Empty once every process has left it ("populated 0"): at most ~10 s.
  for (int i = 0; i < 10000 && keyed_value(path_ + "/cgroup.events", "populated") != 0; ++i) usleep(1000);
  counts.oom_kills = keyed_value(path_ + "/memory.events", "oom_kill");
  counts.pids_refused = keyed_value(path_ + "/pids.events", "max");
  std::string why;
  if (rmdir(path_.c_str()) != 0) why = "cannot remove the cgroup " + path_ + ": " + errno_text(errno);
  path_.clear();
  if (!supervisor_.empty()) {
    const std::string supervisor = supervisor_;
    undo();
    if (why.empty() && access(supervisor.c_str(), F_OK) == 0) {
      why = "cannot remove the cgroup " + supervisor + " dunk moved itself into";
    }
  }
  return why;
}

}  // namespace dunk::sandbox
