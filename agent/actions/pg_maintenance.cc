#include "agent/actions/pg_maintenance.h"

#include <algorithm>
#include <optional>
#include <pqxx/pqxx>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "agent/actions/action_util.h"
#include "agent/actions/pg_backend.h"
#include "common/action_schema.h"
#include "common/own_backends.h"
#include "common/status.h"
#include "common/yaml_util.h"
#include "spdlog/spdlog.h"

namespace vigil::agent {
namespace {

// NAMEDATALEN - 1: longer names would be truncated by the server, silently.
constexpr size_t kMaxIdentifier = 63;
constexpr size_t kDefaultMaxColumns = 4;
// Dropping the invalid index a failed build left behind, after the action's own timeout.
constexpr absl::Duration kCleanupTimeout = absl::Seconds(5);

enum class Kind { kVacuumAnalyze, kReindex, kCreateIndex };

absl::string_view KindName(Kind kind) {
  switch (kind) {
    case Kind::kVacuumAnalyze:
      return "pg_vacuum_analyze";
    case Kind::kReindex:
      return "pg_reindex_concurrently";
    case Kind::kCreateIndex:
      return "pg_create_index_concurrently";
  }
  return "";
}

absl::Status CheckIdentifier(absl::string_view part, absl::string_view whole,
                             absl::string_view action, absl::string_view param) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(action, ": ", param, " '", whole, "' ", why));
  };
  if (part.empty()) {
    return bad("has an empty name");
  }
  if (part.size() > kMaxIdentifier) {
    return bad(absl::StrCat("has a name longer than the limit of ", kMaxIdentifier, " bytes"));
  }
  if (!absl::ascii_isalpha(part[0]) && part[0] != '_') {
    return bad("must start with a letter or '_'");
  }
  for (char c : part) {
    if (!absl::ascii_isalnum(c) && c != '_') {
      return bad("may hold only letters, digits and '_' (and one '.' after a schema)");
    }
  }
  return absl::OkStatus();
}

bool SystemSchema(absl::string_view schema) {
  return schema == "information_schema" || absl::StartsWith(schema, "pg_");
}

// Keeps the server's notices of one statement: VACUUM only warns ("skipping ...") when it may not
// touch a table, and a warning must not pass for success.
class NoticeCollector final : public pqxx::errorhandler {
 public:
  explicit NoticeCollector(pqxx::connection_base& connection) : pqxx::errorhandler(connection) {}
  bool operator()(const char message[]) noexcept override {
    try {
      if (notices_.size() < 20) {
        notices_.push_back(OneLine(message));
      }
    } catch (...) {
    }
    return false;
  }
  std::vector<std::string> Take() { return std::exchange(notices_, {}); }

 private:
  std::vector<std::string> notices_;
};

// One relation found in the catalog.
struct Relation {
  std::string schema;
  std::string name;
  std::string kind;  // pg_class.relkind
  std::string Text() const { return absl::StrCat(schema, ".", name); }
};

class PgMaintenance final : public Action {
 public:
  PgMaintenance(Kind kind, std::string dsn, std::vector<std::string> tables, size_t max_columns)
      : kind_(kind), dsn_(std::move(dsn)), tables_(std::move(tables)), max_columns_(max_columns) {}

  absl::string_view name() const override { return KindName(kind_); }

  absl::Status Check(const ActionParams& params) const override {
    RETURN_IF_ERROR(CheckActionParams(name(), params));
    switch (kind_) {
      case Kind::kVacuumAnalyze:
        if (AllDatabases(params)) {
          if (params.contains("table")) {
            return absl::InvalidArgumentError(absl::StrCat(
                name(), ": parameter 'table' and all_databases=yes exclude each other"));
          }
          if (!tables_.empty()) {
            return absl::PermissionDeniedError(absl::StrCat(
                name(), ": all_databases=yes is refused: the agent allows only the tables ",
                absl::StrJoin(tables_, ", "), " (tables)"));
          }
        }
        if (auto it = params.find("table"); it != params.end()) {
          RETURN_IF_ERROR(ParsePgName(it->second, name(), "table").status());
        } else if (!tables_.empty()) {
          return absl::PermissionDeniedError(absl::StrCat(
              name(), ": parameter 'table' is required: the agent allows only the tables ",
              absl::StrJoin(tables_, ", "), " (tables)"));
        }
        return absl::OkStatus();
      case Kind::kReindex:
        return ParsePgName(params.at("index"), name(), "index").status();
      case Kind::kCreateIndex: {
        RETURN_IF_ERROR(ParsePgName(params.at("table"), name(), "table").status());
        RETURN_IF_ERROR(ParsePgColumns(params.at("columns"), name(), max_columns_).status());
        ASSIGN_OR_RETURN(PgName index, ParsePgName(params.at("name"), name(), "name"));
        if (!index.schema.empty()) {
          return absl::InvalidArgumentError(
              absl::StrCat(name(), ": name '", params.at("name"),
                           "' must not name a schema (the index goes into its table's schema)"));
        }
        return absl::OkStatus();
      }
    }
    return absl::OkStatus();
  }

  ActionResult Run(const ActionParams& params, absl::Duration timeout) override {
    if (absl::Status s = Check(params); !s.ok()) {
      return Failure(std::string(s.message()));
    }
    StepRunner steps(name(), nullptr, timeout);
    std::vector<std::string> other_databases;
    RunOnActionConnection(
        dsn_, timeout, steps, [&](pqxx::connection& connection, PgSocketWatchdog& watchdog) {
          // VACUUM and the CONCURRENTLY forms cannot run inside a transaction block.
          pqxx::nontransaction tx(connection);
          switch (kind_) {
            case Kind::kVacuumAnalyze:
              VacuumAnalyze(tx, params, steps);
              if (AllDatabases(params) && !steps.failed()) {
                other_databases = OtherDatabases(tx);
              }
              break;
            case Kind::kReindex:
              Reindex(tx, params, steps);
              break;
            case Kind::kCreateIndex:
              CreateIndex(tx, params, steps, watchdog, timeout);
              break;
          }
        });
    // vacuumdb --all: one connection per database, one after another, within the one timeout;
    // the first failure stops the rest.
    for (const std::string& database : other_databases) {
      if (steps.failed()) {
        break;
      }
      if (steps.remaining() <= absl::ZeroDuration()) {
        steps.Fail(absl::StrCat(TimedOutAfter(timeout), " before database ", database),
                   kExitKilled);
        break;
      }
      steps.Note(absl::StrCat("database ", database, ":"));
      RunOnActionConnection(WithDatabase(dsn_, database), steps.remaining(), steps,
                            [&](pqxx::connection& connection, PgSocketWatchdog&) {
                              pqxx::nontransaction tx(connection);
                              Exec(tx, "VACUUM (ANALYZE)", steps);
                            });
    }
    ActionResult result = steps.Finish();
    if (result.exit_code == 0) {
      spdlog::info("{}: done", std::string(name()));
    } else {
      spdlog::warn("{}", result.reason);
    }
    return result;
  }

 private:
  static bool AllDatabases(const ActionParams& params) {
    auto it = params.find("all_databases");
    return it != params.end() && it->second == "yes";
  }

  // The databases besides the connection's own that a VACUUM can reach, in name order.
  static std::vector<std::string> OtherDatabases(pqxx::nontransaction& tx) {
    std::vector<std::string> names;
    for (const auto& row : tx.exec(
             "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate AND "
             "datname <> current_database() ORDER BY datname")) {
      names.emplace_back(row[0].c_str());
    }
    return names;
  }

  // `dsn` pointed at `database`: a later dbname overrides an earlier one, in the keyword form
  // and as a URI's query parameter alike.
  static std::string WithDatabase(const std::string& dsn, const std::string& database) {
    if (absl::StartsWith(dsn, "postgres://") || absl::StartsWith(dsn, "postgresql://")) {
      std::string encoded;
      for (unsigned char c : database) {
        if (absl::ascii_isalnum(c) || c == '_' || c == '-' || c == '.') {
          encoded.push_back(static_cast<char>(c));
        } else {
          absl::StrAppendFormat(&encoded, "%%%02X", c);
        }
      }
      return absl::StrCat(dsn, absl::StrContains(dsn, "?") ? "&" : "?", "dbname=", encoded);
    }
    std::string quoted;
    for (char c : database) {
      if (c == '\\' || c == '\'') {
        quoted.push_back('\\');
      }
      quoted.push_back(c);
    }
    return absl::StrCat(dsn, " dbname='", quoted, "'");
  }

  // The relation `text` names, of one of `kinds`; a failure is recorded in `steps` otherwise.
  std::optional<Relation> Find(pqxx::nontransaction& tx, absl::string_view param,
                               const std::string& text, absl::string_view kinds,
                               absl::string_view what, StepRunner& steps) {
    const PgName parsed = *ParsePgName(text, name(), param);
    const pqxx::result rows = tx.exec_params(
        "SELECT n.nspname, c.relname, c.relkind::text FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = $1 AND "
        "CASE WHEN $2 = '' THEN pg_table_is_visible(c.oid) ELSE n.nspname = $2 END",
        parsed.name, parsed.schema);
    if (rows.empty()) {
      steps.Fail(absl::StrCat(param, " '", text, "' does not exist (not in pg_class",
                              parsed.schema.empty() ? " on the search_path" : "", ")"));
      return std::nullopt;
    }
    Relation relation{rows[0][0].c_str(), rows[0][1].c_str(), rows[0][2].c_str()};
    if (!absl::StrContains(kinds, relation.kind)) {
      steps.Fail(
          absl::StrCat(param, " '", text, "' is not ", what, " (relkind '", relation.kind, "')"));
      return std::nullopt;
    }
    if (SystemSchema(relation.schema)) {
      steps.Fail(absl::StrCat(param, " '", text, "' is in the system schema ", relation.schema,
                              ": refused"));
      return std::nullopt;
    }
    return relation;
  }

  bool TableAllowed(const Relation& table, absl::string_view param, absl::string_view text,
                    StepRunner& steps) {
    if (tables_.empty()) {
      return true;
    }
    for (const std::string& glob : tables_) {
      if (GlobMatches(glob, table.Text())) {
        return true;
      }
    }
    steps.Fail(absl::StrCat(param, " '", text, "': table ", table.Text(),
                            " is not allowed (tables: ", absl::StrJoin(tables_, ", "), ")"));
    return false;
  }

  static std::string Quoted(pqxx::nontransaction& tx, const Relation& r) {
    return absl::StrCat(tx.quote_name(r.schema), ".", tx.quote_name(r.name));
  }

  // Runs `sql`; a WARNING from the server is a failure (e.g. VACUUM skipping a table it may not
  // touch), other notices go to the output.
  void Exec(pqxx::nontransaction& tx, const std::string& sql, StepRunner& steps) {
    // The server cancels the statement itself a little before the action's deadline, so that a
    // cancelled CREATE INDEX leaves the connection usable and the watchdog is only a last resort.
    const int64_t left_ms = absl::ToInt64Milliseconds(steps.remaining());
    const int64_t statement_ms =
        std::max<int64_t>(1, left_ms - std::max<int64_t>(200, left_ms / 10));
    tx.exec(absl::StrCat("SET statement_timeout = ", statement_ms));
    steps.Note(absl::StrCat("> ", sql));
    const absl::Time start = absl::Now();
    NoticeCollector notices(tx.conn());
    tx.exec(sql);
    for (const std::string& notice : notices.Take()) {
      steps.Note(notice);
      if (absl::StartsWith(notice, "WARNING")) {
        steps.Fail(absl::StrCat(sql, ": ", notice));
      }
    }
    if (!steps.failed()) {
      steps.Note(absl::StrCat("done in ", absl::FormatDuration(absl::Trunc(
                                              absl::Now() - start, absl::Milliseconds(1)))));
    }
  }

  void VacuumAnalyze(pqxx::nontransaction& tx, const ActionParams& params, StepRunner& steps) {
    auto it = params.find("table");
    if (it == params.end()) {
      Exec(tx, "VACUUM (ANALYZE)", steps);
      return;
    }
    std::optional<Relation> table = Find(tx, "table", it->second, "rmp", "a table", steps);
    if (!table || !TableAllowed(*table, "table", it->second, steps)) {
      return;
    }
    const pqxx::result dead = tx.exec_params(
        "SELECT coalesce(n_dead_tup, 0), coalesce(n_live_tup, 0) FROM pg_stat_user_tables "
        "WHERE schemaname = $1 AND relname = $2",
        table->schema, table->name);
    if (!dead.empty()) {
      steps.Note(absl::StrCat(table->Text(), ": ", dead[0][0].c_str(), " dead and ",
                              dead[0][1].c_str(), " live tuples before"));
    }
    Exec(tx, absl::StrCat("VACUUM (ANALYZE) ", Quoted(tx, *table)), steps);
  }

  void Reindex(pqxx::nontransaction& tx, const ActionParams& params, StepRunner& steps) {
    const std::string& text = params.at("index");
    std::optional<Relation> index = Find(tx, "index", text, "iI", "an index", steps);
    if (!index) {
      return;
    }
    const pqxx::result owner = tx.exec_params(
        "SELECT n.nspname, t.relname, t.relkind::text FROM pg_index i "
        "JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
        "WHERE i.indexrelid = ($1 || '.' || $2)::regclass",
        tx.quote_name(index->schema), tx.quote_name(index->name));
    if (owner.empty()) {
      steps.Fail(absl::StrCat("index '", text, "' has no table in pg_index"));
      return;
    }
    const Relation table{owner[0][0].c_str(), owner[0][1].c_str(), owner[0][2].c_str()};
    if (!TableAllowed(table, "index", text, steps)) {
      return;
    }
    Exec(tx, absl::StrCat("REINDEX INDEX CONCURRENTLY ", Quoted(tx, *index)), steps);
    NoteValidity(tx, *index, steps);
  }

  void CreateIndex(pqxx::nontransaction& tx, const ActionParams& params, StepRunner& steps,
                   PgSocketWatchdog& watchdog, absl::Duration timeout) {
    const std::string& text = params.at("table");
    std::optional<Relation> table = Find(tx, "table", text, "rm", "a table", steps);
    if (!table || !TableAllowed(*table, "table", text, steps)) {
      return;
    }
    const std::vector<std::string> columns =
        *ParsePgColumns(params.at("columns"), name(), max_columns_);
    std::vector<std::string> quoted_columns;
    for (const std::string& column : columns) {
      const pqxx::result found = tx.exec_params(
          "SELECT 1 FROM pg_attribute WHERE attrelid = ($1 || '.' || $2)::regclass "
          "AND attname = $3 AND attnum > 0 AND NOT attisdropped",
          tx.quote_name(table->schema), tx.quote_name(table->name), column);
      if (found.empty()) {
        steps.Fail(absl::StrCat("columns: '", column, "' is not a column of ", table->Text()));
        return;
      }
      quoted_columns.push_back(tx.quote_name(column));
    }
    const Relation index{table->schema, params.at("name"), "i"};
    const pqxx::result taken = tx.exec_params(
        "SELECT c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND c.relname = $2",
        index.schema, index.name);
    if (!taken.empty()) {
      steps.Fail(absl::StrCat("name '", index.name, "' is already taken in schema ", index.schema,
                              " (relkind '", taken[0][0].c_str(), "')"));
      return;
    }
    auto method = params.find("method");
    const std::string sql = absl::StrCat("CREATE INDEX CONCURRENTLY ", tx.quote_name(index.name),
                                         " ON ", Quoted(tx, *table), " USING ",
                                         method == params.end() ? "btree" : method->second, " (",
                                         absl::StrJoin(quoted_columns, ", "), ")");
    try {
      Exec(tx, sql, steps);
    } catch (const std::exception& e) {
      steps.Fail(watchdog.fired() ? absl::StrCat(TimedOutAfter(timeout), " (", sql, ")")
                                  : OneLine(e.what()),
                 watchdog.fired() ? kExitKilled : kExitFailed);
      DropInvalid(index, steps);
      return;
    }
    NoteValidity(tx, index, steps);
  }

  // A failed CREATE INDEX CONCURRENTLY leaves an invalid index behind: ours, so it is dropped, on
  // a connection of its own (the action's may be the one that timed out), within kCleanupTimeout.
  void DropInvalid(const Relation& index, StepRunner& steps) {
    try {
      pqxx::connection connection(ActionPostgresDsn(dsn_, kCleanupTimeout));
      PgSocketWatchdog watchdog(connection.sock(), absl::Now() + kCleanupTimeout);
      pqxx::nontransaction tx(connection);
      const pqxx::result invalid = tx.exec_params(
          "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
          "JOIN pg_namespace n ON n.oid = c.relnamespace "
          "WHERE n.nspname = $1 AND c.relname = $2 AND NOT i.indisvalid",
          index.schema, index.name);
      if (invalid.empty()) {
        return;
      }
      tx.exec(absl::StrCat("DROP INDEX CONCURRENTLY IF EXISTS ", Quoted(tx, index)));
      steps.Note(absl::StrCat("dropped the invalid index ", index.Text(), " left by the failure"));
    } catch (const std::exception& e) {
      steps.Note(
          absl::StrCat("could not drop the invalid index ", index.Text(), ": ", OneLine(e.what())));
    }
  }

  void NoteValidity(pqxx::nontransaction& tx, const Relation& index, StepRunner& steps) {
    const pqxx::result valid = tx.exec_params(
        "SELECT i.indisvalid, pg_relation_size(i.indexrelid) FROM pg_index i "
        "WHERE i.indexrelid = ($1 || '.' || $2)::regclass",
        tx.quote_name(index.schema), tx.quote_name(index.name));
    if (valid.empty() || !valid[0][0].as<bool>()) {
      steps.Fail(absl::StrCat("index ", index.Text(), " is not valid afterwards"));
      return;
    }
    steps.Note(absl::StrCat("index ", index.Text(), " is valid, ", valid[0][1].c_str(), " bytes"));
  }

  Kind kind_;
  std::string dsn_;
  std::vector<std::string> tables_;
  size_t max_columns_;
};

absl::StatusOr<std::unique_ptr<Action>> NewPgMaintenance(Kind kind, const YAML::Node& options,
                                                         const ActionContext& context,
                                                         absl::string_view file) {
  const absl::string_view name = KindName(kind);
  ActionOptions o(options, file, name);
  size_t max_columns = kDefaultMaxColumns;
  if (kind == Kind::kCreateIndex) {
    RETURN_IF_ERROR(o.CheckKeys({"tables", "max_columns"}));
    ASSIGN_OR_RETURN(std::string text, o.String("max_columns", absl::StrCat(kDefaultMaxColumns)));
    if (!absl::SimpleAtoi(text, &max_columns) || max_columns < 1 || max_columns > 32) {
      return o.Error("max_columns", absl::StrCat("'", text, "' is not a number from 1 to 32"));
    }
  } else {
    RETURN_IF_ERROR(o.CheckKeys({"tables"}));
  }
  ASSIGN_OR_RETURN(std::vector<std::string> tables, o.List("tables", /*required=*/false));
  for (const std::string& glob : tables) {
    if (!absl::StrContains(glob, ".")) {
      return o.Error("tables", absl::StrCat("'", glob, "' must be schema.table (a glob)"));
    }
  }
  if (context.postgres_dsn.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(YamlWhere(file, options), ": actions.", name,
                     " needs the postgres collector (collectors.postgres.dsn) to connect with"));
  }
  return std::make_unique<PgMaintenance>(kind, context.postgres_dsn, std::move(tables),
                                         max_columns);
}

}  // namespace

absl::StatusOr<PgName> ParsePgName(absl::string_view text, absl::string_view action,
                                   absl::string_view param) {
  std::vector<absl::string_view> parts = absl::StrSplit(text, '.');
  if (parts.size() > 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(action, ": ", param, " '", text, "' has more than one '.' (schema.name)"));
  }
  for (absl::string_view part : parts) {
    RETURN_IF_ERROR(CheckIdentifier(part, text, action, param));
  }
  PgName out;
  if (parts.size() == 2) {
    out.schema = std::string(parts[0]);
  }
  out.name = std::string(parts.back());
  return out;
}

absl::StatusOr<std::vector<std::string>> ParsePgColumns(absl::string_view text,
                                                        absl::string_view action,
                                                        size_t max_columns) {
  std::vector<std::string> columns;
  for (absl::string_view column : absl::StrSplit(text, ',')) {
    column = absl::StripAsciiWhitespace(column);
    RETURN_IF_ERROR(CheckIdentifier(column, column, action, "columns"));
    if (std::find(columns.begin(), columns.end(), column) != columns.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(action, ": columns '", text, "' names '", column, "' twice"));
    }
    columns.emplace_back(column);
  }
  if (columns.size() > max_columns) {
    return absl::PermissionDeniedError(absl::StrCat(action, ": columns '", text, "' has ",
                                                    columns.size(), " columns, above the limit ",
                                                    max_columns, " (max_columns)"));
  }
  return columns;
}

absl::StatusOr<std::unique_ptr<Action>> NewPgVacuumAnalyzeAction(const YAML::Node& options,
                                                                 const ActionContext& context,
                                                                 absl::string_view file) {
  return NewPgMaintenance(Kind::kVacuumAnalyze, options, context, file);
}

absl::StatusOr<std::unique_ptr<Action>> NewPgReindexConcurrentlyAction(const YAML::Node& options,
                                                                       const ActionContext& context,
                                                                       absl::string_view file) {
  return NewPgMaintenance(Kind::kReindex, options, context, file);
}

absl::StatusOr<std::unique_ptr<Action>> NewPgCreateIndexConcurrentlyAction(
    const YAML::Node& options, const ActionContext& context, absl::string_view file) {
  return NewPgMaintenance(Kind::kCreateIndex, options, context, file);
}

}  // namespace vigil::agent
