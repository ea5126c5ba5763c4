#include "calc.h"

static unsigned gcd(unsigned a, unsigned b) {
  while (b) {
    unsigned t = a % b;
    a = b;
    b = t;
  }
  return a;
}

uint64_t gcd_sum(unsigned n) {
  uint64_t sum = 0;
  for (unsigned i = 1; i <= n; i++)
    for (unsigned j = 1; j <= n; j++) sum += gcd(i, j);
  return sum;
}
