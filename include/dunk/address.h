// Strongly typed addresses. A host virtual address (Hva), a guest-physical
// address (Gpa) and a guest virtual address (Gva) are all 64-bit numbers, and
// mixing them up is the classic bug of this kind of code; here it does not
// compile. dunk maps every host virtual address to itself in the guest, so a
// Gva and an Hva have the same value for process memory — but they are still
// different things, and converting one to the other is spelled out.
#pragma once

#include <compare>
#include <cstdint>

namespace dunk {

template <class Tag>
class Address {
 public:
  constexpr Address() noexcept = default;
  constexpr explicit Address(std::uint64_t value) noexcept : value_(value) {}

  constexpr std::uint64_t value() const noexcept { return value_; }

  template <class T>
  T* as_ptr() const noexcept {
    return reinterpret_cast<T*>(value_);
  }

  constexpr Address operator+(std::uint64_t offset) const noexcept { return Address(value_ + offset); }
  constexpr Address operator-(std::uint64_t offset) const noexcept { return Address(value_ - offset); }
  constexpr Address& operator+=(std::uint64_t offset) noexcept {
    value_ += offset;
    return *this;
  }
  // The distance between two addresses of the same kind.
  constexpr std::uint64_t operator-(Address other) const noexcept { return value_ - other.value_; }

  constexpr auto operator<=>(const Address&) const noexcept = default;

  constexpr bool is_aligned(std::uint64_t alignment) const noexcept { return (value_ & (alignment - 1)) == 0; }
  constexpr Address align_down(std::uint64_t alignment) const noexcept { return Address(value_ & ~(alignment - 1)); }
  constexpr Address align_up(std::uint64_t alignment) const noexcept {
    return Address((value_ + alignment - 1) & ~(alignment - 1));
  }

 private:
  std::uint64_t value_ = 0;
};

using Hva = Address<struct HvaTag>;  // host virtual address (this process)
using Gpa = Address<struct GpaTag>;  // guest-physical address
using Gva = Address<struct GvaTag>;  // guest virtual address

inline Hva hva_of(const void* p) noexcept { return Hva(reinterpret_cast<std::uint64_t>(p)); }

// The guest maps process memory at the same virtual address as the host.
constexpr Gva identity_gva(Hva h) noexcept { return Gva(h.value()); }
constexpr Hva identity_hva(Gva g) noexcept { return Hva(g.value()); }

}  // namespace dunk
