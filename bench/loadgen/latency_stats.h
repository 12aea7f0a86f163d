// Latency samples and their percentiles, for the CLI probe's report. Not thread-safe.
#pragma once

#include <cstddef>
#include <vector>

namespace vigil::loadgen {

// The q-quantile (0 <= q <= 1) of `values` by the nearest-rank method: the smallest value with
// at least q of the samples at or below it; 0 when empty. Takes a copy: the caller's order stays.
double NearestRank(std::vector<double> values, double q);

}  // namespace vigil::loadgen
