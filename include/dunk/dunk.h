// dunk: a Linux process enters a KVM virtual machine and keeps running there.
//
//   if (auto s = dunk::enter(); !s) { /* s.error(): what failed and why */ }
//   // ... the same program, now in guest ring 0 of its own VM: same memory,
//   // same file descriptors, every system call forwarded to the host kernel.
//   dunk::leave();
//
// The calling thread moves; the rest of the process is unaffected.
#pragma once

#include <cstdint>

#include "dunk/result.h"

namespace dunk {

struct EnterOptions {
  // Each vCPU gets a local APIC (KVM's, in x2APIC mode): interrupt handlers
  // and inter-processor interrupts between the process's threads
  // (dunk/interrupts.h). Takes effect only at the first enter(), which
  // creates the VM; asking for it later in a VM without fails. In such a VM,
  // `hlt` waits for an interrupt or a signal instead of raising SIGSEGV.
  bool interrupts = false;
  // A child forked in VM mode enters a VM of its own before its first
  // instruction (KVM serves a VM only to the process that created it), so
  // that a whole process tree runs in VM mode; `dunk exec` sets this.
  // Otherwise the child continues outside VM mode.
  bool follow_fork = false;

  // The layout of the guest's memory, for programs written for Dune's
  // (libdune, include/libdune/). Like `interrupts`, they take effect at the
  // first enter(), which creates the VM; a later enter() asking for one the
  // VM lacks fails.
  //
  // Guest-physical addresses equal host addresses wherever they fit the
  // CPU's physical width (Dune's identity-mapped low memory), dunk's own
  // page tables included (placed there for it), so that a program can
  // follow the physical address in an entry to the next table with a plain
  // load; other memory gets guest-physical space from the top down.
  bool identity_physical = false;
  // The mirror of the host's mappings is reachable from ring 3 too (the
  // user bit in every leaf the monitor makes), as Dune's full mode maps
  // memory; by default ring 3 reaches only what the program opens to it
  // (dunk/paging.h, kUser).
  bool user_mirror = false;
  // The mirror maps host memory with 4 KiB pages only, as Dune did, so that
  // every page has an entry of its own (more page tables; no large pages).
  bool small_pages = false;
};

// Moves the calling thread into guest ring 0 of the process's VM (created on
// first use) and returns there: same stack, registers, TLS and FPU state.
// Calling it in VM mode does nothing. Fails, with the thread still on the
// host, when /dev/kvm is missing or unusable, or KVM lacks what dunk needs.
Status enter(const EnterOptions& options = {}) noexcept;

// Returns the calling thread to plain host execution. Does nothing when the
// thread is not in VM mode.
void leave() noexcept;

// Whether the calling thread runs in VM mode.
bool in_vm() noexcept;

// Tears down the process's VM and gives back what it holds (the KVM
// descriptors, the page tables, the vCPUs' memory), so that the next enter()
// builds a new one. Every thread that entered must have left VM mode or
// exited; otherwise it fails with EBUSY and changes nothing. Signal handlers
// the program installed stay installed.
Status shutdown() noexcept;

// A one-line, human-readable explanation of an enter() failure that says
// what to do about it (e.g. "no /dev/kvm: ..."), written into buf.
const char* describe(const Error& error, char* buf, std::size_t size) noexcept;

}  // namespace dunk
