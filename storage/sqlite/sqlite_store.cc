#include "storage/sqlite/sqlite_store.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "common/audit/chain_hash.h"
#include "common/audit/chain_hash_ahead.h"
#include "common/audit/chain_verifier.h"
#include "common/model_names.h"
#include "common/status.h"
#include "storage/sqlite/reader_connections.h"
#include "storage/sqlite/wal_checkpointer.h"

namespace vigil::storage {
namespace {

// Delivered notifications are kept this long after a later delivery, at most this many pruned
// per delivery (so one delivery never waits on a large delete).
constexpr absl::Duration kKeepDelivered = absl::Hours(24 * 7);
constexpr int64_t kPruneDeliveredAtOnce = 1000;
// Batches of at least this many events hash their contents on a helper thread: below it, starting
// a thread costs more than the digests it would take over (about 0.3 us each).
constexpr size_t kHashAheadMinEvents = 256;
// Events go many rows to an INSERT: one statement's run (its cursors opened, its seek from the
// b-tree's root, its halt) serves them all. A batch goes in statements of kManyEvents rows, what is
// left in statements of kSomeEvents, the rest one by one. (store_append_bench: 128 rows a statement
// about 20 % more events/s than one, 32 about 15 %.) 128 rows of 9 values stay far below SQLite's
// limit on a statement's parameters (32,766).
constexpr size_t kManyEvents = 128;
constexpr size_t kSomeEvents = 16;
constexpr int kEventColumns = 9;

// "INSERT INTO timeline(...) VALUES(?1, ... ?9), (?10, ... ?18), ..." for `rows` rows.
std::string InsertEventsSql(int rows) {
  std::string sql =
      "INSERT INTO timeline(seq, incident_id, time_unix_ms, kind, actor, summary, details_json, "
      "prev_hash, hash) VALUES";
  for (int row = 0; row < rows; ++row) {
    absl::StrAppend(&sql, row == 0 ? "(" : ", (");
    for (int column = 1; column <= kEventColumns; ++column) {
      absl::StrAppend(&sql, column == 1 ? "?" : ", ?", row * kEventColumns + column);
    }
    absl::StrAppend(&sql, ")");
  }
  return sql;
}

// Numbered migrations: index i brings the schema from version i to i + 1. Never edit a shipped
// one; append.
constexpr const char* kMigrations[] = {
    // 1: the agent registry.
    R"sql(
CREATE TABLE agents (
  agent_id TEXT PRIMARY KEY,
  first_seen_unix_ms INTEGER NOT NULL,
  last_seen_unix_ms INTEGER NOT NULL,
  info BLOB NOT NULL);
)sql",
    // 2: incidents, alerts, the audit timeline, users and action proposals.
    R"sql(
CREATE TABLE incidents (
  id TEXT PRIMARY KEY,
  state INTEGER NOT NULL,
  opened_unix_ms INTEGER NOT NULL,
  body BLOB NOT NULL);
CREATE INDEX incidents_by_state ON incidents(state, opened_unix_ms);
CREATE TABLE alerts (
  id TEXT PRIMARY KEY,
  state INTEGER NOT NULL,
  incident_id TEXT NOT NULL,
  body BLOB NOT NULL);
CREATE INDEX alerts_by_incident ON alerts(incident_id);
CREATE TABLE timeline (
  seq INTEGER PRIMARY KEY,
  incident_id TEXT NOT NULL,
  time_unix_ms INTEGER NOT NULL,
  kind TEXT NOT NULL,
  actor TEXT NOT NULL,
  summary TEXT NOT NULL,
  details_json TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL);
CREATE INDEX timeline_by_incident ON timeline(incident_id, seq);
CREATE TABLE chain_head (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  seq INTEGER NOT NULL,
  hash TEXT NOT NULL);
CREATE TABLE users (
  name TEXT PRIMARY KEY,
  role TEXT NOT NULL,
  token_hash TEXT NOT NULL UNIQUE,
  created_unix_ms INTEGER NOT NULL);
CREATE TABLE proposals (
  id TEXT PRIMARY KEY,
  incident_id TEXT NOT NULL,
  proposed_unix_ms INTEGER NOT NULL,
  body BLOB NOT NULL);
CREATE INDEX proposals_by_incident ON proposals(incident_id, proposed_unix_ms);
)sql",
    // 3: people over time: token expiry, disabled users, rotation, and a version that every
    // change of the users table bumps (triggers, so edits from any process count), which a
    // running controller polls to forget the callers it cached.
    R"sql(
ALTER TABLE users ADD COLUMN expires_unix_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN disabled_unix_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN rotated_unix_ms INTEGER NOT NULL DEFAULT 0;
CREATE TABLE users_version (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  version INTEGER NOT NULL);
INSERT INTO users_version(id, version) VALUES(1, 0);
CREATE TRIGGER users_inserted AFTER INSERT ON users BEGIN
  UPDATE users_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER users_updated AFTER UPDATE ON users BEGIN
  UPDATE users_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER users_deleted AFTER DELETE ON users BEGIN
  UPDATE users_version SET version = version + 1 WHERE id = 1; END;
)sql",
    // 4: the notification outbox, written with the timeline events it reports. AUTOINCREMENT:
    // an id (the idempotency key receivers see) is never handed out twice, even after a prune.
    R"sql(
CREATE TABLE notifications (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  receiver TEXT NOT NULL,
  incident_id TEXT NOT NULL,
  created_unix_ms INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT '',
  delivered_unix_ms INTEGER NOT NULL DEFAULT 0,
  body BLOB NOT NULL);
CREATE INDEX notifications_pending ON notifications(receiver, id) WHERE delivered_unix_ms = 0;
)sql",
    // 5: chain format 2 from the next event on (DESIGN.md, "Chain format 2"), and the signed
    // checkpoints of the chain's head.
    R"sql(
CREATE TABLE chain_meta (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  format2_from_seq INTEGER NOT NULL);
INSERT INTO chain_meta(id, format2_from_seq) SELECT 1, COALESCE(MAX(seq), 0) + 1 FROM timeline;
CREATE TABLE checkpoints (
  seq INTEGER PRIMARY KEY,
  hash TEXT NOT NULL,
  time_unix_ms INTEGER NOT NULL,
  key_id TEXT NOT NULL,
  signature BLOB NOT NULL);
)sql",
};
static_assert(std::size(kMigrations) == kSqliteSchemaVersion);

// A status for SQLite result `rc` on `db`, with a code callers can act on: a full disk is
// RESOURCE_EXHAUSTED (it passes once space returns), a busy or unreachable file UNAVAILABLE, a
// damaged one DATA_LOSS.
absl::Status SqliteError(sqlite3* db, int rc) {
  const std::string message = sqlite3_errmsg(db);
  const int system_errno = sqlite3_system_errno(db);
  switch (rc & 0xff) {
    case SQLITE_FULL:
      return absl::ResourceExhaustedError(message);
    case SQLITE_IOERR:
      if (system_errno == ENOSPC || system_errno == EDQUOT) {
        return absl::ResourceExhaustedError(
            absl::StrCat(message, ": ", std::strerror(system_errno)));
      }
      return absl::UnavailableError(
          system_errno != 0 ? absl::StrCat(message, ": ", std::strerror(system_errno)) : message);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
      return absl::UnavailableError(message);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::DataLossError(message);
    default:
      return absl::InternalError(message);
  }
}

// A prepared statement with typed binds; finalized on destruction.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  absl::Status status() const {
    if (rc_ == SQLITE_OK) {
      return absl::OkStatus();
    }
    return absl::InternalError(absl::StrCat("prepare: ", sqlite3_errmsg(db_)));
  }
  // The bound text and bytes must outlive the next Step: SQLite reads them in place.
  Statement& Bind(int i, absl::string_view text) {
    if (stmt_ == nullptr) {
      return *this;  // the prepare failed; Step says so
    }
    sqlite3_bind_text(stmt_, i, text.data(), static_cast<int>(text.size()), SQLITE_STATIC);
    return *this;
  }
  Statement& BindBlob(int i, const std::string& bytes) {
    if (stmt_ == nullptr) {
      return *this;
    }
    sqlite3_bind_blob(stmt_, i, bytes.data(), static_cast<int>(bytes.size()), SQLITE_STATIC);
    return *this;
  }
  Statement& Bind(int i, int64_t v) {
    if (stmt_ == nullptr) {
      return *this;
    }
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  // SQLITE_ROW: true; SQLITE_DONE: false; otherwise an error.
  absl::StatusOr<bool> Step() {
    if (rc_ != SQLITE_OK) {
      return status();
    }
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) {
      return true;
    }
    if (rc == SQLITE_DONE) {
      return false;
    }
    return SqliteError(db_, rc);
  }
  void Reset() {
    if (stmt_ != nullptr) {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    }
  }
  // Steps once and resets, so a statement kept for reuse holds no lock or row between uses.
  absl::Status Run() {
    absl::StatusOr<bool> row = Step();
    sqlite3_reset(stmt_);
    return row.ok() ? absl::OkStatus() : row.status();
  }
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  std::string Text(int col) const {
    const auto* p = sqlite3_column_text(stmt_, col);
    return p == nullptr
               ? ""
               : std::string(reinterpret_cast<const char*>(p), sqlite3_column_bytes(stmt_, col));
  }
  std::string Blob(int col) const {
    const void* p = sqlite3_column_blob(stmt_, col);
    return p == nullptr
               ? ""
               : std::string(static_cast<const char*>(p), sqlite3_column_bytes(stmt_, col));
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

absl::Status Exec(sqlite3* db, const char* sql) {
  char* error = nullptr;
  if (const int rc = sqlite3_exec(db, sql, nullptr, nullptr, &error); rc != SQLITE_OK) {
    absl::Status s = SqliteError(db, rc);
    if (error != nullptr && s.message() != error) {
      s = absl::Status(s.code(), error);
    }
    sqlite3_free(error);
    return s;
  }
  return absl::OkStatus();
}

template <typename Message>
absl::StatusOr<Message> ParseBlob(const std::string& bytes, absl::string_view what) {
  Message m;
  if (!m.ParseFromString(bytes)) {
    return absl::DataLossError(absl::StrCat("stored ", what, " does not parse"));
  }
  return m;
}

class SqliteStore final : public Store {
 public:
  explicit SqliteStore(std::string path) : path_(std::move(path)) {}
  ~SqliteStore() override {
    checkpointer_.reset();
    {
      absl::MutexLock lock(&write_mu_);
      for (std::unique_ptr<Statement>& st : cached_) {
        st.reset();
      }
    }
    readers_.reset();
    sqlite3_close_v2(writer_);
  }

  absl::Status Open() {
    std::error_code ec;
    const std::filesystem::path parent = std::filesystem::path(path_).parent_path();
    if (!parent.empty()) {
      std::filesystem::create_directories(parent, ec);
    }
    if (ec) {
      return Fail("create folder", absl::InternalError(ec.message()));
    }
    RETURN_IF_ERROR(OwnerOnly());
    RETURN_IF_ERROR(Connect(&writer_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE));
    // A file that is not a database fails here, on the first read.
    absl::StatusOr<int> version = UserVersion();
    if (!version.ok()) {
      return Fail("read schema version", version.status());
    }
    if (*version > kSqliteSchemaVersion) {
      return absl::FailedPreconditionError(
          absl::StrCat(path_, ": schema version ", *version, " is newer than this build's ",
                       kSqliteSchemaVersion, "; run a newer vigil-controller or restore a backup"));
    }
    // 16 KiB pages for a new database (an existing one keeps its size: changing it means a
    // VACUUM outside WAL mode): timeline rows are appended, so fewer, larger pages mean fewer
    // B-tree steps, log frames and writes per event. store_append_bench: 3.85 against 4.7 us of
    // CPU per event with 4 KiB pages, 7-16 % more events/s.
    if (*version == 0) {
      if (absl::Status s = Exec(writer_, "PRAGMA page_size=16384;"); !s.ok()) {
        return Fail("set the page size", s);
      }
    }
    if (absl::Status s = Exec(writer_, "PRAGMA journal_mode=WAL;"); !s.ok()) {
      return Fail("enable WAL", s);
    }
    for (int v = *version; v < kSqliteSchemaVersion; ++v) {
      // Each migration and its version bump commit together.
      std::string sql = absl::StrCat("BEGIN IMMEDIATE;", kMigrations[v],
                                     "PRAGMA user_version=", v + 1, ";COMMIT;");
      if (absl::Status s = Exec(writer_, sql.c_str()); !s.ok()) {
        Exec(writer_, "ROLLBACK;").IgnoreError();
        return Fail(absl::StrCat("migrate schema to version ", v + 1), s);
      }
    }
    // FULL: a commit is on disk when it returns, power loss included (one fsync per commit; the
    // controller's timeline writer commits in groups). The WAL shrinks back to 4 MiB after each
    // checkpoint, so it cannot keep a full disk full.
    if (absl::Status s =
            Exec(writer_, "PRAGMA synchronous=FULL; PRAGMA journal_size_limit=4194304;");
        !s.ok()) {
      return Fail("set durability", s);
    }
    {
      Statement meta(writer_, "SELECT format2_from_seq FROM chain_meta WHERE id = 1");
      absl::StatusOr<bool> row = meta.Step();
      if (!row.ok() || !*row) {
        return Fail("read the chain's format",
                    row.ok() ? absl::DataLossError("the chain_meta row is missing") : row.status());
      }
      format2_from_seq_ = static_cast<uint64_t>(meta.Int(0));
    }
    readers_ = std::make_unique<ReaderConnections>(path_, ReaderConnections::Options{});
    ASSIGN_OR_RETURN(checkpointer_, WalCheckpointer::Start(writer_, path_, {}));
    return absl::OkStatus();
  }

  absl::Status UpsertAgents(const std::vector<v1::AgentInfo>& agents) override {
    return Write("save agents", [&]() -> absl::Status {
      // first_seen_unix_ms is written once, by the insert: an update keeps the original.
      Statement row(writer_,
                    "INSERT INTO agents(agent_id, first_seen_unix_ms, last_seen_unix_ms, info) "
                    "VALUES(?1, ?2, ?3, ?4) ON CONFLICT(agent_id) DO UPDATE SET "
                    "last_seen_unix_ms = excluded.last_seen_unix_ms, info = excluded.info");
      RETURN_IF_ERROR(row.status());
      for (v1::AgentInfo info : agents) {
        // Live-only fields are not history.
        info.clear_state();
        info.clear_cpu_usage_ratio();
        info.clear_memory_used_ratio();
        info.clear_disk_used_ratio();
        row.Reset();
        RETURN_IF_ERROR(row.Bind(1, info.agent_id())
                            .Bind(2, info.first_seen_unix_ms())
                            .Bind(3, info.last_seen_unix_ms())
                            .BindBlob(4, info.SerializeAsString())
                            .Run());
      }
      return absl::OkStatus();
    });
  }

  absl::StatusOr<std::vector<v1::AgentInfo>> ListAgents() override {
    ASSIGN_OR_RETURN(ReaderConnections::Lease reader, readers_->Acquire());
    Statement st(reader.db(), "SELECT first_seen_unix_ms, info FROM agents ORDER BY agent_id");
    std::vector<v1::AgentInfo> out;
    while (true) {
      ASSIGN_OR_RETURN(bool row, Annotated("list agents", st.Step()));
      if (!row) {
        break;
      }
      ASSIGN_OR_RETURN(v1::AgentInfo info, ParseBlob<v1::AgentInfo>(st.Blob(1), "agent"));
      info.set_first_seen_unix_ms(st.Int(0));  // the column is the authority
      info.set_state(v1::DISCONNECTED);
      out.push_back(std::move(info));
    }
    return out;
  }

  absl::StatusOr<std::optional<v1::Incident>> GetIncident(absl::string_view id) override {
    ASSIGN_OR_RETURN(ReaderConnections::Lease reader, readers_->Acquire());
    Statement st(reader.db(), "SELECT body FROM incidents WHERE id = ?1");
    st.Bind(1, id);
    ASSIGN_OR_RETURN(bool row, Annotated("get incident", st.Step()));
    if (!row) {
      return std::optional<v1::Incident>();
    }
    ASSIGN_OR_RETURN(v1::Incident incident, ParseBlob<v1::Incident>(st.Blob(0), "incident"));
    return std::optional<v1::Incident>(std::move(incident));
  }

  absl::StatusOr<std::vector<v1::Incident>> ListIncidents(absl::string_view state) override {
    std::string sql = "SELECT body FROM incidents";
    int wanted = -1;
    if (state == "active") {
      sql += absl::StrCat(" WHERE state != ", static_cast<int>(v1::INCIDENT_RESOLVED));
    } else if (!state.empty() && state != "all") {
      for (int s = v1::OPEN; s <= v1::INCIDENT_RESOLVED; ++s) {
        if (IncidentStateName(static_cast<v1::IncidentState>(s)) == state) {
          wanted = s;
        }
      }
      if (wanted < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("unknown incident state '", state,
                         "' (use open, acknowledged, mitigated, resolved, active or all)"));
      }
      sql += absl::StrCat(" WHERE state = ", wanted);
    }
    sql += " ORDER BY opened_unix_ms DESC, id DESC";
    ASSIGN_OR_RETURN(ReaderConnections::Lease reader, readers_->Acquire());
    Statement st(reader.db(), sql.c_str());
    std::vector<v1::Incident> out;
    while (true) {
      ASSIGN_OR_RETURN(bool row, Annotated("list incidents", st.Step()));
      if (!row) {
        break;
      }
      ASSIGN_OR_RETURN(v1::Incident incident, ParseBlob<v1::Incident>(st.Blob(0), "incident"));
      out.push_back(std::move(incident));
    }
    return out;
  }

  absl::StatusOr<std::vector<v1::Alert>> ListAlerts(bool include_resolved) override {
    std::string sql = "SELECT body FROM alerts";
    if (!include_resolved) {
      sql += absl::StrCat(" WHERE state != ", static_cast<int>(v1::RESOLVED));
    }
    return QueryAlerts(sql, "");
  }

  absl::StatusOr<std::vector<v1::Alert>> ListIncidentAlerts(
      absl::string_view incident_id) override {
    return QueryAlerts("SELECT body FROM alerts WHERE incident_id = ?1", incident_id);
  }

  absl::StatusOr<std::vector<v1::TimelineEvent>> Commit(WriteBatch batch) override {
    std::vector<v1::TimelineEvent> stored;
    if (batch.empty()) {
      return stored;
    }
    stored.reserve(batch.events());
    // Within one transaction only the last save of a row is seen by anyone, so an incident that
    // gets a thousand events in a batch is written once, as its last op has it.
    std::vector<bool> superseded(batch.size(), false);
    {
      absl::flat_hash_map<absl::string_view, size_t> last_save;
      const std::vector<WriteBatch::Op>& ops = batch.ops();
      for (size_t i = 0; i < ops.size(); ++i) {
        const v1::Incident* incident = nullptr;
        if (const auto* save = std::get_if<WriteBatch::SaveIncident>(&ops[i])) {
          incident = &save->incident;
        } else if (const auto* append = std::get_if<WriteBatch::AppendEvent>(&ops[i]);
                   append != nullptr && append->incident.has_value()) {
          incident = &*append->incident;
        }
        if (incident != nullptr) {
          auto [it, inserted] = last_save.try_emplace(incident->id(), i);
          if (!inserted) {
            superseded[it->second] = true;
            it->second = i;
          }
        }
      }
    }
    absl::MutexLock lock(&write_mu_);
    uint64_t seq = 0;
    std::string hash;
    absl::Status status = WriteLocked([&]() -> absl::Status {
      // The head is read inside the transaction: the chain continues from what is stored.
      if (batch.events() > 0) {
        ASSIGN_OR_RETURN(StoredHead head, ReadHeadLocked());
        seq = head.seq;
        hash = std::move(head.hash);
      }
      audit::TimelineHasher hasher;
      std::vector<WriteBatch::Op>& ops = batch.mutable_ops();
      // A large batch in chain format 2 (every event after the first is, formats only go up) has
      // its hashes computed and linked on another core, from the head just read, while this
      // thread inserts (common/audit/chain_hash_ahead.h).
      std::optional<audit::ChainHashAhead> ahead;
      if (batch.events() >= kHashAheadMinEvents && ChainFormat(seq + 1) == 2) {
        std::vector<const v1::TimelineEvent*> events;
        events.reserve(batch.events());
        for (const WriteBatch::Op& op : ops) {
          if (const auto* append = std::get_if<WriteBatch::AppendEvent>(&op)) {
            events.push_back(&append->event);
          }
        }
        ahead.emplace(std::move(events), seq + 1, hash);
      }
      size_t event_index = 0;
      size_t inserted = 0;  // of `stored`
      for (size_t i = 0; i < ops.size(); ++i) {
        WriteBatch::Op& op = ops[i];
        if (const auto* save = std::get_if<WriteBatch::SaveIncident>(&op)) {
          if (!superseded[i]) {
            RETURN_IF_ERROR(SaveIncidentLocked(save->incident, save->incident.last_event_seq()));
          }
        } else if (const auto* alert = std::get_if<WriteBatch::SaveAlert>(&op)) {
          RETURN_IF_ERROR(SaveAlertLocked(alert->alert));
        } else if (const auto* proposal = std::get_if<WriteBatch::SaveProposal>(&op)) {
          RETURN_IF_ERROR(SaveProposalLocked(proposal->proposal));
        } else if (const auto* add = std::get_if<WriteBatch::AddNotification>(&op)) {
          const v1::Notification& n = add->notification;
          RETURN_IF_ERROR(Cached(kInsertNotification)
                              .Bind(1, n.receiver())
                              .Bind(2, n.incident_id())
                              .Bind(3, n.time_unix_ms())
                              .BindBlob(4, n.SerializeAsString())
                              .Run());
        } else if (const auto* stored_checkpoint = std::get_if<WriteBatch::StoreCheckpoint>(&op)) {
          RETURN_IF_ERROR(InsertCheckpointLocked(stored_checkpoint->checkpoint));
        } else if (auto* append = std::get_if<WriteBatch::AppendEvent>(&op)) {
          // Taken before the event changes: the helper reads it until then. It is the hash of
          // this event at seq + 1 after `hash`, as hasher.Hash gives below.
          std::string linked = ahead ? ahead->Take(event_index, hash) : std::string();
          ++event_index;
          v1::TimelineEvent event = std::move(append->event);  // the batch is ours
          event.set_seq(++seq);
          event.set_chain_format(ChainFormat(seq));
          event.set_prev_hash(std::move(hash));
          event.set_hash(ahead ? std::move(linked) : hasher.Hash(event));
          hash = event.hash();
          if (append->incident.has_value() && !superseded[i]) {
            RETURN_IF_ERROR(
                SaveIncidentLocked(*append->incident, static_cast<int64_t>(event.seq())));
          }
          // Inserted many at a time, from `stored` (reserved: the rows SQLite reads in place
          // do not move). The order of statements within the transaction is not seen by anyone:
          // it commits or rolls back whole.
          stored.push_back(std::move(event));
          if (stored.size() - inserted == kManyEvents) {
            RETURN_IF_ERROR(InsertEventsLocked(absl::MakeConstSpan(stored).subspan(inserted)));
            inserted = stored.size();
          }
        }
      }
      while (inserted < stored.size()) {
        const size_t rows = stored.size() - inserted >= kSomeEvents ? kSomeEvents : 1;
        RETURN_IF_ERROR(InsertEventsLocked(absl::MakeConstSpan(stored).subspan(inserted, rows)));
        inserted += rows;
      }
      if (!stored.empty()) {
        Statement& chain = Cached(kUpsertChainHead);
        RETURN_IF_ERROR(chain.Bind(1, static_cast<int64_t>(seq)).Bind(2, hash).Run());
      }
      return absl::OkStatus();
    });
    if (!status.ok()) {
      return Fail("write the timeline", status);
    }
    return stored;
  }

  StoreLogHealth LogHealth() override {
    if (checkpointer_ == nullptr) {
      return {};
    }
    const WalCheckpointer::Stats stats = checkpointer_->stats();
    return StoreLogHealth{.log_bytes = stats.last_log_frames * stats.page_size,
                          .checkpoints = stats.passes,
                          .checkpoint_failures = stats.failed_passes,
                          .writer_waits = stats.writer_stalls};
  }

  absl::Status Maintain() override {
    absl::MutexLock lock(&write_mu_);
    // TRUNCATE: the WAL's pages go into the database and the log file shrinks to nothing, which
    // is what gives a full disk its space back.
    int logged = 0;
    int checkpointed = 0;
    const int rc = sqlite3_wal_checkpoint_v2(writer_, nullptr, SQLITE_CHECKPOINT_TRUNCATE, &logged,
                                             &checkpointed);
    if (rc != SQLITE_OK) {
      return Fail("checkpoint the WAL", SqliteError(writer_, rc));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<v1::Notification>> PendingNotifications(absl::string_view receiver,
                                                                     int limit) override {
    ASSIGN_OR_RETURN(ReaderConnections::Lease reader, readers_->Acquire());
    Statement st(reader.db(),
                 "SELECT id, attempts, last_error, body FROM notifications "
                 "WHERE receiver = ?1 AND delivered_unix_ms = 0 ORDER BY id LIMIT ?2");
    st.Bind(1, receiver).Bind(2, static_cast<int64_t>(limit <= 0 ? -1 : limit));
    std::vector<v1::Notification> out;
    while (true) {
      ASSIGN_OR_RETURN(bool row, Annotated("list pending notifications", st.Step()));
      if (!row) {
        break;
      }
      ASSIGN_OR_RETURN(v1::Notification n, ParseBlob<v1::Notification>(st.Blob(3), "notification"));
      n.set_id(static_cast<uint64_t>(st.Int(0)));  // the columns are the authority
      n.set_attempts(static_cast<int32_t>(st.Int(1)));
      n.set_last_error(st.Text(2));
      n.set_delivered_unix_ms(0);
      out.push_back(std::move(n));
    }
    return out;
  }

  absl::StatusOr<std::map<std::string, int64_t>> CountPendingNotifications() override {
    ASSIGN_OR_RETURN(ReaderConnections::Lease reader, readers_->Acquire());
    Statement st(reader.db(),
                 "SELECT receiver, COUNT(*) FROM notifications WHERE delivered_unix_ms = 0 "
                 "GROUP BY receiver");
    std::map<std::string, int64_t> out;
    while (true) {
      ASSIGN_OR_RETURN(bool row, Annotated("count pending notifications", st.Step()));
      if (!row) {
        break;
      }
      out[st.Text(0)] = st.Int(1);
    }
    return out;
  }

  absl::Status MarkNotificationDelivered(uint64_t id, int64_t unix_ms) override {
    return Write("mark a notification delivered", [&]() -> absl::Status {
      RETURN_IF_ERROR(NotificationExists(id));
      Statement st(writer_,
                   "UPDATE notifications SET delivered_unix_ms = ?2 "
                   "WHERE id = ?1 AND delivered_unix_ms = 0");
      RETURN_IF_ERROR(
          st.Bind(1, static_cast<int64_t>(id)).Bind(2, std::max<int64_t>(unix_ms, 1)).Run());
      // A delivered row only keeps its id from being sent again, which AUTOINCREMENT already
      // guarantees: rows delivered more than kKeepDelivered before this delivery go, a bounded
      // number at a time, in the same transaction. The timeline keeps what happened.
      Statement prune(writer_,
                      "DELETE FROM notifications WHERE id IN (SELECT id FROM notifications "
                      "WHERE delivered_unix_ms > 0 AND delivered_unix_ms < ?1 LIMIT ?2)");
      return prune.Bind(1, unix_ms - absl::ToInt64Milliseconds(kKeepDelivered))
          .Bind(2, kPruneDeliveredAtOnce)
          .Run();
    });
  }

  absl::Status RecordNotificationFailure(uint64_t id, absl::string_view error) override {
    return Write("record a notification failure", [&]() -> absl::Status {
      RETURN_IF_ERROR(NotificationExists(id));
      Statement st(writer_,
                   "UPDATE notifications SET attempts = attempts + 1, last_error = ?2 "
                   "WHERE id = ?1");
      return st.Bind(1, static_cast<int64_t>(id)).Bind(2, error).Run();
    });
  }

  absl::Status CheckIntegrity() override {
    ASSIGN_OR_RETURN(ReaderConnections::Lease reader, readers_->Acquire());
    Statement st(reader.db(), "PRAGMA quick_check(20)");
    std::vector<std::string> problems;
    while (true) {
      absl::StatusOr<bool> row = st.Step();
      if (!row.ok()) {
        return Fail("check the database", absl::DataLossError(row.status().message()));
      }
      if (!*row) {
        break;
      }
      if (std::string line = st.Text(0); line != "ok") {
        problems.push_back(std::move(line));
      }
    }
    if (!problems.empty()) {
      return absl::DataLossError(
          absl::StrCat(path_, " is damaged (SQLite quick_check: ", absl::StrJoin(problems, "; "),
                       "); restore it from a backup, or move it aside and start anew with --init"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<v1::TimelineEvent>> ListEvents(absl::string_view incident_id,
                                                            uint64_t after_seq,
                                                            int limit) override {
    std::string sql =
        "SELECT seq, incident_id, time_unix_ms, kind, actor, summary, details_json, prev_hash, "
        "hash "
        "FROM timeline WHERE seq > ?1";
    if (!incident_id.empty()) {
      sql += " AND incident_id = ?2";
    }
    sql += " ORDER BY seq LIMIT ?3";
    ASSIGN_OR_RETURN(ReaderConnections::Lease reader, readers_->Acquire());
    Statement st(reader.db(), sql.c_str());
    st.Bind(1, static_cast<int64_t>(after_seq))
        .Bind(3, static_cast<int64_t>(limit <= 0 ? -1 : limit));
    if (!incident_id.empty()) {
      st.Bind(2, incident_id);
    }
    std::vector<v1::TimelineEvent> out;
    while (true) {
      ASSIGN_OR_RETURN(bool row, Annotated("list timeline", st.Step()));
      if (!row) {
        break;
      }
      out.push_back(EventFromRow(st));
    }
    return out;
  }

  absl::StatusOr<std::vector<v1::TimelineEvent>> ListIncidentEventsOfKind(
      absl::string_view incident_id, absl::string_view kind, int limit) override {
    // timeline_by_incident(incident_id, seq) walks the incident's events newest first.
    ASSIGN_OR_RETURN(ReaderConnections::Lease reader, readers_->Acquire());
    Statement st(reader.db(),
                 "SELECT seq, incident_id, time_unix_ms, kind, actor, summary, details_json, "
                 "prev_hash, hash FROM timeline WHERE incident_id = ?1 AND kind = ?2 "
                 "ORDER BY seq DESC LIMIT ?3");
    st.Bind(1, incident_id).Bind(2, kind).Bind(3, static_cast<int64_t>(limit <= 0 ? -1 : limit));
    std::vector<v1::TimelineEvent> out;
    while (true) {
      ASSIGN_OR_RETURN(bool row, Annotated("list timeline by kind", st.Step()));
      if (!row) {
        break;
      }
      out.push_back(EventFromRow(st));
    }
    return out;
  }

  absl::Status ReadChain(uint64_t after_seq, uint64_t up_to_seq, ChainSnapshot* snapshot,
                         const std::function<bool(const v1::TimelineEvent&)>& visit) override {
    ASSIGN_OR_RETURN(ReaderConnections::Lease reader, readers_->Acquire());
    // One read transaction: checkpoints, head and events agree even while events are appended.
    RETURN_IF_ERROR(Annotated("read the chain", Exec(reader.db(), "BEGIN;")));
    absl::Status status = ReadChainIn(reader.db(), after_seq, up_to_seq, snapshot, visit);
    Exec(reader.db(), "COMMIT;").IgnoreError();
    return Annotated("read the chain", status);
  }

  absl::StatusOr<std::pair<uint64_t, std::string>> ChainHead() override {
    ASSIGN_OR_RETURN(ReaderConnections::Lease reader, readers_->Acquire());
    Statement st(reader.db(), "SELECT seq, hash FROM timeline ORDER BY seq DESC LIMIT 1");
    ASSIGN_OR_RETURN(bool row, Annotated("read the chain's head", st.Step()));
    if (!row) {
      return std::make_pair(uint64_t{0}, std::string(audit::kGenesisHash));
    }
    return std::make_pair(static_cast<uint64_t>(st.Int(0)), st.Text(1));
  }

  absl::Status AddCheckpoint(const v1::AuditCheckpoint& checkpoint) override {
    return Write("store an audit checkpoint", [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      return InsertCheckpointLocked(checkpoint);
    });
  }

  absl::Status AddUser(const UserRecord& user) override {
    return Write("add user", [&]() -> absl::Status {
      Statement exists(writer_, "SELECT 1 FROM users WHERE name = ?1");
      exists.Bind(1, user.name);
      ASSIGN_OR_RETURN(bool taken, exists.Step());
      if (taken) {
        return absl::AlreadyExistsError(absl::StrCat("user '", user.name, "' already exists"));
      }
      Statement st(writer_,
                   "INSERT INTO users(name, role, token_hash, created_unix_ms, expires_unix_ms, "
                   "disabled_unix_ms, rotated_unix_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)");
      return st.Bind(1, user.name)
          .Bind(2, user.role)
          .Bind(3, user.token_hash)
          .Bind(4, user.created_unix_ms)
          .Bind(5, user.expires_unix_ms)
          .Bind(6, user.disabled_unix_ms)
          .Bind(7, user.rotated_unix_ms)
          .Run();
    });
  }

  absl::StatusOr<std::optional<UserRecord>> FindUserByTokenHash(
      absl::string_view token_hash) override {
    return FindUser("token_hash", token_hash);
  }

  absl::StatusOr<std::optional<UserRecord>> FindUserByName(absl::string_view name) override {
    return FindUser("name", name);
  }

  absl::StatusOr<std::vector<UserRecord>> ListUsers() override {
    ASSIGN_OR_RETURN(ReaderConnections::Lease reader, readers_->Acquire());
    Statement st(reader.db(), absl::StrCat(kUserColumns, " ORDER BY name").c_str());
    std::vector<UserRecord> out;
    while (true) {
      ASSIGN_OR_RETURN(bool row, Annotated("list users", st.Step()));
      if (!row) {
        break;
      }
      out.push_back(UserFromRow(st));
    }
    return out;
  }

  absl::Status SetUserDisabled(absl::string_view name, int64_t disabled_unix_ms) override {
    return UpdateUser("disable user", name, [&]() -> absl::Status {
      Statement st(writer_, "UPDATE users SET disabled_unix_ms = ?2 WHERE name = ?1");
      return st.Bind(1, name).Bind(2, disabled_unix_ms).Run();
    });
  }

  absl::Status ReplaceUserToken(absl::string_view name, absl::string_view token_hash,
                                int64_t expires_unix_ms, int64_t rotated_unix_ms) override {
    return UpdateUser("replace token", name, [&]() -> absl::Status {
      Statement st(writer_,
                   "UPDATE users SET token_hash = ?2, expires_unix_ms = ?3, rotated_unix_ms = ?4 "
                   "WHERE name = ?1");
      return st.Bind(1, name)
          .Bind(2, token_hash)
          .Bind(3, expires_unix_ms)
          .Bind(4, rotated_unix_ms)
          .Run();
    });
  }

  absl::StatusOr<int64_t> UsersVersion() override {
    ASSIGN_OR_RETURN(ReaderConnections::Lease reader, readers_->Acquire());
    Statement st(reader.db(), "SELECT version FROM users_version WHERE id = 1");
    ASSIGN_OR_RETURN(bool row, Annotated("read the users version", st.Step()));
    if (!row) {
      return Fail("read the users version", absl::DataLossError("the users_version row is gone"));
    }
    return st.Int(0);
  }

  absl::StatusOr<std::optional<v1::ActionProposal>> GetProposal(absl::string_view id) override {
    ASSIGN_OR_RETURN(ReaderConnections::Lease reader, readers_->Acquire());
    Statement st(reader.db(), "SELECT body FROM proposals WHERE id = ?1");
    st.Bind(1, id);
    ASSIGN_OR_RETURN(bool row, Annotated("get proposal", st.Step()));
    if (!row) {
      return std::optional<v1::ActionProposal>();
    }
    ASSIGN_OR_RETURN(auto proposal, ParseBlob<v1::ActionProposal>(st.Blob(0), "proposal"));
    return std::optional<v1::ActionProposal>(std::move(proposal));
  }

  absl::StatusOr<std::vector<v1::ActionProposal>> ListProposals(
      absl::string_view incident_id) override {
    std::string sql = "SELECT body FROM proposals";
    if (!incident_id.empty()) {
      sql += " WHERE incident_id = ?1";
    }
    sql += " ORDER BY proposed_unix_ms DESC, id DESC";
    ASSIGN_OR_RETURN(ReaderConnections::Lease reader, readers_->Acquire());
    Statement st(reader.db(), sql.c_str());
    if (!incident_id.empty()) {
      st.Bind(1, incident_id);
    }
    std::vector<v1::ActionProposal> out;
    while (true) {
      ASSIGN_OR_RETURN(bool row, Annotated("list proposals", st.Step()));
      if (!row) {
        break;
      }
      ASSIGN_OR_RETURN(auto proposal, ParseBlob<v1::ActionProposal>(st.Blob(0), "proposal"));
      out.push_back(std::move(proposal));
    }
    return out;
  }

 private:
  static constexpr const char* kUserColumns =
      "SELECT name, role, token_hash, created_unix_ms, expires_unix_ms, disabled_unix_ms, "
      "rotated_unix_ms FROM users";

  static UserRecord UserFromRow(const Statement& st) {
    return UserRecord{.name = st.Text(0),
                      .role = st.Text(1),
                      .token_hash = st.Text(2),
                      .created_unix_ms = st.Int(3),
                      .expires_unix_ms = st.Int(4),
                      .disabled_unix_ms = st.Int(5),
                      .rotated_unix_ms = st.Int(6)};
  }

  // The user whose `column` (name or token_hash, never caller text) equals `value`.
  absl::StatusOr<std::optional<UserRecord>> FindUser(absl::string_view column,
                                                     absl::string_view value) {
    ASSIGN_OR_RETURN(ReaderConnections::Lease reader, readers_->Acquire());
    Statement st(reader.db(), absl::StrCat(kUserColumns, " WHERE ", column, " = ?1").c_str());
    st.Bind(1, value);
    ASSIGN_OR_RETURN(bool row, Annotated("find user", st.Step()));
    if (!row) {
      return std::optional<UserRecord>();
    }
    return std::optional<UserRecord>(UserFromRow(st));
  }

  // Inside Write (the writer connection, under write_mu_).
  absl::Status NotificationExists(uint64_t id) {
    Statement exists(writer_, "SELECT 1 FROM notifications WHERE id = ?1");
    exists.Bind(1, static_cast<int64_t>(id));
    ASSIGN_OR_RETURN(bool found, exists.Step());
    if (!found) {
      return absl::NotFoundError(absl::StrCat("no notification ", id));
    }
    return absl::OkStatus();
  }

  // `update` in one write transaction, after checking that `name` exists (NotFound otherwise).
  absl::Status UpdateUser(absl::string_view what, absl::string_view name,
                          const std::function<absl::Status()>& update) {
    absl::Status s = Write(what, [&]() -> absl::Status {
      Statement exists(writer_, "SELECT 1 FROM users WHERE name = ?1");
      exists.Bind(1, name);
      ASSIGN_OR_RETURN(bool found, exists.Step());
      if (!found) {
        return absl::NotFoundError(absl::StrCat("no user named '", name, "'"));
      }
      return update();
    });
    return s;
  }

  absl::Status Connect(sqlite3** db, int flags) {
    if (sqlite3_open_v2(path_.c_str(), db, flags | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
      return absl::UnavailableError(absl::StrCat(path_, ": cannot open: ", sqlite3_errmsg(*db)));
    }
    sqlite3_busy_timeout(*db, 5000);
    if (absl::Status s = Exec(*db, "PRAGMA foreign_keys=ON; PRAGMA synchronous=NORMAL;"); !s.ok()) {
      return Fail("open the database", s);
    }
    return absl::OkStatus();
  }

  // The database holds tokens' hashes, timelines and query texts: owner only. SQLite creates a
  // new database with 0644 less the umask, and its -wal and -shm files with the database's own
  // mode, so the database is created here, 0600, before SQLite opens it; files left readable by
  // an older version are tightened, and the log says so.
  absl::Status OwnerOnly() {
    const int fd = open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0) {
      close(fd);
      return absl::OkStatus();
    }
    if (errno != EEXIST) {
      return Fail("create the database", absl::PermissionDeniedError(std::strerror(errno)));
    }
    for (const std::string& file : {path_, path_ + "-wal", path_ + "-shm"}) {
      struct stat st;
      if (lstat(file.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077) == 0) {
        continue;
      }
      if (chmod(file.c_str(), st.st_mode & 0700) != 0) {
        spdlog::warn("{} is readable by others (mode {:o}) and cannot be restricted: {}", file,
                     st.st_mode & 0777, std::strerror(errno));
      } else {
        spdlog::warn("{} was readable by others (mode {:o}); now {:o}", file, st.st_mode & 0777,
                     st.st_mode & 0700);
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<int> UserVersion() {
    Statement st(writer_, "PRAGMA user_version");
    ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) {
      return absl::InternalError("no user_version");
    }
    return static_cast<int>(st.Int(0));
  }

  absl::Status Fail(absl::string_view what, const absl::Status& s) const {
    return absl::Status(s.code(), absl::StrCat(path_, ": cannot ", what, ": ", s.message()));
  }
  template <typename T>
  T Annotated(absl::string_view what, T value) const {
    if constexpr (std::is_same_v<T, absl::Status>) {
      return value.ok() ? value : Fail(what, value);
    } else {
      return value.ok() ? std::move(value) : T(Fail(what, value.status()));
    }
  }

  // The one writer: a transaction per call.
  absl::Status Write(absl::string_view what, const std::function<absl::Status()>& body) {
    absl::MutexLock lock(&write_mu_);
    absl::Status s = WriteLocked(body);
    if (!s.ok() && s.code() != absl::StatusCode::kAlreadyExists &&
        s.code() != absl::StatusCode::kNotFound) {
      return Fail(what, s);
    }
    return s;
  }

  // BEGIN IMMEDIATE, `body`, COMMIT; on any error ROLLBACK, so a failed write changes nothing.
  absl::Status WriteLocked(const std::function<absl::Status()>& body)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) {
    if (checkpointer_ != nullptr) {
      checkpointer_->BeforeWrite();  // a log grown too long waits for its checkpoint first
    }
    RETURN_IF_ERROR(Cached(kBegin).Run());
    absl::Status s = body();
    if (s.ok()) {
      s = Cached(kCommit).Run();
    }
    if (!s.ok()) {
      // Not a cached statement: it must run even when preparing one is what failed.
      Exec(writer_, "ROLLBACK;").IgnoreError();
    }
    return s;
  }

  // Statements the writer runs for every batch, prepared once for the connection's life.
  enum CachedStatement {
    kBegin,
    kCommit,
    kReadHead,
    kInsertEvent,
    kInsertSomeEvents,  // kSomeEvents rows
    kInsertManyEvents,  // kManyEvents rows
    kUpsertChainHead,
    kUpsertIncident,
    kUpsertAlert,
    kUpsertProposal,
    kInsertNotification,
    kCachedCount,
  };
  static constexpr const char* kCachedSql[kCachedCount] = {
      "BEGIN IMMEDIATE",
      "COMMIT",
      "SELECT seq, hash FROM timeline ORDER BY seq DESC LIMIT 1",
      "INSERT INTO timeline(seq, incident_id, time_unix_ms, kind, actor, summary, details_json, "
      "prev_hash, hash) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
      nullptr,  // InsertEventsSql(kSomeEvents): see Cached
      nullptr,  // InsertEventsSql(kManyEvents)
      "INSERT INTO chain_head(id, seq, hash) VALUES(1, ?1, ?2) "
      "ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
      "INSERT INTO incidents(id, state, opened_unix_ms, body) VALUES(?1, ?2, ?3, ?4) "
      "ON CONFLICT(id) DO UPDATE SET state = excluded.state, body = excluded.body",
      "INSERT INTO alerts(id, state, incident_id, body) VALUES(?1, ?2, ?3, ?4) "
      "ON CONFLICT(id) DO UPDATE SET state = excluded.state, "
      "incident_id = excluded.incident_id, body = excluded.body",
      "INSERT INTO proposals(id, incident_id, proposed_unix_ms, body) "
      "VALUES(?1, ?2, ?3, ?4) ON CONFLICT(id) DO UPDATE SET body = excluded.body",
      "INSERT INTO notifications(receiver, incident_id, created_unix_ms, body) "
      "VALUES(?1, ?2, ?3, ?4)",
  };

  // The statement, prepared on first use (a failed prepare is retried next time: Run reports
  // it, and the transaction rolls back).
  Statement& Cached(CachedStatement which) ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) {
    std::unique_ptr<Statement>& st = cached_[which];
    if (st == nullptr || !st->status().ok()) {
      static const std::string* const kSomeSql = new std::string(InsertEventsSql(kSomeEvents));
      static const std::string* const kManySql = new std::string(InsertEventsSql(kManyEvents));
      const char* sql = which == kInsertSomeEvents   ? kSomeSql->c_str()
                        : which == kInsertManyEvents ? kManySql->c_str()
                                                     : kCachedSql[which];
      st = std::make_unique<Statement>(writer_, sql);
    }
    st->Reset();
    return *st;
  }

  struct StoredHead {
    uint64_t seq = 0;
    std::string hash{audit::kGenesisHash};
  };
  absl::StatusOr<StoredHead> ReadHeadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) {
    Statement& st = Cached(kReadHead);
    StoredHead head;
    absl::StatusOr<bool> row = st.Step();
    if (row.ok() && *row) {
      head.seq = static_cast<uint64_t>(st.Int(0));
      head.hash = st.Text(1);
    }
    st.Reset();
    if (!row.ok()) {
      return row.status();
    }
    return head;
  }

  // One event, kSomeEvents or kManyEvents in one statement. The events must stay put until it ran.
  absl::Status InsertEventsLocked(absl::Span<const v1::TimelineEvent> events)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) {
    CachedStatement which = kInsertEvent;
    if (events.size() == kManyEvents) {
      which = kInsertManyEvents;
    } else if (events.size() == kSomeEvents) {
      which = kInsertSomeEvents;
    } else if (events.size() != 1) {
      return absl::InternalError(absl::StrCat("no statement inserts ", events.size(), " events"));
    }
    Statement& st = Cached(which);
    for (size_t row = 0; row < events.size(); ++row) {
      const v1::TimelineEvent& event = events[row];
      const int first = static_cast<int>(row) * kEventColumns;
      st.Bind(first + 1, static_cast<int64_t>(event.seq()))
          .Bind(first + 2, event.incident_id())
          .Bind(first + 3, event.time_unix_ms())
          .Bind(first + 4, event.kind())
          .Bind(first + 5, event.actor())
          .Bind(first + 6, event.summary())
          .Bind(first + 7, event.details_json())
          .Bind(first + 8, event.prev_hash())
          .Bind(first + 9, event.hash());
    }
    return st.Run();
  }

  // A checkpoint of a stored event: refused (FailedPrecondition) unless event `seq` has `hash`.
  absl::Status InsertCheckpointLocked(const v1::AuditCheckpoint& checkpoint)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) {
    Statement event(writer_, "SELECT hash FROM timeline WHERE seq = ?1");
    event.Bind(1, static_cast<int64_t>(checkpoint.seq()));
    ASSIGN_OR_RETURN(bool found, event.Step());
    if (!found || event.Text(0) != checkpoint.hash()) {
      return absl::FailedPreconditionError(
          absl::StrCat("checkpoint ", checkpoint.seq(), " does not match the stored chain (event ",
                       checkpoint.seq(), found ? " has another hash)" : " is not stored)"));
    }
    Statement st(writer_,
                 "INSERT INTO checkpoints(seq, hash, time_unix_ms, key_id, signature) "
                 "VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(seq) DO NOTHING");
    return st.Bind(1, static_cast<int64_t>(checkpoint.seq()))
        .Bind(2, checkpoint.hash())
        .Bind(3, checkpoint.time_unix_ms())
        .Bind(4, checkpoint.key_id())
        .BindBlob(5, checkpoint.signature())
        .Run();
  }

  // Saves `incident` with last_event_seq set to `last_event_seq`.
  absl::Status SaveIncidentLocked(const v1::Incident& incident, int64_t last_event_seq)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) {
    std::string body;
    if (incident.last_event_seq() == last_event_seq) {
      body = incident.SerializeAsString();
    } else {
      v1::Incident copy = incident;
      copy.set_last_event_seq(last_event_seq);
      body = copy.SerializeAsString();
    }
    return Cached(kUpsertIncident)
        .Bind(1, incident.id())
        .Bind(2, static_cast<int64_t>(incident.state()))
        .Bind(3, incident.opened_unix_ms())
        .BindBlob(4, body)
        .Run();
  }

  absl::Status SaveAlertLocked(const v1::Alert& alert) ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) {
    return Cached(kUpsertAlert)
        .Bind(1, alert.id())
        .Bind(2, static_cast<int64_t>(alert.state()))
        .Bind(3, alert.incident_id())
        .BindBlob(4, alert.SerializeAsString())
        .Run();
  }

  absl::Status SaveProposalLocked(const v1::ActionProposal& proposal)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) {
    return Cached(kUpsertProposal)
        .Bind(1, proposal.id())
        .Bind(2, proposal.incident_id())
        .Bind(3, proposal.proposed_unix_ms())
        .BindBlob(4, proposal.SerializeAsString())
        .Run();
  }

  absl::StatusOr<std::vector<v1::Alert>> QueryAlerts(const std::string& sql,
                                                     absl::string_view arg) {
    ASSIGN_OR_RETURN(ReaderConnections::Lease reader, readers_->Acquire());
    Statement st(reader.db(), (sql + " ORDER BY id").c_str());
    if (!arg.empty()) {
      st.Bind(1, arg);
    }
    std::vector<v1::Alert> out;
    while (true) {
      ASSIGN_OR_RETURN(bool row, Annotated("list alerts", st.Step()));
      if (!row) {
        break;
      }
      ASSIGN_OR_RETURN(v1::Alert alert, ParseBlob<v1::Alert>(st.Blob(0), "alert"));
      out.push_back(std::move(alert));
    }
    return out;
  }

  uint32_t ChainFormat(uint64_t seq) const { return seq >= format2_from_seq_ ? 2 : 1; }

  absl::Status ReadChainIn(sqlite3* db, uint64_t after_seq, uint64_t up_to_seq,
                           ChainSnapshot* snapshot,
                           const std::function<bool(const v1::TimelineEvent&)>& visit) const {
    snapshot->format2_from_seq = format2_from_seq_;
    snapshot->checkpoints.clear();
    snapshot->recorded_head.reset();
    Statement checkpoints(db,
                          "SELECT seq, hash, time_unix_ms, key_id, signature FROM checkpoints "
                          "ORDER BY seq");
    while (true) {
      ASSIGN_OR_RETURN(bool row, checkpoints.Step());
      if (!row) {
        break;
      }
      v1::AuditCheckpoint& checkpoint = snapshot->checkpoints.emplace_back();
      checkpoint.set_seq(static_cast<uint64_t>(checkpoints.Int(0)));
      checkpoint.set_hash(checkpoints.Text(1));
      checkpoint.set_time_unix_ms(checkpoints.Int(2));
      checkpoint.set_key_id(checkpoints.Text(3));
      checkpoint.set_signature(checkpoints.Blob(4));
    }
    Statement head(db, "SELECT seq, hash FROM chain_head WHERE id = 1");
    ASSIGN_OR_RETURN(bool has_head, head.Step());
    if (has_head) {
      snapshot->recorded_head.emplace(static_cast<uint64_t>(head.Int(0)), head.Text(1));
    }
    Statement events(db,
                     "SELECT seq, incident_id, time_unix_ms, kind, actor, summary, details_json, "
                     "prev_hash, hash FROM timeline WHERE seq > ?1 AND seq <= ?2 ORDER BY seq");
    events.Bind(1, static_cast<int64_t>(std::min<uint64_t>(after_seq, INT64_MAX)))
        .Bind(2, static_cast<int64_t>(up_to_seq == 0 ? INT64_MAX
                                                     : std::min<uint64_t>(up_to_seq, INT64_MAX)));
    while (true) {
      ASSIGN_OR_RETURN(bool row, events.Step());
      if (!row || !visit(EventFromRow(events))) {
        break;
      }
    }
    return absl::OkStatus();
  }

  v1::TimelineEvent EventFromRow(const Statement& st) const {
    v1::TimelineEvent e;
    e.set_seq(static_cast<uint64_t>(st.Int(0)));
    e.set_chain_format(ChainFormat(e.seq()));
    e.set_incident_id(st.Text(1));
    e.set_time_unix_ms(st.Int(2));
    e.set_kind(st.Text(3));
    e.set_actor(st.Text(4));
    e.set_summary(st.Text(5));
    e.set_details_json(st.Text(6));
    e.set_prev_hash(st.Text(7));
    e.set_hash(st.Text(8));
    return e;
  }

  const std::string path_;
  // Set once at Open, from the migration that introduced format 2.
  uint64_t format2_from_seq_ = 1;
  absl::Mutex write_mu_;
  sqlite3* writer_ ABSL_PT_GUARDED_BY(write_mu_) = nullptr;
  std::unique_ptr<Statement> cached_[kCachedCount] ABSL_GUARDED_BY(write_mu_);
  // Several read-only connections, one per concurrent read: no read waits on another.
  std::unique_ptr<ReaderConnections> readers_;
  // Declared after the writer it hooks into; reset first in the destructor.
  std::unique_ptr<WalCheckpointer> checkpointer_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> OpenExistingSqliteStore(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return absl::NotFoundError(
        absl::StrCat(path, ": no database there (pass --db with the controller's)"));
  }
  return OpenSqliteStore(path);
}

bool TurnOffSqliteMemoryStatistics() {
  // SQLite's memory statistics take a process-wide mutex around every allocation it makes
  // (several per row written); nothing here reads them. Settable only before SQLite's first use:
  // later it answers SQLITE_MISUSE and keeps them, which costs only time, so it is said once.
  static const bool kOff = [] {
    // sqlite3_memory_used() stays 0 while the statistics are off: a second call, or a program
    // that turned them off itself, is not told they are on.
    if (const int rc = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
        rc != SQLITE_OK && sqlite3_memory_used() != 0) {
      spdlog::info("SQLite was in use before the store opened ({}): its memory statistics stay "
                   "on, writes are a little slower",
                   sqlite3_errstr(rc));
      return false;
    }
    return true;
  }();
  return kOff;
}

absl::StatusOr<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path) {
  TurnOffSqliteMemoryStatistics();
  auto store = std::make_unique<SqliteStore>(path);
  RETURN_IF_ERROR(store->Open());
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace vigil::storage
