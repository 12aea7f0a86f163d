// The controller's durable state: agent registry, incidents, alerts, the hash-chained timeline,
// users and action proposals. Records are the wire messages of vigil.v1 so nothing is mapped
// twice. Implementations: sqlite/sqlite_store.h (embedded default), postgres/ (scale-out).
// Every method is thread-safe. Writes are durable when the call returns OK; a write that fails
// changes nothing.
//
// Incidents, alerts, proposals and timeline events are written through Commit: one WriteBatch,
// one transaction, so an incident never disagrees with its timeline and a group of changes lands
// whole or not at all.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "vigil/v1/audit.pb.h"
#include "vigil/v1/control_service.pb.h"
#include "vigil/v1/incident.pb.h"

namespace vigil::storage {

struct UserRecord {
  std::string name;
  std::string role;        // viewer | responder | commander | admin
  std::string token_hash;  // hex SHA-256 of the bearer token; the token itself is never stored
  int64_t created_unix_ms = 0;
  int64_t expires_unix_ms = 0;   // when the token stops working; 0: never
  int64_t disabled_unix_ms = 0;  // when the user was disabled; 0: enabled
  int64_t rotated_unix_ms = 0;   // when the token was last replaced; 0: never
};

// What the chain's check needs besides its events, read with them (Store::ReadChain).
struct ChainSnapshot {
  uint64_t format2_from_seq = 1;                 // events from here on follow chain format 2
  std::vector<v1::AuditCheckpoint> checkpoints;  // every stored checkpoint, oldest first
  // The head the store records beside the chain (seq, hash), when it keeps one.
  std::optional<std::pair<uint64_t, std::string>> recorded_head;
};

// How the store's log and its checkpoints fare (for /metrics): a log that keeps growing means a
// reader holds an old snapshot or checkpoints fail.
struct StoreLogHealth {
  int64_t log_bytes = 0;             // the write-ahead log after the last commit
  uint64_t checkpoints = 0;          // checkpoint passes run
  uint64_t checkpoint_failures = 0;  // passes that failed (a full disk, say)
  uint64_t writer_waits = 0;         // writes that waited for a pass: the log was too long
};

// Writes applied in order, in one transaction.
class WriteBatch {
 public:
  struct SaveIncident {
    v1::Incident incident;
  };
  struct SaveAlert {
    v1::Alert alert;
  };
  struct SaveProposal {
    v1::ActionProposal proposal;
  };
  // Appends `event` to the chain (seq, prev_hash and hash are assigned then). With an incident,
  // the incident is saved too, its last_event_seq set to the event's seq.
  struct AppendEvent {
    v1::TimelineEvent event;
    std::optional<v1::Incident> incident;
  };
  // Puts a notification in the outbox (its id is assigned then; see v1::Notification).
  struct AddNotification {
    v1::Notification notification;
  };
  // Stores a signed checkpoint of an event committed before (see Store::AddCheckpoint): with a
  // batch, it costs no transaction of its own.
  struct StoreCheckpoint {
    v1::AuditCheckpoint checkpoint;
  };
  using Op = std::variant<SaveIncident, SaveAlert, SaveProposal, AppendEvent, AddNotification,
                          StoreCheckpoint>;

  void Save(const v1::Incident& incident) { ops_.push_back(SaveIncident{incident}); }
  void Save(const v1::Alert& alert) { ops_.push_back(SaveAlert{alert}); }
  void Save(const v1::ActionProposal& proposal) { ops_.push_back(SaveProposal{proposal}); }
  void Add(v1::AuditCheckpoint checkpoint) {
    ops_.push_back(StoreCheckpoint{std::move(checkpoint)});
  }
  void Notify(v1::Notification notification) {
    ops_.push_back(AddNotification{std::move(notification)});
  }
  void Append(v1::TimelineEvent event, const v1::Incident* incident = nullptr) {
    ops_.push_back(AppendEvent{std::move(event), incident != nullptr
                                                     ? std::optional<v1::Incident>(*incident)
                                                     : std::nullopt});
  }

  // For a writer that learns an incident's final state only when its batch is complete (one copy
  // of an incident per batch, however many events it gets): attaches `incident` to the
  // AppendEvent op at `index`, or inserts a save of it before the op at `index`.
  void AttachIncident(size_t index, v1::Incident incident);
  void InsertSave(size_t index, v1::Incident incident);

  void Reserve(size_t ops) { ops_.reserve(ops); }
  const std::vector<Op>& ops() const { return ops_; }
  std::vector<Op>& mutable_ops() { return ops_; }
  bool empty() const { return ops_.empty(); }
  size_t size() const { return ops_.size(); }
  size_t events() const;
  // Drops the ops after the first `size` (a unit of work that failed takes its writes back).
  void Truncate(size_t size) { ops_.resize(std::min(size, ops_.size())); }
  void Clear() { ops_.clear(); }

 private:
  std::vector<Op> ops_;
};

class Store {
 public:
  virtual ~Store() = default;

  // --- agent registry ---
  // Inserts or updates by agent_id. An existing row keeps its first_seen_unix_ms.
  // Live-only fields (state, cpu/mem/disk) are not persisted.
  virtual absl::Status UpsertAgents(const std::vector<v1::AgentInfo>& agents) = 0;
  virtual absl::StatusOr<std::vector<v1::AgentInfo>> ListAgents() = 0;

  // --- writes of incidents, alerts, proposals and the timeline ---
  // Applies `batch` in one transaction and returns the appended events as stored (seq, hashes),
  // in order. On error nothing is written; the status says why (RESOURCE_EXHAUSTED for a full
  // disk, UNAVAILABLE for a busy or unreachable database, DATA_LOSS for a damaged one).
  // The batch's events become the stored ones (moved, not copied: pass the batch with std::move
  // unless it is needed again).
  virtual absl::StatusOr<std::vector<v1::TimelineEvent>> Commit(WriteBatch batch) = 0;
  // One-write conveniences over Commit.
  absl::Status SaveIncident(const v1::Incident& incident);        // upsert by id
  absl::Status SaveAlert(const v1::Alert& alert);                 // upsert by id
  absl::Status SaveProposal(const v1::ActionProposal& proposal);  // upsert by id
  absl::StatusOr<v1::TimelineEvent> AppendEvent(v1::TimelineEvent event,
                                                const v1::Incident* incident = nullptr);

  // Housekeeping after a failed write: gives back what the store can (SQLite checkpoints and
  // truncates its WAL, so a full disk frees the log's space as soon as the data fits). Cheap
  // enough to call every second while writes fail.
  virtual absl::Status Maintain() { return absl::OkStatus(); }
  // A quick consistency check of the database (at start): DATA_LOSS naming what is damaged.
  virtual absl::Status CheckIntegrity() { return absl::OkStatus(); }
  // Zero where the store keeps no log of its own.
  virtual StoreLogHealth LogHealth() { return {}; }

  // --- incidents and alerts ---
  virtual absl::StatusOr<std::optional<v1::Incident>> GetIncident(absl::string_view id) = 0;
  // state: "" or "all" for every incident, "active" for not resolved, or one state name
  // (open, acknowledged, mitigated, resolved). Newest first.
  virtual absl::StatusOr<std::vector<v1::Incident>> ListIncidents(absl::string_view state) = 0;
  virtual absl::StatusOr<std::vector<v1::Alert>> ListAlerts(bool include_resolved) = 0;
  virtual absl::StatusOr<std::vector<v1::Alert>> ListIncidentAlerts(
      absl::string_view incident_id) = 0;

  // --- the timeline: one append-only SHA-256 chain across all incidents ---
  // (Appended through Commit: each event's seq, prev_hash and hash follow
  // common/audit/chain_hash.h.) Events with seq > after_seq, oldest first; incident_id "" means
  // every incident.
  virtual absl::StatusOr<std::vector<v1::TimelineEvent>> ListEvents(absl::string_view incident_id,
                                                                    uint64_t after_seq,
                                                                    int limit) = 0;
  // The newest `limit` events of one incident with `kind`, newest first. Not pure: the default
  // pages through ListEvents, an implementation with an index does better.
  virtual absl::StatusOr<std::vector<v1::TimelineEvent>> ListIncidentEventsOfKind(
      absl::string_view incident_id, absl::string_view kind, int limit);
  // Re-hashes the whole chain (not its checkpoints: the audit key is the controller's, see
  // controller/audit); names the first event changed, removed or reordered.
  absl::StatusOr<v1::VerifyAuditResponse> VerifyChain();
  // In one read transaction: fills `snapshot` (format, checkpoints, recorded head), then calls
  // `visit` with every event whose seq is in (after_seq, up_to_seq] (up_to_seq 0: to the head),
  // oldest first, until it returns false. Not pure: Unimplemented by default.
  virtual absl::Status ReadChain(uint64_t after_seq, uint64_t up_to_seq, ChainSnapshot* snapshot,
                                 const std::function<bool(const v1::TimelineEvent&)>& visit) {
    return absl::UnimplementedError("this store cannot read the chain");
  }
  // The newest event's seq and hash (0 and the genesis hash when the chain is empty). Not pure:
  // Unimplemented by default.
  virtual absl::StatusOr<std::pair<uint64_t, std::string>> ChainHead() {
    return absl::UnimplementedError("this store cannot read the chain's head");
  }
  // Stores a signed checkpoint after checking, in the same transaction, that event `seq` has
  // `hash` (FailedPrecondition otherwise). The same checkpoint twice is stored once.
  virtual absl::Status AddCheckpoint(const v1::AuditCheckpoint& checkpoint) {
    return absl::UnimplementedError("this store keeps no checkpoints");
  }

  // --- users ---
  virtual absl::Status AddUser(const UserRecord& user) = 0;  // AlreadyExists on a taken name
  virtual absl::StatusOr<std::optional<UserRecord>> FindUserByTokenHash(
      absl::string_view token_hash) = 0;
  // The user a verified client certificate names (its CN). Not pure, so that fakes need not
  // implement it: Unimplemented by default.
  virtual absl::StatusOr<std::optional<UserRecord>> FindUserByName(absl::string_view name) {
    return absl::UnimplementedError("this store cannot look users up by name");
  }
  // Every user, by name. The user methods below are not pure either: Unimplemented by default.
  virtual absl::StatusOr<std::vector<UserRecord>> ListUsers() {
    return absl::UnimplementedError("this store cannot list users");
  }
  // Sets when `name` was disabled (0: enables the user again). NotFound naming an unknown user.
  virtual absl::Status SetUserDisabled(absl::string_view name, int64_t disabled_unix_ms) {
    return absl::UnimplementedError("this store cannot disable users");
  }
  // Replaces the token of `name` (the old one stops matching at once) and its expiry, and
  // records when. NotFound naming an unknown user.
  virtual absl::Status ReplaceUserToken(absl::string_view name, absl::string_view token_hash,
                                        int64_t expires_unix_ms, int64_t rotated_unix_ms) {
    return absl::UnimplementedError("this store cannot replace tokens");
  }
  // A number that changes whenever any user is added, changed or removed, by any process
  // (`vigil-controller users ...` beside a running controller, or sqlite3): a controller polls it
  // to drop what it remembers about users.
  virtual absl::StatusOr<int64_t> UsersVersion() {
    return absl::UnimplementedError("this store has no users version");
  }

  // --- the notification outbox (rows are added through Commit: WriteBatch::Notify) ---
  // Not pure, so that fakes need not implement them: Unimplemented by default.
  // Up to `limit` undelivered notifications for `receiver`, oldest (lowest id) first.
  virtual absl::StatusOr<std::vector<v1::Notification>> PendingNotifications(
      absl::string_view receiver, int limit) {
    return absl::UnimplementedError("this store has no notification outbox");
  }
  // Undelivered notifications by receiver (receivers with none are absent).
  virtual absl::StatusOr<std::map<std::string, int64_t>> CountPendingNotifications() {
    return absl::UnimplementedError("this store has no notification outbox");
  }
  // Marks notification `id` delivered at `unix_ms` (durable when OK). A row already delivered
  // keeps its first time; NotFound for an unknown id.
  virtual absl::Status MarkNotificationDelivered(uint64_t id, int64_t unix_ms) {
    return absl::UnimplementedError("this store has no notification outbox");
  }
  // Counts a failed attempt at `id` and keeps its error (what `vigil` and logs show).
  virtual absl::Status RecordNotificationFailure(uint64_t id, absl::string_view error) {
    return absl::UnimplementedError("this store has no notification outbox");
  }

  // --- action proposals ---
  virtual absl::StatusOr<std::optional<v1::ActionProposal>> GetProposal(absl::string_view id) = 0;
  // incident_id "" lists all. Newest first.
  virtual absl::StatusOr<std::vector<v1::ActionProposal>> ListProposals(
      absl::string_view incident_id) = 0;
};

}  // namespace vigil::storage
