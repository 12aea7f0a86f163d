// ControlService: the API of people and their tools (the vigil CLI). Reads come from the
// in-memory FleetState and the Store; nothing here blocks a gRPC thread on disk for long.
// Thread-safe.
#pragma once

#include <grpcpp/grpcpp.h>

#include "controller/ingest/fleet_state.h"
#include "storage/store.h"
#include "vigil/v1/control_service.grpc.pb.h"

namespace vigil::controller {

class ControlServiceImpl final : public v1::ControlService::CallbackService {
 public:
  ControlServiceImpl(FleetState* fleet, storage::Store* store) : fleet_(fleet), store_(store) {}

  grpc::ServerUnaryReactor* ListAgents(grpc::CallbackServerContext* context,
                                       const v1::ListAgentsRequest* request,
                                       v1::ListAgentsResponse* response) override;
  grpc::ServerUnaryReactor* GetMetrics(grpc::CallbackServerContext* context,
                                       const v1::GetMetricsRequest* request,
                                       v1::GetMetricsResponse* response) override;

 private:
  FleetState* fleet_;
  storage::Store* store_;
};

}  // namespace vigil::controller
