#include "controller/controller.h"

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status.h"
#include "storage/sqlite/sqlite_store.h"

namespace vigil::controller {

Controller::Controller(ControllerOptions options, const Clock* clock)
    : options_(std::move(options)), clock_(clock) {}

Controller::~Controller() { Stop(); }

absl::Status Controller::Start() {
  ASSIGN_OR_RETURN(auto credentials, MakeServerCredentials(options_.transport, options_.listen));
  ASSIGN_OR_RETURN(store_, storage::OpenSqliteStore(options_.db_path));
  ASSIGN_OR_RETURN(std::vector<v1::AgentInfo> registry, store_->ListAgents());
  fleet_.Restore(registry);

  agent_service_ = std::make_unique<AgentServiceImpl>(
      &fleet_, clock_, AgentServiceImpl::Options{.silence_timeout = options_.silence_timeout});
  control_service_ = std::make_unique<ControlServiceImpl>(&fleet_, store_.get());

  grpc::ServerBuilder builder;
  builder.AddListeningPort(options_.listen, credentials, &port_);
  builder.RegisterService(agent_service_.get());
  builder.RegisterService(control_service_.get());
  // Agents ping every 10 s on idle streams; allow it, or gRPC answers too_many_pings.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 30'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10'000);
  builder.SetMaxReceiveMessageSize(16 << 20);
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port_ == 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", options_.listen, " (address in use, or not an address of this host)"));
  }
  agent_service_->Start();
  registry_writer_ = std::thread([this] { RegistryWriterLoop(); });
  started_ = true;
  spdlog::info("vigil-controller {} listening on {} (port {}), store {} with {} known agent(s)",
               VIGIL_VERSION, options_.listen, port_, options_.db_path, registry.size());
  return absl::OkStatus();
}

void Controller::Wait() { stop_.WaitForNotification(); }

void Controller::Stop() {
  if (!started_) {
    return;
  }
  started_ = false;
  if (!stop_.HasBeenNotified()) {
    stop_.Notify();
  }
  // A deadline, or Shutdown waits for agent streams that never end by themselves.
  server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
  agent_service_->Shutdown();
  if (registry_writer_.joinable()) {
    registry_writer_.join();
  }
  server_->Wait();
}

void Controller::RegistryWriterLoop() {
  // The one writer of registry rows: batches every change of the last interval into one
  // transaction, and flushes once more on the way out.
  while (true) {
    const bool stopping = stop_.WaitForNotificationWithTimeout(options_.registry_flush);
    std::vector<v1::AgentInfo> dirty = fleet_.TakeDirty();
    if (!dirty.empty()) {
      if (absl::Status s = store_->UpsertAgents(dirty); !s.ok()) {
        spdlog::error("cannot save the agent registry ({} rows): {}", dirty.size(), s.message());
      }
    }
    if (stopping) {
      return;
    }
  }
}

}  // namespace vigil::controller
