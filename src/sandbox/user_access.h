// How the ring-0 supervisor touches the untrusted program's memory.
//
// The supervisor runs in guest ring 0, where every page is reachable (dunk
// sets no SMAP), so the one thing that keeps a copy inside the program's
// memory is the caller's check against the untrusted region (Region). What
// this file adds is safety against the program's own mappings: a page the
// program unmapped or made read-only (another of its threads may do so at
// any time) faults in ring 0, and the copy then fails with EFAULT, as the
// kernel's copy_from_user does, instead of ending the process. The faulting
// instructions are in user_access.S; install() registers the exception
// handlers that send their faults to a fixup.
#pragma once

#include <cstddef>
#include <cstdint>

#include "dunk/result.h"

namespace dunk::sandbox {

// Registers the page-fault and general-protection handlers (dunk/traps.h).
// Before enter(): a page-fault handler makes the mirror keep every mapping
// resident (no first-touch faults the handler would see).
Status install_user_access() noexcept;

// Each returns false after a fault; the bytes before it may have been copied.
// The program's side is accessed in aligned 8-byte words where it can be (a
// pointer or length stored meanwhile by another thread is read whole).
// The caller has checked that every program address is in the region.
bool copy_from_program(void* to, std::uint64_t from, std::size_t size) noexcept;
bool copy_to_program(std::uint64_t to, const void* from, std::size_t size) noexcept;
// Whether every page of [start, start + size) can be written now (size > 0).
bool program_writable(std::uint64_t start, std::size_t size) noexcept;
// How many bytes from `from` could be copied into `to`, stopping at the
// first page that faults.
std::size_t copy_readable_prefix(void* to, std::uint64_t from, std::size_t size) noexcept;

// Whether XRSTOR accepts `image` (standard form, `size` bytes, 64-byte
// aligned): tried in ring 0 with the #GP sent to a fixup; the caller's own
// FPU state is kept in `scratch` (as large and aligned) meanwhile.
bool xrstor_accepts(const void* image, void* scratch, std::size_t size) noexcept;

}  // namespace dunk::sandbox
