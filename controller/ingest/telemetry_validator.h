// Edge validation of what an agent sends, before any of it sizes, indexes or changes anything:
// every id, length, count, offset, sequence and timestamp is checked against IngestLimits. A
// violation is InvalidArgument naming the field and the rule it broke ("new_series[3].id
// 4294967295: ids must be dense, the next one is 57"); the caller ends that agent's stream with
// it. Values that are merely unusable (NaN, ±Inf) are not violations: FleetState drops and
// counts them. Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "vigil/v1/agent_service.pb.h"

namespace vigil::controller {

struct IngestLimits {
  // Series a stream may define (dictionary ids are dense: 0 or 1, then 2, 3, ... below this).
  uint32_t max_series_per_stream = 10'000;
  size_t max_name_bytes = 128;         // metric names
  size_t max_label_key_bytes = 64;     // label keys (series and agent labels)
  size_t max_label_value_bytes = 512;  // label values
  size_t max_labels = 32;              // labels per series or per agent
  // Estimated controller memory one agent's series may hold (names, labels, windows).
  size_t max_agent_bytes = 8 << 20;
  size_t max_snapshots_per_batch = 10'000;
  // Telemetry time: refused beyond now + max_future_skew; accepted back to now - max_age (a
  // replay after an outage is normal), refused before that.
  absl::Duration max_future_skew = absl::Seconds(30);
  absl::Duration max_age = absl::Hours(24);
  // A batch's sequence may run at most this far past the highest one stored (a spool replays
  // last + 1, last + 2, ...); a first batch must be below kMaxFirstSequence.
  uint64_t max_sequence_jump = 10'000'000;
  // Dropped ranges one batch may report (the agent merges beyond its own cap of 32).
  size_t max_dropped_ranges = 64;
  // Diagnostics and command results.
  size_t max_diagnostic_tables = 64;
  size_t max_diagnostic_rows = 1'000;
  size_t max_diagnostic_columns = 64;
  size_t max_diagnostic_cell_bytes = 4096;
  size_t max_diagnostics_bytes = 2 << 20;
  size_t max_output_tail_bytes = 64 << 10;
  size_t max_text_bytes = 4096;  // reasons, errors, versions, ids of requests and commands
  // Hello.metrics: scraped metrics an agent declares outside the built-in schema.
  size_t max_declared_metrics = 2'000;
  size_t max_unit_bytes = 32;
  size_t max_help_bytes = 512;
};

// Sequences up to 2^53: beyond, JSON readers lose precision and nothing honest gets there.
inline constexpr uint64_t kMaxFirstSequence = uint64_t{1} << 53;

// The Hello that opens a stream: agent id, hostname, version, labels, collectors, actions, and
// the declared metrics (bounded count, metric-name syntax, never a name of the built-in schema
// nor twice, a known kind, bounded unit and help, a collector the Hello lists). A declaration's
// error names the agent: "hello.metrics[3].name (agent 'web-1'): ...".
absl::Status ValidateHello(const v1::Hello& hello, const IngestLimits& limits);

// What the stream and the agent hold before a batch is applied.
struct StreamView {
  size_t dictionary_size = 0;  // ids defined on this stream so far
  uint64_t last_sequence = 0;  // highest sequence stored for the agent (0: none yet)
};

// A TelemetryBatch against the stream's dictionary and the agent's last sequence, at `now`.
absl::Status ValidateBatch(const v1::TelemetryBatch& batch, const StreamView& stream,
                           const IngestLimits& limits, absl::Time now);

// TelemetryBatch.dropped alone: a bounded count of ranges on a numbered batch, each before that
// batch, counting no more than it spans, with a reason of [a-z_].
absl::Status ValidateDroppedRanges(const v1::TelemetryBatch& batch, const IngestLimits& limits);

absl::Status ValidateDiagnostics(const v1::Diagnostics& diagnostics, const IngestLimits& limits);
absl::Status ValidateCommandResult(const v1::CommandResult& result, const IngestLimits& limits);

}  // namespace vigil::controller
