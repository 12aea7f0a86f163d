// Fuzzes the histogram decode and merge path (common/histogram.h), the one every agent's latency
// travels through. The input is a sequence of length-delimited vigil.v1.Histogram messages: each
// is parsed (ParseFromArray), loaded (FromProto), queried, round-tripped through ToProto, and
// merged into two accumulators, one with Merge and one with MergeProto, which must agree.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "common/histogram.h"
#include "tests/fuzz/delimited.h"
#include "tests/fuzz/fuzz_check.h"
#include "vigil/v1/telemetry.pb.h"

namespace {

using vigil::LogHistogram;

bool SameDouble(double a, double b) {
  return (std::isnan(a) && std::isnan(b)) || std::memcmp(&a, &b, sizeof a) == 0;
}

// True when the counts of `h` add to `total` without wrapping (the quantile walk is exact then).
bool CountsFit(const vigil::v1::Histogram& h, uint64_t& total) {
  if (__builtin_add_overflow(total, h.zero_count(), &total)) {
    return false;
  }
  for (uint64_t c : h.counts()) {
    if (__builtin_add_overflow(total, c, &total)) {
      return false;
    }
  }
  return true;
}

void CheckQuantiles(const LogHistogram& h) {
  for (double q : {0.0, 0.5, 0.95, 0.99, 1.0}) {
    const double v = h.Quantile(q);
    FUZZ_CHECK(!std::isnan(v));
    FUZZ_CHECK(v >= 0);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  LogHistogram merged;        // by Merge
  LogHistogram merged_proto;  // by MergeProto
  merged.Add(0.010);
  merged.Add(0.250, 3);
  merged_proto.Add(0.010);
  merged_proto.Add(0.250, 3);
  bool all_fit = true;
  uint64_t grand_total = merged.count();
  vigil::fuzz::ForEachDelimited(data, size, 64, [&](const uint8_t* bytes, size_t n) {
    vigil::v1::Histogram in;
    if (!in.ParseFromArray(bytes, static_cast<int>(n))) {
      return;
    }
    all_fit = all_fit && CountsFit(in, grand_total);
    LogHistogram h;
    h.FromProto(in);
    CheckQuantiles(h);

    vigil::v1::Histogram out;
    h.ToProto(&out);
    LogHistogram again;
    again.FromProto(out);
    FUZZ_CHECK(again.count() == h.count());
    FUZZ_CHECK(SameDouble(again.sum(), h.sum()));
    if (uint64_t total = 0; CountsFit(in, total)) {
      for (double q : {0.5, 0.95, 0.99}) {
        FUZZ_CHECK(SameDouble(again.Quantile(q), h.Quantile(q)));
      }
    }

    merged.Merge(h);
    merged_proto.MergeProto(in);
  });
  FUZZ_CHECK(merged.count() == merged_proto.count());
  CheckQuantiles(merged);
  CheckQuantiles(merged_proto);
  if (all_fit) {
    for (double q : {0.5, 0.95, 0.99}) {
      FUZZ_CHECK(SameDouble(merged.Quantile(q), merged_proto.Quantile(q)));
    }
  }
  return 0;
}
