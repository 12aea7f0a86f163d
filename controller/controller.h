// The controller process: opens the store, restores the agent registry, serves AgentService and
// ControlService on one gRPC port, and persists registry changes from one writer thread.
// Start/Stop from one thread; the services inside are thread-safe.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "common/clock.h"
#include "common/transport.h"
#include "controller/api/control_service.h"
#include "controller/ingest/agent_service.h"
#include "controller/ingest/fleet_state.h"
#include "storage/store.h"

namespace vigil::controller {

struct ControllerOptions {
  std::string listen = "127.0.0.1:7443";
  std::string db_path = "data/vigil.db";
  TransportFlags transport;
  // With the watchdog's 250 ms tick, a silent agent is shown disconnected within 3 s of its
  // last message; agents send at least every silence_timeout / 3.
  absl::Duration silence_timeout = absl::Milliseconds(2500);
  absl::Duration registry_flush = absl::Seconds(1);
};

class Controller {
 public:
  Controller(ControllerOptions options, const Clock* clock);
  ~Controller();

  // Opens the store and starts serving; errors name what failed (db path, listen address).
  absl::Status Start();
  // Blocks until Stop() is called from another thread.
  void Wait();
  void Stop();

  int port() const { return port_; }
  FleetState& fleet() { return fleet_; }
  AgentServiceImpl& agent_service() { return *agent_service_; }

 private:
  void RegistryWriterLoop();

  const ControllerOptions options_;
  const Clock* clock_;
  std::unique_ptr<storage::Store> store_;
  FleetState fleet_;
  std::unique_ptr<AgentServiceImpl> agent_service_;
  std::unique_ptr<ControlServiceImpl> control_service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::thread registry_writer_;
  absl::Notification stop_;
  bool started_ = false;
};

}  // namespace vigil::controller
