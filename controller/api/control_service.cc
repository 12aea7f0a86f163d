#include "controller/api/control_service.h"

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/ids.h"
#include "common/status.h"
#include "common/wire_metadata.h"
#include "controller/incidents/incident_report.h"

namespace vigil::controller {
namespace {

grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* context, const absl::Status& status) {
  auto* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

// Finishes a unary call when the worker that owns the change is done with it.
template <typename Response>
std::function<void(absl::StatusOr<Response>)> FinishWhenDone(grpc::ServerUnaryReactor* reactor,
                                                             Response* response) {
  return [reactor, response](absl::StatusOr<Response> result) {
    if (result.ok()) {
      *response = std::move(*result);
    }
    reactor->Finish(ToGrpcStatus(result.status()));
  };
}

// A watch refused before it started (no token, or not allowed).
class RefusedWatch final : public grpc::ServerWriteReactor<v1::TimelineEvent> {
 public:
  explicit RefusedWatch(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

ControlServiceImpl::ControlServiceImpl(FleetState* fleet, storage::Store* store,
                                       IncidentManager* incidents,
                                       RemediationManager* remediation, WatchHub::Options watch)
    : fleet_(fleet),
      store_(store),
      incidents_(incidents),
      remediation_(remediation),
      auth_(store),
      watch_(store,
             WatchHub::Feed{
                 .subscribe = [incidents](WatchHub::Listener listener) {
                   return incidents->AddListener(std::move(listener));
                 },
                 .unsubscribe = [incidents](int id) { incidents->RemoveListener(id); }},
             watch) {}

absl::StatusOr<Caller> ControlServiceImpl::Authorize(grpc::CallbackServerContext* context,
                                                     Role needed, absl::string_view what) {
  const auto& metadata = context->client_metadata();
  auto it = metadata.find("authorization");
  const absl::string_view header = it == metadata.end()
                                       ? absl::string_view()
                                       : absl::string_view(it->second.data(), it->second.size());
  ASSIGN_OR_RETURN(Caller caller, auth_.Authenticate(header));
  RETURN_IF_ERROR(Authenticator::Require(caller, needed, what));
  return caller;
}

grpc::ServerUnaryReactor* ControlServiceImpl::ListAgents(grpc::CallbackServerContext* context,
                                                         const v1::ListAgentsRequest* request,
                                                         v1::ListAgentsResponse* response) {
  if (absl::StatusOr<Caller> caller = Authorize(context, Role::kViewer, "listing agents");
      !caller.ok()) {
    return Done(context, caller.status());
  }
  for (v1::AgentInfo& info : fleet_->ListAgents()) {
    *response->add_agents() = std::move(info);
  }
  return Done(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* ControlServiceImpl::GetMetrics(grpc::CallbackServerContext* context,
                                                         const v1::GetMetricsRequest* request,
                                                         v1::GetMetricsResponse* response) {
  if (absl::StatusOr<Caller> caller = Authorize(context, Role::kViewer, "reading metrics");
      !caller.ok()) {
    return Done(context, caller.status());
  }
  if (request->agent_id().empty()) {
    return Done(context, absl::InvalidArgumentError("agent_id is required"));
  }
  absl::StatusOr<v1::GetMetricsResponse> metrics =
      fleet_->GetMetrics(request->agent_id(), request->name_prefix());
  if (metrics.ok()) {
    *response = std::move(*metrics);
  }
  return Done(context, metrics.status());
}

grpc::ServerUnaryReactor* ControlServiceImpl::ListAlerts(grpc::CallbackServerContext* context,
                                                         const v1::ListAlertsRequest* request,
                                                         v1::ListAlertsResponse* response) {
  if (absl::StatusOr<Caller> caller = Authorize(context, Role::kViewer, "listing alerts");
      !caller.ok()) {
    return Done(context, caller.status());
  }
  std::set<std::string> seen;
  for (v1::Alert& alert : incidents_->ActiveAlerts()) {
    seen.insert(alert.id());
    *response->add_alerts() = std::move(alert);
  }
  if (request->include_resolved()) {
    absl::StatusOr<std::vector<v1::Alert>> stored = store_->ListAlerts(true);
    if (!stored.ok()) {
      return Done(context, stored.status());
    }
    for (v1::Alert& alert : *stored) {
      if (!seen.contains(alert.id())) {
        *response->add_alerts() = std::move(alert);
      }
    }
  }
  return Done(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* ControlServiceImpl::ListIncidents(grpc::CallbackServerContext* context,
                                                            const v1::ListIncidentsRequest* request,
                                                            v1::ListIncidentsResponse* response) {
  if (absl::StatusOr<Caller> caller = Authorize(context, Role::kViewer, "listing incidents");
      !caller.ok()) {
    return Done(context, caller.status());
  }
  static const std::set<std::string> kStates = {
      "", "all", "active", "open", "acknowledged", "mitigated", "resolved"};
  if (!kStates.contains(request->state())) {
    return Done(context,
                absl::InvalidArgumentError(absl::StrCat(
                    "state '", request->state(),
                    "' is not one of: all, active, open, acknowledged, mitigated, resolved")));
  }
  absl::StatusOr<std::vector<v1::Incident>> incidents = store_->ListIncidents(request->state());
  if (!incidents.ok()) {
    return Done(context, incidents.status());
  }
  for (v1::Incident& incident : *incidents) {
    *response->add_incidents() = std::move(incident);
  }
  return Done(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* ControlServiceImpl::GetIncident(grpc::CallbackServerContext* context,
                                                          const v1::GetIncidentRequest* request,
                                                          v1::GetIncidentResponse* response) {
  if (absl::StatusOr<Caller> caller = Authorize(context, Role::kViewer, "reading an incident");
      !caller.ok()) {
    return Done(context, caller.status());
  }
  absl::StatusOr<v1::GetIncidentResponse> report = LoadIncident(*store_, request->incident_id());
  if (report.ok()) {
    *response = std::move(*report);
  }
  return Done(context, report.status());
}

grpc::ServerUnaryReactor* ControlServiceImpl::UpdateIncident(
    grpc::CallbackServerContext* context, const v1::UpdateIncidentRequest* request,
    v1::Incident* response) {
  using Op = v1::UpdateIncidentRequest;
  const bool responder_may = request->operation() == Op::ACKNOWLEDGE ||
                             request->operation() == Op::NOTE || request->operation() == Op::CHECK;
  absl::StatusOr<Caller> caller =
      Authorize(context, responder_may ? Role::kResponder : Role::kCommander,
                absl::StrCat(Op::Operation_Name(request->operation()), " on an incident"));
  if (!caller.ok()) {
    return Done(context, caller.status());
  }
  if (request->incident_id().empty()) {
    return Done(context, absl::InvalidArgumentError("incident_id is required"));
  }
  auto* reactor = context->DefaultReactor();
  incidents_->Update(*request, caller->name, FinishWhenDone(reactor, response));
  return reactor;
}

grpc::ServerWriteReactor<v1::TimelineEvent>* ControlServiceImpl::Watch(
    grpc::CallbackServerContext* context, const v1::WatchRequest* request) {
  if (absl::StatusOr<Caller> caller = Authorize(context, Role::kViewer, "watching the timeline");
      !caller.ok()) {
    return new RefusedWatch(ToGrpcStatus(caller.status()));
  }
  const auto& metadata = context->client_metadata();
  auto live = metadata.find(std::string(kWatchLiveOnlyKey));
  const bool live_only = live != metadata.end() && live->second == "1";
  return watch_.Open(context, *request, live_only);
}

grpc::ServerUnaryReactor* ControlServiceImpl::ProposeAction(grpc::CallbackServerContext* context,
                                                            const v1::ProposeActionRequest* request,
                                                            v1::ActionProposal* response) {
  absl::StatusOr<Caller> caller = Authorize(context, Role::kCommander, "proposing an action");
  if (!caller.ok()) {
    return Done(context, caller.status());
  }
  auto* reactor = context->DefaultReactor();
  remediation_->Propose(*request, *caller, FinishWhenDone(reactor, response));
  return reactor;
}

grpc::ServerUnaryReactor* ControlServiceImpl::ReviewAction(grpc::CallbackServerContext* context,
                                                           const v1::ReviewActionRequest* request,
                                                           v1::ActionProposal* response) {
  // Which roles may review which action is the policy's call; responders never may.
  absl::StatusOr<Caller> caller =
      Authorize(context, Role::kCommander,
                request->approve() ? "approving an action" : "rejecting an action");
  if (!caller.ok()) {
    return Done(context, caller.status());
  }
  auto* reactor = context->DefaultReactor();
  remediation_->Review(*request, *caller, FinishWhenDone(reactor, response));
  return reactor;
}

grpc::ServerUnaryReactor* ControlServiceImpl::ListActions(grpc::CallbackServerContext* context,
                                                          const v1::ListActionsRequest* request,
                                                          v1::ListActionsResponse* response) {
  if (absl::StatusOr<Caller> caller = Authorize(context, Role::kViewer, "listing actions");
      !caller.ok()) {
    return Done(context, caller.status());
  }
  absl::StatusOr<std::vector<v1::ActionProposal>> actions =
      store_->ListProposals(request->incident_id());
  if (!actions.ok()) {
    return Done(context, actions.status());
  }
  for (v1::ActionProposal& p : *actions) {
    *response->add_actions() = std::move(p);
  }
  return Done(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* ControlServiceImpl::VerifyAudit(grpc::CallbackServerContext* context,
                                                          const v1::VerifyAuditRequest* request,
                                                          v1::VerifyAuditResponse* response) {
  if (absl::StatusOr<Caller> caller =
          Authorize(context, Role::kViewer, "verifying the audit chain");
      !caller.ok()) {
    return Done(context, caller.status());
  }
  absl::StatusOr<v1::VerifyAuditResponse> result = store_->VerifyChain();
  if (result.ok()) {
    *response = std::move(*result);
  }
  return Done(context, result.status());
}

grpc::ServerUnaryReactor* ControlServiceImpl::ExportIncident(
    grpc::CallbackServerContext* context, const v1::ExportIncidentRequest* request,
    v1::ExportIncidentResponse* response) {
  if (absl::StatusOr<Caller> caller = Authorize(context, Role::kViewer, "exporting an incident");
      !caller.ok()) {
    return Done(context, caller.status());
  }
  absl::StatusOr<std::string> content = controller::ExportIncident(
      *store_, request->incident_id(), request->format().empty() ? "markdown" : request->format());
  if (content.ok()) {
    response->set_content(std::move(*content));
  }
  return Done(context, content.status());
}

grpc::ServerUnaryReactor* ControlServiceImpl::WhoAmI(grpc::CallbackServerContext* context,
                                                     const v1::WhoAmIRequest* request,
                                                     v1::WhoAmIResponse* response) {
  absl::StatusOr<Caller> caller = Authorize(context, Role::kViewer, "who am I");
  if (caller.ok()) {
    response->set_user(caller->name);
    response->set_role(std::string(RoleName(caller->role)));
  }
  return Done(context, caller.status());
}

}  // namespace vigil::controller
