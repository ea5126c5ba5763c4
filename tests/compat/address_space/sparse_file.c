/* Maps a sparse file of N GiB (default 600) in the current directory whole,
   writes one byte per GiB through the mapping and reads them back, through
   the mapping and with pread: a database's mmap of a huge file. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char** argv) {
  const unsigned long gib = 1ul << 30, count = argc > 1 ? strtoul(argv[1], NULL, 10) : 600, size = count * gib;
  char path[] = "sparse-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0 || unlink(path) != 0 || ftruncate(fd, (off_t)size) != 0) {
    perror("sparse file");
    return 1;
  }
  char* p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
  if (p == MAP_FAILED) {
    perror("mmap");
    return 1;
  }
  unsigned long sum = 0, check = 0;
  for (unsigned long i = 0; i < count; ++i) p[i * gib + i] = (char)(i * 7);
  for (unsigned long i = 0; i < count; ++i) sum += (unsigned char)p[i * gib + i];
  for (unsigned long i = 0; i < count; ++i) {
    char c;
    if (pread(fd, &c, 1, (off_t)(i * gib + i)) != 1) {
      perror("pread");
      return 1;
    }
    check += (unsigned char)c;
  }
  printf("%lu GiB sparse file, %lu pages written, sum %lu through the mapping, %lu through pread\n", count, count,
         sum, check);
  return munmap(p, size) == 0 ? 0 : 1;
}
