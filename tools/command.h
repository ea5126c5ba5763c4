// The subcommands of `dunk`. This side of the command line is compiled with
// exceptions (CLI11 needs them); what a command does lives in dunk's own
// no-exception code (run_exec(), run_check(), ...), called through plain
// headers.
//
// Adding a subcommand: write `Command add_NAME(CLI::App& dunk)` in its own
// NAME_command.cc (declare it below), add the file to the `dunk` executable
// in tools/CMakeLists.txt, and put `add_NAME(app)` into the list in main.cc.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace dunk::cli {

struct Command {
  CLI::App* app;             // the subcommand, with its options
  std::function<int()> run;  // runs it once parsed; returns dunk's exit status
  // Everything from the first argument that is not one of the subcommand's
  // options is a command line of its own (PROG ARGS...), never parsed by dunk.
  bool takes_command_line = false;
};

Command add_exec(CLI::App& dunk);
Command add_check(CLI::App& dunk);
Command add_bench(CLI::App& dunk);
Command add_sandbox(CLI::App& dunk);

}  // namespace dunk::cli
