#include <memory>

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

Exit status: PROG's; 128+N when signal N killed it (159, SIGSYS, when a
policy violation did); 125 when the sandbox could not be set up, 126 when
PROG cannot be executed, 127 when it is not found.)";

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
  app->add_option("--rlimit-cpu", options->rlimit_cpu,
                  "At most this much CPU time: SIGXCPU, then SIGKILL a second later, as natively")
      ->type_name("SECONDS");
  app->add_option("--rlimit-fsize", options->rlimit_fsize,
                  "No file written past this size: such a write raises SIGXFSZ, as natively")
      ->type_name("MiB");
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
        ->trigger_on_parse()
        ->type_name("SRC [DST]");
  };
  bind("--ro-bind", false,
       "Make SRC reachable at DST (default: SRC), read-only; with any bind, nothing else is reachable by path "
       "(put -- before PROG when DST is left out)");
  bind("--bind", true, "The same, read-write");
  bind("--dev-bind", true, "The same as --bind (device nodes are usable under every bind)");
  app->add_option("--chdir", options->chdir, "Start PROG in DIR of the view (default: dunk's directory, else /)")
      ->type_name("DIR");
  app->add_option("PROG", options->command, "The program (PATH is searched), then its arguments")
      ->type_name("[ARGS]");
  return Command{app, [options] { return run_sandbox_command(*options); }, /*takes_command_line=*/true};
}

}  // namespace dunk::cli
