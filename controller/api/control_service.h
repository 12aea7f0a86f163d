// ControlService: the API of people and their tools (the vigil CLI). Reads come from the
// in-memory FleetState, the incident manager's live alerts and the Store's reader connection;
// changes go to the IncidentManager's queue and the call completes when it is done, so no gRPC
// thread ever waits on the store's writer. Watch streams are served by a WatchHub (paged
// backlog, then live events; memory capped). Thread-safe.
#pragma once

#include <grpcpp/grpcpp.h>

#include <string>

#include "absl/status/statusor.h"
#include "controller/api/watch_hub.h"
#include "controller/auth/auth.h"
#include "controller/incidents/incident_manager.h"
#include "controller/ingest/fleet_state.h"
#include "controller/remediation/remediation_manager.h"
#include "storage/store.h"
#include "vigil/v1/control_service.grpc.pb.h"

namespace vigil::controller {

class ControlServiceImpl final : public v1::ControlService::CallbackService {
 public:
  ControlServiceImpl(FleetState* fleet, storage::Store* store, IncidentManager* incidents,
                     RemediationManager* remediation, WatchHub::Options watch = {});

  // Watch streams open, ended for falling behind, and bytes they hold (for /metrics).
  WatchHub::Stats watch_stats() const { return watch_.stats(); }

  grpc::ServerUnaryReactor* ListAgents(grpc::CallbackServerContext* context,
                                       const v1::ListAgentsRequest* request,
                                       v1::ListAgentsResponse* response) override;
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

 private:
  // The caller named by the bearer token, if their role allows `what`.
  absl::StatusOr<Caller> Authorize(grpc::CallbackServerContext* context, Role needed,
                                   absl::string_view what);

  FleetState* fleet_;
  storage::Store* store_;
  IncidentManager* incidents_;
  RemediationManager* remediation_;
  Authenticator auth_;
  WatchHub watch_;
};

}  // namespace vigil::controller
