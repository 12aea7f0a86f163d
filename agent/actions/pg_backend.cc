#include "agent/actions/pg_backend.h"

#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <pqxx/pqxx>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "agent/actions/action_util.h"
#include "common/action_schema.h"
#include "common/own_backends.h"
#include "common/redact.h"
#include "common/status.h"
#include "common/yaml_util.h"
#include "spdlog/spdlog.h"

namespace vigil::agent {
namespace {

constexpr char kApplicationName[] = "vigil-agent-action";

enum class BackendSignal { kTerminate, kCancel };

class PgBackend final : public Action {
 public:
  PgBackend(BackendSignal signal, std::string dsn, bool allow_superuser)
      : signal_(signal), dsn_(std::move(dsn)), allow_superuser_(allow_superuser) {}

  absl::string_view name() const override {
    return signal_ == BackendSignal::kTerminate ? "pg_terminate_backend" : "pg_cancel_backend";
  }

  absl::Status Check(const ActionParams& params) const override {
    RETURN_IF_ERROR(CheckActionParams(name(), params));
    int64_t pid = 0;
    if (!absl::SimpleAtoi(params.at("pid"), &pid) || pid <= 0 || pid > 0x7fffffff) {
      return absl::InvalidArgumentError(
          absl::StrCat(name(), ": pid '", params.at("pid"), "' is not a process id"));
    }
    return absl::OkStatus();
  }

  ActionResult Run(const ActionParams& params, absl::Duration timeout) override {
    if (absl::Status s = Check(params); !s.ok()) {
      return Failure(std::string(s.message()));
    }
    int pid = 0;
    (void)absl::SimpleAtoi(params.at("pid"), &pid);
    StepRunner steps(name(), nullptr, timeout);
    RunOnActionConnection(dsn_, timeout, steps,
                          [&](pqxx::connection& connection, PgSocketWatchdog&) {
                            SignalBackend(connection, pid, steps);
                          });
    const ActionResult result = steps.Finish();
    if (result.exit_code == 0) {
      spdlog::info("{}: backend {}: done", std::string(name()), pid);
    } else {
      spdlog::warn("{}", result.reason);
    }
    return result;
  }

 private:
  void SignalBackend(pqxx::connection& connection, int pid, StepRunner& steps) {
    pqxx::nontransaction tx(connection);
    const pqxx::result rows = tx.exec_params(
        "SELECT a.pid = pg_backend_pid(), coalesce(a.application_name, ''), "
        "coalesce(r.rolsuper, false), coalesce(a.usename::text, ''), "
        "coalesce(a.backend_type, ''), coalesce(a.state, ''), coalesce(left(a.query, 200), '') "
        "FROM pg_stat_activity a LEFT JOIN pg_roles r ON r.oid = a.usesysid WHERE a.pid = $1",
        pid);
    if (rows.empty()) {
      steps.Fail(absl::StrCat("pid ", pid, " is not a backend of this server"));
      return;
    }
    const pqxx::row row = rows[0];
    // The agent's own connections are known by pid: an application_name proves nothing.
    const bool own = row[0].as<bool>() || OwnBackends::Get().Contains(pid);
    const std::string application = row[1].c_str();
    const bool superuser = row[2].as<bool>();
    const std::string user = row[3].c_str();
    const std::string type = row[4].c_str();
    steps.Note(absl::StrCat("backend ", pid, ": ", type, ", user '", user, "', application '",
                            application, "', state '", row[5].c_str(),
                            "', query: ", Redact(OneLine(row[6].c_str()))));
    if (own) {
      steps.Fail(absl::StrCat("pid ", pid, " is one of the agent's own connections: refused"));
      return;
    }
    if (type != "client backend") {
      steps.Fail(absl::StrCat("pid ", pid, " is a '", type, "', not a client backend: refused"));
      return;
    }
    if (superuser && !allow_superuser_) {
      steps.Fail(absl::StrCat("pid ", pid, " belongs to superuser '", user,
                              "': refused (allow_superuser is false)"));
      return;
    }
    const std::string function(name());
    const pqxx::result signalled = tx.exec_params(absl::StrCat("SELECT ", function, "($1)"), pid);
    if (!signalled[0][0].as<bool>()) {
      steps.Fail(absl::StrCat(function, "(", pid, ") returned false (the backend is gone?)"));
      return;
    }
    steps.Note(absl::StrCat(function, "(", pid, ") = true"));
  }

  BackendSignal signal_;
  std::string dsn_;
  bool allow_superuser_;
};

absl::StatusOr<std::unique_ptr<Action>> NewPgBackend(BackendSignal signal, absl::string_view name,
                                                     const YAML::Node& options,
                                                     const ActionContext& context,
                                                     absl::string_view file) {
  ActionOptions o(options, file, name);
  RETURN_IF_ERROR(o.CheckKeys({"allow_superuser"}));
  ASSIGN_OR_RETURN(bool allow_superuser, o.Bool("allow_superuser", false));
  if (context.postgres_dsn.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(YamlWhere(file, options), ": actions.", name,
                     " needs the postgres collector (collectors.postgres.dsn) to connect with"));
  }
  return std::make_unique<PgBackend>(signal, context.postgres_dsn, allow_superuser);
}

}  // namespace

PgSocketWatchdog::PgSocketWatchdog(int fd, absl::Time deadline) {
  thread_ = std::thread([this, fd, deadline] {
    std::unique_lock lock(mu_);
    if (!cv_.wait_until(lock, absl::ToChronoTime(deadline), [&] { return done_; })) {
      shutdown(fd, SHUT_RDWR);
      fired_ = true;
    }
  });
}

PgSocketWatchdog::~PgSocketWatchdog() {
  {
    std::lock_guard lock(mu_);
    done_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

bool PgSocketWatchdog::fired() {
  std::lock_guard lock(mu_);
  return fired_;
}

std::string ActionPostgresDsn(absl::string_view dsn, absl::Duration timeout) {
  const int64_t ms = std::max<int64_t>(1, absl::ToInt64Milliseconds(timeout));
  const int64_t connect_s = std::max<int64_t>(2, (ms + 999) / 1000);
  if (absl::StartsWith(dsn, "postgres://") || absl::StartsWith(dsn, "postgresql://")) {
    return absl::StrCat(dsn, absl::StrContains(dsn, "?") ? "&" : "?",
                        "application_name=", kApplicationName, "&connect_timeout=", connect_s,
                        "&options=-c%20statement_timeout%3D", ms);
  }
  return absl::StrCat(dsn, " application_name=", kApplicationName, " connect_timeout=", connect_s,
                      " options='-c statement_timeout=", ms, "'");
}

void RunOnActionConnection(
    const std::string& dsn, absl::Duration timeout, StepRunner& steps,
    const std::function<void(pqxx::connection& connection, PgSocketWatchdog& watchdog)>& work) {
  const absl::Time deadline = absl::Now() + timeout;
  try {
    pqxx::connection connection(ActionPostgresDsn(dsn, timeout));
    PgSocketWatchdog watchdog(connection.sock(), deadline);
    int own_pid = 0;
    try {
      own_pid = pqxx::nontransaction(connection).exec("SELECT pg_backend_pid()")[0][0].as<int>();
      OwnBackends::Get().Add(own_pid);
      work(connection, watchdog);
    } catch (const std::exception& e) {
      steps.Fail(watchdog.fired() ? TimedOutAfter(timeout) : OneLine(e.what()),
                 watchdog.fired() ? kExitKilled : kExitFailed);
    }
    if (own_pid != 0) {
      OwnBackends::Get().Remove(own_pid);
    }
  } catch (const std::exception& e) {
    steps.Fail(absl::StrCat("cannot connect to PostgreSQL: ", OneLine(e.what())));
  }
}

absl::StatusOr<std::unique_ptr<Action>> NewPgTerminateBackendAction(const YAML::Node& options,
                                                                    const ActionContext& context,
                                                                    absl::string_view file) {
  return NewPgBackend(BackendSignal::kTerminate, "pg_terminate_backend", options, context, file);
}

absl::StatusOr<std::unique_ptr<Action>> NewPgCancelBackendAction(const YAML::Node& options,
                                                                 const ActionContext& context,
                                                                 absl::string_view file) {
  return NewPgBackend(BackendSignal::kCancel, "pg_cancel_backend", options, context, file);
}

}  // namespace vigil::agent
