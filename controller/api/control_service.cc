#include "controller/api/control_service.h"

#include <google/protobuf/arena.h>
#include <spdlog/spdlog.h>

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/ids.h"
#include "common/status.h"
#include "common/wire_metadata.h"
#include "controller/api/incident_pages.h"
#include "controller/auth/users.h"
#include "controller/incidents/incident_report.h"

namespace vigil::controller {
namespace {

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

// How long a client told the readers are busy should wait before trying again.
constexpr int kReadRetryAfterMs = 200;

std::string AuthorizationHeader(const grpc::CallbackServerContext* context) {
  const auto& metadata = context->client_metadata();
  auto it = metadata.find("authorization");
  return it == metadata.end() ? std::string() : std::string(it->second.data(), it->second.size());
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
                                       RemediationManager* remediation, WatchHub::Options watch,
                                       ReadPool::Options readers)
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
             watch),
      readers_(readers) {
}

ControlServiceImpl::Body ControlServiceImpl::Answer(
    std::function<absl::Status(const Caller&)> answer) {
  return [answer = std::move(answer)](const Caller& caller, grpc::ServerUnaryReactor* reactor) {
    reactor->Finish(ToGrpcStatus(answer(caller)));
  };
}

ControlServiceImpl::Body ControlServiceImpl::ChangeUsers(
    std::function<absl::Status(const Caller&)> change) {
  return [this, change = std::move(change)](const Caller& caller,
                                            grpc::ServerUnaryReactor* reactor) {
    absl::Status done = change(caller);
    // Even after a failure: a change may have landed before the error.
    auth_.Forget();
    reactor->Finish(ToGrpcStatus(done));
  };
}

grpc::ServerUnaryReactor* ControlServiceImpl::Serve(grpc::CallbackServerContext* context,
                                                    Role needed, std::string what, Work work,
                                                    Body body) {
  auto* reactor = context->DefaultReactor();
  std::string header = AuthorizationHeader(context);
  if (work == Work::kMemory) {
    if (std::optional<absl::StatusOr<Caller>> known = auth_.AuthenticateCached(header);
        known.has_value()) {
      absl::Status allowed =
          known->ok() ? Authenticator::Require(**known, needed, what) : known->status();
      if (!allowed.ok()) {
        reactor->Finish(ToGrpcStatus(allowed));
      } else {
        body(**known, reactor);
      }
      return reactor;
    }
  }
  // On a reader: the token may need a store read, and so may the call.
  auto task = [this, reactor, header = std::move(header), needed, what = std::move(what),
               body = std::move(body)] {
    absl::StatusOr<Caller> caller = auth_.Authenticate(header);
    absl::Status allowed =
        caller.ok() ? Authenticator::Require(*caller, needed, what) : caller.status();
    if (!allowed.ok()) {
      reactor->Finish(ToGrpcStatus(allowed));
      return;
    }
    body(*caller, reactor);
  };
  const ReadPool::Lane lane = work == Work::kHeavyRead ? ReadPool::Lane::kHeavy
                                                       : ReadPool::Lane::kLight;
  if (absl::Status queued = readers_.Submit(lane, std::move(task)); !queued.ok()) {
    context->AddTrailingMetadata(std::string(kRetryAfterMsKey), std::to_string(kReadRetryAfterMs));
    reactor->Finish(ToGrpcStatus(queued));
  }
  return reactor;
}

grpc::ServerUnaryReactor* ControlServiceImpl::ListAgents(grpc::CallbackServerContext* context,
                                                         const grpc::ByteBuffer* request,
                                                         grpc::ByteBuffer* response) {
  return Serve(context, Role::kViewer, "listing agents", Work::kMemory,
               Answer([this, request, response](const Caller&) -> absl::Status {
                 // Parsed as the typed method would, so a malformed request is refused the same.
                 grpc::ByteBuffer copy(*request);
                 v1::ListAgentsRequest parsed;
                 if (!grpc::SerializationTraits<v1::ListAgentsRequest>::Deserialize(&copy,
                                                                                    &parsed)
                          .ok()) {
                   return absl::InvalidArgumentError("ListAgentsRequest: cannot be parsed");
                 }
                 std::string listing;
                 fleet_->AppendListing(&listing);
                 grpc::Slice slice(listing);
                 *response = grpc::ByteBuffer(&slice, 1);
                 return absl::OkStatus();
               }));
}

grpc::ServerUnaryReactor* ControlServiceImpl::GetMetrics(grpc::CallbackServerContext* context,
                                                         const v1::GetMetricsRequest* request,
                                                         v1::GetMetricsResponse* response) {
  return Serve(context, Role::kViewer, "reading metrics", Work::kMemory,
               Answer([this, request, response](const Caller&) -> absl::Status {
                 if (request->agent_id().empty()) {
                   return absl::InvalidArgumentError("agent_id is required");
                 }
                 absl::StatusOr<v1::GetMetricsResponse> metrics =
                     fleet_->GetMetrics(request->agent_id(), request->name_prefix());
                 if (metrics.ok()) {
                   *response = std::move(*metrics);
                 }
                 return metrics.status();
               }));
}

grpc::ServerUnaryReactor* ControlServiceImpl::ListAlerts(grpc::CallbackServerContext* context,
                                                         const v1::ListAlertsRequest* request,
                                                         v1::ListAlertsResponse* response) {
  // Resolved alerts are in the store only; live ones in memory.
  return Serve(context, Role::kViewer, "listing alerts",
               request->include_resolved() ? Work::kRead : Work::kMemory,
               Answer([this, request, response](const Caller&) -> absl::Status {
                 std::set<std::string> seen;
                 for (v1::Alert& alert : incidents_->ActiveAlerts()) {
                   seen.insert(alert.id());
                   *response->add_alerts() = std::move(alert);
                 }
                 if (request->include_resolved()) {
                   ASSIGN_OR_RETURN(std::vector<v1::Alert> stored, store_->ListAlerts(true));
                   for (v1::Alert& alert : stored) {
                     if (!seen.contains(alert.id())) {
                       *response->add_alerts() = std::move(alert);
                     }
                   }
                 }
                 return absl::OkStatus();
               }));
}

grpc::ServerUnaryReactor* ControlServiceImpl::ListIncidents(grpc::CallbackServerContext* context,
                                                            const v1::ListIncidentsRequest* request,
                                                            v1::ListIncidentsResponse* response) {
  return Serve(
      context, Role::kViewer, "listing incidents", Work::kRead,
      Answer([this, request, response](const Caller&) -> absl::Status {
        static const std::set<std::string> kStates = {
            "", "all", "active", "open", "acknowledged", "mitigated", "resolved"};
        if (!kStates.contains(request->state())) {
          return absl::InvalidArgumentError(absl::StrCat(
              "state '", request->state(),
              "' is not one of: all, active, open, acknowledged, mitigated, resolved"));
        }
        ASSIGN_OR_RETURN(std::vector<v1::Incident> incidents,
                         store_->ListIncidents(request->state()));
        for (v1::Incident& incident : incidents) {
          *response->add_incidents() = std::move(incident);
        }
        return absl::OkStatus();
      }));
}

grpc::ServerUnaryReactor* ControlServiceImpl::GetIncident(grpc::CallbackServerContext* context,
                                                          const v1::GetIncidentRequest* request,
                                                          v1::GetIncidentResponse* response) {
  return Serve(context, Role::kViewer, "reading an incident", Work::kRead,
               Answer([this, request, response](const Caller&) -> absl::Status {
                 ASSIGN_OR_RETURN(*response, LoadIncidentPage(*store_, *request));
                 if (request->after_seq() == 0 && suggestions_ != nullptr) {
                   // With the first page, like the alerts and actions.
                   ASSIGN_OR_RETURN(std::vector<v1::SuggestedAction> suggestions,
                                    LoadSuggestions(*store_, request->incident_id(),
                                                    *suggestions_->Get(), offers_));
                   for (v1::SuggestedAction& s : suggestions) {
                     *response->add_suggestions() = std::move(s);
                   }
                 }
                 return absl::OkStatus();
               }));
}

grpc::ServerUnaryReactor* ControlServiceImpl::UpdateIncident(
    grpc::CallbackServerContext* context, const v1::UpdateIncidentRequest* request,
    v1::Incident* response) {
  using Op = v1::UpdateIncidentRequest;
  const bool responder_may = request->operation() == Op::ACKNOWLEDGE ||
                             request->operation() == Op::NOTE || request->operation() == Op::CHECK;
  return Serve(context, responder_may ? Role::kResponder : Role::kCommander,
               absl::StrCat(Op::Operation_Name(request->operation()), " on an incident"),
               Work::kMemory,
               [this, request, response](const Caller& caller, grpc::ServerUnaryReactor* reactor) {
                 if (request->incident_id().empty()) {
                   reactor->Finish(ToGrpcStatus(
                       absl::InvalidArgumentError("incident_id is required")));
                   return;
                 }
                 incidents_->Update(*request, caller.name, FinishWhenDone(reactor, response));
               });
}

grpc::ServerUnaryReactor* ControlServiceImpl::RearmBreaker(
    grpc::CallbackServerContext* context, const v1::RearmBreakerRequest* request,
    v1::RearmBreakerResponse* response) {
  return Serve(context, Role::kAdmin, "re-arming a circuit breaker", Work::kMemory,
               [this, request, response](const Caller& caller, grpc::ServerUnaryReactor* reactor) {
                 if (request->incident_id().empty() || request->action().empty()) {
                   reactor->Finish(ToGrpcStatus(absl::InvalidArgumentError(
                       "incident_id and action are required")));
                   return;
                 }
                 remediation_->Rearm(*request, caller, FinishWhenDone(reactor, response));
               });
}

grpc::ServerUnaryReactor* ControlServiceImpl::TestNotification(
    grpc::CallbackServerContext* context, const v1::TestNotificationRequest* request,
    v1::TestNotificationResponse* response) {
  // Admin: it pages whoever the receiver reaches.
  return Serve(context, Role::kAdmin, "sending a test notification", Work::kMemory,
               [this, request, response](const Caller&, grpc::ServerUnaryReactor* reactor) {
                 if (request->receiver().empty()) {
                   reactor->Finish(
                       ToGrpcStatus(absl::InvalidArgumentError("receiver is required")));
                   return;
                 }
                 if (!notification_test_) {
                   reactor->Finish(ToGrpcStatus(
                       absl::UnimplementedError("this controller sends no notifications")));
                   return;
                 }
                 // Answered from the receiver's own thread once it has replied.
                 notification_test_(request->receiver(), [reactor, request, response](
                                                             absl::StatusOr<std::string> result) {
                   const absl::Status status = result.status();  // before the value moves out
                   if (result.ok()) {
                     response->set_receiver(request->receiver());
                     response->set_result(*std::move(result));
                   }
                   reactor->Finish(ToGrpcStatus(status));
                 });
               });
}

grpc::ServerWriteReactor<v1::TimelineEvent>* ControlServiceImpl::Watch(
    grpc::CallbackServerContext* context, const v1::WatchRequest* request) {
  const auto& metadata = context->client_metadata();
  auto live = metadata.find(std::string(kWatchLiveOnlyKey));
  const bool live_only = live != metadata.end() && live->second == "1";
  std::string header = AuthorizationHeader(context);
  constexpr absl::string_view kWhat = "watching the timeline";
  if (std::optional<absl::StatusOr<Caller>> known = auth_.AuthenticateCached(header);
      known.has_value()) {
    absl::Status allowed =
        known->ok() ? Authenticator::Require(**known, Role::kViewer, kWhat) : known->status();
    if (!allowed.ok()) {
      return new RefusedWatch(ToGrpcStatus(allowed));
    }
    return watch_.Open(context, *request, live_only);
  }
  // A token not seen lately: the hub checks it on its reader thread before the stream starts.
  return watch_.Open(context, *request, live_only,
                     [this, header = std::move(header), kWhat]() -> absl::Status {
                       ASSIGN_OR_RETURN(Caller caller, auth_.Authenticate(header));
                       return Authenticator::Require(caller, Role::kViewer, kWhat);
                     });
}

grpc::ServerUnaryReactor* ControlServiceImpl::ProposeAction(grpc::CallbackServerContext* context,
                                                            const v1::ProposeActionRequest* request,
                                                            v1::ActionProposal* response) {
  return Serve(context, Role::kCommander, "proposing an action", Work::kMemory,
               [this, request, response](const Caller& caller, grpc::ServerUnaryReactor* reactor) {
                 remediation_->Propose(*request, caller, FinishWhenDone(reactor, response));
               });
}

grpc::ServerUnaryReactor* ControlServiceImpl::ReviewAction(grpc::CallbackServerContext* context,
                                                           const v1::ReviewActionRequest* request,
                                                           v1::ActionProposal* response) {
  // Which roles may review which action is the policy's call; responders never may.
  return Serve(context, Role::kCommander,
               request->approve() ? "approving an action" : "rejecting an action", Work::kMemory,
               [this, request, response](const Caller& caller, grpc::ServerUnaryReactor* reactor) {
                 remediation_->Review(*request, caller, FinishWhenDone(reactor, response));
               });
}

grpc::ServerUnaryReactor* ControlServiceImpl::ListActions(grpc::CallbackServerContext* context,
                                                          const v1::ListActionsRequest* request,
                                                          v1::ListActionsResponse* response) {
  return Serve(context, Role::kViewer, "listing actions", Work::kRead,
               Answer([this, request, response](const Caller&) -> absl::Status {
                 ASSIGN_OR_RETURN(std::vector<v1::ActionProposal> actions,
                                  store_->ListProposals(request->incident_id()));
                 for (v1::ActionProposal& p : actions) {
                   *response->add_actions() = std::move(p);
                 }
                 return absl::OkStatus();
               }));
}

grpc::ServerUnaryReactor* ControlServiceImpl::VerifyAudit(grpc::CallbackServerContext* context,
                                                          const v1::VerifyAuditRequest* request,
                                                          v1::VerifyAuditResponse* response) {
  // The whole chain: a heavy read, which never takes the last reader thread.
  return Serve(context, Role::kViewer, "verifying the audit chain", Work::kHeavyRead,
               Answer([this, request, response](const Caller& caller) -> absl::Status {
                 if (audit_.verify) {
                   ASSIGN_OR_RETURN(*response, audit_.verify(*request, caller.name));
                 } else {
                   ASSIGN_OR_RETURN(*response, store_->VerifyChain());
                 }
                 return absl::OkStatus();
               }));
}

grpc::ServerUnaryReactor* ControlServiceImpl::ExportIncident(
    grpc::CallbackServerContext* context, const v1::ExportIncidentRequest* request,
    v1::ExportIncidentResponse* response) {
  // The incident whole and the chain verified: heavy.
  return Serve(context, Role::kViewer, "exporting an incident", Work::kHeavyRead,
               Answer([this, request, response](const Caller& caller) -> absl::Status {
                 if (request->format() == "bundle") {
                   if (!audit_.bundle) {
                     return absl::UnimplementedError("this controller exports no audit bundles");
                   }
                   ASSIGN_OR_RETURN(std::string bundle, audit_.bundle(*request));
                   response->set_content(std::move(bundle));
                   return absl::OkStatus();
                 }
                 if (request->incident_id().empty()) {
                   return absl::InvalidArgumentError(
                       "an incident id is needed (only --bundle exports a time range)");
                 }
                 // Refused before the chain is checked, which costs a pass over the chain.
                 const std::string& format = request->format();
                 if (!format.empty() && format != "markdown" && format != "json") {
                   return absl::InvalidArgumentError(absl::StrCat(
                       "format '", format, "' is not one of: markdown, json, bundle"));
                 }
                 ASSIGN_OR_RETURN(std::optional<v1::Incident> known,
                                  store_->GetIncident(request->incident_id()));
                 if (!known.has_value()) {
                   return absl::NotFoundError(
                       absl::StrCat("no incident '", request->incident_id(), "'"));
                 }
                 // The verification the export reports (chain head, the checkpoint that
                 // covers it): the controller's, else the hash chain alone.
                 v1::VerifyAuditResponse audit;
                 if (audit_.for_export) {
                   ASSIGN_OR_RETURN(audit, audit_.for_export(caller.name));
                 } else {
                   ASSIGN_OR_RETURN(audit, store_->VerifyChain());
                 }
                 ASSIGN_OR_RETURN(
                     std::string content,
                     controller::ExportIncident(
                         *store_, request->incident_id(),
                         request->format().empty() ? "markdown" : request->format(), audit));
                 response->set_content(std::move(content));
                 return absl::OkStatus();
               }));
}

grpc::ServerUnaryReactor* ControlServiceImpl::WhoAmI(grpc::CallbackServerContext* context,
                                                     const v1::WhoAmIRequest* request,
                                                     v1::WhoAmIResponse* response) {
  return Serve(context, Role::kViewer, "who am I", Work::kMemory,
               Answer([response](const Caller& caller) {
                 response->set_user(caller.name);
                 response->set_role(std::string(RoleName(caller.role)));
                 return absl::OkStatus();
               }));
}

// Users are read and changed on the readers (Work::kRead): a store write here waits at most on
// the timeline writer's transaction, never on a gRPC thread.
grpc::ServerUnaryReactor* ControlServiceImpl::ListUsers(grpc::CallbackServerContext* context,
                                                        const v1::ListUsersRequest* request,
                                                        v1::ListUsersResponse* response) {
  return Serve(context, Role::kAdmin, "listing users", Work::kRead,
               Answer([this, response](const Caller&) -> absl::Status {
                 ASSIGN_OR_RETURN(*response, controller::ListUsers(*store_));
                 return absl::OkStatus();
               }));
}

grpc::ServerUnaryReactor* ControlServiceImpl::DisableUser(grpc::CallbackServerContext* context,
                                                          const v1::DisableUserRequest* request,
                                                          v1::UserInfo* response) {
  return Serve(context, Role::kAdmin, "disabling a user", Work::kRead,
               ChangeUsers([this, request, response](const Caller& caller) -> absl::Status {
                 if (request->name().empty()) {
                   return absl::InvalidArgumentError("name is required");
                 }
                 if (request->name() == caller.name) {
                   // Locking oneself out through the API leaves nobody to undo it there.
                   return absl::FailedPreconditionError(absl::StrCat(
                       caller.name, " cannot disable themselves; another admin can, or "
                                    "'vigil-controller users disable' on the controller's host"));
                 }
                 ASSIGN_OR_RETURN(*response,
                                  controller::DisableUser(*store_, request->name(),
                                                          absl::ToUnixMillis(absl::Now())));
                 spdlog::info("user {} disabled by {}", request->name(), caller.name);
                 return absl::OkStatus();
               }));
}

grpc::ServerUnaryReactor* ControlServiceImpl::EnableUser(grpc::CallbackServerContext* context,
                                                         const v1::EnableUserRequest* request,
                                                         v1::UserInfo* response) {
  return Serve(context, Role::kAdmin, "enabling a user", Work::kRead,
               ChangeUsers([this, request, response](const Caller& caller) -> absl::Status {
                 if (request->name().empty()) {
                   return absl::InvalidArgumentError("name is required");
                 }
                 ASSIGN_OR_RETURN(*response, controller::EnableUser(*store_, request->name()));
                 spdlog::info("user {} enabled by {}", request->name(), caller.name);
                 return absl::OkStatus();
               }));
}

grpc::ServerUnaryReactor* ControlServiceImpl::RotateUserToken(
    grpc::CallbackServerContext* context, const v1::RotateUserTokenRequest* request,
    v1::RotateUserTokenResponse* response) {
  return Serve(context, Role::kAdmin, "rotating a user's token", Work::kRead,
               ChangeUsers([this, request, response](const Caller& caller) -> absl::Status {
                 if (request->name().empty()) {
                   return absl::InvalidArgumentError("name is required");
                 }
                 ASSIGN_OR_RETURN(absl::Duration lifetime,
                                  ParseTokenLifetime(request->expires_in()));
                 ASSIGN_OR_RETURN(*response,
                                  controller::RotateUserToken(*store_, request->name(),
                                                              absl::ToUnixMillis(absl::Now()),
                                                              lifetime));
                 spdlog::info("user {} has a new token, issued by {}", request->name(),
                              caller.name);
                 return absl::OkStatus();
               }));
}

}  // namespace vigil::controller
