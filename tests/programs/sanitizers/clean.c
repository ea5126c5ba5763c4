// A sanitized program without a bug: allocations of many sizes, a thread,
// string work. It prints the same result with and without sanitizers, and
// AddressSanitizer's leak check at exit finds nothing.
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void* sum_squares(void* arg) {
  uint64_t n = *(uint64_t*)arg, sum = 0;
  for (uint64_t i = 1; i <= n; ++i) sum += i * i;
  uint64_t* result = malloc(sizeof *result);
  *result = sum;
  return result;
}

int main(void) {
  uint64_t total = 0;
  for (size_t size = 1; size <= 1 << 16; size = size * 3 / 2 + 1) {
    unsigned char* block = malloc(size);
    for (size_t i = 0; i < size; ++i) block[i] = (unsigned char)(i * 7);
    for (size_t i = 0; i < size; ++i) total += block[i];
    free(block);
  }
  char text[64];
  snprintf(text, sizeof text, "%s-%s", "sanitized", "program");
  char* copy = strdup(text);
  uint64_t n = 1000;
  pthread_t thread;
  void* squares;
  pthread_create(&thread, NULL, sum_squares, &n);
  pthread_join(thread, &squares);
  printf("%s: bytes %llu, squares %llu\n", copy, (unsigned long long)total,
         (unsigned long long)*(uint64_t*)squares);
  free(squares);
  free(copy);
  return 0;
}
