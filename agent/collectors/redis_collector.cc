#include "agent/collectors/redis_collector.h"

#include <chrono>
#include <tuple>

#include "absl/strings/numbers.h"
#include "agent/collectors/cells.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
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
  // INFO memory detail: optional fields (older servers lack some), each read when present.
  for (const auto& [field, metric] : {std::pair{"used_memory_rss", "redis_used_memory_rss_bytes"},
                                      std::pair{"used_memory_peak", "redis_used_memory_peak_bytes"},
                                      std::pair{"maxmemory", "redis_maxmemory_bytes"},
                                      std::pair{"mem_fragmentation_ratio",
                                                "redis_mem_fragmentation_ratio"}}) {
    auto it = info->fields.find(field);
    double value = 0;
    if (it != info->fields.end() && absl::SimpleAtod(it->second, &value)) {
      out.Gauge(metric, value);
    }
  }
  if (last_) {
    uint64_t evicted = 0, last_evicted = 0;
    auto it = info->fields.find("evicted_keys");
    auto last_it = last_->fields.find("evicted_keys");
    if (it != info->fields.end() && last_it != last_->fields.end() &&
        absl::SimpleAtoi(it->second, &evicted) && absl::SimpleAtoi(last_it->second, &last_evicted) &&
        evicted >= last_evicted) {
      const double seconds = std::max(absl::ToDoubleSeconds(now - last_time_), 1e-3);
      out.Gauge("redis_evicted_keys_per_second",
                static_cast<double>(evicted - last_evicted) / seconds);
    }
  }
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
  // Celery with a Redis broker keeps each queue as a list named after it; a missing key is an
  // empty queue (Celery deletes drained lists). These LLENs count in the next round's own.
  for (const std::string& queue : options_.celery_queues) {
    redisReply* reply = Command({"LLEN", queue});
    if (reply == nullptr) {
      return;
    }
    ++own_commands_;
    if (reply->type == REDIS_REPLY_INTEGER) {
      out.Gauge("celery_queue_length", static_cast<double>(reply->integer), {{"queue", queue}});
    }
    freeReplyObject(reply);
  }
}

redisReply* RedisCollector::Command(const std::vector<std::string>& args) {
  if (context_ == nullptr) {
    return nullptr;
  }
  std::vector<const char*> argv;
  std::vector<size_t> lengths;
  for (const std::string& a : args) {
    argv.push_back(a.data());
    lengths.push_back(a.size());
  }
  auto* reply = static_cast<redisReply*>(
      redisCommandArgv(context_, static_cast<int>(argv.size()), argv.data(), lengths.data()));
  if (reply == nullptr) {
    Disconnect();  // the context is unusable after an I/O error or timeout
  }
  return reply;
}

// Key names are cut here, values at max_value_bytes.
constexpr size_t kMaxKeyCellBytes = 256;

size_t RedisTtlBucket(long long pttl_ms) {
  if (pttl_ms == -1) return 0;
  if (pttl_ms < 0) return 5;
  if (pttl_ms < 60 * 1000LL) return 1;
  if (pttl_ms < 3600 * 1000LL) return 2;
  if (pttl_ms < 86400 * 1000LL) return 3;
  return 4;
}

absl::StatusOr<std::vector<std::string>> RedisCollector::ScanKeys(const std::string& pattern,
                                                                  size_t max_keys,
                                                                  std::string* stopped) {
  // SCAN walks the keyspace in small steps the server interleaves with its clients; KEYS would
  // block it for the whole keyspace. Time and keys bound the walk, and so does a call count
  // (a MATCH that rarely matches returns empty pages).
  constexpr int kMaxScanCalls = 10000;
  const absl::Time deadline = absl::Now() + options_.scan_time_budget;
  std::vector<std::string> keys;
  std::string cursor = "0";
  for (int calls = 0;; ++calls) {
    if (calls == kMaxScanCalls) {
      *stopped = absl::StrCat("stopped after ", kMaxScanCalls, " SCAN calls");
      return keys;
    }
    std::vector<std::string> args = {"SCAN", cursor, "COUNT", "100"};
    if (!pattern.empty()) {
      args.insert(args.end(), {"MATCH", pattern});
    }
    redisReply* reply = Command(args);
    if (reply == nullptr) {
      return absl::UnavailableError("redis connection lost during SCAN");
    }
    ++own_commands_;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_ARRAY) {
      std::string why = reply->type == REDIS_REPLY_ERROR ? std::string(reply->str, reply->len)
                                                         : "unexpected SCAN reply";
      freeReplyObject(reply);
      return absl::InternalError(why);
    }
    cursor.assign(reply->element[0]->str, reply->element[0]->len);
    const redisReply* page = reply->element[1];
    for (size_t i = 0; i < page->elements && keys.size() < max_keys; ++i) {
      if (page->element[i]->type == REDIS_REPLY_STRING) {
        keys.emplace_back(page->element[i]->str, page->element[i]->len);
      }
    }
    freeReplyObject(reply);
    if (keys.size() >= max_keys) {
      *stopped = absl::StrCat("stopped at ", max_keys, " keys");
      return keys;
    }
    if (cursor == "0") {
      *stopped = "whole keyspace";
      return keys;
    }
    if (absl::Now() >= deadline) {
      *stopped = absl::StrCat("stopped after ", absl::FormatDuration(options_.scan_time_budget));
      return keys;
    }
  }
}

v1::DiagnosticTable RedisCollector::MemoryTable(const RedisInfo& info) {
  v1::DiagnosticTable table;
  table.set_name("redis_memory");
  table.add_columns("field");
  table.add_columns("value");
  for (const char* key :
       {"used_memory", "used_memory_human", "used_memory_rss", "used_memory_rss_human",
        "used_memory_peak", "used_memory_peak_human", "used_memory_peak_perc", "maxmemory",
        "maxmemory_human", "maxmemory_policy", "mem_fragmentation_ratio", "evicted_keys",
        "expired_keys"}) {
    auto it = info.fields.find(key);
    if (it == info.fields.end()) {
      continue;
    }
    auto* row = table.add_rows();
    row->add_cells(key);
    row->add_cells(PrintableCell(it->second, 128));
  }
  return table;
}

v1::DiagnosticTable RedisCollector::TtlSampleTable() {
  v1::DiagnosticTable table;
  table.set_name("redis_ttl_sample");
  for (const char* c : {"bucket", "keys", "share", "example"}) table.add_columns(c);
  std::string stopped;
  absl::StatusOr<std::vector<std::string>> keys =
      ScanKeys("", static_cast<size_t>(options_.ttl_sample_keys), &stopped);
  if (!keys.ok()) {
    table.set_error(std::string(keys.status().message()));
    return table;
  }
  constexpr size_t kBuckets = std::size(kRedisTtlBuckets);
  uint64_t counts[kBuckets] = {};
  std::string examples[kBuckets];
  // One pipelined PTTL per key: one round trip per SCAN page's worth, not one per key.
  for (const std::string& key : *keys) {
    const char* argv[] = {"PTTL", key.data()};
    const size_t lengths[] = {4, key.size()};
    redisAppendCommandArgv(context_, 2, argv, lengths);
  }
  for (const std::string& key : *keys) {
    void* raw = nullptr;
    if (redisGetReply(context_, &raw) != REDIS_OK || raw == nullptr) {
      Disconnect();
      table.set_error("redis connection lost during PTTL");
      return table;
    }
    ++own_commands_;
    auto* reply = static_cast<redisReply*>(raw);
    if (reply->type == REDIS_REPLY_INTEGER) {
      const size_t b = RedisTtlBucket(reply->integer);
      if (counts[b]++ == 0) {
        examples[b] = PrintableCell(key, kMaxKeyCellBytes);
      }
    }
    freeReplyObject(reply);
  }
  const double total = static_cast<double>(std::max<size_t>(keys->size(), 1));
  for (size_t b = 0; b < kBuckets; ++b) {
    auto* row = table.add_rows();
    row->add_cells(kRedisTtlBuckets[b]);
    row->add_cells(absl::StrCat(counts[b]));
    row->add_cells(absl::StrFormat("%.3f", static_cast<double>(counts[b]) / total));
    row->add_cells(examples[b]);
  }
  auto* row = table.add_rows();
  row->add_cells("sampled");
  row->add_cells(absl::StrCat(keys->size()));
  row->add_cells(keys->empty() ? "0" : "1.000");
  row->add_cells(stopped);
  return table;
}

v1::DiagnosticTable RedisCollector::KeysTable() {
  v1::DiagnosticTable table;
  table.set_name("redis_keys");
  for (const char* c : {"pattern", "key", "type", "ttl_seconds", "value"}) table.add_columns(c);
  const size_t max_value = static_cast<size_t>(options_.max_value_bytes);
  for (const std::string& pattern : options_.key_patterns) {
    std::string stopped;
    absl::StatusOr<std::vector<std::string>> keys =
        ScanKeys(pattern, static_cast<size_t>(options_.max_pattern_keys), &stopped);
    if (!keys.ok()) {
      table.set_error(absl::StrCat("pattern ", PrintableCell(pattern, 256), ": ",
                                   keys.status().message()));
      return table;
    }
    for (const std::string& key : *keys) {
      // TYPE and PTTL, then a bounded read of the value: GETRANGE never transfers more than the
      // cell keeps; other types show their size only.
      redisReply* type = Command({"TYPE", key});
      if (type == nullptr) {
        table.set_error("redis connection lost");
        return table;
      }
      const std::string type_name = type->type == REDIS_REPLY_STATUS
                                        ? std::string(type->str, type->len)
                                        : std::string("?");
      freeReplyObject(type);
      redisReply* ttl = Command({"PTTL", key});
      if (ttl == nullptr) {
        table.set_error("redis connection lost");
        return table;
      }
      std::string ttl_text = ttl->type == REDIS_REPLY_INTEGER
                                 ? (ttl->integer == -1  ? std::string("none")
                                    : ttl->integer < 0 ? std::string("gone")
                                                       : absl::StrFormat("%.3f", ttl->integer / 1000.0))
                                 : std::string("?");
      freeReplyObject(ttl);
      std::vector<std::string> read;
      if (type_name == "string") {
        read = {"GETRANGE", key, "0", absl::StrCat(max_value)};
      } else if (type_name == "list") {
        read = {"LLEN", key};
      } else if (type_name == "hash") {
        read = {"HLEN", key};
      } else if (type_name == "set") {
        read = {"SCARD", key};
      } else if (type_name == "zset") {
        read = {"ZCARD", key};
      } else if (type_name == "stream") {
        read = {"XLEN", key};
      }
      own_commands_ += 2;
      std::string value;
      if (!read.empty()) {
        redisReply* reply = Command(read);
        if (reply == nullptr) {
          table.set_error("redis connection lost");
          return table;
        }
        ++own_commands_;
        if (reply->type == REDIS_REPLY_STRING) {
          value = PrintableCell(absl::string_view(reply->str, reply->len), max_value);
        } else if (reply->type == REDIS_REPLY_INTEGER) {
          value = absl::StrCat("length ", reply->integer);
        }
        freeReplyObject(reply);
      }
      auto* row = table.add_rows();
      row->add_cells(PrintableCell(pattern, 256));
      row->add_cells(PrintableCell(key, kMaxKeyCellBytes));
      row->add_cells(type_name);
      row->add_cells(ttl_text);
      row->add_cells(value);
    }
    if (stopped != "whole keyspace") {
      auto* row = table.add_rows();
      row->add_cells(PrintableCell(pattern, 256));
      row->add_cells("(more keys not shown)");
      row->add_cells("");
      row->add_cells("");
      row->add_cells(stopped);
    }
  }
  return table;
}

std::vector<std::string> RedisCollector::DiagnosticNames() const {
  std::vector<std::string> names = {"redis_stats", "redis_memory"};
  if (options_.ttl_sample_keys > 0) {
    names.push_back("redis_ttl_sample");
  }
  if (!options_.key_patterns.empty()) {
    names.push_back("redis_keys");
  }
  return names;
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
  auto wanted = [&](absl::string_view table) {
    for (const std::string& n : names) {
      if (DiagnosticNameMatches(n, table)) return true;
    }
    return false;
  };
  std::vector<v1::DiagnosticTable> tables;
  absl::StatusOr<RedisInfo> info = FetchInfo(now);
  if (info.ok()) {
    ++own_commands_;
  }
  for (const std::string& name : DiagnosticNames()) {
    if (!wanted(name)) {
      continue;
    }
    v1::DiagnosticTable table;
    if (!info.ok() || context_ == nullptr) {
      table.set_name(name);
      table.set_error(info.ok() ? "redis connection lost" : std::string(info.status().message()));
    } else if (name == "redis_stats") {
      table = StatsTable(*info);
    } else if (name == "redis_memory") {
      table = MemoryTable(*info);
    } else if (name == "redis_ttl_sample") {
      table = TtlSampleTable();
    } else {
      table = KeysTable();
    }
    table.set_collected_unix_ms(absl::ToUnixMillis(now));
    tables.push_back(std::move(table));
  }
  return tables;
}

v1::DiagnosticTable RedisCollector::StatsTable(const RedisInfo& info) {
  v1::DiagnosticTable table;
  table.set_name("redis_stats");
  table.add_columns("field");
  table.add_columns("value");
  for (const char* key :
       {"redis_version", "uptime_in_seconds", "connected_clients", "blocked_clients",
        "used_memory_human", "maxmemory_human", "mem_fragmentation_ratio",
        "instantaneous_ops_per_sec", "keyspace_hits", "keyspace_misses", "evicted_keys",
        "expired_keys", "rejected_connections", "db0"}) {
    auto it = info.fields.find(key);
    if (it == info.fields.end()) {
      continue;
    }
    auto* row = table.add_rows();
    row->add_cells(key);
    row->add_cells(it->second);
  }
  return table;
}

absl::StatusOr<std::unique_ptr<Collector>> NewRedisCollector(const YAML::Node& config,
                                                             absl::string_view file) {
  RETURN_IF_ERROR(YamlCheckKeys(config, file, "collectors.redis",
                                {"address", "timeout", "ttl_sample_keys", "scan_time_budget",
                                 "key_patterns", "max_pattern_keys", "max_value_bytes",
                                 "celery_queues"}));
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
  ASSIGN_OR_RETURN(int64_t sample_keys,
                   YamlInt(config, "ttl_sample_keys", file, options.ttl_sample_keys, 0, 10000));
  options.ttl_sample_keys = static_cast<int>(sample_keys);
  ASSIGN_OR_RETURN(options.scan_time_budget,
                   YamlDuration(config, "scan_time_budget", file, options.scan_time_budget));
  if (options.scan_time_budget <= absl::ZeroDuration() ||
      options.scan_time_budget > absl::Seconds(5)) {
    return absl::InvalidArgumentError(
        absl::StrCat(YamlWhere(file, config["scan_time_budget"]),
                     ": collectors.redis.scan_time_budget must be above 0 and at most 5s"));
  }
  ASSIGN_OR_RETURN(options.key_patterns, YamlStringList(config, "key_patterns", file));
  ASSIGN_OR_RETURN(int64_t max_keys,
                   YamlInt(config, "max_pattern_keys", file, options.max_pattern_keys, 1, 1000));
  options.max_pattern_keys = static_cast<int>(max_keys);
  ASSIGN_OR_RETURN(int64_t max_value,
                   YamlInt(config, "max_value_bytes", file, options.max_value_bytes, 16, 4096));
  options.max_value_bytes = static_cast<int>(max_value);
  ASSIGN_OR_RETURN(options.celery_queues, YamlStringList(config, "celery_queues", file));
  for (const auto& [key, list, max] :
       {std::tuple{"key_patterns", &options.key_patterns, size_t{16}},
        std::tuple{"celery_queues", &options.celery_queues, size_t{64}}}) {
    if (list->size() > max) {
      return absl::InvalidArgumentError(absl::StrCat(YamlWhere(file, config[key]),
                                                     ": collectors.redis.", key,
                                                     " lists at most ", max, " entries"));
    }
    for (const std::string& entry : *list) {
      if (entry.empty() || entry.size() > 256) {
        return absl::InvalidArgumentError(absl::StrCat(
            YamlWhere(file, config[key]), ": collectors.redis.", key,
            " entries must be 1 to 256 bytes"));
      }
    }
  }
  return std::make_unique<RedisCollector>(std::move(options));
}

}  // namespace vigil::agent
