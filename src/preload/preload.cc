// libdunk-preload.so: what `dunk exec` puts in LD_PRELOAD. Its constructor
// moves the main thread into VM mode before the program's main() runs (after
// libc and the libraries it needs have initialised, since the dynamic linker
// runs a preloaded object's constructors after those of its dependencies).
// LD_PRELOAD is inherited, so programs the process executes enter too, and
// fork children enter VMs of their own (EnterOptions::follow_fork).
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "core/config.h"
#include "core/machine.h"
#include "debug/gdb_server.h"
#include "dunk/dunk.h"

namespace {

[[noreturn]] void refuse(const char* what, const dunk::Error& error) {
  // The user asked for VM mode; running natively instead would be a lie.
  char reason[512];
  char line[768];
  int n = std::snprintf(line, sizeof line, "dunk: %s: %s\n", what, dunk::describe(error, reason, sizeof reason));
  if (n > 0) (void)!write(2, line, static_cast<std::size_t>(n) < sizeof line ? n : sizeof line - 1);
  _exit(125);
}

__attribute__((constructor)) void dunk_preload_enter() {
  // The environment, read once (core/config.h): the machine is created
  // with this configuration.
  const dunk::core::MachineConfig config = dunk::core::MachineConfig::from_environment();
  dunk::core::Machine::instance().configure(config);
  // `dunk exec --gdb`: this process is served to gdb and stops at its first
  // instruction in VM mode. Only this one: the programs it executes and its
  // fork children run undebugged.
  if (config.gdb_address[0] != '\0') {
    if (dunk::Status started = dunk::debug::start_gdb_stub(config.gdb_address); !started) {
      refuse("cannot serve gdb", started.error());
    }
    unsetenv(dunk::debug::kGdbEnvironment);
  }
  dunk::Status status = dunk::enter(dunk::EnterOptions{.follow_fork = true});
  if (!status) refuse("cannot enter VM mode", status.error());
}

}  // namespace
