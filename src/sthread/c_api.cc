// Wedge's C API (sthread/sthread.h) over the C++ one: errors become -1 (or
// NULL) with errno.
#include <cerrno>
#include <cstring>

#include "sthread/internal.h"

namespace dunk::sthread {
tag_t tag_new_impl() noexcept;
void tag_delete_impl(tag_t t) noexcept;
void* smalloc_impl(tag_t t, std::size_t size) noexcept;
void sfree_impl(void* p) noexcept;
}  // namespace dunk::sthread

using namespace dunk::sthread;

extern "C" {

void sc_init(sc_t* sc) { std::memset(sc, 0, sizeof *sc); }

void sc_mem_add(sc_t* sc, tag_t t, int prot) {
  if (sc->sc_nmem == STHREAD_MAX_MEM) {
    sc->sc_overflow = 1;
    return;
  }
  sc->sc_mem[sc->sc_nmem++] = sc_mem_grant{t, prot};
}

void sc_fd_add(sc_t* sc, int fd, int prot) {
  for (unsigned i = 0; i < sc->sc_nfd; ++i) {
    if (sc->sc_fd[i].fd == fd) {
      sc->sc_fd[i].prot |= prot;
      return;
    }
  }
  if (sc->sc_nfd == STHREAD_MAX_FD) {
    sc->sc_overflow = 1;
    return;
  }
  sc->sc_fd[sc->sc_nfd++] = sc_fd_grant{fd, prot};
}

void sc_sys_add(sc_t* sc, int sysno) {
  if (sysno < 0 || sysno >= STHREAD_MAX_SYSCALL) {
    sc->sc_overflow = 1;
    return;
  }
  sc->sc_sys[sysno / 8] |= static_cast<unsigned char>(1u << (sysno % 8));
}

void sc_cgate_add(sc_t* sc, cg_t cgate, sc_t* cgsc, void* targ) {
  const int context = cgsc != nullptr ? register_context(*cgsc) : -1;
  if (sc->sc_ncgate == STHREAD_MAX_CGATE || context < 0 || (cgsc != nullptr && cgsc->sc_overflow != 0)) {
    sc->sc_overflow = 1;
    return;
  }
  sc->sc_cgate[sc->sc_ncgate++] = sc_cgate_grant{cgate, targ, context};
}

int sthread_init(void) {
  if (dunk::Status s = init(); !s) {
    errno = s.error().err != 0 ? s.error().err : EINVAL;
    return -1;
  }
  return 0;
}

int sthread_create(sthread_t* st, sc_t* sc, stcb_t cb, void* arg) {
  auto id = create(*sc, cb, arg);
  if (!id) {
    errno = id.error().err != 0 ? id.error().err : EINVAL;
    return -1;
  }
  *st = *id;
  return 0;
}

int sthread_join_report(sthread_t st, void** ret, struct sthread_report* report) {
  auto end = join(st);
  if (!end) {
    errno = end.error().err != 0 ? end.error().err : EINVAL;
    return -1;
  }
  if (report != nullptr) *report = *end;
  if (end->end == STHREAD_FAULTED) {
    errno = EFAULT;
    return -1;
  }
  if (ret != nullptr) *ret = reinterpret_cast<void*>(end->value);
  return 0;
}

int sthread_join(sthread_t st, void** ret) { return sthread_join_report(st, ret, nullptr); }

tag_t tag_new(void) { return tag_new_impl(); }
void tag_delete(tag_t t) { tag_delete_impl(t); }
void* smalloc(tag_t t, size_t size) { return smalloc_impl(t, size); }
void sfree(void* p) { sfree_impl(p); }

}  // extern "C"
