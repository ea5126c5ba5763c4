// sthreads in C++: the same compartments as the C API (sthread/sthread.h,
// Wedge's names), with errors as values and what the C API cannot say.
//
//   if (auto s = dunk::sthread::init(); !s) { /* s.error() */ }
//   sc_t sc;
//   sc_init(&sc);
//   sc_fd_add(&sc, fd, PROT_WRITE);
//   auto st = dunk::sthread::create(sc, worker, arg);       // Result<sthread_t>
//   auto end = dunk::sthread::join(*st);                    // Result<sthread_report>
//   // end->end: STHREAD_RETURNED (end->value), STHREAD_EXITED or STHREAD_FAULTED
//
// An sthread runs in ring 3 (dunk/ring3.h) on an address space of its own
// (dunk/paging.h), on a worker thread of the library's pool (each on its
// own vCPU, so sthreads run concurrently); its system calls and faults come
// to the supervisor in ring 0 of that vCPU. docs/STHREADS.md has the model.
#pragma once

#include <cstdint>

#include "dunk/paging.h"
#include "dunk/result.h"
#include "sthread/sthread.h"

namespace dunk::sthread {

// Enters VM mode (dunk::enter(), unless the thread is in it already) and
// takes the snapshot every sthread starts from: the program's writable
// memory now. Once per process; later calls do nothing.
Status init() noexcept;

struct CreateOptions {
  // Run on a compartment a joined sthread left (reset from dirty bits) when
  // there is one; false: a new one, destroyed at join.
  bool recycle = true;
  // A new compartment's page tables: shared with the template's until the
  // compartment changes them (its stack, tags, copies on write: each copies
  // only the tables on its way), or, with copy_tables, a full copy of the
  // template's (as before sharing; for comparison).
  bool copy_tables = false;
};

Result<sthread_t> create(const sc_t& sc, stcb_t fn, void* arg, const CreateOptions& options = {}) noexcept;
// Waits for the sthread to end and says how (value: returned value or exit
// status). The compartment goes back to the pool, reset.
Result<sthread_report> join(sthread_t st) noexcept;

// The address space an sthread runs on, from create() to join() (tests and
// tools inspect it; do not edit it).
Result<AddressSpace*> view_of(sthread_t st) noexcept;

// Where the supervisor writes one line per refused system call and per
// fault (stderr by default; -1: nowhere).
void set_report_fd(int fd) noexcept;

// Counters since init(), for benchmarks and tests.
struct Stats {
  std::uint64_t created_fresh = 0;    // compartments built from the template
  std::uint64_t created_recycled = 0; // compartments reused
  std::uint64_t cow_copies = 0;       // pages copied on an sthread's first write
  std::uint64_t pages_reset = 0;      // pages reset at recycling (dirty)
  std::uint64_t calls_checked = 0;    // system calls passed on after the checks
  std::uint64_t calls_refused = 0;
  std::uint64_t callgates = 0;        // callgate invocations
  std::uint64_t workers = 0;          // worker threads started
  std::uint64_t compartments = 0;     // compartments that exist now (running, joined-to-be, pooled)
  std::uint64_t compartment_tables = 0;  // page-table pages the compartments alone link, summed
  std::uint64_t page_tables = 0;      // page-table pages in use, every address space (dunk::page_tables_in_use)
};
Stats stats() noexcept;

}  // namespace dunk::sthread
