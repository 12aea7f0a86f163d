#include "controller/api/incident_pages.h"

#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace vigil::controller {
absl::StatusOr<v1::GetIncidentResponse> LoadIncidentPage(storage::Store& store,
                                                         const v1::GetIncidentRequest& request) {
  const std::string& id = request.incident_id();
  if (id.empty()) {
    return absl::InvalidArgumentError("incident_id is required");
  }
  if (id.size() > kMaxIncidentIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat("incident_id is ", id.size(),
                                                   " bytes; an incident id has at most ",
                                                   kMaxIncidentIdBytes));
  }
  if (request.page_size() < 0 || request.page_size() > kMaxIncidentPageSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "page_size ", request.page_size(), " is out of range: 1 to ", kMaxIncidentPageSize,
        " events, or 0 for the default ", kDefaultIncidentPageSize));
  }
  if (request.after_seq() > kMaxSeq) {
    return absl::InvalidArgumentError(absl::StrCat(
        "after_seq ", request.after_seq(), " is beyond any event sequence (at most ", kMaxSeq,
        ")"));
  }
  const int page_size =
      request.page_size() == 0 ? kDefaultIncidentPageSize : request.page_size();

  ASSIGN_OR_RETURN(std::optional<v1::Incident> incident, store.GetIncident(id));
  if (!incident.has_value()) {
    return absl::NotFoundError(absl::StrCat("no incident '", id, "'"));
  }
  v1::GetIncidentResponse response;
  *response.mutable_incident() = std::move(*incident);
  // One event more than the page tells whether another page follows.
  ASSIGN_OR_RETURN(std::vector<v1::TimelineEvent> events,
                   store.ListEvents(id, request.after_seq(), page_size + 1));
  // Also cut short by size: a client takes 4 MiB per message by default, and diagnostics
  // events are large. A page holds at least one event, so the cursor always moves.
  size_t keep = 0;
  size_t bytes = 0;
  for (; keep < events.size() && keep < static_cast<size_t>(page_size); ++keep) {
    const size_t size = events[keep].ByteSizeLong();
    if (keep > 0 && bytes + size > kMaxIncidentPageBytes) {
      break;
    }
    bytes += size;
  }
  if (keep < events.size()) {
    events.resize(keep);
    response.set_next_after_seq(events.back().seq());
  }
  for (v1::TimelineEvent& e : events) {
    *response.add_timeline() = std::move(e);
  }
  if (request.after_seq() == 0) {
    ASSIGN_OR_RETURN(std::vector<v1::Alert> alerts, store.ListIncidentAlerts(id));
    for (v1::Alert& a : alerts) {
      *response.add_alerts() = std::move(a);
    }
    ASSIGN_OR_RETURN(std::vector<v1::ActionProposal> actions, store.ListProposals(id));
    for (v1::ActionProposal& p : actions) {
      *response.add_actions() = std::move(p);
    }
  }
  return response;
}

}  // namespace vigil::controller
