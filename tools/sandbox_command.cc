#include <algorithm>
#include <memory>
#include <string>
#include <string_view>

#include "tools/command.h"
#include "tools/sandbox.h"

namespace dunk::cli {
namespace {

constexpr const char* kDescription = "Run an untrusted program in ring 3 of a VM, under a system-call policy";

constexpr const char* kFooter = R"(How: dunk loads PROG (and its dynamic linker) itself into a region of the
address space that holds nothing of dunk's, and runs it in ring 3 of the
process's VM. Every system call PROG makes reaches dunk's supervisor in
ring 0 first, which decides it with the policy, copies its arguments out of
PROG's reach, and passes allowed calls to the host kernel on the copies.
See docs/SANDBOX.md and docs/POLICY.md.

Policy: an OCI runtime-spec seccomp object or a Docker seccomp profile;
without --policy, dunk's built-in default (--print-default-policy).

Limits: --rlimit-* hold per process; --cgroup-* hold for the whole tree
(a cgroup v2 dunk makes, and removes at the end; 125 before anything runs
if cgroup v2 is not mounted or not writable). Under a cgroup, what PROG
leaves running is killed when it ends.

Exit status: PROG's; 128+N when signal N killed it (159, SIGSYS, when a
policy violation did; 137, with a reason line, when the OOM killer did at
--cgroup-mem-max); 124 when --time-limit ended it; 125 when the sandbox
could not be set up, 126 when PROG cannot be executed, 127 when it is not
found.)";

}  // namespace

Command add_sandbox(CLI::App& dunk) {
  auto options = std::make_shared<SandboxCommandOptions>();
  CLI::App* app = dunk.add_subcommand("sandbox", kDescription);
  app->footer(kFooter);
  app->add_option("--policy", options->policy_path, "The policy (OCI or Docker seccomp JSON)")->type_name("FILE");
  app->add_flag("--print-default-policy", options->print_default_policy, "Print the built-in default policy and exit");
  app->add_option("--log", options->log_path, "Reports (denied calls, fatal faults) into FILE, not stderr")
      ->type_name("FILE");
  app->add_option("--log-format", options->log_format, "Reports as text (default) or json lines")
      ->type_name("text|json");
  app->add_option("--on-violation", options->on_violation,
                  "A denied call kills PROG (SIGSYS), fails (errno), or runs and is reported (log); default: "
                  "what the policy says")
      ->type_name("kill|errno|log");
  app->add_flag("--stats", options->stats, "After PROG: VM exits and system calls on stderr");
  app->add_option("--stats-json", options->stats_json_path, "After PROG: the same report as JSON into FILE")
      ->type_name("FILE");
  // ---- limits/network ----
  constexpr const char* kLimitHelp[] = {
      "Address space of PROG's mappings (served by dunk): mmap/brk past it fail with ENOMEM",
      "CPU time: SIGXCPU, then SIGKILL a second later, as natively",
      "No file written past this size: such a write raises SIGXFSZ, as natively",
      "Descriptors: open() past the limit fails with EMFILE",
      "Processes and threads of the user (the kernel's count; not for root): fork fails with EAGAIN",
      "PROG's stack (at least 1 MiB): a deeper recursion dies of SIGSEGV",
  };
  for (std::size_t i = 0; i < options->rlimits.size(); ++i) {
    const RlimitOption o = rlimit_option(i);
    // nsjail's own spelling (--rlimit_as) as well.
    std::string nsjail = o.name + 2;
    std::replace(nsjail.begin(), nsjail.end(), '-', '_');
    app->add_option(std::string(o.name) + ",--" + nsjail, options->rlimits[i],
                    std::string(kLimitHelp[i]) + " (nsjail's value: a number, max/hard, def/soft or inf)")
        ->type_name(o.unit_name);
  }
  app->add_option("--time-limit,--time_limit", options->time_limit,
                  "Wall-clock limit: then the whole sandboxed tree is killed and dunk exits 124 (0: none)")
      ->type_name("SECONDS");
  app->add_option("--max-threads", options->max_threads,
                  "Threads a process may run besides its first: one more fails with EAGAIN, reported")
      ->type_name("N");
  // nsjail's cgroup options (its spelling as well): limits on the whole tree.
  app->add_option("--cgroup-mem-max,--cgroup_mem_max", options->cgroup_mem_max,
                  "Memory of the whole sandboxed tree (cgroup v2 memory.max, no swap): past it the OOM killer "
                  "kills (128+9, with a reason line)")
      ->type_name("BYTES");
  app->add_option("--cgroup-pids-max,--cgroup_pids_max", options->cgroup_pids_max,
                  "Processes and threads of the whole tree (cgroup v2 pids.max; each sandboxed process counts 2, "
                  "its VM's KVM thread with it): one more fork or thread fails with EAGAIN")
      ->type_name("N");
  app->add_option("--cgroup-cpu-ms-per-sec,--cgroup_cpu_ms_per_sec", options->cgroup_cpu_ms_per_sec,
                  "CPU time of the whole tree per second of wall clock (cgroup v2 cpu.max)")
      ->type_name("MS");
  app->add_flag("--unshare-net", options->unshare_net,
                "A network namespace of PROG's own, only lo up (unprivileged: inside a user namespace); where "
                "none can be made, no network by decision (AF_UNIX only), said on stderr");
  app->add_option("--allow-connect", options->allow_connect,
                  "Connections and datagrams only to these (repeatable; IPv6 as [ADDR]/PREFIX:PORT, PORT * for any); "
                  "others fail with EPERM, reported (with --unshare-net: the namespace's own addresses)")
      ->allow_extra_args(false)  // one value each time, as nsjail's and bubblewrap's repeatable options
      ->type_name("ADDR[/PREFIX]:PORT");
  app->add_option("--allow-bind", options->allow_bind,
                  "Bind and listen only on these ports (repeatable); others fail with EACCES, reported")
      ->allow_extra_args(false)
      ->type_name("PORT");
  // File system: the view (src/sandbox/fs_view.h).
  auto bind = [app, options](const char* name, bool writable, const char* help) {
    app->add_option_function<std::vector<std::string>>(
           name,
           [options, name, writable](const std::vector<std::string>& values) {
             SandboxCommandOptions::Bind b{name, values.empty() ? std::string() : values[0],
                                           values.size() > 1 ? values[1] : std::string(), writable};
             if (b.source.empty() && options->bind_error.empty()) options->bind_error = std::string(name) + ": an empty SRC";
             options->binds.push_back(std::move(b));
           },
           help)
        ->expected(1, 2)
        ->allow_extra_args(false)
        ->trigger_on_parse()
        ->type_name("SRC [DST]");
  };
  bind("--ro-bind", false,
       "Make SRC reachable at DST (default: SRC), read-only; with any bind, nothing else is reachable by path "
       "(put -- before PROG when DST is left out)");
  bind("--bind", true, "The same, read-write");
  bind("--dev-bind", true, "The same as --bind (device nodes are usable under every bind)");
  // bubblewrap's other forms, in the same order as the binds.
  auto form = [app, options](const char* name, SandboxCommandOptions::Form kind, int values, const char* type,
                             const char* help) {
    app->add_option_function<std::vector<std::string>>(
           name,
           [options, name, kind, values](const std::vector<std::string>& given) {
             SandboxCommandOptions::Bind b{name, values == 2 ? given[0] : std::string(), given.back(), false, kind};
             if (options->bind_error.empty()) {
               if (static_cast<int>(given.size()) != values) {
                 options->bind_error = std::string(name) + " " + given[0] + ": needs both TEXT and DST";
               } else if (given.back().empty()) {
                 options->bind_error = std::string(name) + ": an empty DST";
               }
             }
             options->binds.push_back(std::move(b));
           },
           help)
        ->expected(1, values)
        ->allow_extra_args(false)
        ->trigger_on_parse()
        ->type_name(type);
  };
  using Kind = SandboxCommandOptions::Form;
  form("--tmpfs", Kind::kTmpfs, 1, "DST",
       "An empty directory at DST that PROG may write (dunk's own, under $TMPDIR; removed with its contents at the end)");
  form("--dir", Kind::kDir, 1, "DST",
       "A directory at DST: made in a writable bind's tree if not there, else an empty one as --tmpfs");
  form("--symlink", Kind::kSymlink, 2, "TEXT DST", "A symlink at DST with the text TEXT");
  form("--dev", Kind::kDev, 1, "DST",
       "A /dev at DST: null, zero, full, random, urandom, tty, stdin/stdout/stderr/fd links, pts, shm (writable)");
  form("--proc", Kind::kProc, 1, "DST", "The host's /proc at DST, read-only");
  app->add_option("--chdir", options->chdir, "Start PROG in DIR of the view (default: dunk's directory, else /)")
      ->type_name("DIR");
  app->add_option("--learn", options->learn_path,
                  "Run PROG allowing every call, then write the smallest policy that lets this run pass "
                  "(rerun with --policy FILE)")
      ->type_name("FILE");
  app->add_option("PROG", options->command, "The program (PATH is searched), then its arguments")
      ->type_name("[ARGS]");
  return Command{app, [options] { return run_sandbox_command(*options); }, /*takes_command_line=*/true};
}

}  // namespace dunk::cli
