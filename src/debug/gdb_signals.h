// Signal numbers on the wire. The remote protocol numbers signals as GDB
// does on every host (its enum gdb_signal, include/gdb/signals.def in GDB's
// sources), not as Linux does: SIGBUS is 10 there, SIGUSR1 30, SIGCHLD 20,
// the real-time signals 33-63 are 45-75. The stub converts at the wire.
#pragma once

namespace dunk::debug {

// GDB's number for no signal and for one it has no name for.
inline constexpr int kGdbSignalNone = 0;
inline constexpr int kGdbSignalUnknown = 143;

// GDB's number for Linux signal `sig` (1-64), kGdbSignalUnknown for one GDB
// does not know.
int gdb_signal_from_host(int sig) noexcept;
// Linux's number for GDB's `signal`, or 0 when Linux has none.
int host_signal_from_gdb(int signal) noexcept;

}  // namespace dunk::debug
