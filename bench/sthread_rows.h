// sthreads in `dunk bench` (bench/sthread_rows.cc): creation, callgates and
// compartment switches, measured by dunk-sthread-bench (bench/sthread_bench.cc)
// and shown as rows of the report. Opt-in: only with --only.
#pragma once

#include "bench/bench.h"

namespace dunk::bench {

// Whether --only asks for a row of the group (the default run has none:
// they take tens of seconds under emulation).
bool sthread_rows_wanted(const Options& options);

// Runs dunk-sthread-bench (next to the dunk executable, or
// $DUNK_STHREAD_BENCH) for the rows options.wants() and appends them; a run
// that fails adds a line to report.failures.
void run_sthread_rows(const Options& options, Report& report);

}  // namespace dunk::bench
