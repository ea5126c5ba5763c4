#include "calc.h"

/* Taylor series, so the result needs no libm and is the same everywhere. */
static double sin_approx(double x) {
  double term = x, sum = x;
  for (int k = 1; k < 12; k++) {
    term *= -x * x / ((2 * k) * (2 * k + 1));
    sum += term;
  }
  return sum;
}

double integrate_sin(unsigned steps) {
  const double pi = 3.14159265358979323846;
  double h = pi / steps, sum = 0;
  for (unsigned i = 0; i < steps; i++) sum += sin_approx((i + 0.5) * h) * h;
  return sum;
}
