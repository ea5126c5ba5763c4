// Dune's utilities. Dune made these system calls with VMCALL, its module's
// hypercall; under KVM a guest's VMCALL is KVM's own hypercall (a write
// would print nothing), so here they are ordinary system calls, which dunk
// forwards in VM mode and the kernel serves outside it.
#include <sys/mman.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "base/syscall.h"
#include "libdune/internal.h"

namespace dunk::libdune {

void write_all(int fd, const char* text, std::size_t size) noexcept {
  while (size > 0) {
    const long n = sys::call(SYS_write, fd, reinterpret_cast<long>(text), static_cast<long>(size));
    if (n == -EINTR) continue;
    if (n <= 0) return;
    text += n;
    size -= static_cast<std::size_t>(n);
  }
}

void report(const char* what, const Error& error) noexcept {
  char why[256];
  char line[400];
  const int n = std::snprintf(line, sizeof line, "dune: %s: %s\n", what, describe(error, why, sizeof why));
  if (n > 0) write_all(2, line, std::min<std::size_t>(static_cast<std::size_t>(n), sizeof line - 1));
}

}  // namespace dunk::libdune

using dunk::libdune::write_all;

extern "C" {

int dune_printf(const char* fmt, ...) {
  char buf[1024];
  va_list args;
  va_start(args, fmt);
  const int n = std::vsnprintf(buf, sizeof buf, fmt, args);
  va_end(args);
  if (n < 0) return n;
  const std::size_t size = std::min<std::size_t>(static_cast<std::size_t>(n), sizeof buf - 1);
  return static_cast<int>(dunk::sys::call(SYS_write, 1, reinterpret_cast<long>(buf), static_cast<long>(size)));
}

void dune_die(void) {
  // Dune's ended the calling thread with whatever status RDI held; a
  // program that dies is better served by its whole process ending.
  for (;;) dunk::sys::call(SYS_exit_group, 1);
}

void* dune_mmap(void* addr, size_t length, int prot, int flags, int fd, off_t offset) {
  return reinterpret_cast<void*>(dunk::sys::call(SYS_mmap, reinterpret_cast<long>(addr), static_cast<long>(length),
                                                 prot, flags, fd, offset));
}

sighandler_t dune_signal(int sig, sighandler_t cb) {
  if (signal(sig, cb) == SIG_ERR) return SIG_ERR;
  // Dune's module injected signals as vector 200 + n; dunk delivers them
  // to the handler signal() installed. The registration stays, as Dune made it.
  (void)dune_register_signal_handler(sig, reinterpret_cast<dune_intr_cb>(reinterpret_cast<void*>(cb)));
  return nullptr;
}

void dune_control_guest_ints(bool) {
  // No interrupt of the host's reaches a dunk guest: nothing to switch.
}

}  // extern "C"
