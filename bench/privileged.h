// The Dune paper's microbenchmarks (Belay et al., OSDI 2012, Tables 2 and 3)
// on dunk: each operation the way a Linux process does it natively and the
// way dunk's privileged API does it, side by side in one run.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "bench/bench.h"

namespace dunk::bench {

// Counts one measurement needs: read before and after (see bench.cc).
struct Probes;

// Times loop(n) against loop(0) on this thread, in VM mode when `vm`, with
// the exit and host-call counts per operation.
Result measure(const std::string& name, const std::string& mode, std::uint64_t n, bool vm, const Probes& probes,
               const std::function<void(std::uint64_t)>& loop);

// Appends every privileged-API benchmark options.wants(); `iterations`
// scales them.
void run_privileged(std::uint64_t iterations, const Options& options, const Probes& probes, std::vector<Result>& out);

}  // namespace dunk::bench
