// http_json: GETs JSON endpoints (Qdrant's /collections, Jaeger's query API, any service's
// status page) and turns values found by RFC 6901 pointers into gauges outside the built-in
// schema (declared through DeclaredMetrics) and arrays into diagnostic tables. Each endpoint has
// http_json_up{endpoint}; the last round's outcome per endpoint is the http_json_endpoints table.
// Used by its collector thread only.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "agent/collector.h"
#include "agent/collectors/backoff.h"
#include "agent/collectors/http_source.h"
#include "agent/collectors/json_values.h"

namespace vigil::agent {

// Config bounds.
inline constexpr size_t kMaxJsonEndpoints = 32;
inline constexpr size_t kMaxJsonGaugesPerEndpoint = 64;
inline constexpr size_t kMaxJsonTablesPerEndpoint = 16;
inline constexpr size_t kMaxJsonColumns = 32;
inline constexpr int64_t kMaxJsonElements = 10000;
inline constexpr int64_t kMaxJsonRows = 1000;

struct JsonEndpoint {
  std::string name;
  HttpSource source;
  std::vector<JsonGaugeSpec> gauges;
  std::vector<JsonTableSpec> tables;
};

struct HttpJsonOptions {
  std::vector<JsonEndpoint> endpoints;
  std::vector<v1::MetricDeclaration> declarations;  // one per distinct gauge metric
};

class HttpJsonCollector final : public Collector {
 public:
  explicit HttpJsonCollector(HttpJsonOptions options);

  absl::string_view name() const override { return "http_json"; }
  void Collect(absl::Time now, Collection& out) override;
  std::vector<v1::MetricDeclaration> DeclaredMetrics() const override {
    return options_.declarations;
  }
  std::vector<std::string> DiagnosticNames() const override;
  // Tables are read from a fresh GET of their endpoint (one per endpoint however many tables).
  std::vector<v1::DiagnosticTable> Diagnose(absl::Time now,
                                            const std::vector<std::string>& names) override;

 private:
  struct LastRound {
    bool up = false;
    int status = 0;
    absl::Duration elapsed;
    std::string error;  // the fetch's, or what the gauges could not read
  };
  // The endpoint's document, or the error that stands for it.
  absl::StatusOr<google::protobuf::Value> Fetch(const JsonEndpoint& endpoint, LastRound* round);

  const HttpJsonOptions options_;
  std::vector<LastRound> last_;  // by endpoint index
  std::vector<UpState> up_;      // by endpoint index
};

// Reads `collectors.http_json`; errors name file, line and key.
absl::StatusOr<HttpJsonOptions> ParseHttpJsonConfig(const YAML::Node& config,
                                                    absl::string_view file);
absl::StatusOr<std::unique_ptr<Collector>> NewHttpJsonCollector(const YAML::Node& config,
                                                                absl::string_view file);

}  // namespace vigil::agent
