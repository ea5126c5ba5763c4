// What libdune's files share (not installed). libdune is Dune's C API
// (include/libdune/dune.h) on dunk's privileged API (include/dunk/).
#pragma once

#include <cstdint>

#include "dunk/dunk.h"
#include "dunk/paging.h"
#include "dunk/traps.h"
#include "libdune/dune.h"

namespace dunk::libdune {

// The selectors ring 3 runs with (Linux's GDT, dunk's too).
constexpr std::uint16_t kRing3Cs = GD_UT | 3;
constexpr std::uint16_t kRing3Ss = GD_UD | 3;

// ---- entry.cc ----------------------------------------------------------------

// The VM libdune asks for: interrupts (project-dune's APIC calls), Dune's
// identity-mapped low memory and 4 KiB pages, and with map_full the mirror
// reachable from ring 3 (Dune's full mode).
EnterOptions vm_options() noexcept;
// Whether dune_init succeeded in this process (a fork child inherits it).
bool initialized() noexcept;
// Brings pgroot and the per-process state up to date with the VM this
// process has now (a fork child's, which carries its parent's tables).
void refresh_after_enter() noexcept;

// ---- vm.cc -------------------------------------------------------------------

// The address space whose root table `root` is (pgroot or a clone); null
// when none is.
AddressSpace* space_of_root(const ptent_t* root) noexcept;
// The entry that decides `va` in the tables the calling vCPU runs on (CR3),
// by a walk of the tables; null when a table on the way is missing.
std::uint64_t* deciding_entry(const void* va) noexcept;
// Entries handed to the program (dune_vm_lookup) that it may rewrite with
// its own stores: tagged as the program's (dunk/paging.h, EntryEdit) once
// control is back in libdune.
void note_handed_out(std::uint64_t* entry) noexcept;
void settle_handed_out() noexcept;
// Forgets the clones whose tables the process's VM no longer has: a fork
// child keeps its parent's (Machine::adopt_after_fork), unless it had to
// build a VM afresh.
void forget_lost_clones() noexcept;

// Dune's "holds something": not empty, dunk's owner tag aside (a marker
// dunk leaves in an emptied entry carries the tag and nothing else).
constexpr bool holds_something(std::uint64_t entry) noexcept { return (entry & ~kEntryOwnerBits) != 0; }

// ---- trap.cc -----------------------------------------------------------------

// Whether a page fault is the program's to handle after dunk had its say:
// false when the access should now succeed (dunk resolved it, or a TLB
// entry was stale).
bool page_fault_is_programs(std::uint64_t address, std::uint64_t error_code, bool user) noexcept;
// Runs the program's handler for an exception of a ring-3 run (or the
// default: a dump, then death). A page fault has been found to be the
// program's (page_fault_is_programs) on the tables ring 3 ran on.
void handle_ring3_exception(struct dune_tf& tf, unsigned vector, std::uint64_t cr2) noexcept;
// The program's system-call handler for ring 3 (or the default).
void handle_ring3_syscall(struct dune_tf& tf) noexcept;

// dunk's frame <-> Dune's. For a system call, Dune's rcx is the caller's
// r10 (the fourth argument), and rcx/r11 (return address, flags) stay.
void to_dune(const TrapFrame& frame, struct dune_tf& tf, bool syscall) noexcept;
void from_dune(const struct dune_tf& tf, TrapFrame& frame, bool syscall) noexcept;

// ---- user.cc -----------------------------------------------------------------

// Resets the calling thread's ring-3 state for a thread that has just
// entered VM mode (its FS base for ring 3 is its own until told otherwise).
void thread_entered() noexcept;

// ---- util.cc -----------------------------------------------------------------

// Writes a whole buffer to a descriptor with raw system calls.
void write_all(int fd, const char* text, std::size_t size) noexcept;
// "dune: <what>: <dunk's explanation>" on stderr.
void report(const char* what, const Error& error) noexcept;

}  // namespace dunk::libdune

// context.S
extern "C" {
struct LibduneContext {
  std::uint64_t rsp = 0;
};
long libdune_switch(LibduneContext* save, const LibduneContext* load, long value);
[[noreturn]] void libdune_resume(const LibduneContext* load, long value);
long libdune_start(LibduneContext* save, void* stack_top, void (*fn)(void*), void* arg);
[[noreturn]] void libdune_pop_ring0(const struct dune_tf* tf);
}
