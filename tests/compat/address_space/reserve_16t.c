/* Reserves 16 TiB and uses one page every 16 GiB of it (1024 pages), twice
   round. */
#include <stdio.h>
#include <sys/mman.h>

int main(void) {
  const unsigned long gib = 1ul << 30, size = 16384 * gib, step = 16 * gib;
  char* p = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    perror("mmap");
    return 1;
  }
  unsigned long n = 0, sum = 0;
  for (unsigned long off = 0; off < size; off += step, ++n) {
    if (mprotect(p + off, 4096, PROT_READ | PROT_WRITE) != 0) {
      perror("mprotect");
      return 1;
    }
    p[off + 100] = (char)n;
  }
  for (unsigned long off = 0; off < size; off += step) sum += (unsigned char)p[off + 100];
  printf("16 TiB reserved, %lu pages used, sum %lu\n", n, sum);
  return munmap(p, size) == 0 ? 0 : 1;
}
