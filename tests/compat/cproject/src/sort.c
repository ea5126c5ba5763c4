#include <stdlib.h>

#include "calc.h"

static int cmp(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

uint64_t sort_checksum(unsigned n, uint32_t seed) {
  uint32_t *v = malloc(n * sizeof *v);
  uint64_t sum = 0;
  if (!v) return 0;
  for (unsigned i = 0; i < n; i++) v[i] = xorshift32(&seed);
  qsort(v, n, sizeof *v, cmp);
  for (unsigned i = 0; i < n; i++) sum = sum * 31 + v[i];
  free(v);
  return sum;
}
