// The preload library's own memcpy, memmove, memset, memcmp and strlen:
// what the compiler calls for the monitor's structure copies, and what its
// few string routines call. The monitor runs in a host signal handler, in a
// fork child before libc's atfork handlers, and between two instructions of
// the program; an interposed definition (a sanitizer runtime's interceptor,
// which records the access or checks shadow memory, or the program's own)
// must not run there. The version script (preload.map) keeps them local,
// so that every call inside the library binds here at link time and the
// program's symbol lookup never sees them.
//
// Built with -fno-tree-loop-distribute-patterns (src/CMakeLists.txt): the
// loops below must not become calls to the functions they define.
#include <cstddef>
#include <cstdint>

extern "C" {

void* memcpy(void* dst, const void* src, std::size_t n) noexcept {
  void* ret = dst;
  asm volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
  return ret;
}

void* memmove(void* dst, const void* src, std::size_t n) noexcept {
  const auto d = reinterpret_cast<std::uintptr_t>(dst);
  const auto s = reinterpret_cast<std::uintptr_t>(src);
  if (d - s >= n) return memcpy(dst, src, n);  // no overlap that a forward copy would spoil
  // Backwards, from the last byte: the direction flag set for the copy only.
  auto* last_dst = static_cast<unsigned char*>(dst) + n - 1;
  const auto* last_src = static_cast<const unsigned char*>(src) + n - 1;
  asm volatile("std\n\trep movsb\n\tcld" : "+D"(last_dst), "+S"(last_src), "+c"(n) : : "memory");
  return dst;
}

void* memset(void* dst, int value, std::size_t n) noexcept {
  void* ret = dst;
  asm volatile("rep stosb" : "+D"(dst), "+c"(n) : "a"(value) : "memory");
  return ret;
}

int memcmp(const void* a, const void* b, std::size_t n) noexcept {
  const auto* x = static_cast<const unsigned char*>(a);
  const auto* y = static_cast<const unsigned char*>(b);
  for (std::size_t i = 0; i < n; ++i) {
    if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
  }
  return 0;
}

std::size_t strlen(const char* s) noexcept {
  std::size_t n = 0;
  while (s[n] != '\0') ++n;
  return n;
}

}  // extern "C"
