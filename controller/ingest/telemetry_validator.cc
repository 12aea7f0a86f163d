#include "controller/ingest/telemetry_validator.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/histogram.h"
#include "common/metric_schema.h"

namespace vigil::controller {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

absl::Status CheckLength(absl::string_view field, absl::string_view value, size_t max) {
  if (value.size() > max) {
    return Invalid(field, absl::StrCat(value.size(), " bytes, more than the ", max, " allowed"));
  }
  return absl::OkStatus();
}

bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Prometheus' metric name syntax: [a-zA-Z_:][a-zA-Z0-9_:]*.
absl::Status CheckMetricName(absl::string_view field, absl::string_view name,
                             const IngestLimits& limits) {
  if (name.empty()) {
    return Invalid(field, "empty metric name");
  }
  if (auto s = CheckLength(field, name, limits.max_name_bytes); !s.ok()) {
    return s;
  }
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (!(IsAlpha(c) || c == '_' || c == ':' || (i > 0 && IsDigit(c)))) {
      return Invalid(
          field, absl::StrCat("metric name has a character outside [a-zA-Z0-9_:] at ", "byte ", i));
    }
  }
  return absl::OkStatus();
}

// Label keys: [a-zA-Z_][a-zA-Z0-9_]*; values: any bytes but NUL, bounded.
template <typename Map>
absl::Status CheckLabels(absl::string_view field, const Map& labels, const IngestLimits& limits) {
  if (labels.size() > limits.max_labels) {
    return Invalid(field, absl::StrCat(labels.size(), " labels, more than the ", limits.max_labels,
                                       " allowed"));
  }
  for (const auto& [key, value] : labels) {
    const std::string where = absl::StrCat(field, "[", key.substr(0, 64), "]");
    if (key.empty()) {
      return Invalid(field, "empty label key");
    }
    if (auto s = CheckLength(where, key, limits.max_label_key_bytes); !s.ok()) {
      return s;
    }
    for (size_t i = 0; i < key.size(); ++i) {
      const char c = key[i];
      if (!(IsAlpha(c) || c == '_' || (i > 0 && IsDigit(c)))) {
        return Invalid(where, "label key has a character outside [a-zA-Z0-9_]");
      }
    }
    if (auto s = CheckLength(where, value, limits.max_label_value_bytes); !s.ok()) {
      return s;
    }
    if (value.find('\0') != std::string::npos) {
      return Invalid(where, "label value holds a NUL byte");
    }
  }
  return absl::OkStatus();
}

// Agent ids become file names, certificate names and CLI arguments: a DNS-like alphabet.
absl::Status CheckAgentId(absl::string_view id) {
  if (id.empty()) {
    return Invalid("hello.agent_id", "empty");
  }
  if (id.size() > 253) {
    return Invalid("hello.agent_id", absl::StrCat(id.size(), " bytes, more than the 253 allowed"));
  }
  for (char c : id) {
    if (!(IsAlpha(c) || IsDigit(c) || c == '-' || c == '.' || c == '_')) {
      return Invalid("hello.agent_id", "has a character outside [a-zA-Z0-9._-]");
    }
  }
  return absl::OkStatus();
}

absl::Status CheckTime(absl::string_view field, int64_t time_ms, const IngestLimits& limits,
                       absl::Time now) {
  const absl::Time t = absl::FromUnixMillis(time_ms);
  if (t > now + limits.max_future_skew) {
    return Invalid(field, absl::StrCat(time_ms, " is ", absl::FormatDuration(t - now),
                                       " ahead of the controller's clock (at most ",
                                       absl::FormatDuration(limits.max_future_skew),
                                       "): check the agent's clock"));
  }
  if (t < now - limits.max_age) {
    return Invalid(field,
                   absl::StrCat(time_ms, " is older than ", absl::FormatDuration(limits.max_age),
                                ", the oldest telemetry the controller accepts"));
  }
  return absl::OkStatus();
}

absl::Status CheckDeclaredMetrics(const v1::Hello& hello, const IngestLimits& limits) {
  const std::string agent = absl::StrCat(" (agent '", hello.agent_id(), "')");
  if (static_cast<size_t>(hello.metrics_size()) > limits.max_declared_metrics) {
    return Invalid(absl::StrCat("hello.metrics", agent),
                   absl::StrCat(hello.metrics_size(), " declared metrics, more than the ",
                                limits.max_declared_metrics, " allowed"));
  }
  absl::flat_hash_set<absl::string_view> names;
  for (int i = 0; i < hello.metrics_size(); ++i) {
    const v1::MetricDeclaration& m = hello.metrics(i);
    const std::string field = absl::StrCat("hello.metrics[", i, "]");
    if (auto s = CheckMetricName(absl::StrCat(field, ".name", agent), m.name(), limits); !s.ok()) {
      return s;
    }
    if (FindMetric(m.name()) != nullptr) {
      return Invalid(absl::StrCat(field, ".name", agent),
                     absl::StrCat("'", m.name(), "' is a name of the built-in schema"));
    }
    if (!names.insert(m.name()).second) {
      return Invalid(absl::StrCat(field, ".name", agent),
                     absl::StrCat("'", m.name(), "' declared twice"));
    }
    if (!v1::MetricDeclaration::Kind_IsValid(m.kind())) {
      return Invalid(absl::StrCat(field, ".kind", agent), absl::StrCat(m.kind(), " is not a kind"));
    }
    if (auto s = CheckLength(absl::StrCat(field, ".unit", agent), m.unit(), limits.max_unit_bytes);
        !s.ok()) {
      return s;
    }
    if (auto s = CheckLength(absl::StrCat(field, ".help", agent), m.help(), limits.max_help_bytes);
        !s.ok()) {
      return s;
    }
    if (std::find(hello.collectors().begin(), hello.collectors().end(), m.collector()) ==
        hello.collectors().end()) {
      return Invalid(absl::StrCat(field, ".collector", agent),
                     absl::StrCat("'", m.collector().substr(0, 64),
                                  "' is not one of the collectors the Hello lists"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateHello(const v1::Hello& hello, const IngestLimits& limits) {
  if (auto s = CheckAgentId(hello.agent_id()); !s.ok()) {
    return s;
  }
  if (auto s = CheckLength("hello.hostname", hello.hostname(), 253); !s.ok()) {
    return s;
  }
  if (auto s = CheckLength("hello.version", hello.version(), 64); !s.ok()) {
    return s;
  }
  if (auto s = CheckLength("hello.instance_id", hello.instance_id(), 128); !s.ok()) {
    return s;
  }
  if (auto s = CheckLabels("hello.labels", hello.labels(), limits); !s.ok()) {
    return s;
  }
  // The audit checkpoint the agent witnesses: bounded here, its signature checked by the
  // auditor (one the audit key did not sign is only noted).
  if (hello.has_audit_checkpoint()) {
    const v1::AuditCheckpoint& checkpoint = hello.audit_checkpoint();
    if (auto s = CheckLength("hello.audit_checkpoint.hash", checkpoint.hash(), 64); !s.ok()) {
      return s;
    }
    if (auto s = CheckLength("hello.audit_checkpoint.signature", checkpoint.signature(), 128);
        !s.ok()) {
      return s;
    }
    if (auto s = CheckLength("hello.audit_checkpoint.key_id", checkpoint.key_id(), 64); !s.ok()) {
      return s;
    }
  }
  constexpr int kMaxNames = 256;
  if (hello.collectors_size() > kMaxNames || hello.actions_size() > kMaxNames) {
    return Invalid("hello", absl::StrCat("more than ", kMaxNames, " collectors or actions"));
  }
  for (int i = 0; i < hello.collectors_size(); ++i) {
    if (auto s = CheckLength(absl::StrCat("hello.collectors[", i, "]"), hello.collectors(i), 64);
        !s.ok()) {
      return s;
    }
  }
  for (int i = 0; i < hello.actions_size(); ++i) {
    const v1::ActionDescriptor& action = hello.actions(i);
    const std::string field = absl::StrCat("hello.actions[", i, "]");
    if (auto s = CheckLength(field, action.name(), 64); !s.ok()) {
      return s;
    }
    if (action.parameters_size() > 64) {
      return Invalid(field, "more than 64 parameters");
    }
    for (const std::string& p : action.parameters()) {
      if (auto s = CheckLength(field, p, 64); !s.ok()) {
        return s;
      }
    }
  }
  if (hello.interval_ms() < 0 || hello.interval_ms() > 3'600'000) {
    return Invalid("hello.interval_ms", absl::StrCat(hello.interval_ms(), " is not in 0..3600000"));
  }
  return CheckDeclaredMetrics(hello, limits);
}

absl::Status ValidateDroppedRanges(const v1::TelemetryBatch& batch, const IngestLimits& limits) {
  if (batch.dropped_size() == 0) {
    return absl::OkStatus();
  }
  if (static_cast<size_t>(batch.dropped_size()) > limits.max_dropped_ranges) {
    return Invalid("telemetry.dropped", absl::StrCat(batch.dropped_size(), " ranges, more than the ",
                                                     limits.max_dropped_ranges, " allowed"));
  }
  if (batch.sequence() == 0) {
    return Invalid("telemetry.dropped", "reported on a heartbeat (sequence 0)");
  }
  for (int i = 0; i < batch.dropped_size(); ++i) {
    const v1::DroppedRange& r = batch.dropped(i);
    const std::string field = absl::StrCat("telemetry.dropped[", i, "]");
    const std::string& reason = r.reason();
    if (reason.empty() || reason.size() > 32 ||
        !std::all_of(reason.begin(), reason.end(), [](char c) {
          return (c >= 'a' && c <= 'z') || c == '_';
        })) {
      return Invalid(absl::StrCat(field, ".reason"),
                     "must be 1 to 32 of [a-z_] (spool_full, corrupt, expired)");
    }
    if (r.batches() == 0 || r.batches() > limits.max_sequence_jump) {
      return Invalid(absl::StrCat(field, ".batches"),
                     absl::StrCat(r.batches(), " is not in 1..", limits.max_sequence_jump));
    }
    if (r.first_sequence() == 0) {
      if (r.last_sequence() != 0) {
        return Invalid(absl::StrCat(field, ".last_sequence"),
                       "must be 0 when first_sequence is 0 (rounds never numbered)");
      }
    } else {
      // A range lies before the batch that reports it, and counts no more than it spans.
      if (r.last_sequence() < r.first_sequence() || r.last_sequence() >= batch.sequence()) {
        return Invalid(absl::StrCat(field, ".last_sequence"),
                       absl::StrCat(r.first_sequence(), "..", r.last_sequence(),
                                    " is not a range before the batch's sequence ",
                                    batch.sequence()));
      }
      if (r.batches() > r.last_sequence() - r.first_sequence() + 1) {
        return Invalid(absl::StrCat(field, ".batches"),
                       absl::StrCat(r.batches(), " is more than the range ", r.first_sequence(),
                                    "..", r.last_sequence(), " holds"));
      }
    }
    if (r.first_time_unix_ms() < 0 || r.last_time_unix_ms() < 0) {
      return Invalid(absl::StrCat(field, ".first_time_unix_ms"), "is negative");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateBatch(const v1::TelemetryBatch& batch, const StreamView& stream,
                           const IngestLimits& limits, absl::Time now) {
  // Sequence: 0 is a heartbeat; otherwise bounded past what is stored.
  const uint64_t seq = batch.sequence();
  if (stream.last_sequence == 0
          ? seq >= kMaxFirstSequence
          : seq > stream.last_sequence && seq - stream.last_sequence > limits.max_sequence_jump) {
    return Invalid("telemetry.sequence",
                   absl::StrCat(seq, " jumps more than ", limits.max_sequence_jump,
                                " past the last stored sequence ", stream.last_sequence));
  }
  if (auto s = ValidateDroppedRanges(batch, limits); !s.ok()) {
    return s;
  }
  // Definitions: dense ids, so the dictionary grows by one entry per definition at most.
  size_t size = stream.dictionary_size;
  for (int i = 0; i < batch.new_series_size(); ++i) {
    const v1::SeriesDefinition& def = batch.new_series(i);
    const std::string field = absl::StrCat("telemetry.new_series[", i, "]");
    if (def.id() >= limits.max_series_per_stream) {
      return Invalid(absl::StrCat(field, ".id"),
                     absl::StrCat(def.id(), " is beyond the stream's cap of ",
                                  limits.max_series_per_stream, " series"));
    }
    // Agents number from 1 (0 stays unused); either start is dense enough.
    const size_t next = std::max<size_t>(size, 1);
    if (def.id() > next) {
      return Invalid(
          absl::StrCat(field, ".id"),
          absl::StrCat(def.id(), " skips ahead: ids must be dense, the next one is ", next));
    }
    size = std::max<size_t>(size, static_cast<size_t>(def.id()) + 1);
    if (auto s = CheckMetricName(absl::StrCat(field, ".name"), def.name(), limits); !s.ok()) {
      return s;
    }
    if (auto s = CheckLabels(absl::StrCat(field, ".labels"), def.labels(), limits); !s.ok()) {
      return s;
    }
  }
  if (static_cast<size_t>(batch.snapshots_size()) > limits.max_snapshots_per_batch) {
    return Invalid("telemetry.snapshots",
                   absl::StrCat(batch.snapshots_size(), " snapshots, more than the ",
                                limits.max_snapshots_per_batch, " allowed in one batch"));
  }
  // The hot path of ingest: field names are only spelt out when something is wrong.
  const int64_t newest_ms = absl::ToUnixMillis(now + limits.max_future_skew);
  const int64_t oldest_ms = absl::ToUnixMillis(now - limits.max_age);
  for (int i = 0; i < batch.snapshots_size(); ++i) {
    const v1::Snapshot& snapshot = batch.snapshots(i);
    auto field = [i] { return absl::StrCat("telemetry.snapshots[", i, "]"); };
    if (snapshot.time_unix_ms() > newest_ms || snapshot.time_unix_ms() < oldest_ms) {
      return CheckTime(absl::StrCat(field(), ".time_unix_ms"), snapshot.time_unix_ms(), limits,
                       now);
    }
    if (snapshot.series_ids_size() != snapshot.values_size()) {
      return Invalid(field(), absl::StrCat(snapshot.series_ids_size(), " series ids but ",
                                           snapshot.values_size(), " values"));
    }
    for (int k = 0; k < snapshot.series_ids_size(); ++k) {
      if (snapshot.series_ids(k) >= size) {
        return Invalid(absl::StrCat(field(), ".series_ids[", k, "]"),
                       absl::StrCat(snapshot.series_ids(k), " was never defined on this stream"));
      }
    }
    for (int k = 0; k < snapshot.histograms_size(); ++k) {
      const v1::HistogramPoint& point = snapshot.histograms(k);
      if (point.series_id() >= size) {
        return Invalid(absl::StrCat(field(), ".histograms[", k, "].series_id"),
                       absl::StrCat(point.series_id(), " was never defined on this stream"));
      }
      if (!LogHistogram::CheckProto(point.histogram(), "").ok()) {
        return LogHistogram::CheckProto(point.histogram(),
                                        absl::StrCat(field(), ".histograms[", k, "].histogram"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateDiagnostics(const v1::Diagnostics& diagnostics, const IngestLimits& limits) {
  if (diagnostics.ByteSizeLong() > limits.max_diagnostics_bytes) {
    return Invalid("diagnostics", absl::StrCat(diagnostics.ByteSizeLong(), " bytes, more than the ",
                                               limits.max_diagnostics_bytes, " allowed"));
  }
  if (auto s = CheckLength("diagnostics.request_id", diagnostics.request_id(), 128); !s.ok()) {
    return s;
  }
  if (static_cast<size_t>(diagnostics.tables_size()) > limits.max_diagnostic_tables) {
    return Invalid("diagnostics.tables",
                   absl::StrCat(diagnostics.tables_size(), " tables, more than the ",
                                limits.max_diagnostic_tables, " allowed"));
  }
  for (int t = 0; t < diagnostics.tables_size(); ++t) {
    const v1::DiagnosticTable& table = diagnostics.tables(t);
    const std::string field = absl::StrCat("diagnostics.tables[", t, "]");
    if (auto s = CheckLength(absl::StrCat(field, ".name"), table.name(), 64); !s.ok()) {
      return s;
    }
    if (auto s = CheckLength(absl::StrCat(field, ".error"), table.error(), limits.max_text_bytes);
        !s.ok()) {
      return s;
    }
    if (static_cast<size_t>(table.columns_size()) > limits.max_diagnostic_columns) {
      return Invalid(absl::StrCat(field, ".columns"), "too many columns");
    }
    if (static_cast<size_t>(table.rows_size()) > limits.max_diagnostic_rows) {
      return Invalid(absl::StrCat(field, ".rows"),
                     absl::StrCat(table.rows_size(), " rows, more than the ",
                                  limits.max_diagnostic_rows, " allowed"));
    }
    for (int r = 0; r < table.rows_size(); ++r) {
      const v1::DiagnosticRow& row = table.rows(r);
      if (static_cast<size_t>(row.cells_size()) > limits.max_diagnostic_columns) {
        return Invalid(absl::StrCat(field, ".rows[", r, "]"), "too many cells");
      }
      for (const std::string& cell : row.cells()) {
        if (auto s = CheckLength(absl::StrCat(field, ".rows[", r, "]"), cell,
                                 limits.max_diagnostic_cell_bytes);
            !s.ok()) {
          return s;
        }
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateCommandResult(const v1::CommandResult& result, const IngestLimits& limits) {
  if (auto s = CheckLength("command_result.command_id", result.command_id(), 128); !s.ok()) {
    return s;
  }
  if (auto s = CheckLength("command_result.output_tail", result.output_tail(),
                           limits.max_output_tail_bytes);
      !s.ok()) {
    return s;
  }
  if (auto s = CheckLength("command_result.reason", result.reason(), limits.max_text_bytes);
      !s.ok()) {
    return s;
  }
  if (result.duration_ms() < 0) {
    return Invalid("command_result.duration_ms", "negative");
  }
  return absl::OkStatus();
}

}  // namespace vigil::controller
