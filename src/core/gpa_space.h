// Assigning guest-physical space to host virtual memory.
//
// The guest maps every host virtual address to itself, so the guest-physical
// address (GPA) behind a page only has to be unique and fit the CPU's
// physical width. Host user space spans 47 bits (128 TiB); the guest-physical
// space may be as small as 36 bits (64 GiB). GpaSpace hands out GPA space in
// aligned chunks, on demand, to the chunks of host address space the process
// actually uses: host chunk H (chunk-aligned) gets GPA chunk G, and every
// address H + o inside it translates to G + o. Each assignment becomes one KVM
// memory slot.
//
// When every GPA chunk is in use, one is taken back from the host chunk that
// holds it (choose_victim, then release): the process's address space may be
// any size, only the chunks in use at once have to fit. Victims are chosen
// in clock order, skipping chunks used since the hand last passed (a
// referenced mark set at assignment, and the caller's accessed test) and
// pinned ones.
//
// Pure bookkeeping: no KVM, no system calls, no allocation. The directory
// (host chunk -> GPA chunk) lives in caller-provided memory.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "dunk/address.h"
#include "dunk/result.h"

namespace dunk::core {

// Host user space on x86-64 with 4-level paging: [0, 2^47), minus the top page.
inline constexpr std::uint64_t kUserAddressBits = 47;
inline constexpr std::uint64_t kUserSpaceEnd = (std::uint64_t{1} << kUserAddressBits) - 4096;

struct GpaRange {
  std::uint64_t start;
  std::uint64_t end;  // exclusive
};

struct GpaSpaceConfig {
  unsigned phys_bits = 39;
  unsigned chunk_shift = 30;  // 1 GiB chunks
  // At most this many chunks are handed out (KVM's memory slot limit).
  std::uint32_t max_chunks = 32764;
  // GPA ranges never handed out (e.g. the 32-bit MMIO hole where the local
  // APIC page and Intel's real-mode TSS live).
  std::span<const GpaRange> reserved = {};
  // Dune's layout (EnterOptions::identity_physical): a host chunk whose
  // address fits the physical width gets the GPA chunk of the same address
  // when that one is free; the others get chunks from the top down, so that
  // low GPAs stay free for the identity assignments still to come.
  bool identity = false;
};

// The GPA ranges every x86 VM should avoid: [3 GiB, 4 GiB) (local APIC at
// 0xfee00000, KVM_SET_TSS_ADDR/IDENTITY_MAP_ADDR pages), and AMD's
// HyperTransport hole [0xfd_0000_0000, 0x100_0000_0000) (AMD "BIOS and Kernel
// Developer's Guide", "IO Space"), which matters only at 40+ physical bits.
std::span<const GpaRange> default_reserved_gpa_ranges() noexcept;

struct ChunkAssignment {
  Hva host;        // chunk-aligned host address
  Gpa guest;       // chunk-aligned guest-physical address
  std::uint64_t size;  // bytes the memory slot covers (the last user chunk is one page short)
  std::uint32_t slot;  // the KVM memory slot number
};

// Caller-provided storage, so that GpaSpace can live where the monitor can
// reach it without allocating.
struct GpaSpaceStorage {
  // One entry per host chunk in user space (directory_entries()), zeroed:
  // 0 = unassigned, n = GPA chunk n - 1.
  std::span<std::uint32_t> directory;
  // One entry per GPA chunk that may be handed out, zeroed: 0 = free,
  // n = host chunk n - 1. Its size bounds the GPA chunks in use.
  std::span<std::uint32_t> reverse;
  // One entry per entry of `reverse`, zeroed: the chunk's pinned and
  // referenced marks.
  std::span<std::uint8_t> marks;
};

class GpaSpace {
 public:
  static Result<GpaSpace> create(const GpaSpaceConfig& config, GpaSpaceStorage storage) noexcept;

  static constexpr std::uint64_t directory_entries(unsigned chunk_shift) noexcept {
    return std::uint64_t{1} << (kUserAddressBits - chunk_shift);
  }
  // Reverse-map entries worth providing for a configuration.
  static std::uint64_t reverse_entries(const GpaSpaceConfig& config) noexcept;

  std::uint64_t chunk_size() const noexcept { return std::uint64_t{1} << chunk_shift_; }
  Hva chunk_of(Hva address) const noexcept { return address.align_down(chunk_size()); }
  // How many GPA chunks can be handed out at once (reserved ranges excluded).
  std::uint32_t capacity() const noexcept { return capacity_; }
  std::uint32_t assigned() const noexcept { return assigned_; }

  // The GPA behind a host address, if its chunk has been assigned.
  std::optional<Gpa> translate(Hva address) const noexcept;
  // The host address behind a GPA, if it lies in an assigned chunk.
  std::optional<Hva> reverse(Gpa address) const noexcept;

  // Assigns GPA space to the chunk containing `address` (or returns the
  // existing assignment). `created` tells whether this call made it, i.e.
  // whether a memory slot must be installed. Fails with ENOMEM when every
  // GPA chunk is in use: choose_victim() and release() make room.
  Result<ChunkAssignment> assign(Hva address, bool* created = nullptr) noexcept;
  // Gives a chunk's GPA space back (its memory slot must be deleted first).
  void release(Hva address) noexcept;
  // The assignment of the chunk containing `address`, if any.
  std::optional<ChunkAssignment> assignment(Hva address) const noexcept;
  bool full() const noexcept { return assigned_ >= capacity_; }

  // Every assignment, in GPA order: f(const ChunkAssignment&). `f` may
  // release the assignment it is given.
  template <class F>
  void for_each_assignment(F&& f) noexcept {
    for (std::uint32_t g = 0; g < storage_.reverse.size(); ++g) {
      if (storage_.reverse[g] != 0) f(describe(storage_.reverse[g] - 1, g));
    }
  }

  // The assigned chunk containing `address` is never chosen as a victim.
  void pin(Hva address) noexcept;
  bool pinned(Hva address) const noexcept;

  // The assignment to take back next, in clock order: the first unpinned
  // chunk after the hand that was not used since the hand last passed it.
  // A chunk counts as used when it was assigned since, or when
  // `accessed(host chunk)` says so (the caller's test of the hardware's
  // accessed bits, which it clears as it reads them). After two turns
  // without an unused chunk, the one at the hand. nullopt: every assigned
  // chunk is pinned.
  template <class Accessed>
  std::optional<ChunkAssignment> choose_victim(Accessed&& accessed) noexcept;

 private:
  GpaSpace() noexcept = default;
  bool reserved(std::uint64_t gpa_chunk) const noexcept;
  ChunkAssignment describe(std::uint64_t host_chunk, std::uint32_t gpa_chunk) const noexcept;
  // The next candidate under the clock hand that is assigned and unpinned;
  // advances the hand past it. nullopt when there is none.
  std::optional<std::uint32_t> advance_hand() noexcept;

  static constexpr std::uint8_t kPinned = 1;
  static constexpr std::uint8_t kReferenced = 2;

  std::optional<std::uint32_t> free_chunk(std::uint64_t host_chunk) const noexcept;

  unsigned chunk_shift_ = 30;
  bool identity_ = false;
  std::uint32_t capacity_ = 0;
  std::uint32_t assigned_ = 0;
  std::uint32_t next_free_hint_ = 0;
  std::uint32_t hand_ = 0;
  std::span<const GpaRange> reserved_;
  GpaSpaceStorage storage_;
};

template <class Accessed>
std::optional<ChunkAssignment> GpaSpace::choose_victim(Accessed&& accessed) noexcept {
  // Two turns: the first may only clear marks.
  const auto turns = 2 * static_cast<std::uint64_t>(storage_.reverse.size());
  for (std::uint64_t step = 0; step < turns; ++step) {
    const std::optional<std::uint32_t> g = advance_hand();
    if (!g) return std::nullopt;
    const std::uint64_t host_chunk = storage_.reverse[*g] - 1;
    bool used = (storage_.marks[*g] & kReferenced) != 0;
    storage_.marks[*g] &= static_cast<std::uint8_t>(~kReferenced);
    if (accessed(Hva(host_chunk << chunk_shift_))) used = true;
    if (!used) return describe(host_chunk, *g);
  }
  const std::optional<std::uint32_t> g = advance_hand();
  if (!g) return std::nullopt;
  return describe(storage_.reverse[*g] - 1, *g);
}

}  // namespace dunk::core
