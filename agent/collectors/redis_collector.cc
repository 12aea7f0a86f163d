#include "agent/collectors/redis_collector.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/status.h"
#include "common/yaml_util.h"

namespace vigil::agent {

std::map<std::string, std::string> ParseRedisInfoFields(absl::string_view text) {
  std::map<std::string, std::string> fields;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = absl::StripSuffix(line, "\r");
    if (line.empty() || line[0] == '#') {
      continue;
    }
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) {
      continue;
    }
    fields[std::string(line.substr(0, colon))] = std::string(line.substr(colon + 1));
  }
  return fields;
}

absl::StatusOr<RedisInfo> ParseRedisInfo(absl::string_view text) {
  RedisInfo info;
  info.fields = ParseRedisInfoFields(text);
  auto number = [&](const char* key, uint64_t* out) -> absl::Status {
    auto it = info.fields.find(key);
    if (it == info.fields.end()) {
      return absl::InvalidArgumentError(absl::StrCat("INFO has no ", key));
    }
    if (!absl::SimpleAtoi(it->second, out)) {
      return absl::InvalidArgumentError(
          absl::StrCat("INFO ", key, " is not a number: '", it->second, "'"));
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(number("total_commands_processed", &info.total_commands_processed));
  RETURN_IF_ERROR(number("keyspace_hits", &info.keyspace_hits));
  RETURN_IF_ERROR(number("keyspace_misses", &info.keyspace_misses));
  RETURN_IF_ERROR(number("connected_clients", &info.connected_clients));
  RETURN_IF_ERROR(number("used_memory", &info.used_memory));
  return info;
}

RedisCollector::RedisCollector(RedisCollectorOptions options)
    : options_(std::move(options)),
      up_(absl::StrCat("redis at ", options_.host, ":", options_.port)) {}

RedisCollector::~RedisCollector() { Disconnect(); }

void RedisCollector::Disconnect() {
  if (context_ != nullptr) {
    redisFree(context_);
  }
  context_ = nullptr;
}

absl::StatusOr<RedisInfo> RedisCollector::FetchInfo(absl::Time now) {
  if (context_ == nullptr) {
    if (!backoff_.Ready(now)) {
      return absl::UnavailableError("waiting to retry");
    }
    const timeval tv = absl::ToTimeval(options_.timeout);
    context_ = redisConnectWithTimeout(options_.host.c_str(), options_.port, tv);
    if (context_ == nullptr || context_->err) {
      std::string why = context_ ? context_->errstr : "cannot allocate a context";
      Disconnect();
      backoff_.Failed(now);
      return absl::UnavailableError(why);
    }
    // Every later command is bounded too: a hung server costs one timeout, not a stuck thread.
    redisSetTimeout(context_, tv);
  }
  auto* reply = static_cast<redisReply*>(redisCommand(context_, "INFO"));
  if (reply == nullptr) {
    std::string why = context_->errstr;
    Disconnect();
    backoff_.Failed(now);
    return absl::UnavailableError(why);
  }
  absl::StatusOr<RedisInfo> info =
      reply->type == REDIS_REPLY_STRING
          ? ParseRedisInfo(absl::string_view(reply->str, reply->len))
          : absl::InternalError(reply->type == REDIS_REPLY_ERROR
                                    ? std::string(reply->str, reply->len)
                                    : "unexpected INFO reply");
  freeReplyObject(reply);
  if (!info.ok()) {
    Disconnect();
    backoff_.Failed(now);
  } else {
    backoff_.Reset();
  }
  return info;
}

void RedisCollector::Collect(absl::Time now, Collection& out) {
  absl::StatusOr<RedisInfo> info = FetchInfo(now);
  if (!info.ok()) {
    up_.Down(info.status().message());
    out.Gauge("redis_up", 0);
    last_.reset();  // counters may restart with the server
    return;
  }
  up_.Up();
  out.Gauge("redis_up", 1);
  out.Gauge("redis_connected_clients", static_cast<double>(info->connected_clients));
  out.Gauge("redis_used_memory_bytes", static_cast<double>(info->used_memory));
  if (last_ && info->total_commands_processed >= last_->total_commands_processed) {
    const double seconds = std::max(absl::ToDoubleSeconds(now - last_time_), 1e-3);
    // Our own INFO is one command per round; it is not the application's traffic.
    // So are the INFOs sent between rounds to watch thresholds.
    const uint64_t commands = info->total_commands_processed - last_->total_commands_processed;
    const uint64_t own = 1 + own_commands_;
    out.Gauge("redis_ops_per_second",
              static_cast<double>(commands > own ? commands - own : 0) / seconds);
    const uint64_t hits = info->keyspace_hits - std::min(info->keyspace_hits, last_->keyspace_hits);
    const uint64_t misses =
        info->keyspace_misses - std::min(info->keyspace_misses, last_->keyspace_misses);
    // No lookups in the interval: nothing was missed, so the ratio stays where it was.
    if (hits + misses > 0) {
      last_hit_ratio_ = static_cast<double>(hits) / static_cast<double>(hits + misses);
    }
    out.Gauge("redis_keyspace_hit_ratio", last_hit_ratio_);
  }
  last_ = std::move(*info);
  last_time_ = now;
  own_commands_ = 0;
}

void RedisCollector::Sense(absl::Time now, const std::vector<std::string>& names, Collection& out) {
  if (context_ == nullptr) {
    return;  // down: the rounds reconnect, with their backoff
  }
  for (const std::string& name : names) {
    const char* section = name == "redis_connected_clients"   ? "clients"
                          : name == "redis_used_memory_bytes" ? "memory"
                                                              : nullptr;
    const char* field = name == "redis_connected_clients" ? "connected_clients" : "used_memory";
    if (section == nullptr) {
      continue;
    }
    // One small section, not the whole INFO: cheaper for the server and for us.
    auto* reply = static_cast<redisReply*>(redisCommand(context_, "INFO %s", section));
    if (reply == nullptr) {
      Disconnect();  // the context is unusable; the next round reports and reconnects
      return;
    }
    ++own_commands_;
    if (reply->type == REDIS_REPLY_STRING) {
      const std::map<std::string, std::string> fields =
          ParseRedisInfoFields(absl::string_view(reply->str, reply->len));
      uint64_t value = 0;
      if (auto it = fields.find(field);
          it != fields.end() && absl::SimpleAtoi(it->second, &value)) {
        out.Gauge(name, static_cast<double>(value));
      }
    }
    freeReplyObject(reply);
  }
}

std::vector<v1::DiagnosticTable> RedisCollector::Diagnose(absl::Time now,
                                                          const std::vector<std::string>& names) {
  v1::DiagnosticTable table;
  table.set_name("redis_stats");
  table.add_columns("field");
  table.add_columns("value");
  table.set_collected_unix_ms(absl::ToUnixMillis(now));
  absl::StatusOr<RedisInfo> info = FetchInfo(now);
  if (!info.ok()) {
    table.set_error(std::string(info.status().message()));
    return {table};
  }
  for (const char* key :
       {"redis_version", "uptime_in_seconds", "connected_clients", "blocked_clients",
        "used_memory_human", "maxmemory_human", "mem_fragmentation_ratio",
        "instantaneous_ops_per_sec", "keyspace_hits", "keyspace_misses", "evicted_keys",
        "expired_keys", "rejected_connections", "db0"}) {
    auto it = info->fields.find(key);
    if (it == info->fields.end()) {
      continue;
    }
    auto* row = table.add_rows();
    row->add_cells(key);
    row->add_cells(it->second);
  }
  return {table};
}

absl::StatusOr<std::unique_ptr<Collector>> NewRedisCollector(const YAML::Node& config,
                                                             absl::string_view file) {
  RETURN_IF_ERROR(YamlCheckKeys(config, file, "collectors.redis", {"address", "timeout"}));
  RedisCollectorOptions options;
  ASSIGN_OR_RETURN(std::string address, YamlString(config, "address", file, true));
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &options.port) ||
      options.port <= 0 || options.port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(YamlWhere(file, config["address"]),
                                                   ": collectors.redis.address '", address,
                                                   "' must be HOST:PORT"));
  }
  options.host = address.substr(0, colon);
  ASSIGN_OR_RETURN(options.timeout, YamlDuration(config, "timeout", file, options.timeout));
  return std::make_unique<RedisCollector>(std::move(options));
}

}  // namespace vigil::agent
