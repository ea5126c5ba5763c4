// A C++ program of another project: dunk from an installation, through
// find_package(dunk) (dunk::dunk).
#include <cstdio>

#include <dunk/dunk.h>
#include <dunk/paging.h>

int main() {
  if (dunk::Status s = dunk::enter(); !s) {
    char why[256];
    std::printf("dunk::enter: %s\n", dunk::describe(s.error(), why, sizeof why));
    return 1;
  }
  static int value = 7;
  auto info = dunk::AddressSpace::process().lookup(&value);
  const bool ok = dunk::in_vm() && info.has_value();
  dunk::leave();
  std::printf("dunk consumer: in VM mode %s, a page at guest-physical %#llx\n", ok ? "yes" : "no",
              info ? static_cast<unsigned long long>(info->physical) : 0ull);
  return ok ? 0 : 2;
}
