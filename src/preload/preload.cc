// libdunk-preload.so: what `dunk exec` puts in LD_PRELOAD. Its constructor
// moves the main thread into VM mode before the program's main() runs (after
// libc and the libraries it needs have initialised, since the dynamic linker
// runs a preloaded object's constructors after those of its dependencies).
// LD_PRELOAD is inherited, so programs the process executes enter too, and
// fork children enter VMs of their own (EnterOptions::follow_fork).
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "dunk/dunk.h"

namespace {

__attribute__((constructor)) void dunk_preload_enter() {
  dunk::Status status = dunk::enter(dunk::EnterOptions{.follow_fork = true});
  if (status) return;
  // The user asked for VM mode; running natively instead would be a lie.
  char reason[512];
  char line[768];
  int n = std::snprintf(line, sizeof line, "dunk: cannot enter VM mode: %s\n",
                        dunk::describe(status.error(), reason, sizeof reason));
  if (n > 0) (void)!write(2, line, static_cast<std::size_t>(n) < sizeof line ? n : sizeof line - 1);
  _exit(125);
}

}  // namespace
