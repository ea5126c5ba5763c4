#include <memory>

#include "bench/bench.h"
#include "tools/command.h"

namespace dunk::cli {

Command add_bench(CLI::App& dunk) {
  auto options = std::make_shared<bench::Options>();
  CLI::App* app = dunk.add_subcommand("bench", "Measure VM mode side by side with native execution");
  app->footer(R"(Each operation runs natively and in VM mode in the same process, one after
the other: system calls, page faults, page walks, trap delivery, Appel and
Li's appel1/appel2, system-call interception (dunk's ring 3 against ptrace,
seccomp and Syscall User Dispatch) and dirty-page tracking (dirty bits
against mprotect, soft-dirty and userfaultfd, over 64 pages; over 1 GiB with --only "dirty tracking 1 GiB", the scan alone over 64 MiB to 64 GiB with --only "dirty scan"),
and with --only "sandbox" an allowed and a denied call under dunk sandbox against
the same policy enforced by seccomp-bpf, a seccomp user-notification supervisor
and a ptrace supervisor (docs/bench/sandbox.md). Besides the time per operation it counts exactly, per operation,
the VM exits that reached dunk, the exits KVM saw and the host system calls
of the thread. In an emulated machine (the nested test VM) read the ratios
and the counts, not the times.

sthreads (docs/STHREADS.md) only with --only sthread, or any part of their
rows' names ("sthread create+join", "sthread callgate round trip", "sthread
switch, N pages"): creation against fork and pthreads, a callgate round trip
against a pipe and a futex, compartment switches by pages touched (with and
without PCID), measured by dunk-sthread-bench from dunk's directory
($DUNK_STHREAD_BENCH names another). They take tens of seconds under
emulation, so the default run leaves them out.

Exit status: 0, or 1 when VM mode is unavailable, FILE cannot be written, or
a measurement got a wrong answer (a dirty-tracking way that did not find
exactly the pages written, a sandbox way that answered a call wrongly) or
dunk-sthread-bench could not run.)");
  app->add_option("--iterations", options->iterations, "Operations per measurement")
      ->check(CLI::Range(std::uint64_t{1000}, std::uint64_t{1'000'000'000}));
  app->add_option("--json", options->json_path, "Write the results as JSON into FILE")->type_name("FILE");
  app->add_option("--chart", options->chart_path, "Draw the results as a PNG bar chart into FILE (gnuplot)")
      ->type_name("FILE");
  app->add_option("--only", options->only, "Only the operations whose name contains TEXT")->type_name("TEXT");
  app->add_flag("!--no-privileged", options->privileged,
                "Only the system-call benchmark, not those of the privileged API (Dune's Tables 2 and 3)");
  return Command{app, [options] {
                   bench::Report report;
                   if (!bench::run(*options, report)) return 1;
                   bench::print(report);
                   if (!options->json_path.empty() && !bench::write_json(report, options->json_path)) return 1;
                   if (!options->chart_path.empty() && !bench::write_chart(report, options->chart_path)) return 1;
                   return report.failures.empty() ? 0 : 1;
                 }};
}

}  // namespace dunk::cli
