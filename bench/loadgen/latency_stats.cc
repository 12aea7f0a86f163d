#include "bench/loadgen/latency_stats.h"

#include <algorithm>
#include <cmath>

namespace vigil::loadgen {

double NearestRank(std::vector<double> values, double q) {
  if (values.empty()) {
    return 0;
  }
  q = std::clamp(q, 0.0, 1.0);
  // Rank ceil(q * n), 1-based; rank 1 for q = 0.
  size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(values.size())));
  rank = std::clamp<size_t>(rank, 1, values.size());
  std::nth_element(values.begin(), values.begin() + static_cast<long>(rank - 1), values.end());
  return values[rank - 1];
}

}  // namespace vigil::loadgen
