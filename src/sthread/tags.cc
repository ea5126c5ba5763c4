// Tags: regions of memory an sthread reaches only when its context grants
// them (Wedge's tag_new/smalloc). Each tag is one 2 MiB-aligned region,
// granted as one large page; its allocator's bookkeeping lives outside it,
// in the supervisor's memory, so an sthread that may write a tag cannot
// corrupt the allocator.
#include <sys/mman.h>

#include <cerrno>
#include <cstring>

#include "sthread/internal.h"

namespace dunk::sthread {
namespace {

constexpr unsigned kMaxBlocks = 4096;
constexpr std::uint32_t kAlign = 16;

// A region of kTagSize bytes aligned to kTagSize.
char* map_tag_region() noexcept {
  void* p = ::mmap(nullptr, 2 * kTagSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  const auto start = reinterpret_cast<std::uint64_t>(p);
  const std::uint64_t aligned = (start + kTagSize - 1) & ~(std::uint64_t{kTagSize} - 1);
  if (aligned > start) ::munmap(p, aligned - start);
  const std::uint64_t tail = start + 2 * kTagSize - (aligned + kTagSize);
  if (tail > 0) ::munmap(reinterpret_cast<void*>(aligned + kTagSize), tail);
  return reinterpret_cast<char*>(aligned);
}

Tag* tag_at(tag_t t) noexcept {
  if (t <= 0 || static_cast<unsigned>(t) >= kMaxTags) return nullptr;
  Tag& tag = supervisor().tags[t];
  return tag.alive ? &tag : nullptr;
}

// A deleted tag whose last grant went: its memory is zeroed for the next.
void retire(Tag& tag) noexcept {
  (void)::madvise(tag.base, kTagSize, MADV_DONTNEED);
  tag.nblocks = 1;
  tag.blocks[0] = Tag::Block{0, static_cast<std::uint32_t>(kTagSize), false};
  tag.doomed = false;
}

}  // namespace

tag_t tag_new_impl() noexcept {
  Supervisor& s = supervisor();
  LockGuard guard(s.lock);
  for (unsigned i = 1; i < kMaxTags; ++i) {
    Tag& tag = s.tags[i];
    if (tag.alive || tag.doomed) continue;
    if (tag.base == nullptr) {
      tag.base = map_tag_region();
      void* blocks = ::mmap(nullptr, kMaxBlocks * sizeof(Tag::Block), PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (tag.base == nullptr || blocks == MAP_FAILED) {
        if (tag.base != nullptr) ::munmap(tag.base, kTagSize);
        tag.base = nullptr;
        errno = ENOMEM;
        return -1;
      }
      tag.blocks = static_cast<Tag::Block*>(blocks);
      tag.nblocks = 1;
      tag.blocks[0] = Tag::Block{0, static_cast<std::uint32_t>(kTagSize), false};
    }
    tag.alive = true;
    return static_cast<tag_t>(i);
  }
  errno = ENOSPC;
  return -1;
}

void tag_delete_impl(tag_t t) noexcept {
  Supervisor& s = supervisor();
  LockGuard guard(s.lock);
  Tag* tag = tag_at(t);
  if (tag == nullptr) return;
  tag->alive = false;
  if (tag->grants == 0) {
    retire(*tag);
  } else {
    tag->doomed = true;
  }
}

void* smalloc_impl(tag_t t, std::size_t size) noexcept {
  Supervisor& s = supervisor();
  LockGuard guard(s.lock);
  Tag* tag = tag_at(t);
  if (tag == nullptr || size == 0 || size > kTagSize) {
    errno = EINVAL;
    return nullptr;
  }
  const auto need = static_cast<std::uint32_t>((size + kAlign - 1) & ~std::size_t{kAlign - 1});
  for (unsigned i = 0; i < tag->nblocks; ++i) {
    Tag::Block& b = tag->blocks[i];
    if (b.used || b.size < need) continue;
    if (b.size > need) {
      if (tag->nblocks == kMaxBlocks) break;
      std::memmove(&tag->blocks[i + 2], &tag->blocks[i + 1], (tag->nblocks - i - 1) * sizeof(Tag::Block));
      tag->blocks[i + 1] = Tag::Block{b.offset + need, b.size - need, false};
      ++tag->nblocks;
      b.size = need;
    }
    b.used = true;
    return tag->base + b.offset;
  }
  errno = ENOMEM;
  return nullptr;
}

void sfree_impl(void* p) noexcept {
  if (p == nullptr) return;
  Supervisor& s = supervisor();
  LockGuard guard(s.lock);
  const tag_t t = tag_holding(reinterpret_cast<std::uint64_t>(p));
  Tag* tag = tag_at(t);
  if (tag == nullptr) return;
  const auto offset = static_cast<std::uint32_t>(static_cast<char*>(p) - tag->base);
  for (unsigned i = 0; i < tag->nblocks; ++i) {
    if (tag->blocks[i].offset != offset || !tag->blocks[i].used) continue;
    tag->blocks[i].used = false;
    // Merge with the free neighbours.
    if (i + 1 < tag->nblocks && !tag->blocks[i + 1].used) {
      tag->blocks[i].size += tag->blocks[i + 1].size;
      std::memmove(&tag->blocks[i + 1], &tag->blocks[i + 2], (tag->nblocks - i - 2) * sizeof(Tag::Block));
      --tag->nblocks;
    }
    if (i > 0 && !tag->blocks[i - 1].used) {
      tag->blocks[i - 1].size += tag->blocks[i].size;
      std::memmove(&tag->blocks[i], &tag->blocks[i + 1], (tag->nblocks - i - 1) * sizeof(Tag::Block));
      --tag->nblocks;
    }
    return;
  }
}

Status tag_grant(Compartment& c, tag_t t, int prot) noexcept {
  Supervisor& s = supervisor();
  LockGuard guard(s.lock);
  Tag* tag = tag_at(t);
  if (tag == nullptr) return Error{"sthread: the context grants a tag that does not exist", EINVAL};
  if (c.ngranted == STHREAD_MAX_MEM) return Error{"sthread: too many tags", E2BIG};
  // x86 has no write-only page: PROT_WRITE alone is read and write.
  const unsigned access = kRead | kUser | ((prot & PROT_WRITE) != 0 ? kWrite : 0u) | ((prot & PROT_EXEC) != 0 ? kExec : 0u);
  DUNK_TRY(page_table_edit([&] { return c.view->map(tag->base, tag->base, kTagSize, access); }));
  ++tag->grants;
  c.granted[c.ngranted++] = t;
  return {};
}

void tag_revoke_all(Compartment& c) noexcept {
  Supervisor& s = supervisor();
  LockGuard guard(s.lock);
  for (unsigned i = 0; i < c.ngranted; ++i) {
    Tag& tag = s.tags[c.granted[i]];
    // Back to the monitor's mirror: supervisor-only, like all memory.
    (void)page_table_edit([&] { return c.view->release(tag.base, kTagSize); });
    if (--tag.grants == 0 && tag.doomed) retire(tag);
  }
  c.ngranted = 0;
}

tag_t tag_holding(std::uint64_t address) noexcept {
  const Supervisor& s = supervisor();
  for (unsigned i = 1; i < kMaxTags; ++i) {
    const auto base = reinterpret_cast<std::uint64_t>(s.tags[i].base);
    if (base != 0 && address >= base && address - base < kTagSize) return static_cast<tag_t>(i);
  }
  return -1;
}

bool tag_alive(tag_t t) noexcept { return tag_at(t) != nullptr; }

}  // namespace dunk::sthread
