// dunk: the command line. Parses with CLI11 and hands over to the command;
// usage errors exit 2, every other error is one "dunk: " line.
#include <fmt/format.h>

#include <algorithm>
#include <exception>
#include <string>
#include <vector>

#include "tools/command.h"

namespace dunk::cli {
namespace {

constexpr int kExitUsage = 2;
constexpr int kExitInternal = 125;

bool is_option(const std::string& arg) { return arg.size() > 1 && arg[0] == '-'; }

// How many values one occurrence of `option` takes, by CLI11's own rule: a
// container option that allows no extra arguments (dunk's repeatable ones,
// --allow-connect ADDR) takes its type's count, one.
struct ValueCount {
  int min, max;
};
ValueCount value_count(const CLI::Option& option) {
  const int min = std::min(option.get_type_size_min(), option.get_items_expected_min());
  int max = option.get_items_expected_max();
  if (max >= CLI::detail::expected_max_vector_size / 16 && !option.get_allow_extra_args()) {
    max = option.get_type_size_max() * option.get_expected_min();
  }
  return {min, max};
}

// Where the subcommand's name is in `args`: after the global options, none
// of which takes a value. args.size() if there is none.
std::size_t command_position(const std::vector<std::string>& args) {
  std::size_t i = 0;
  while (i < args.size() && is_option(args[i]) && args[i] != "--") ++i;
  return i;
}

// CLI11 would go on parsing dunk's options after PROG (`dunk exec ls
// --help` would print dunk's help), so a command's own command line is
// fenced off with "--" where the user has not already done so. `i` is where
// the command's name is. Returns an unknown option's name, or empty.
std::string fence_command_line(const Command& command, std::vector<std::string>& args, std::size_t i) {
  // CLI11 takes a "--" right after an option with a variable number of
  // values (sandbox's --ro-bind SRC [DST]) as the end of those values, not
  // of the options: one more "--" there keeps PROG's arguments PROG's.
  bool open = false;
  auto fence_at = [&](std::size_t at) {
    args.insert(args.begin() + static_cast<std::ptrdiff_t>(at), "--");
    if (open) args.insert(args.begin() + static_cast<std::ptrdiff_t>(at), "--");
  };
  for (++i; i < args.size(); ++i) {
    if (args[i] == "--") {
      if (open) args.insert(args.begin() + static_cast<std::ptrdiff_t>(i), "--");
      return {};
    }
    if (!is_option(args[i])) break;
    std::string name = args[i].substr(0, args[i].find('='));
    const CLI::Option* option = command.app->get_option_no_throw(name);
    if (option == nullptr) return name;
    const ValueCount count = value_count(*option);
    // A value given with the option itself (--log=FILE, -xVALUE).
    const int attached = args[i].find('=') != std::string::npos || (!args[i].starts_with("--") && args[i].size() > 2);
    // The values after it: those it needs whatever they look like, then
    // those it may take, up to the next option or "--".
    for (int taken = attached; taken < count.max && i + 1 < args.size() &&
                               (taken < count.min || (args[i + 1] != "--" && !is_option(args[i + 1])));
         ++taken) {
      ++i;
    }
    // CLI11 eats a "--" after an option that had room for more values once
    // it had the values it needs, however many it then took.
    open = count.max > std::max(count.min, attached) || (count.max > 0 && option->get_allow_extra_args());
  }
  if (i < args.size()) fence_at(i);
  return {};
}

// CLI11 shows a flag that may take a value ("--stats{-}") with its default
// in braces; dunk's help shows just the name and the option text ("[=FILE]").
class Formatter : public CLI::Formatter {
 public:
  std::string make_option_name(const CLI::Option* option, bool positional) const override {
    std::string name = CLI::Formatter::make_option_name(option, positional);
    return name.substr(0, name.find('{'));
  }
};

std::string one_line_failure(const CLI::App*, const CLI::Error& error) {
  return fmt::format("dunk: {} (see dunk --help)\n", error.what());
}

int run(int argc, char** argv) {
  CLI::App app("dunk runs Linux programs inside a KVM virtual machine, in guest ring 0, with every "
               "system call forwarded to the host.",
               "dunk");
  app.set_version_flag("--version", "dunk " DUNK_VERSION, "Print dunk's version and exit");
  app.require_subcommand(1);
  app.failure_message(one_line_failure);
  app.formatter(std::make_shared<Formatter>());  // before the subcommands, which inherit it

  const std::vector<Command> commands = {
      add_exec(app),
      add_check(app),
      add_bench(app),
      add_sandbox(app),
  };

  std::vector<std::string> args(argv + 1, argv + argc);
  if (std::size_t at = command_position(args); at < args.size()) {
    auto command = std::find_if(commands.begin(), commands.end(),
                                [&](const Command& c) { return c.app->check_name(args[at]); });
    if (command == commands.end()) {
      fmt::print(stderr, "dunk: unknown command '{}' (see dunk --help)\n", args[at]);
      return kExitUsage;
    }
    if (command->takes_command_line) {
      if (std::string unknown = fence_command_line(*command, args, at); !unknown.empty()) {
        fmt::print(stderr, "dunk: {}: unknown option {} (see dunk {} --help)\n", args[at], unknown, args[at]);
        return kExitUsage;
      }
    }
  }
  std::reverse(args.begin(), args.end());  // CLI11 takes a vector last argument first
  try {
    app.parse(args);
  } catch (const CLI::ParseError& error) {
    int status = app.exit(error);
    return status == 0 ? 0 : kExitUsage;
  }
  for (const Command& command : commands) {
    if (command.app->parsed()) return command.run();
  }
  return kExitUsage;
}

}  // namespace
}  // namespace dunk::cli

int main(int argc, char** argv) {
  try {
    return dunk::cli::run(argc, argv);
  } catch (const std::exception& error) {
    fmt::print(stderr, "dunk: {}\n", error.what());
  } catch (...) {
    fmt::print(stderr, "dunk: unexpected internal error\n");
  }
  return dunk::cli::kExitInternal;
}
