#include <stdlib.h>
#include <string.h>

#include "calc.h"

unsigned count_primes(unsigned limit) {
  unsigned char *composite = calloc(limit + 1, 1);
  unsigned count = 0;
  if (!composite) return 0;
  for (unsigned i = 2; i <= limit; i++) {
    if (composite[i]) continue;
    count++;
    for (unsigned long j = (unsigned long)i * i; j <= limit; j += i) composite[j] = 1;
  }
  free(composite);
  return count;
}
