// ThreadSanitizer: two threads write a global without synchronisation. The
// relaxed atomic flag orders the writes in time (so the report is the same
// every run) without ordering them for the memory model (so it is a race).
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

int shared;
atomic_int ready;

static void* writer(void* arg) {
  while (atomic_load_explicit(&ready, memory_order_relaxed) == 0) {
  }
  shared = 2;
  return arg;
}

int main(void) {
  pthread_t thread;
  pthread_create(&thread, NULL, writer, NULL);
  shared = 1;
  atomic_store_explicit(&ready, 1, memory_order_relaxed);
  pthread_join(thread, NULL);
  printf("shared = %d\n", shared);
  return 0;
}
