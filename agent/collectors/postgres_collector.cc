#include "agent/collectors/postgres_collector.h"

#include <sys/socket.h>

#include <pqxx/pqxx>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/own_backends.h"
#include "common/redact.h"
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

std::map<std::string, double> ParsePgStateCounts(absl::string_view text) {
  std::map<std::string, double> counts;
  for (const char* state : kPgConnectionStates) {
    counts[state] = 0;
  }
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    const size_t eq = item.rfind('=');
    if (eq == absl::string_view::npos) {
      continue;
    }
    double n = 0;
    if (!absl::SimpleAtod(item.substr(eq + 1), &n) || !(n >= 0) || n > 1e9) {
      continue;
    }
    auto it = counts.find(std::string(item.substr(0, eq)));
    (it == counts.end() ? counts["unknown"] : it->second) += n;
  }
  return counts;
}

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
  Disconnect();
}

void PostgresCollector::Disconnect() {
  if (backend_pid_ != 0) {
    OwnBackends::Get().Remove(backend_pid_);
    backend_pid_ = 0;
  }
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
      // Known by pid, so actions never signal it and figures leave it out.
      pqxx::nontransaction tx(*connection_);
      backend_pid_ = tx.exec("SELECT pg_backend_pid()")[0][0].as<int>();
      OwnBackends::Get().Add(backend_pid_);
    } catch (const std::exception& e) {
      Disconnect();
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
  } catch (const pqxx::sql_error& e) {
    // The server answered with an error (a missing view, a timeout): the connection is fine.
    std::string why = e.what();
    while (!why.empty() && why.back() == '\n') {
      why.pop_back();
    }
    rows = absl::FailedPreconditionError(why);
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
  if (!rows.ok() && !absl::IsFailedPrecondition(rows.status())) {
    Disconnect();
    backoff_.Failed(now);
  } else {
    backoff_.Reset();
  }
  return rows;
}

void PostgresCollector::Collect(absl::Time now, Collection& out) {
  // One round trip. The agent's own backends (known by pid) are left out of every figure.
  const std::string own = OwnBackends::Get().SqlArray();
  const std::string sql = absl::StrCat(
      "SELECT current_setting('max_connections')::float8,"
      " count(*) FILTER (WHERE backend_type = 'client backend'),"
      " count(*) FILTER (WHERE backend_type = 'client backend' AND state IS DISTINCT FROM 'idle'"
      "   AND pid <> pg_backend_pid() AND pid <> ALL(",
      own,
      "::int[])),"
      " coalesce(max(extract(epoch FROM clock_timestamp() - query_start)) FILTER ("
      "   WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
      "   AND pid <> ALL(",
      own,
      "::int[])), 0),"
      " count(*) FILTER (WHERE cardinality(pg_blocking_pids(pid)) > 0),"
      // Client connections by state, the agent's own left out: "state=n,state=n".
      " (SELECT coalesce(string_agg(s || '=' || n, ','), '') FROM (SELECT coalesce(state,"
      "   'unknown') AS s, count(*) AS n FROM pg_stat_activity WHERE backend_type = 'client "
      "backend' AND pid <> pg_backend_pid() AND pid <> ALL(",
      own,
      "::int[]) GROUP BY 1) AS by_state)"
      " FROM pg_stat_activity");
  auto rows = Query(now, sql);
  if (!rows.ok() || rows->size() != 1 || (*rows)[0].size() != 6) {
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
  for (const auto& [state, count] : ParsePgStateCounts(r[5])) {
    out.Gauge("pg_connections", count, {{"state", state}});
  }
}

void PostgresCollector::TopStatements(absl::Time now, v1::DiagnosticTable& table) {
  for (const char* c : {"queryid", "calls", "mean_ms", "total_ms", "rows", "query"}) {
    table.add_columns(c);
  }
  // Where the extension lives (any schema), and whether its columns have PostgreSQL 13's names
  // (mean_exec_time) or the older ones (mean_time).
  auto found = Query(now,
                     "SELECT quote_ident(n.nspname), EXISTS (SELECT 1 FROM pg_attribute a JOIN "
                     "pg_class c ON c.oid = a.attrelid WHERE c.relname = 'pg_stat_statements' AND "
                     "c.relnamespace = n.oid AND a.attname = 'mean_exec_time'), current_database()"
                     " FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
                     " WHERE e.extname = 'pg_stat_statements'");
  if (!found.ok()) {
    table.set_error(std::string(found.status().message()));
    return;
  }
  if (found->empty()) {
    auto db = Query(now, "SELECT current_database()");
    table.set_error(absl::StrCat(
        "the pg_stat_statements extension is not installed in database ",
        db.ok() && !db->empty() && !(*db)[0].empty() ? (*db)[0][0] : "(unknown)",
        ": run CREATE EXTENSION pg_stat_statements there, with shared_preload_libraries = "
        "'pg_stat_statements' in postgresql.conf (a restart)"));
    return;
  }
  const std::vector<std::string>& f = (*found)[0];
  if (f.size() != 3) {
    table.set_error("unexpected answer to the pg_extension query");
    return;
  }
  const bool v13 = f[1] == "t";
  const std::string mean = v13 ? "mean_exec_time" : "mean_time";
  const std::string total = v13 ? "total_exec_time" : "total_time";
  const std::string sql = absl::StrCat(
      "SELECT queryid, calls, round(", mean, "::numeric, 3), round(", total,
      "::numeric, 3), rows, left(query, ", options_.max_query_text, ") FROM ", f[0],
      ".pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = "
      "current_database()) ORDER BY ",
      mean, " DESC NULLS LAST LIMIT ", options_.top_statements);
  auto rows = Query(now, sql);
  if (!rows.ok()) {
    // Installed but not preloaded: PostgreSQL says "pg_stat_statements must be loaded via
    // shared_preload_libraries", which is the clear reason.
    table.set_error(std::string(rows.status().message()));
    return;
  }
  for (const auto& row : *rows) {
    auto* out = table.add_rows();
    for (const auto& cell : row) {
      out->add_cells(Redact(cell));
    }
  }
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
          " AND pid <> pg_backend_pid() AND pid <> ALL(",
          OwnBackends::Get().SqlArray(),
          "::int[])"
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
    } else if (name == "pg_connections_by_state") {
      // The runbook's SELECT count(*), state FROM pg_stat_activity GROUP BY state, with how long
      // the oldest has been in that state (a long "idle in transaction" holds locks).
      for (const char* c : {"state", "connections", "longest_in_state_seconds"}) {
        table.add_columns(c);
      }
      sql = absl::StrCat(
          "SELECT coalesce(state, 'unknown'), count(*), round(coalesce(max(extract(epoch FROM "
          "clock_timestamp() - state_change)), 0)::numeric, 3) FROM pg_stat_activity"
          " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND pid <> ALL(",
          OwnBackends::Get().SqlArray(), "::int[]) GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ", limit);
    } else if (name == "pg_top_statements") {
      TopStatements(now, table);
      tables.push_back(std::move(table));
      continue;
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
          out->add_cells(Redact(cell));  // query texts carry passwords (ALTER ROLE ... PASSWORD)
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
                                {"dsn", "query_timeout", "max_query_text", "top_statements"}));
  PostgresCollectorOptions options;
  ASSIGN_OR_RETURN(options.dsn, YamlString(config, "dsn", file, true));
  ASSIGN_OR_RETURN(options.query_timeout,
                   YamlDuration(config, "query_timeout", file, options.query_timeout));
  ASSIGN_OR_RETURN(int64_t max_text,
                   YamlInt(config, "max_query_text", file, options.max_query_text, 1, 1 << 20));
  options.max_query_text = static_cast<int>(max_text);
  ASSIGN_OR_RETURN(int64_t top,
                   YamlInt(config, "top_statements", file, options.top_statements, 1, 100));
  options.top_statements = static_cast<int>(top);
  return std::make_unique<PostgresCollector>(std::move(options));
}

}  // namespace vigil::agent
