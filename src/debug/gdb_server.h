// The GDB stub of `dunk exec --gdb` (the preload library starts it when
// DUNK_GDB names an address): a GDB remote-protocol server for the process,
// in a host thread of its own, outside VM mode. It listens, takes one
// connection, and serves it (debug/gdb_session.h) over the process's vCPUs
// (debug/vm_target.h); the monitors stop for it through core/debug_link.h.
//
// The first thread to enter VM mode afterwards stops at its first
// instruction there, until gdb lets it go. When gdb detaches or the
// connection ends, the program runs on undebugged; when the program exits or
// dies, gdb is told first. Fork children and programs the process executes
// are not debugged (a fork child's breakpoints are removed from its copy of
// the memory).
#pragma once

#include "dunk/result.h"

namespace dunk::debug {

// The environment variable `dunk exec --gdb` passes the address in.
inline constexpr const char* kGdbEnvironment = "DUNK_GDB";

// Listens at `address` — PORT or HOST:PORT (IPv4; HOST defaults to
// 127.0.0.1, so that only this machine can connect; port 0 picks a free
// one) or unix:PATH (a socket file, which must not exist) — says so on
// stderr, and starts serving in a thread of its own. Call it before the
// process enters VM mode, once.
Status start_gdb_stub(const char* address) noexcept;

}  // namespace dunk::debug
