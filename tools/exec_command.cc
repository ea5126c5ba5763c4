#include <memory>

#include "tools/command.h"
#include "tools/exec.h"

namespace dunk::cli {

namespace {

constexpr const char* kDescription = "Run an unmodified, dynamically linked program in VM mode";

constexpr const char* kFooter = R"(How: dunk starts PROG with libdunk-preload.so prepended to LD_PRELOAD. The
dynamic linker runs that library's constructor before PROG's main(), and it
moves the process into guest ring 0 of a KVM virtual machine of its own;
every system call is then forwarded to the host kernel. LD_PRELOAD is
inherited, so the programs PROG starts run in VM mode too. For the same
reason dunk refuses, before starting anything, programs the dynamic linker
does not preload into: statically linked ones and set-user-ID ones. A
program whose first library is AddressSanitizer's runtime, which must come
first, executes itself once more with that runtime ahead of dunk's library.

With --gdb, PROG waits at its first instruction in VM mode for gdb to
connect (`target remote 127.0.0.1:PORT`, or the socket's path); gdb then
debugs it as it runs in guest ring 0: registers, memory, breakpoints,
watchpoints, single steps, signals, one thread per vCPU. The programs it
executes and its fork children run undebugged.

Exit status: PROG's (if a signal kills PROG, the same signal kills dunk);
125 when VM mode is unavailable or PROG cannot run in it, 126 when PROG is
not executable, 127 when it is not found.

Environment: DUNK_PRELOAD names the preload library (default: next to the
dunk executable); DUNK_TRACE=1 prints every VM exit; DUNK_KVM_DEVICE names
another device than /dev/kvm. dunk sets DUNK_KVM_FD for PROG: a KVM handle
the whole tree inherits, so that a program that drops its privileges still
enters VM mode.)";

}  // namespace

Command add_exec(CLI::App& dunk) {
  auto options = std::make_shared<ExecOptions>();
  CLI::App* app = dunk.add_subcommand("exec", kDescription);
  app->footer(kFooter);
  // A flag that can take a value: only ever --stats or --stats=FILE, so a
  // following word is never taken for FILE.
  CLI::Option* stats = app->add_flag("--stats{-}", options->stats_path,
                                     "After PROG: VM exits, exceptions, system calls on stderr (or into FILE)")
                           ->option_text("[=FILE]");
  app->add_option("--stats-json", options->stats_json_path, "After PROG: the same report as JSON into FILE")
      ->type_name("FILE");
  CLI::Option* strace =
      app->add_flag("--strace{-}", options->strace_path,
                    "A line for every system call of PROG's tree, as strace prints it, on stderr (or into FILE)")
          ->option_text("[=FILE]");
  app->add_option("--gdb", options->gdb,
                  "Serve PROG to gdb (target remote ADDRESS): it stops at its first instruction in VM mode")
      ->type_name("PORT|HOST:PORT|unix:PATH");
  app->add_option("PROG", options->command, "The program (PATH is searched), then its arguments")
      ->type_name("[ARGS]")
      ->required();
  return Command{app,
                 [options, stats, strace] {
                   options->stats = stats->count() > 0;
                   options->strace = strace->count() > 0;
                   return run_exec(*options);
                 },
                 /*takes_command_line=*/true};
}

}  // namespace dunk::cli
