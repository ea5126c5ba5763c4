// The program's own port I/O (`in`, `out`, their string forms) in VM mode.
//
// At CPL 0 the guest may touch any port, and every port KVM does not
// emulate exits to the monitor. Natively the kernel's I/O permission bitmap
// (ioperm, iopl) decides: an allowed access happens, a denied one is #GP,
// SIGSEGV at the instruction. The host thread holds exactly the permission
// the kernel granted the program (dunk forwards ioperm and iopl; fork and
// exec keep it), so the monitor asks the CPU: it makes the access itself on
// the host and recovers from the #GP of a denied one.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/asm_offsets.h"

namespace dunk::core {

struct PortAccess {
  std::uint16_t port;
  std::uint8_t size;  // 1, 2 or 4 bytes
  std::uint8_t out;   // 1: OUT (value is the data), 0: IN (value receives it)
  std::uint32_t value;
};
static_assert(offsetof(PortAccess, port) == PORT_ACCESS_PORT);
static_assert(offsetof(PortAccess, size) == PORT_ACCESS_SIZE);
static_assert(offsetof(PortAccess, out) == PORT_ACCESS_OUT);
static_assert(offsetof(PortAccess, value) == PORT_ACCESS_VALUE);

// Performs `count` accesses of KVM's port exit on the host: `data` holds
// count * size bytes (read for OUT, filled for IN), as kvm_run's I/O area.
// False when the host denies the port (nothing was done). Monitor-safe.
bool perform_port_io(std::uint16_t port, std::uint8_t size, bool out, std::uint32_t count, std::byte* data) noexcept;

}  // namespace dunk::core
