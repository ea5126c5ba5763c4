#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "calc.h"

int main(void) {
  const char *text = "the quick brown fox jumps over the lazy dog";
  char reversed[128];
  unsigned start;
  unsigned longest = collatz_longest(100000, &start);

  reverse_words(text, reversed, sizeof reversed);
  printf("fib(90) = %" PRIu64 "\n", fib(90));
  printf("primes below 1000000 = %u\n", count_primes(1000000));
  printf("crc32 = %08" PRIx32 "\n", crc32(text, strlen(text)));
  printf("sort checksum = %016" PRIx64 "\n", sort_checksum(200000, 12345));
  printf("matrix trace = %" PRIu64 "\n", matrix_trace_power(8, 20));
  printf("reversed = %s\n", reversed);
  printf("fnv1a = %016" PRIx64 "\n", fnv1a(reversed));
  printf("collatz longest below 100000 = %u steps from %u\n", longest, start);
  printf("gcd sum(300) = %" PRIu64 "\n", gcd_sum(300));
  printf("integral of sin over [0, pi] = %.12f\n", integrate_sin(100000));
  return 0;
}
