// Dune's page pool: host memory at PAGEBASE, grown 2 MiB at a time, whose
// pages are handed out with reference counts. With the identity layout
// libdune asks dunk for (EnterOptions::identity_physical), each page's
// guest-physical address is its virtual address, which dune_page2pa and
// dune_pa2page (inline in dune.h) count on, as do programs that store pool
// addresses in page-table entries.
#include <pthread.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstdlib>

#include "libdune/internal.h"
#include "libdune/local.h"

namespace {

constexpr int kGrowPages = 512;

pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
page_head free_pages = SLIST_HEAD_INITIALIZER(free_pages);

// Maps [base, base + size) for the pool, refusing to replace anything the
// process has there.
bool map_pool(std::uintptr_t base, std::size_t size) {
  void* p = mmap(reinterpret_cast<void*>(base), size, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (p == MAP_FAILED) return false;
  if (p != reinterpret_cast<void*>(base)) {  // a kernel taking the address as a hint
    munmap(p, size);
    return false;
  }
  return true;
}

// With pool_lock held.
int grow() {
  if (static_cast<unsigned long>(num_pages) + kGrowPages > MAX_PAGES) return -ENOMEM;
  if (!map_pool(PAGEBASE + static_cast<std::uintptr_t>(num_pages) * PGSIZE, kGrowPages * PGSIZE)) return -ENOMEM;
  for (int i = num_pages; i < num_pages + kGrowPages; ++i) {
    pages[i].ref = 0;
    SLIST_INSERT_HEAD(&free_pages, &pages[i], link);
  }
  num_pages += kGrowPages;
  return 0;
}

}  // namespace

extern "C" {

struct page* pages = nullptr;
int num_pages = 0;

int dune_page_init(void) {
  pthread_mutex_lock(&pool_lock);
  int ret = 0;
  if (pages == nullptr) {
    // One entry per page the pool may ever have; untouched entries cost no memory.
    pages = static_cast<struct page*>(std::calloc(MAX_PAGES, sizeof(struct page)));
    ret = pages == nullptr ? -ENOMEM : grow();
  }
  pthread_mutex_unlock(&pool_lock);
  return ret;
}

struct page* dune_page_alloc(void) {
  pthread_mutex_lock(&pool_lock);
  if (SLIST_EMPTY(&free_pages) && grow() != 0) {
    pthread_mutex_unlock(&pool_lock);
    return nullptr;
  }
  struct page* pg = SLIST_FIRST(&free_pages);
  SLIST_REMOVE_HEAD(&free_pages, link);
  pthread_mutex_unlock(&pool_lock);
  return dune_page_get(pg);
}

void dune_page_free(struct page* pg) {
  assert(pg->ref == 0);
  pthread_mutex_lock(&pool_lock);
  SLIST_INSERT_HEAD(&free_pages, pg, link);
  pthread_mutex_unlock(&pool_lock);
}

bool dune_page_isfrompool(physaddr_t pa) {
  return pa >= PAGEBASE && pa < PAGEBASE + static_cast<physaddr_t>(num_pages) * PGSIZE;
}

void dune_page_stats(void) {
  int used = 0;
  for (int i = 0; i < num_pages; ++i) {
    if (pages[i].ref != 0) ++used;
  }
  dune_printf("dune: page pool: %d in use, %d free, %d in all\n", used, num_pages - used, num_pages);
}

}  // extern "C"
