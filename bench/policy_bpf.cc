// dunk-policy-bpf [POLICY] OUT: writes libseccomp's BPF program for a
// sandbox policy (an OCI or Docker seccomp profile; without POLICY, dunk's
// built-in default) into OUT as an array of struct sock_filter, the form
// bubblewrap's --seccomp FD reads. scripts/sandbox-bench runs programs under
// bubblewrap with it, beside `dunk sandbox` with the same policy.
#include <fmt/format.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "bench/seccomp_policy.h"
#include "sandbox/policy.h"

int main(int argc, char** argv) {
  if (argc != 2 && argc != 3) {
    fmt::print(stderr, "usage: dunk-policy-bpf [POLICY] OUT\n");
    return 2;
  }
  std::string text(dunk::sandbox::default_policy_text());
  if (argc == 3) {
    std::ifstream in(argv[1]);
    std::ostringstream s;
    s << in.rdbuf();
    if (!in) {
      fmt::print(stderr, "dunk-policy-bpf: cannot read {}\n", argv[1]);
      return 1;
    }
    text = s.str();
  }
  std::string why;
  const std::vector<sock_filter> program = dunk::bench::policy_bpf(text, why);
  if (program.empty()) {
    fmt::print(stderr, "dunk-policy-bpf: {}\n", why);
    return 1;
  }
  std::ofstream out(argv[argc - 1], std::ios::binary);
  out.write(reinterpret_cast<const char*>(program.data()),
            static_cast<std::streamsize>(program.size() * sizeof(sock_filter)));
  if (!out) {
    fmt::print(stderr, "dunk-policy-bpf: cannot write {}\n", argv[argc - 1]);
    return 1;
  }
  return 0;
}
