// pg_terminate_backend{pid} and pg_cancel_backend{pid}: end a PostgreSQL session, or only cancel
// its running query, through the server's own functions. The backend is looked up in
// pg_stat_activity first and refused when it is not there, is not a client backend, is the
// agent's own (pg_backend_pid(), or an application_name starting with vigil-agent), or belongs to
// a superuser role (unless allow_superuser). The two actions share this file pair because they
// differ only in the function they call.
//
//   actions:
//     pg_terminate_backend: {allow_superuser: false}   # optional, this default
//     pg_cancel_backend: {allow_superuser: false}
//
// Both connect with the postgres collector's DSN (collectors.postgres.dsn); a config that enables
// them without it is refused. The session is tagged application_name=vigil-agent-action and
// bounded by the action's timeout (connect_timeout, statement_timeout, and a watchdog that shuts
// the socket down if the server stops answering). Used by the command executor's thread only.
#pragma once

#include <yaml-cpp/yaml.h>

#include <pqxx/connection>

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "agent/actions/action.h"
#include "agent/actions/action_util.h"

namespace vigil::agent {

// Shuts `fd` down at `deadline` unless destroyed first, so a server that stopped answering cannot
// hold an action past its timeout.
class PgSocketWatchdog {
 public:
  PgSocketWatchdog(int fd, absl::Time deadline);
  ~PgSocketWatchdog();
  PgSocketWatchdog(const PgSocketWatchdog&) = delete;
  PgSocketWatchdog& operator=(const PgSocketWatchdog&) = delete;
  bool fired();

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  bool fired_ = false;
  std::thread thread_;
};

// `dsn` (keyword or URI form) with the action's application_name and time limits.
std::string ActionPostgresDsn(absl::string_view dsn, absl::Duration timeout);

// Runs `work` on a new connection to `dsn`, all within `timeout`: the connection's backend is
// the agent's own while it runs (no action may target it), a statement the deadline cuts is a
// timeout, and every failure (connecting included) is recorded on `steps`.
void RunOnActionConnection(
    const std::string& dsn, absl::Duration timeout, StepRunner& steps,
    const std::function<void(pqxx::connection& connection, PgSocketWatchdog& watchdog)>& work);

absl::StatusOr<std::unique_ptr<Action>> NewPgTerminateBackendAction(const YAML::Node& options,
                                                                    const ActionContext& context,
                                                                    absl::string_view file);
absl::StatusOr<std::unique_ptr<Action>> NewPgCancelBackendAction(const YAML::Node& options,
                                                                 const ActionContext& context,
                                                                 absl::string_view file);

}  // namespace vigil::agent
