// Redis telemetry from INFO (hiredis): ops/s and keyspace hit ratio from the change over the
// interval (not lifetime counters), clients and memory (INFO memory detail, evictions/s); Celery
// queue lengths (LLEN of configured broker queues). Diagnostics: redis_stats, redis_memory, a
// bounded SCAN sample of TTLs (redis_ttl_sample) and keys matching configured patterns with their
// values (redis_keys), bounded by keys and time and never KEYS. Used by its collector thread only.
#pragma once

#include <hiredis/hiredis.h>

#include <memory>
#include <optional>
#include <vector>
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

// The TTL buckets of redis_ttl_sample, in table order.
inline constexpr const char* kRedisTtlBuckets[] = {"no_ttl", "<1m", "1m-1h", "1h-1d", ">=1d",
                                                   "gone"};
// The bucket index of a PTTL reply: -1 no TTL, -2 the key is gone (expired or deleted since SCAN).
size_t RedisTtlBucket(long long pttl_ms);

struct RedisCollectorOptions {
  std::string host = "127.0.0.1";
  int port = 6379;
  absl::Duration timeout = absl::Seconds(1);
  // SCAN bounds of the key diagnostics (each table stops at whichever comes first).
  int ttl_sample_keys = 200;  // 0: no redis_ttl_sample
  absl::Duration scan_time_budget = absl::Milliseconds(200);
  std::vector<std::string> key_patterns;  // SCAN MATCH patterns of redis_keys
  int max_pattern_keys = 50;              // per pattern
  int max_value_bytes = 128;              // values are cut to this (key names at 256)
  std::vector<std::string> celery_queues;  // broker list keys for celery_queue_length{queue}
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
  std::vector<std::string> DiagnosticNames() const override;
  std::vector<v1::DiagnosticTable> Diagnose(absl::Time now,
                                            const std::vector<std::string>& names) override;

 private:
  absl::StatusOr<RedisInfo> FetchInfo(absl::Time now);
  void Disconnect();
  // One command; nullptr (and the context dropped) when the connection failed.
  redisReply* Command(const std::vector<std::string>& args);
  // SCAN [MATCH pattern] until `max_keys` keys, the end of the keyspace or the time budget;
  // `stopped` says which. A failed call returns its error.
  absl::StatusOr<std::vector<std::string>> ScanKeys(const std::string& pattern, size_t max_keys,
                                                    std::string* stopped);
  v1::DiagnosticTable StatsTable(const RedisInfo& info);
  v1::DiagnosticTable MemoryTable(const RedisInfo& info);
  v1::DiagnosticTable TtlSampleTable();
  v1::DiagnosticTable KeysTable();

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
