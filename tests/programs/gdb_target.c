// The program tests/cli/gdb_test.sh debugs under `dunk exec --gdb`: a call to
// break in and step through, a global to watch change twice, an exit status
// of its own. Built with -O0 -g so that gdb sees every line and variable.
#include <stdio.h>

int counter;  // watched: 0, then 49, then 50

int square(int x) {
  int y = x * x;
  return y;
}

void bump(int by) {
  counter += by;
}

int main(void) {
  int s = square(7);
  bump(s);
  bump(1);
  printf("counter %d\n", counter);
  return counter == 50 ? 3 : 1;
}
