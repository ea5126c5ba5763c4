#include "tools/check.h"
#include "tools/command.h"

namespace dunk::cli {

Command add_check(CLI::App& dunk) {
  CLI::App* app = dunk.add_subcommand("check", "Say whether VM mode works on this machine, and if not, why");
  app->footer(
      "Enters VM mode and leaves it again. Prints one line; exit status 0 when VM mode works, 1 "
      "when it does not (the line says why and what to do).");
  return Command{app, [] { return run_check(); }};
}

}  // namespace dunk::cli
