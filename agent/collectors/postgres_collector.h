// PostgreSQL telemetry (libpqxx): connections, longest active query, blocked queries; active
// queries and lock waits as diagnostics. The agent's own session is tagged (application_name
// vigil-agent), time-limited and excluded, so it never becomes the slow query. A hung server
// costs one query timeout: a watchdog shuts the socket down. Used by its collector thread only
// (the watchdog thread touches only the socket).
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <pqxx/connection>
#include <string>
#include <thread>
#include <vector>

#include "agent/collector.h"
#include "agent/collectors/backoff.h"

namespace vigil::agent {

// One pass over pg_stat_activity, already reduced by SQL.
struct PostgresStats {
  double max_connections = 0;
  double client_connections = 0;
  double active = 0;
  double longest_query_seconds = 0;
  double blocked = 0;
};

// The states pg_stat_activity reports for client backends; pg_connections{state} is sent for
// each (zeros included, so an alert on one resolves), plus "unknown" for a NULL or new state.
inline constexpr const char* kPgConnectionStates[] = {
    "active", "idle", "idle in transaction", "idle in transaction (aborted)",
    "fastpath function call", "disabled", "unknown"};

// Parses "state=count,state=count" (the per-state column of the round's query) into counts for
// each of kPgConnectionStates; anything else counts as "unknown". Pure.
std::map<std::string, double> ParsePgStateCounts(absl::string_view text);

struct PostgresCollectorOptions {
  std::string dsn;
  absl::Duration query_timeout = absl::Seconds(2);
  int max_query_text = 200;
  int max_rows = 20;
  int top_statements = 10;  // rows of pg_top_statements
};

// The DSN the collector connects with: the user's plus application_name, connect_timeout and a
// statement_timeout, in keyword or URI form.
std::string AgentDsn(absl::string_view dsn, absl::Duration timeout);

class PostgresCollector final : public Collector {
 public:
  explicit PostgresCollector(PostgresCollectorOptions options);
  ~PostgresCollector() override;

  absl::string_view name() const override { return "postgres"; }
  void Collect(absl::Time now, Collection& out) override;
  std::vector<std::string> DiagnosticNames() const override {
    return {"pg_active_queries", "pg_lock_waits", "pg_connections_by_state",
            "pg_top_statements"};
  }
  std::vector<v1::DiagnosticTable> Diagnose(absl::Time now,
                                            const std::vector<std::string>& names) override;

 private:
  // Runs `sql` with the watchdog armed; rows as strings.
  absl::StatusOr<std::vector<std::vector<std::string>>> Query(absl::Time now,
                                                              const std::string& sql);
  void WatchdogLoop();
  // Closes the connection and forgets its backend pid.
  void Disconnect();
  // pg_top_statements: pg_stat_statements by mean time, or an error saying why not.
  void TopStatements(absl::Time now, v1::DiagnosticTable& table);

  const PostgresCollectorOptions options_;
  std::unique_ptr<pqxx::connection> connection_;
  int backend_pid_ = 0;  // of connection_, registered in OwnBackends
  Backoff backoff_;
  UpState up_;

  std::mutex watchdog_mu_;
  std::condition_variable watchdog_cv_;
  int watched_fd_ = -1;                             // guarded by watchdog_mu_
  std::chrono::steady_clock::time_point deadline_;  // guarded by watchdog_mu_
  bool stopping_ = false;                           // guarded by watchdog_mu_
  std::thread watchdog_;
};

absl::StatusOr<std::unique_ptr<Collector>> NewPostgresCollector(const YAML::Node& config,
                                                                absl::string_view file);

}  // namespace vigil::agent
