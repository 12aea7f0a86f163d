// The controller's durable state: agent registry, incidents, alerts, the hash-chained timeline,
// users and action proposals. Records are the wire messages of vigil.v1 so nothing is mapped
// twice. Implementations: sqlite/sqlite_store.h (embedded default), postgres/ (scale-out).
// Every method is thread-safe. Writes are durable when the call returns OK.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "vigil/v1/control_service.pb.h"
#include "vigil/v1/incident.pb.h"

namespace vigil::storage {

struct UserRecord {
  std::string name;
  std::string role;        // viewer | responder | commander | admin
  std::string token_hash;  // hex SHA-256 of the bearer token; the token itself is never stored
  int64_t created_unix_ms = 0;
};

class Store {
 public:
  virtual ~Store() = default;

  // --- agent registry ---
  // Inserts or updates by agent_id. An existing row keeps its first_seen_unix_ms.
  // Live-only fields (state, cpu/mem/disk) are not persisted.
  virtual absl::Status UpsertAgents(const std::vector<v1::AgentInfo>& agents) = 0;
  virtual absl::StatusOr<std::vector<v1::AgentInfo>> ListAgents() = 0;

  // --- incidents and alerts ---
  virtual absl::Status SaveIncident(const v1::Incident& incident) = 0;  // upsert by id
  virtual absl::StatusOr<std::optional<v1::Incident>> GetIncident(absl::string_view id) = 0;
  // state: "" or "all" for every incident, "active" for not resolved, or one state name
  // (open, acknowledged, mitigated, resolved). Newest first.
  virtual absl::StatusOr<std::vector<v1::Incident>> ListIncidents(absl::string_view state) = 0;
  virtual absl::Status SaveAlert(const v1::Alert& alert) = 0;  // upsert by id
  virtual absl::StatusOr<std::vector<v1::Alert>> ListAlerts(bool include_resolved) = 0;
  virtual absl::StatusOr<std::vector<v1::Alert>> ListIncidentAlerts(
      absl::string_view incident_id) = 0;

  // --- the timeline: one append-only SHA-256 chain across all incidents ---
  // Assigns seq, prev_hash and hash (see timeline_hash.h) and returns the stored event.
  // When `incident` is given it is saved in the same transaction, so an incident never
  // disagrees with its timeline.
  virtual absl::StatusOr<v1::TimelineEvent> AppendEvent(v1::TimelineEvent event,
                                                        const v1::Incident* incident = nullptr) = 0;
  // Events with seq > after_seq, oldest first; incident_id "" means every incident.
  virtual absl::StatusOr<std::vector<v1::TimelineEvent>> ListEvents(absl::string_view incident_id,
                                                                    uint64_t after_seq,
                                                                    int limit) = 0;
  // Re-hashes the whole chain; names the first event changed, removed or reordered.
  virtual absl::StatusOr<v1::VerifyAuditResponse> VerifyChain() = 0;

  // --- users ---
  virtual absl::Status AddUser(const UserRecord& user) = 0;  // AlreadyExists on a taken name
  virtual absl::StatusOr<std::optional<UserRecord>> FindUserByTokenHash(
      absl::string_view token_hash) = 0;
  // The user a verified client certificate names (its CN). Not pure, so that fakes need not
  // implement it: Unimplemented by default.
  virtual absl::StatusOr<std::optional<UserRecord>> FindUserByName(absl::string_view name) {
    return absl::UnimplementedError("this store cannot look users up by name");
  }

  // --- action proposals ---
  virtual absl::Status SaveProposal(const v1::ActionProposal& proposal) = 0;  // upsert by id
  virtual absl::StatusOr<std::optional<v1::ActionProposal>> GetProposal(absl::string_view id) = 0;
  // incident_id "" lists all. Newest first.
  virtual absl::StatusOr<std::vector<v1::ActionProposal>> ListProposals(
      absl::string_view incident_id) = 0;
};

}  // namespace vigil::storage
