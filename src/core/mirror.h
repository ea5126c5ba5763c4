// The address-space mirror: guest page tables that map every host virtual
// address of the process to itself, with the host's protections.
//
//   host VA ──(guest page tables: identity, host prot)──> guest VA = host VA
//   guest VA ──(page tables)──> GPA ──(KVM memory slot per chunk)──> host VA
//
// GPA space is assigned per chunk on demand (GpaSpace); each assigned chunk
// becomes a memory slot whose host range is the chunk itself, so KVM follows
// the host's page tables for whatever is mapped there now or later. The
// guest page tables carry the protections (present / writable / executable)
// so that a bad access is a guest #PF with its exact address and error code
// rather than an EFAULT from KVM_RUN. The monitor keeps them current as
// mmap, munmap, mprotect, mremap, brk and friends pass through it, and
// resolves anything else lazily from /proc/self/maps when the guest faults.
#pragma once

#include <sys/mman.h>

#include <cstdint>
#include <optional>

#include "arch/x86_64/page_table.h"
#include "base/lock.h"
#include "core/arena.h"
#include "core/gpa_space.h"
#include "dunk/address.h"
#include "dunk/result.h"
#include "kvm/kvm.h"

namespace dunk::core {

// What a page-table leaf's software bits say about who put it there.
enum class Owner : std::uint8_t {
  kHost = 0,   // mirrors a host mapping
  kDunk = 1,   // dunk's own structures (areas, tables, IDT)
  kUser = 2,   // set by the program through the privileged API
};

struct MirrorConfig {
  GpaSpaceConfig gpa;
  arch::PagingFeatures paging;
};

class Mirror final : private arch::TableMemory {
 public:
  Mirror() noexcept = default;
  Mirror(const Mirror&) = delete;
  Mirror& operator=(const Mirror&) = delete;

  // Sets up GPA bookkeeping and the root table. The arena must be reserved;
  // its chunk is assigned first, so tables have GPAs from the start.
  Status init(kvm::Vm& vm, Arena& arena, const MirrorConfig& config) noexcept;

  Gpa root() const noexcept { return Gpa(root_gpa_); }
  arch::PageTable& page_table() noexcept { return *table_; }

  // Makes the guest mapping of [start, end) mirror host protection `prot`
  // (PROT_NONE: not present). Page-aligned.
  Status set(Hva start, Hva end, int prot) noexcept;
  // Re-reads the host's mappings of [start, end) from /proc/self/maps and
  // mirrors them (holes become not-present). dunk's arena is left alone.
  Status sync(Hva start, Hva end) noexcept;
  Status sync_all() noexcept { return sync(Hva(0), Hva(kUserSpaceEnd)); }

  // The host protection (PROT_*) the guest mapping of `address` carries, or
  // nullopt when it is not present.
  std::optional<int> protection(Hva address) noexcept;
  std::optional<Gpa> translate(Hva address) const noexcept;

  // A guest page fault at `address`: brings the mirror up to date with the
  // host if the host allows the access (stack growth, mappings made behind
  // the monitor's back, a stale TLB entry). True if the access should now
  // succeed.
  bool resolve_fault(Hva address, bool write, bool fetch) noexcept;

  std::uint32_t chunks_assigned() const noexcept { return gpa_ ? gpa_->assigned() : 0; }
  std::uint64_t tables_allocated() const noexcept { return tables_allocated_; }

 private:
  // arch::TableMemory
  Result<arch::TablePage> allocate() noexcept override;
  void release(arch::TablePage page) noexcept override;
  arch::PageTableEntry* table_at(Gpa gpa) noexcept override;

  Status set_locked(Hva start, Hva end, int prot, Owner owner) noexcept;
  Status sync_locked(Hva start, Hva end) noexcept;
  Status ensure_chunk(Hva address) noexcept;
  bool host_allows(Hva address, bool write, bool fetch) noexcept;

  Lock lock_;
  kvm::Vm* vm_ = nullptr;
  Arena* arena_ = nullptr;
  MirrorConfig config_;
  std::optional<GpaSpace> gpa_;
  std::optional<arch::PageTable> table_;
  std::uint64_t root_gpa_ = 0;
  std::uint64_t arena_gpa_ = 0;
  std::uint64_t tables_allocated_ = 0;
  // A memfd used to ask the kernel whether an address is readable: a pwrite
  // from it faults the page in (growing a stack) or fails with EFAULT,
  // without a signal.
  int probe_fd_ = -1;
  // Scratch for reading /proc/self/maps (guarded by lock_).
  char maps_buffer_[16384];
};

}  // namespace dunk::core
