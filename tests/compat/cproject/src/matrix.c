#include <string.h>

#include "calc.h"

enum { kMax = 16 };

static void multiply(unsigned n, uint64_t a[kMax][kMax], uint64_t b[kMax][kMax]) {
  uint64_t r[kMax][kMax] = {{0}};
  for (unsigned i = 0; i < n; i++)
    for (unsigned j = 0; j < n; j++)
      for (unsigned k = 0; k < n; k++) r[i][j] += a[i][k] * b[k][j];
  memcpy(a, r, sizeof r);
}

uint64_t matrix_trace_power(unsigned n, unsigned power) {
  uint64_t m[kMax][kMax], acc[kMax][kMax] = {{0}};
  uint64_t trace = 0;
  if (n > kMax) n = kMax;
  for (unsigned i = 0; i < n; i++) {
    acc[i][i] = 1;
    for (unsigned j = 0; j < n; j++) m[i][j] = (i * 7 + j * 3) % 5;
  }
  for (unsigned p = 0; p < power; p++) multiply(n, acc, m);
  for (unsigned i = 0; i < n; i++) trace += acc[i][i];
  return trace;
}
