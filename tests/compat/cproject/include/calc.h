#ifndef CALC_H
#define CALC_H
#include <stddef.h>
#include <stdint.h>

uint64_t fib(unsigned n);
unsigned count_primes(unsigned limit);
uint32_t crc32(const void *data, size_t len);
uint64_t sort_checksum(unsigned n, uint32_t seed);
uint64_t matrix_trace_power(unsigned n, unsigned power);
size_t reverse_words(const char *in, char *out, size_t cap);
uint64_t fnv1a(const char *s);
unsigned collatz_longest(unsigned limit, unsigned *start);
uint64_t gcd_sum(unsigned n);
double integrate_sin(unsigned steps);
uint32_t xorshift32(uint32_t *state);

#endif
