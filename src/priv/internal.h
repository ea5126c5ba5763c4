// What the privileged API's files share (not public).
#pragma once

#include "core/mirror.h"
#include "dunk/paging.h"

namespace dunk::priv {

// The process's address-space mirror; null before the first enter().
core::Mirror* mirror() noexcept;
// The AddressSpace handle of mirror tree `id` (< Mirror::kMaxTrees).
AddressSpace& address_space(unsigned id) noexcept;

// EINVAL unless [va, va + size) is a non-empty run of whole 4 KiB pages.
Status require_page_aligned(const void* va, std::size_t size) noexcept;

}  // namespace dunk::priv
