// Redis telemetry from INFO (hiredis): ops/s and keyspace hit ratio from the change over the
// interval (not lifetime counters), clients and memory; a redis_stats diagnostic table.
// Used by its collector thread only.
#pragma once

#include <hiredis/hiredis.h>

#include <memory>
#include <optional>
#include <string>

#include "agent/collector.h"
#include "agent/collectors/backoff.h"

namespace vigil::agent {

struct RedisInfo {
  uint64_t total_commands_processed = 0;
  uint64_t keyspace_hits = 0;
  uint64_t keyspace_misses = 0;
  uint64_t connected_clients = 0;
  uint64_t used_memory = 0;
  std::map<std::string, std::string> fields;  // every field, for diagnostics
};
// Parses INFO output ("# Section" headers, "key:value" lines, CRLF or LF).
absl::StatusOr<RedisInfo> ParseRedisInfo(absl::string_view text);
// Every "key:value" field of INFO output (of any sections); never fails.
std::map<std::string, std::string> ParseRedisInfoFields(absl::string_view text);

struct RedisCollectorOptions {
  std::string host = "127.0.0.1";
  int port = 6379;
  absl::Duration timeout = absl::Seconds(1);
};

class RedisCollector final : public Collector {
 public:
  explicit RedisCollector(RedisCollectorOptions options);
  ~RedisCollector() override;

  absl::string_view name() const override { return "redis"; }
  void Collect(absl::Time now, Collection& out) override;
  // Clients and memory, from `INFO clients` / `INFO memory` on the round's connection.
  std::vector<std::string> SensedGauges() const override {
    return {"redis_connected_clients", "redis_used_memory_bytes"};
  }
  void Sense(absl::Time now, const std::vector<std::string>& names, Collection& out) override;
  std::vector<std::string> DiagnosticNames() const override { return {"redis_stats"}; }
  std::vector<v1::DiagnosticTable> Diagnose(absl::Time now,
                                            const std::vector<std::string>& names) override;

 private:
  absl::StatusOr<RedisInfo> FetchInfo(absl::Time now);
  void Disconnect();

  const RedisCollectorOptions options_;
  redisContext* context_ = nullptr;
  Backoff backoff_;
  UpState up_;
  std::optional<RedisInfo> last_;
  absl::Time last_time_;
  double last_hit_ratio_ = 1;
  uint64_t own_commands_ = 0;  // INFOs sent between rounds: not the application's traffic
};

absl::StatusOr<std::unique_ptr<Collector>> NewRedisCollector(const YAML::Node& config,
                                                             absl::string_view file);

}  // namespace vigil::agent
