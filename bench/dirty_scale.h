// Dirty-page tracking at scale (bench/dirty_scale.cc): 1 GiB, 1% written,
// dunk's dirty bits against soft-dirty, userfaultfd write-protection and
// mprotect + SIGSEGV; and the scan's cost against the region's size.
#pragma once

#include <cstdint>

#include "bench/bench.h"

namespace dunk::bench {

struct Probes;

// Appends the rows options.wants(); a way that does not find exactly the pages written adds
// a line to report.failures.
void run_dirty_scale(std::uint64_t rounds, const Options& options, const Probes& probes, Report& report);

}  // namespace dunk::bench
