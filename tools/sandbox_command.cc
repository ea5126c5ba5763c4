#include <algorithm>
#include <cstdlib>
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
  // --perms OCTAL applies to the next form that makes something, and only to it.
  auto take_perms = [options](const char* name, bool makes, int& perms) {
    if (options->pending_perms < 0) return;
    if (makes) {
      perms = options->pending_perms;
    } else if (options->bind_error.empty()) {
      options->bind_error = std::string("--perms must come right before --tmpfs, --dir, --file, --bind-data or "
                                        "--ro-bind-data, not before ") + name;
    }
    options->pending_perms = -1;
  };
  auto bind = [app, options, take_perms](const char* name, bool writable, const char* help, bool optional = false) {
    app->add_option_function<std::vector<std::string>>(
           name,
           [options, name, writable, optional, take_perms](const std::vector<std::string>& values) {
             SandboxCommandOptions::Bind b{name, values.empty() ? std::string() : values[0],
                                           values.size() > 1 ? values[1] : std::string(), writable};
             b.optional = optional;
             take_perms(name, false, b.perms);
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
  bind("--ro-bind-try", false, "As --ro-bind, but a SRC that does not exist is left out", true);
  bind("--bind-try", true, "As --bind, but a SRC that does not exist is left out", true);
  bind("--dev-bind-try", true, "As --dev-bind, but a SRC that does not exist is left out", true);
  // bubblewrap's other forms, in the same order as the binds.
  auto form = [app, options, take_perms](const char* name, SandboxCommandOptions::Form kind, int values, const char* type,
                                         const char* help, bool writable = false) {
    app->add_option_function<std::vector<std::string>>(
           name,
           [options, name, kind, values, writable, take_perms](const std::vector<std::string>& given) {
             using F = SandboxCommandOptions::Form;
             SandboxCommandOptions::Bind b{name, values == 2 ? given[0] : std::string(), given.back(), writable, kind};
             take_perms(name, kind == F::kTmpfs || kind == F::kDir || kind == F::kData, b.perms);
             if (options->bind_error.empty()) {
               if (static_cast<int>(given.size()) != values) {
                 options->bind_error = std::string(name) + " " + given[0] + ": needs both " +
                                       (kind == F::kData ? "FD" : "TEXT") + " and DST";
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
  form("--file", Kind::kData, 2, "FD DST", "A file at DST PROG may write, holding what dunk read from FD", true);
  form("--bind-data", Kind::kData, 2, "FD DST", "The same as --file", true);
  form("--ro-bind-data", Kind::kData, 2, "FD DST", "As --file, read-only");
  form("--remount-ro", Kind::kRemountRo, 1, "DST", "The bind at DST (given before) becomes read-only");
  app->add_option_function<std::string>(
         "--perms",
         [options](const std::string& text) {
           char* end = nullptr;
           const long mode = std::strtol(text.c_str(), &end, 8);
           if (text.empty() || *end != '\0' || mode < 0 || mode > 07777) {
             if (options->bind_error.empty()) options->bind_error = "--perms " + text + ": not an octal mode";
             return;
           }
           if (options->pending_perms >= 0 && options->bind_error.empty()) {
             options->bind_error = "--perms " + text + ": the --perms before it was not used";
           }
           options->pending_perms = static_cast<int>(mode);
         },
         "The mode of what the next --tmpfs, --dir, --file, --bind-data or --ro-bind-data makes")
      ->allow_extra_args(false)
      ->trigger_on_parse()
      ->type_name("OCTAL");
  // The program's environment and session, as bubblewrap's options.
  app->add_flag_callback(
         "--clearenv", [options] { options->environment.push_back({"", ""}); },
         "Start PROG with an empty environment (then --setenv)")
      ->trigger_on_parse();
  app->add_option_function<std::vector<std::string>>(
         "--setenv", [options](const std::vector<std::string>& v) { options->environment.push_back(v); },
         "Set VAR to VALUE in PROG's environment")
      ->expected(2)
      ->allow_extra_args(false)
      ->trigger_on_parse()
      ->type_name("VAR VALUE");
  app->add_option_function<std::string>(
         "--unsetenv", [options](const std::string& var) { options->environment.push_back({var}); },
         "Remove VAR from PROG's environment")
      ->allow_extra_args(false)
      ->trigger_on_parse()
      ->type_name("VAR");
  app->add_flag("--new-session", options->new_session,
                "Start PROG in a session of its own (no controlling terminal)");
  // bubblewrap's options for what dunk does not have: refused with the reason.
  struct Unsupported {
    const char* name;
    int values;
    const char* why;
  };
  static constexpr Unsupported kUnsupported[] = {
      {"--unshare-all", 0, "dunk makes no namespaces but the network's (--unshare-net)"},
      {"--share-net", 0, "dunk makes no namespaces but the network's (--unshare-net)"},
      {"--unshare-user", 0, "dunk makes a user namespace only for --unshare-net"},
      {"--unshare-user-try", 0, "dunk makes a user namespace only for --unshare-net"},
      {"--unshare-ipc", 0, "dunk has no IPC namespace: System V IPC and POSIX message queues are the host's"},
      {"--unshare-pid", 0, "dunk has no PID namespace: the program sees the host's processes"},
      {"--unshare-uts", 0, "dunk has no UTS namespace: the host name is the host's"},
      {"--unshare-cgroup", 0, "dunk has no cgroup namespace (--cgroup-* limit the tree in a cgroup of its own)"},
      {"--unshare-cgroup-try", 0, "dunk has no cgroup namespace (--cgroup-* limit the tree in a cgroup of its own)"},
      {"--die-with-parent", 0, "dunk cannot end the program's whole tree when it dies itself (use --time-limit)"},
      {"--as-pid-1", 0, "dunk has no PID namespace"},
      {"--disable-userns", 0, "the policy decides clone and unshare (docs/POLICY.md)"},
      {"--assert-userns-disabled", 0, "the policy decides clone and unshare (docs/POLICY.md)"},
      {"--uid", 1, "dunk has no user namespace for the program"},
      {"--gid", 1, "dunk has no user namespace for the program"},
      {"--hostname", 1, "dunk has no UTS namespace"},
      {"--userns", 1, "dunk joins no namespace"},
      {"--userns2", 1, "dunk joins no namespace"},
      {"--pidns", 1, "dunk joins no namespace"},
      {"--cap-add", 1, "the program's capabilities are dunk's; the policy decides what it may call"},
      {"--cap-drop", 1, "the program's capabilities are dunk's; the policy decides what it may call"},
      {"--seccomp", 1, "dunk's policy is a JSON seccomp profile (--policy FILE), not a BPF program"},
      {"--add-seccomp-fd", 1, "dunk's policy is a JSON seccomp profile (--policy FILE), not a BPF program"},
      {"--mqueue", 1, "dunk has no IPC namespace"},
      {"--bind-fd", 2, "a bind's source is a path"},
      {"--ro-bind-fd", 2, "a bind's source is a path"},
      {"--chmod", 2, "dunk changes no file on the host but what --dir and --symlink make"},
      {"--size", 1, "--tmpfs is a directory under $TMPDIR, not a tmpfs of a size"},
      {"--args", 1, "give the options on the command line"},
      {"--exec-label", 1, "dunk sets no security labels"},
      {"--file-label", 1, "dunk sets no security labels"},
      {"--lock-file", 1, "not offered"},
      {"--sync-fd", 1, "not offered"},
      {"--block-fd", 1, "not offered"},
      {"--userns-block-fd", 1, "not offered"},
      {"--info-fd", 1, "not offered"},
      {"--json-status-fd", 1, "not offered"},
  };
  for (const Unsupported& u : kUnsupported) {
    auto note = [options, &u](const std::string& = {}) {
      if (options->unsupported.empty()) options->unsupported = std::string(u.name) + ": " + u.why;
    };
    if (u.values == 0) {
      app->add_flag_callback(u.name, [note] { note(); }, "(bubblewrap's; refused with the reason)")->group("");
    } else {
      app->add_option_function<std::vector<std::string>>(u.name, [note](const std::vector<std::string>&) { note(); },
                                                          "(bubblewrap's; refused with the reason)")
          ->expected(u.values)
          ->allow_extra_args(false)
          ->group("");
    }
  }
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
