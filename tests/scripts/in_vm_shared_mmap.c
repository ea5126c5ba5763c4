// Guest-side writer for in_vm_shared_mmap_test.sh. For each FILE it writes a
// shared mapping the way that used to kill the test VM's kernel (9p's
// cache=mmap hit a BUG_ON at the first write): the file is mapped MAP_SHARED
// read-only, made read/write with mprotect, then a fork child writes the
// first page and, once the child is gone, the parent writes the second.
// No msync: the host must see the bytes all the same.
// Prints "FILE: ok" once read(2) sees both writes, else what went wrong, and
// exits 1 if any file failed.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

enum { kPage = 4096, kSize = 2 * kPage };
static const char kChildText[] = "written by the child\n";
static const char kParentText[] = "written by the parent\n";

// Writes TEXT at OFFSET of the mapping from a fork child; 0 if the child
// exited with status 0.
static int write_from_child(char* map, size_t offset, const char* text) {
  pid_t child = fork();
  if (child < 0) return -1;
  if (child == 0) {
    memcpy(map + offset, text, strlen(text));
    _exit(0);
  }
  int status = 0;
  if (waitpid(child, &status, 0) != child) return -1;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

// 0 if read(2) finds TEXT at OFFSET of FD.
static int read_back(int fd, size_t offset, const char* text) {
  char buf[64] = {0};
  size_t len = strlen(text);
  return pread(fd, buf, len, (off_t)offset) == (ssize_t)len && memcmp(buf, text, len) == 0 ? 0 : -1;
}

static int write_file(const char* path) {
  const char* step = "open";
  char* map = MAP_FAILED;
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) goto fail;
  step = "ftruncate";
  if (ftruncate(fd, kSize) != 0) goto fail;
  step = "mmap read-only";
  map = mmap(NULL, kSize, PROT_READ, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) goto fail;
  step = "mprotect read/write";
  if (mprotect(map, kSize, PROT_READ | PROT_WRITE) != 0) goto fail;
  step = "write from a fork child";
  if (write_from_child(map, 0, kChildText) != 0) goto fail;
  memcpy(map + kPage, kParentText, strlen(kParentText));
  step = "read(2) of what the mapping holds";
  if (read_back(fd, 0, kChildText) != 0 || read_back(fd, kPage, kParentText) != 0) goto fail;
  munmap(map, kSize);
  close(fd);
  printf("%s: ok\n", path);
  return 0;
fail:
  printf("%s: %s failed: %s\n", path, step, strerror(errno));
  if (map != MAP_FAILED) munmap(map, kSize);
  if (fd >= 0) close(fd);
  return -1;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s FILE...\n", argv[0]);
    return 2;
  }
  // Line by line, so that what was done arrives even if the guest dies.
  setvbuf(stdout, NULL, _IOLBF, 0);
  int failed = 0;
  for (int i = 1; i < argc; ++i) failed |= write_file(argv[i]) != 0;
  return failed;
}
