// Structure offsets shared by core's assembly (context_switch.S) and C++.
// The assembly sees the macros; the C++ structures static_assert against
// them (core/syscall.h, core/thread_start.h), so the two cannot drift.
#pragma once

// struct Syscall: the number, then the six arguments.
#define SYSCALL_NR 0
#define SYSCALL_ARGS 8

// What dunk_forward_syscall, dunk_int80, dunk_clone_native and
// dunk_clone_thread return for a call the guest restarts after its handler
// (core/signals.h, kRestartGuestSyscall).
#define RESTART_GUEST_SYSCALL (-512)

// struct CloneCall (core/thread_start.h), the argument block of
// dunk_clone_native and dunk_clone_thread.
#define CALL_NR 0
#define CALL_ARGS 8
#define CALL_FRAME 48
#define CALL_XSAVE 56
#define CALL_XSAVE_SIZE 64
#define CALL_READY 72
#define CALL_CHILD_FIXUP 80
#define CALL_CLONE_FLAGS 88
#define CALL_SIGNAL_ARRIVED 96

// struct PortAccess (core/port_io.h), the argument of dunk_port_io.
#define PORT_ACCESS_PORT 0
#define PORT_ACCESS_SIZE 2
#define PORT_ACCESS_OUT 3
#define PORT_ACCESS_VALUE 4
