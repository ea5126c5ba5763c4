// UndefinedBehaviorSanitizer: three kinds of undefined behaviour, each
// reported once; the program goes on (unless built to stop at the first).
#include <limits.h>
#include <stdio.h>

// The array read past its end lies in a larger object, so that what the
// read finds is defined memory (the same in every run).
static struct {
  int array[4];
  int after;
} numbers = {{1, 2, 3, 4}, 5};

int main(int argc, char** argv) {
  (void)argv;
  int big = INT_MAX - 1 + argc;  // argc == 1: INT_MAX
  int overflowed = big + 1;
  int shift = 30 + argc * 3;  // 33
  int shifted = 1 << shift;
  int index = 3 + argc;  // 4
  int outside = numbers.array[index];
  printf("%d %d %d\n", overflowed, shifted, outside);
  return 0;
}
