// The program's LDT in VM mode.
//
// modify_ldt(2) builds a table of segment descriptors the kernel loads for
// every thread of the process (arch/x86/kernel/ldt.c): a program may then
// load DS, ES, FS or GS with one of its selectors (the TI bit set). In VM mode
// the vCPUs run on dunk's GDT; without an LDT of their own every such
// selector is invalid. The mirror is a copy of the kernel's table in dunk's
// memory (so entries are exactly the kernel's, DPL 3 included), read back
// after every write the program makes, and loaded into each vCPU's LDTR
// (with an LDT descriptor in its GDT, Linux's entries 10-11) at its next
// entry. What this cannot give: code and stack segments from the LDT, which
// have DPL 3 and cannot be loaded at CPL 0.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "base/lock.h"
#include "core/syscall.h"

namespace dunk::core {

class LdtMirror {
 public:
  // LDT_ENTRIES * LDT_ENTRY_SIZE (asm/ldt.h): the largest table.
  static constexpr std::size_t kBytes = 8192 * 8;

  // `table`: kBytes of memory the guest can read (dunk's arena).
  void attach(std::byte* table) noexcept { table_ = table; }
  bool attached() const noexcept { return table_ != nullptr; }

  // Reads the kernel's table of this process back (modify_ldt(0, ...)) into
  // the mirror; a new generation when it changed.
  Status reload(HostKernel& host) noexcept;

  // What a vCPU loads: the table's address and size in bytes (0: no LDT),
  // as of generation().
  const std::byte* table() const noexcept { return table_; }
  std::uint32_t bytes() const noexcept { return bytes_.load(std::memory_order_acquire); }
  std::uint64_t generation() const noexcept { return generation_.load(std::memory_order_acquire); }

  // In a fork child that keeps its copy of the mirror (the kernel gave it a
  // copy of the parent's LDT): a lock another thread of the parent held is
  // stale.
  void reset_after_fork() noexcept { lock_.reset_after_fork(); }

 private:
  Lock lock_;
  std::byte* table_ = nullptr;
  std::atomic<std::uint32_t> bytes_{0};
  std::atomic<std::uint64_t> generation_{0};
};

}  // namespace dunk::core
