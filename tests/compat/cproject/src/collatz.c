#include "calc.h"

unsigned collatz_longest(unsigned limit, unsigned *start) {
  unsigned best = 0;
  *start = 1;
  for (unsigned i = 1; i < limit; i++) {
    uint64_t x = i;
    unsigned steps = 0;
    while (x != 1) {
      x = (x & 1) ? 3 * x + 1 : x / 2;
      steps++;
    }
    if (steps > best) {
      best = steps;
      *start = i;
    }
  }
  return best;
}
