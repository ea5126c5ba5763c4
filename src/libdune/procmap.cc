// dune_procmap_*: the process's mappings, one callback per line of
// /proc/self/maps, read with dunk's allocation-free reader (no stdio, so a
// handler may call it too).
#include <algorithm>
#include <cstring>
#include <string_view>

#include "base/proc_maps.h"
#include "libdune/internal.h"

namespace {

int type_of(std::string_view path) {
  if (path.empty()) return PROCMAP_TYPE_ANONYMOUS;
  if (path.front() != '[') return PROCMAP_TYPE_FILE;
  if (path == "[heap]") return PROCMAP_TYPE_HEAP;
  if (path.starts_with("[stack")) return PROCMAP_TYPE_STACK;
  if (path == "[vsyscall]") return PROCMAP_TYPE_VSYSCALL;
  if (path == "[vdso]") return PROCMAP_TYPE_VDSO;
  if (path == "[vvar]") return PROCMAP_TYPE_VVAR;
  return PROCMAP_TYPE_UNKNOWN;
}

void dump_entry(const struct dune_procmap_entry* e) {
  dune_printf("0x%016lx-0x%016lx %c%c%c%c %08lx %s\n", static_cast<unsigned long>(e->begin),
              static_cast<unsigned long>(e->end), e->r ? 'R' : '-', e->w ? 'W' : '-', e->x ? 'X' : '-',
              e->p ? 'P' : 'S', static_cast<unsigned long>(e->offset), e->path);
}

}  // namespace

extern "C" {

void dune_procmap_iterate(dune_procmap_cb cb) {
  char buffer[dunk::MapsReader::kFullLineBuffer];
  char path[dunk::MapsReader::kFullLineBuffer + 1];
  dunk::MapsReader reader(buffer, sizeof buffer);
  if (dunk::Status s = reader.open(); !s) {
    dunk::libdune::report("reading /proc/self/maps", s.error());
    return;
  }
  dunk::MapEntry m;
  while (reader.next(m)) {
    const std::size_t n = std::min(m.path.size(), sizeof path - 1);
    std::memcpy(path, m.path.data(), n);
    path[n] = '\0';
    struct dune_procmap_entry e;
    e.begin = m.start.value();
    e.end = m.end.value();
    e.offset = m.offset;
    e.r = m.read;
    e.w = m.write;
    e.x = m.exec;
    e.p = !m.shared;
    e.path = path;
    e.type = type_of(m.path);
    cb(&e);
  }
}

void dune_procmap_dump(void) {
  dune_printf("--- process map ---\n");
  dune_procmap_iterate(dump_entry);
}

}  // extern "C"
