#include "agent/collectors/postgres_collector.h"

#include <sys/socket.h>

#include <pqxx/pqxx>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "common/yaml_util.h"

namespace vigil::agent {
namespace {

constexpr char kApplicationName[] = "vigil-agent";

double Number(const std::string& text) {
  double v = 0;
  return absl::SimpleAtod(text, &v) ? v : 0;
}

}  // namespace

std::string AgentDsn(absl::string_view dsn, absl::Duration timeout) {
  const int64_t ms = absl::ToInt64Milliseconds(timeout);
  const int64_t connect_s = std::max<int64_t>(1, ms / 1000);
  if (absl::StartsWith(dsn, "postgres://") || absl::StartsWith(dsn, "postgresql://")) {
    return absl::StrCat(dsn, absl::StrContains(dsn, "?") ? "&" : "?",
                        "application_name=", kApplicationName, "&connect_timeout=", connect_s,
                        "&options=-c%20statement_timeout%3D", ms);
  }
  return absl::StrCat(dsn, " application_name=", kApplicationName, " connect_timeout=", connect_s,
                      " options='-c statement_timeout=", ms, "'");
}

PostgresCollector::PostgresCollector(PostgresCollectorOptions options)
    : options_(std::move(options)), up_("postgres") {
  watchdog_ = std::thread([this] { WatchdogLoop(); });
}

PostgresCollector::~PostgresCollector() {
  {
    std::lock_guard lock(watchdog_mu_);
    stopping_ = true;
  }
  watchdog_cv_.notify_all();
  watchdog_.join();
  try {
    connection_.reset();
  } catch (...) {
  }
}

void PostgresCollector::WatchdogLoop() {
  std::unique_lock lock(watchdog_mu_);
  while (!stopping_) {
    if (watched_fd_ < 0) {
      watchdog_cv_.wait(lock);
      continue;
    }
    if (watchdog_cv_.wait_until(lock, deadline_) == std::cv_status::timeout && watched_fd_ >= 0 &&
        std::chrono::steady_clock::now() >= deadline_) {
      // The server stopped answering (hung, stopped, partitioned): break the call in progress.
      shutdown(watched_fd_, SHUT_RDWR);
      watched_fd_ = -1;
    }
  }
}

absl::StatusOr<std::vector<std::vector<std::string>>> PostgresCollector::Query(
    absl::Time now, const std::string& sql) {
  if (connection_ == nullptr) {
    if (!backoff_.Ready(now)) {
      return absl::UnavailableError("waiting to retry");
    }
    try {
      connection_ =
          std::make_unique<pqxx::connection>(AgentDsn(options_.dsn, options_.query_timeout));
    } catch (const std::exception& e) {
      backoff_.Failed(now);
      std::string why = e.what();
      while (!why.empty() && why.back() == '\n') {
        why.pop_back();
      }
      return absl::UnavailableError(why);
    }
  }
  {
    std::lock_guard lock(watchdog_mu_);
    watched_fd_ = connection_->sock();
    deadline_ = std::chrono::steady_clock::now() +
                absl::ToChronoMilliseconds(options_.query_timeout + absl::Milliseconds(500));
  }
  watchdog_cv_.notify_all();
  absl::StatusOr<std::vector<std::vector<std::string>>> rows;
  try {
    pqxx::nontransaction tx(*connection_);
    pqxx::result result = tx.exec(sql);
    std::vector<std::vector<std::string>> out;
    for (const auto& row : result) {
      std::vector<std::string>& cells = out.emplace_back();
      for (const auto& field : row) {
        cells.push_back(field.is_null() ? "" : field.c_str());
      }
    }
    rows = std::move(out);
  } catch (const std::exception& e) {
    std::string why = e.what();
    while (!why.empty() && why.back() == '\n') {
      why.pop_back();
    }
    rows = absl::UnavailableError(why);
  }
  {
    std::lock_guard lock(watchdog_mu_);
    watched_fd_ = -1;
  }
  watchdog_cv_.notify_all();
  if (!rows.ok()) {
    try {
      connection_.reset();
    } catch (...) {
    }
    backoff_.Failed(now);
  } else {
    backoff_.Reset();
  }
  return rows;
}

void PostgresCollector::Collect(absl::Time now, Collection& out) {
  // One round trip. The agent's own backend and sessions are left out of every figure.
  static const std::string kSql = absl::StrCat(
      "SELECT current_setting('max_connections')::float8,"
      " count(*) FILTER (WHERE backend_type = 'client backend'),"
      " count(*) FILTER (WHERE backend_type = 'client backend' AND state IS DISTINCT FROM 'idle'"
      "   AND pid <> pg_backend_pid() AND application_name <> '",
      kApplicationName,
      "'),"
      " coalesce(max(extract(epoch FROM clock_timestamp() - query_start)) FILTER ("
      "   WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
      "   AND application_name <> '",
      kApplicationName,
      "'), 0),"
      " count(*) FILTER (WHERE cardinality(pg_blocking_pids(pid)) > 0)"
      " FROM pg_stat_activity");
  auto rows = Query(now, kSql);
  if (!rows.ok() || rows->size() != 1 || (*rows)[0].size() != 5) {
    up_.Down(rows.ok() ? "unexpected answer to the pg_stat_activity query"
                       : rows.status().message());
    out.Gauge("pg_up", 0);
    return;
  }
  up_.Up();
  const std::vector<std::string>& r = (*rows)[0];
  PostgresStats stats{Number(r[0]), Number(r[1]), Number(r[2]), Number(r[3]), Number(r[4])};
  out.Gauge("pg_up", 1);
  out.Gauge("pg_active_connections", stats.active);
  out.Gauge("pg_connections_used_ratio",
            stats.max_connections > 0 ? stats.client_connections / stats.max_connections : 0);
  out.Gauge("pg_longest_query_seconds", stats.longest_query_seconds);
  out.Gauge("pg_blocked_queries", stats.blocked);
}

std::vector<v1::DiagnosticTable> PostgresCollector::Diagnose(
    absl::Time now, const std::vector<std::string>& names) {
  const std::string cut = absl::StrCat(options_.max_query_text);
  const std::string limit = absl::StrCat(options_.max_rows);
  std::vector<v1::DiagnosticTable> tables;
  for (const std::string& name : names) {
    v1::DiagnosticTable table;
    table.set_name(name);
    table.set_collected_unix_ms(absl::ToUnixMillis(now));
    std::string sql;
    if (name == "pg_active_queries") {
      for (const char* c : {"pid", "user", "duration_seconds", "state", "wait_event", "query"}) {
        table.add_columns(c);
      }
      sql = absl::StrCat(
          "SELECT pid, usename, round(extract(epoch FROM clock_timestamp() - "
          "query_start)::numeric, 3),"
          " state, coalesce(wait_event_type || ':' || wait_event, ''), left(query, ",
          cut,
          ")"
          " FROM pg_stat_activity WHERE state IS DISTINCT FROM 'idle' AND backend_type = 'client "
          "backend'"
          " AND pid <> pg_backend_pid() AND application_name <> '",
          kApplicationName,
          "'"
          " ORDER BY query_start LIMIT ",
          limit);
    } else if (name == "pg_lock_waits") {
      for (const char* c :
           {"blocked_pid", "blocking_pid", "waiting_seconds", "blocked_query", "blocking_query"}) {
        table.add_columns(c);
      }
      sql = absl::StrCat(
          "SELECT w.pid, b.pid, round(extract(epoch FROM clock_timestamp() - "
          "w.query_start)::numeric, 3),"
          " left(w.query, ",
          cut, "), left(b.query, ", cut,
          ")"
          " FROM pg_stat_activity w CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS "
          "blocker(pid)"
          " JOIN pg_stat_activity b ON b.pid = blocker.pid ORDER BY w.query_start LIMIT ",
          limit);
    } else {
      continue;
    }
    auto rows = Query(now, sql);
    if (!rows.ok()) {
      table.set_error(std::string(rows.status().message()));
    } else {
      for (const auto& row : *rows) {
        auto* out = table.add_rows();
        for (const auto& cell : row) {
          out->add_cells(cell);
        }
      }
    }
    tables.push_back(std::move(table));
  }
  return tables;
}

absl::StatusOr<std::unique_ptr<Collector>> NewPostgresCollector(const YAML::Node& config,
                                                                absl::string_view file) {
  RETURN_IF_ERROR(YamlCheckKeys(config, file, "collectors.postgres",
                                {"dsn", "query_timeout", "max_query_text"}));
  PostgresCollectorOptions options;
  ASSIGN_OR_RETURN(options.dsn, YamlString(config, "dsn", file, true));
  ASSIGN_OR_RETURN(options.query_timeout,
                   YamlDuration(config, "query_timeout", file, options.query_timeout));
  ASSIGN_OR_RETURN(double max_text,
                   YamlDouble(config, "max_query_text", file, options.max_query_text));
  if (!(max_text >= 0 && max_text <= 1'000'000)) {  // also refuses .nan, before the conversion
    return absl::InvalidArgumentError(absl::StrCat(YamlWhere(file, config["max_query_text"]),
                                                   ": collectors.postgres.max_query_text must be "
                                                   "0 to 1000000"));
  }
  options.max_query_text = static_cast<int>(max_text);
  return std::make_unique<PostgresCollector>(std::move(options));
}

}  // namespace vigil::agent
