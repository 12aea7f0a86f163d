// ControlService: the API of people and their tools (the vigil CLI). No gRPC thread waits on the
// store: every call that reads it (and every call whose caller is not in the token cache) runs on
// the controller's own readers (ReadPool, over several SQLite reader connections) and finishes
// its reactor from there; a full read queue answers RESOURCE_EXHAUSTED with a retry-after-ms
// hint. Answers from memory (FleetState, live alerts) come straight from the gRPC thread; changes
// go to the IncidentManager's or RemediationManager's queue and the call completes when it is
// done. Watch streams are served by a WatchHub (paged backlog, then live events; memory capped).
// Thread-safe.
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "controller/api/read_pool.h"
#include "controller/api/watch_hub.h"
#include "controller/auth/auth.h"
#include "controller/incidents/incident_manager.h"
#include "controller/ingest/fleet_state.h"
#include "controller/remediation/remediation_manager.h"
#include "storage/store.h"
#include "vigil/v1/control_service.grpc.pb.h"

namespace vigil::controller {

// ListAgents is served raw (bytes in, bytes out): the fleet's rows are written serialized by
// FleetState::AppendListing, not copied into a response message for gRPC to serialize again.
class ControlServiceImpl final
    : public v1::ControlService::WithRawCallbackMethod_ListAgents<
          v1::ControlService::CallbackService> {
 public:
  ControlServiceImpl(FleetState* fleet, storage::Store* store, IncidentManager* incidents,
                     RemediationManager* remediation, WatchHub::Options watch = {},
                     ReadPool::Options readers = {});

  // Where GetIncident finds the rules' suggested fixes, and whether an agent offers an action.
  // Before serving; `book` outlives this service.
  void UseSuggestions(const SuggestionBook* book,
                      std::function<bool(const std::string& agent, const std::string& action)>
                          offers) {
    suggestions_ = book;
    offers_ = std::move(offers);
  }

  // Sends a test notification to a receiver and reports its answer (the notifier's Test).
  using NotificationTest = std::function<void(
      const std::string& receiver, std::function<void(absl::StatusOr<std::string>)> done)>;
  // Before serving.
  void UseNotificationTest(NotificationTest test) { notification_test_ = std::move(test); }
  // The audit trail (controller/audit): the chain checked against its signed checkpoints and
  // the caller's witness, and offline bundles. Without them VerifyAudit checks the hash chain
  // alone and bundle exports are unavailable. Before serving.
  struct AuditHooks {
    std::function<absl::StatusOr<v1::VerifyAuditResponse>(const v1::VerifyAuditRequest&,
                                                           const std::string& caller)>
        verify;
    std::function<absl::StatusOr<std::string>(const v1::ExportIncidentRequest&)> bundle;
    // What a report states about the chain: a full check after a checkpoint of the head, so
    // the checkpoint it names covers everything exported.
    std::function<absl::StatusOr<v1::VerifyAuditResponse>(const std::string& caller)> for_export;
  };
  void UseAudit(AuditHooks hooks) { audit_ = std::move(hooks); }

  // Watch streams open, ended for falling behind, and bytes they hold (for /metrics).
  WatchHub::Stats watch_stats() const { return watch_.stats(); }
  // Store reads waiting, running, refused for a full queue, and done (for /metrics).
  ReadPool::Stats read_stats() const { return readers_.stats(); }

  grpc::ServerUnaryReactor* ListAgents(grpc::CallbackServerContext* context,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetMetrics(grpc::CallbackServerContext* context,
                                       const v1::GetMetricsRequest* request,
                                       v1::GetMetricsResponse* response) override;
  grpc::ServerUnaryReactor* ListAlerts(grpc::CallbackServerContext* context,
                                       const v1::ListAlertsRequest* request,
                                       v1::ListAlertsResponse* response) override;
  grpc::ServerUnaryReactor* ListIncidents(grpc::CallbackServerContext* context,
                                          const v1::ListIncidentsRequest* request,
                                          v1::ListIncidentsResponse* response) override;
  grpc::ServerUnaryReactor* GetIncident(grpc::CallbackServerContext* context,
                                        const v1::GetIncidentRequest* request,
                                        v1::GetIncidentResponse* response) override;
  grpc::ServerUnaryReactor* UpdateIncident(grpc::CallbackServerContext* context,
                                           const v1::UpdateIncidentRequest* request,
                                           v1::Incident* response) override;
  grpc::ServerUnaryReactor* ProposeAction(grpc::CallbackServerContext* context,
                                          const v1::ProposeActionRequest* request,
                                          v1::ActionProposal* response) override;
  grpc::ServerUnaryReactor* ReviewAction(grpc::CallbackServerContext* context,
                                         const v1::ReviewActionRequest* request,
                                         v1::ActionProposal* response) override;
  grpc::ServerUnaryReactor* RearmBreaker(grpc::CallbackServerContext* context,
                                         const v1::RearmBreakerRequest* request,
                                         v1::RearmBreakerResponse* response) override;
  grpc::ServerUnaryReactor* TestNotification(grpc::CallbackServerContext* context,
                                             const v1::TestNotificationRequest* request,
                                             v1::TestNotificationResponse* response) override;
  grpc::ServerUnaryReactor* ListActions(grpc::CallbackServerContext* context,
                                        const v1::ListActionsRequest* request,
                                        v1::ListActionsResponse* response) override;
  grpc::ServerWriteReactor<v1::TimelineEvent>* Watch(grpc::CallbackServerContext* context,
                                                     const v1::WatchRequest* request) override;
  grpc::ServerUnaryReactor* VerifyAudit(grpc::CallbackServerContext* context,
                                        const v1::VerifyAuditRequest* request,
                                        v1::VerifyAuditResponse* response) override;
  grpc::ServerUnaryReactor* ExportIncident(grpc::CallbackServerContext* context,
                                           const v1::ExportIncidentRequest* request,
                                           v1::ExportIncidentResponse* response) override;
  grpc::ServerUnaryReactor* WhoAmI(grpc::CallbackServerContext* context,
                                   const v1::WhoAmIRequest* request,
                                   v1::WhoAmIResponse* response) override;
  // People over time, admins only. A change drops every cached caller at once, so the very next
  // call of a disabled user or with a replaced token is refused.
  grpc::ServerUnaryReactor* ListUsers(grpc::CallbackServerContext* context,
                                      const v1::ListUsersRequest* request,
                                      v1::ListUsersResponse* response) override;
  grpc::ServerUnaryReactor* DisableUser(grpc::CallbackServerContext* context,
                                        const v1::DisableUserRequest* request,
                                        v1::UserInfo* response) override;
  grpc::ServerUnaryReactor* EnableUser(grpc::CallbackServerContext* context,
                                       const v1::EnableUserRequest* request,
                                       v1::UserInfo* response) override;
  grpc::ServerUnaryReactor* RotateUserToken(grpc::CallbackServerContext* context,
                                            const v1::RotateUserTokenRequest* request,
                                            v1::RotateUserTokenResponse* response) override;

  // The token and certificate checks of this service, shared with the controller's HTTP port
  // so that one Forget() or Refresh() covers every way in.
  Authenticator& authenticator() { return auth_; }

 private:
  // What a call needs besides its caller: nothing from the store (served on the gRPC thread when
  // the token cache knows the caller), a light store read, or a heavy one (the whole chain).
  enum class Work { kMemory, kRead, kHeavyRead };
  // Runs `body` for an allowed caller and returns the call's reactor; `body` finishes it (now or
  // later). Authentication, and `body` unless it is kMemory work with a cached caller, run on
  // the readers; a full read queue finishes the call with RESOURCE_EXHAUSTED.
  using Body = std::function<void(const Caller&, grpc::ServerUnaryReactor*)>;
  grpc::ServerUnaryReactor* Serve(grpc::CallbackServerContext* context, Role needed,
                                  std::string what, Work work, Body body);
  // A Body that finishes the call with what `answer` returns.
  static Body Answer(std::function<absl::Status(const Caller&)> answer);
  // An Answer for a call that changes users: the cache forgets every caller once it is done.
  Body ChangeUsers(std::function<absl::Status(const Caller&)> change);

  FleetState* fleet_;
  storage::Store* store_;
  IncidentManager* incidents_;
  RemediationManager* remediation_;
  const SuggestionBook* suggestions_ = nullptr;
  std::function<bool(const std::string& agent, const std::string& action)> offers_;
  NotificationTest notification_test_;
  AuditHooks audit_;
  Authenticator auth_;
  WatchHub watch_;
  // Last, so destroyed first: queued reads run to the end while what they use is still here.
  ReadPool readers_;
};

}  // namespace vigil::controller
