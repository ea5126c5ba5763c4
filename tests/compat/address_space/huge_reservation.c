/* Reserves 2 TiB (PROT_NONE, MAP_NORESERVE), makes one page every 2 GiB of
   it read/write and touches it (1024 pages), then reads them all back: what
   a runtime that reserves a large range and uses a little of it does. */
#include <stdio.h>
#include <sys/mman.h>

int main(void) {
  const unsigned long gib = 1ul << 30, size = 2048 * gib, step = 2 * gib;
  char* p = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    perror("mmap");
    return 1;
  }
  unsigned long pages = 0, sum = 0;
  for (unsigned long off = 0; off < size; off += step, ++pages) {
    if (mprotect(p + off, 4096, PROT_READ | PROT_WRITE) != 0) {
      perror("mprotect");
      return 1;
    }
    p[off] = (char)(off >> 31);
  }
  for (unsigned long off = 0; off < size; off += step) sum += (unsigned char)p[off];
  printf("2 TiB reserved, %lu pages touched, sum %lu\n", pages, sum);
  return munmap(p, size) == 0 ? 0 : 1;
}
