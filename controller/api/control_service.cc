#include "controller/api/control_service.h"

#include "common/status.h"

namespace vigil::controller {

grpc::ServerUnaryReactor* ControlServiceImpl::ListAgents(grpc::CallbackServerContext* context,
                                                         const v1::ListAgentsRequest* request,
                                                         v1::ListAgentsResponse* response) {
  for (v1::AgentInfo& info : fleet_->ListAgents()) {
    *response->add_agents() = std::move(info);
  }
  auto* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* ControlServiceImpl::GetMetrics(grpc::CallbackServerContext* context,
                                                         const v1::GetMetricsRequest* request,
                                                         v1::GetMetricsResponse* response) {
  auto* reactor = context->DefaultReactor();
  if (request->agent_id().empty()) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "agent_id is required"));
    return reactor;
  }
  absl::StatusOr<v1::GetMetricsResponse> metrics =
      fleet_->GetMetrics(request->agent_id(), request->name_prefix());
  if (metrics.ok()) {
    *response = std::move(*metrics);
  }
  reactor->Finish(ToGrpcStatus(metrics.status()));
  return reactor;
}

}  // namespace vigil::controller
