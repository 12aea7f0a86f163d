// The Prometheus text exposition format 0.0.4 (what /metrics endpoints serve): a pure, bounded
// parser that never throws. `# HELP` and `# TYPE` lines, other comments, samples with optional
// labels (escapes \\ \" \n in values), values as Go writes them (NaN, +Inf, -Inf, 1e-3) and an
// optional millisecond timestamp. A malformed line is reported with its line number and skipped;
// the rest of the text still counts. Stateless; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace vigil::agent {

enum class PromType { kUntyped, kCounter, kGauge, kHistogram, kSummary };
absl::string_view PromTypeName(PromType type);

using PromLabels = std::vector<std::pair<std::string, std::string>>;  // in the text's order

// One sample line. Views point into the parsed text, except `labels` (unescaped copies).
struct PromSample {
  absl::string_view family;  // the TYPE'd family it belongs to (x for x_bucket of histogram x)
  PromType type = PromType::kUntyped;
  absl::string_view name;  // as written: x_bucket, x_sum, x_count, x
  const PromLabels* labels = nullptr;
  double value = 0;
  std::optional<int64_t> timestamp_ms;
  size_t line = 0;  // 1-based
};

struct PromLineError {
  size_t line = 0;
  std::string what;
};

struct PromParseLimits {
  size_t max_bytes = 16 << 20;      // text beyond is not read (an error says so)
  size_t max_line_bytes = 64 << 10;  // a longer line is an error, skipped
  size_t max_samples = 200'000;     // samples beyond are not delivered (an error says so)
  size_t max_labels = 64;           // per sample
  size_t max_errors = 16;           // errors kept; error_count counts them all
};

struct PromParseSummary {
  size_t lines = 0;
  size_t samples = 0;  // well-formed samples, delivered or not
  size_t error_count = 0;
  std::vector<PromLineError> errors;  // the first max_errors, "line N: what"
};

// Receives what the parser finds, in order.
class PromTextVisitor {
 public:
  virtual ~PromTextVisitor() = default;
  // Whether the samples of `family` are wanted; unwanted ones are still checked, but their
  // labels are not copied. Asked once per sample line.
  virtual bool WantFamily(absl::string_view family) { return true; }
  virtual void OnSample(const PromSample& sample) = 0;
  // A well-formed `# TYPE` (the first for its family) and `# HELP` (unescaped).
  virtual void OnType(absl::string_view family, PromType type) {}
  virtual void OnHelp(absl::string_view family, absl::string_view help) {}
};

PromParseSummary ParsePrometheusText(absl::string_view text, PromTextVisitor& visitor,
                                     const PromParseLimits& limits = {});

// The whole text as families, for tests and tools: samples are grouped under their family in
// order of first appearance (a family named only by HELP or TYPE is there with no sample).
struct PromOwnedSample {
  std::string name;
  PromLabels labels;
  double value = 0;
  std::optional<int64_t> timestamp_ms;
};
struct PromFamily {
  std::string name;
  PromType type = PromType::kUntyped;
  std::string help;
  std::vector<PromOwnedSample> samples;
};
struct PromParseResult {
  std::vector<PromFamily> families;
  PromParseSummary summary;
};
PromParseResult ParsePrometheusFamilies(absl::string_view text, const PromParseLimits& limits = {});

// A value as the format writes it (also an `le` bound): decimals, NaN, +Inf, -Inf, Inf.
bool ParsePromValue(absl::string_view text, double* out);

// Prometheus' metric name and label name syntax.
bool IsPromMetricName(absl::string_view name);
bool IsPromLabelName(absl::string_view name);

}  // namespace vigil::agent
