// What the monitor's system-call handlers need of the address-space mirror
// (core/mirror.h): keep the guest page tables equal to the host's mappings.
// An interface, so that handlers can be tested with a fake.
#pragma once

#include <cstdint>
#include <optional>

#include "dunk/address.h"
#include "dunk/result.h"

namespace dunk::core {

// What resolving a guest page fault took.
struct FaultResolution {
  bool resolved = false;               // the access succeeds when retried
  std::uint32_t chunks_assigned = 0;   // chunks made resident for it
  std::uint32_t chunks_reclaimed = 0;  // of which GPA space was taken back from another chunk
};

class AddressSpaceMirror {
 public:
  // [start, end) is mapped with host protection `prot` (PROT_NONE: absent).
  virtual Status set(Hva start, Hva end, int prot) noexcept = 0;
  // Read [start, end) back from the host's mappings.
  virtual Status sync(Hva start, Hva end) noexcept = 0;
  virtual Status sync_all() noexcept = 0;
  // The host protection (PROT_*) the guest mapping of `address` carries, or
  // nullopt when it is not present.
  virtual std::optional<int> protection(Hva address) noexcept = 0;
  // A page fault resolved the way the monitor resolves its own before the
  // program's handler sees it (the mirror brought up to date at `address`),
  // in the tree whose root is `root` (Gpa(0): the process's): resolved when
  // the access should now succeed, and the chunks it made resident.
  virtual FaultResolution resolve_fault(Hva address, bool write, bool fetch, Gpa root) noexcept = 0;
  // The GPA of `address`, assigning guest-physical space to its chunk if it
  // has none yet (Dune's layout gave every address one). The program knows
  // it from now on: the chunk keeps it for good.
  virtual Result<Gpa> assign(Hva address) noexcept = 0;
  // From now on every chunk with mappings has guest-physical space and
  // keeps it (the program reads its page tables: Mirror::assign_eagerly).
  virtual void assign_eagerly() noexcept = 0;

 protected:
  ~AddressSpaceMirror() = default;
};

}  // namespace dunk::core
