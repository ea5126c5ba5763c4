/* A thread whose stack is a 64 KiB MAP_GROWSDOWN mapping (given with
   pthread_attr_setstack) with 64 MiB unmapped below it recurses 4 MiB deep:
   the kernel grows the mapping. The gaps of the address space above the
   stack are filled first, so that whatever is mapped after it (by the C
   library, or by anything else in the process) goes into the room below
   the stack, within reach of its growth: the layout where growth fails if
   something lands there. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

static const unsigned long mapped = 64 << 10, room = 64ul << 20;

static void fill_gaps_above(unsigned long from) {
  FILE* maps = fopen("/proc/self/maps", "r");
  unsigned long lo[4096], hi[4096], stack = 0;
  int n = 0;
  char line[512];
  while (n < 4096 && fgets(line, sizeof line, maps) != NULL) {
    if (sscanf(line, "%lx-%lx", &lo[n], &hi[n]) != 2) continue;
    if (strstr(line, "[stack]") != NULL) stack = lo[n];
    ++n;
  }
  fclose(maps);
  for (int i = 0; i + 1 < n; ++i) {
    unsigned long a = hi[i] > from ? hi[i] : from, b = lo[i + 1] < stack - (64ul << 20) ? lo[i + 1] : stack - (64ul << 20);
    if (a < b) mmap((void*)a, b - a, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
  }
}

__attribute__((noinline)) static long recurse(int depth) {
  volatile char frame[1024];
  memset((char*)frame, depth, sizeof frame);
  return depth == 0 ? frame[3] : recurse(depth - 1) + frame[7];
}

static void* body(void* arg) {
  (void)arg;
  return (void*)recurse(4096);
}

int main(void) {
  char* base = mmap(NULL, room, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  munmap(base, room - mapped);
  char* stack = mmap(base + room - mapped, mapped, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN | MAP_FIXED, -1, 0);
  if (stack == MAP_FAILED) {
    perror("mmap");
    return 1;
  }
  fill_gaps_above((unsigned long)stack + mapped);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstack(&attr, stack, mapped);
  pthread_t thread;
  void* result;
  if (pthread_create(&thread, &attr, body, NULL) != 0 || pthread_join(thread, &result) != 0) {
    perror("thread");
    return 1;
  }
  printf("the thread returned %ld from 4 MiB of stack\n", (long)result);
  return 0;
}
