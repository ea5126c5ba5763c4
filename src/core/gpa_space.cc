#include "core/gpa_space.h"

#include <algorithm>

namespace dunk::core {
namespace {

constexpr GpaRange kDefaultReserved[] = {
    {0xc000'0000, 0x1'0000'0000},
    {0xfd'0000'0000, 0x100'0000'0000},
};

}  // namespace

std::span<const GpaRange> default_reserved_gpa_ranges() noexcept { return kDefaultReserved; }

std::uint64_t GpaSpace::reverse_entries(const GpaSpaceConfig& config) noexcept {
  std::uint64_t gpa_chunks = std::uint64_t{1} << (config.phys_bits - config.chunk_shift);
  // A GPA chunk's index doubles as its memory slot number, which KVM bounds.
  return std::min<std::uint64_t>(gpa_chunks, config.max_chunks);
}

Result<GpaSpace> GpaSpace::create(const GpaSpaceConfig& config, GpaSpaceStorage storage) noexcept {
  if (config.chunk_shift < 21 || config.chunk_shift > 39 || config.phys_bits > 52 ||
      config.phys_bits <= config.chunk_shift) {
    return Error{"GpaSpace: chunk size must be 2 MiB..512 GiB and below the physical width", EINVAL};
  }
  if (storage.directory.size() < directory_entries(config.chunk_shift)) {
    return Error{"GpaSpace: directory storage too small", EINVAL};
  }
  if (storage.marks.size() < storage.reverse.size()) return Error{"GpaSpace: mark storage too small", EINVAL};
  GpaSpace space;
  space.chunk_shift_ = config.chunk_shift;
  space.identity_ = config.identity;
  space.reserved_ = config.reserved;
  space.storage_ = storage;
  std::uint64_t gpa_chunks = std::min<std::uint64_t>(std::uint64_t{1} << (config.phys_bits - config.chunk_shift),
                                                     storage.reverse.size());
  std::uint32_t usable = 0;
  for (std::uint64_t g = 0; g < gpa_chunks; ++g) {
    if (!space.reserved(g)) ++usable;
  }
  space.capacity_ = std::min(usable, config.max_chunks);
  space.storage_.reverse = storage.reverse.first(gpa_chunks);
  space.storage_.marks = storage.marks.first(gpa_chunks);
  if (space.capacity_ == 0) return Error{"GpaSpace: no guest-physical space left after reservations", ENOSPC};
  return space;
}

bool GpaSpace::reserved(std::uint64_t gpa_chunk) const noexcept {
  std::uint64_t start = gpa_chunk << chunk_shift_;
  std::uint64_t end = start + chunk_size();
  return std::any_of(reserved_.begin(), reserved_.end(),
                     [&](const GpaRange& r) { return start < r.end && r.start < end; });
}

ChunkAssignment GpaSpace::describe(std::uint64_t host_chunk, std::uint32_t gpa_chunk) const noexcept {
  Hva host(host_chunk << chunk_shift_);
  // KVM requires a slot's host range to lie inside user space, which ends one
  // page short of 2^47.
  std::uint64_t size = std::min(chunk_size(), kUserSpaceEnd - host.value());
  return ChunkAssignment{host, Gpa(std::uint64_t{gpa_chunk} << chunk_shift_), size, gpa_chunk};
}

std::optional<Gpa> GpaSpace::translate(Hva address) const noexcept {
  if (address.value() >= kUserSpaceEnd) return std::nullopt;
  std::uint32_t entry = storage_.directory[address.value() >> chunk_shift_];
  if (entry == 0) return std::nullopt;
  std::uint64_t offset = address.value() & (chunk_size() - 1);
  return Gpa((std::uint64_t{entry - 1} << chunk_shift_) + offset);
}

std::optional<Hva> GpaSpace::reverse(Gpa address) const noexcept {
  std::uint64_t gpa_chunk = address.value() >> chunk_shift_;
  if (gpa_chunk >= storage_.reverse.size()) return std::nullopt;
  std::uint32_t entry = storage_.reverse[gpa_chunk];
  if (entry == 0) return std::nullopt;
  std::uint64_t offset = address.value() & (chunk_size() - 1);
  return Hva((std::uint64_t{entry - 1} << chunk_shift_) + offset);
}

std::optional<ChunkAssignment> GpaSpace::assignment(Hva address) const noexcept {
  if (address.value() >= kUserSpaceEnd) return std::nullopt;
  std::uint64_t host_chunk = address.value() >> chunk_shift_;
  std::uint32_t entry = storage_.directory[host_chunk];
  if (entry == 0) return std::nullopt;
  return describe(host_chunk, entry - 1);
}

Result<ChunkAssignment> GpaSpace::assign(Hva address, bool* created) noexcept {
  if (created != nullptr) *created = false;
  if (address.value() >= kUserSpaceEnd) {
    return Error{"address beyond 47-bit user space cannot be mirrored (4-level guest paging)", EFAULT};
  }
  if (auto existing = assignment(address)) return *existing;
  if (full()) return Error{"every guest-physical chunk is in use", ENOMEM};
  const std::uint64_t host_chunk = address.value() >> chunk_shift_;
  const std::optional<std::uint32_t> g = free_chunk(host_chunk);
  if (!g) return Error{"guest-physical address space exhausted", ENOMEM};
  storage_.reverse[*g] = static_cast<std::uint32_t>(host_chunk + 1);
  storage_.directory[host_chunk] = *g + 1;
  // Just assigned for an access about to happen: not the next victim. In
  // Dune's layout, a chunk at its own address keeps it for good: code may
  // take its guest-physical address to be its host address.
  storage_.marks[*g] = identity_ && *g == host_chunk ? kPinned : kReferenced;
  ++assigned_;
  next_free_hint_ = *g + 1;
  if (created != nullptr) *created = true;
  return describe(host_chunk, *g);
}

std::optional<std::uint32_t> GpaSpace::free_chunk(std::uint64_t host_chunk) const noexcept {
  const auto reverse_size = static_cast<std::uint32_t>(storage_.reverse.size());
  auto usable = [&](std::uint32_t g) { return storage_.reverse[g] == 0 && !reserved(g); };
  if (identity_) {
    if (host_chunk < reverse_size && usable(static_cast<std::uint32_t>(host_chunk))) {
      return static_cast<std::uint32_t>(host_chunk);
    }
    for (std::uint32_t g = reverse_size; g-- > 0;) {
      if (usable(g)) return g;
    }
    return std::nullopt;
  }
  // Lowest first, continuing after the last assignment.
  for (std::uint32_t i = 0; i < reverse_size; ++i) {
    std::uint32_t g = (next_free_hint_ + i) % reverse_size;
    if (usable(g)) return g;
  }
  return std::nullopt;
}

void GpaSpace::release(Hva address) noexcept {
  if (address.value() >= kUserSpaceEnd) return;
  std::uint64_t host_chunk = address.value() >> chunk_shift_;
  std::uint32_t entry = storage_.directory[host_chunk];
  if (entry == 0) return;
  storage_.reverse[entry - 1] = 0;
  storage_.marks[entry - 1] = 0;
  storage_.directory[host_chunk] = 0;
  --assigned_;
}

void GpaSpace::pin(Hva address) noexcept {
  if (address.value() >= kUserSpaceEnd) return;
  const std::uint32_t entry = storage_.directory[address.value() >> chunk_shift_];
  if (entry != 0) storage_.marks[entry - 1] |= kPinned;
}

bool GpaSpace::pinned(Hva address) const noexcept {
  if (address.value() >= kUserSpaceEnd) return false;
  const std::uint32_t entry = storage_.directory[address.value() >> chunk_shift_];
  return entry != 0 && (storage_.marks[entry - 1] & kPinned) != 0;
}

std::optional<std::uint32_t> GpaSpace::advance_hand() noexcept {
  const auto size = static_cast<std::uint32_t>(storage_.reverse.size());
  for (std::uint32_t i = 0; i < size; ++i) {
    const std::uint32_t g = hand_;
    hand_ = (hand_ + 1) % size;
    if (storage_.reverse[g] != 0 && (storage_.marks[g] & kPinned) == 0) return g;
  }
  return std::nullopt;
}

}  // namespace dunk::core
