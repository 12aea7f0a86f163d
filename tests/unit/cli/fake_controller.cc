#include "tests/unit/cli/fake_controller.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/wire_metadata.h"

namespace vigil::cli::testing {

void FakeControlService::SetResponse(const std::string& method,
                                     const google::protobuf::Message& response) {
  absl::MutexLock lock(&mu_);
  answers_[method] = Answer{grpc::Status::OK, response.SerializeAsString()};
}

void FakeControlService::SetError(const std::string& method, grpc::Status status) {
  absl::MutexLock lock(&mu_);
  answers_[method] = Answer{std::move(status), ""};
}

void FakeControlService::SetDelay(absl::Duration delay) {
  absl::MutexLock lock(&mu_);
  delay_ = delay;
}

void FakeControlService::SetEvents(std::vector<v1::TimelineEvent> events) {
  absl::MutexLock lock(&mu_);
  events_ = std::move(events);
}

void FakeControlService::SetWatchBehindAfter(int n) {
  absl::MutexLock lock(&mu_);
  behind_after_ = n;
}

void FakeControlService::SetLiveStart(uint64_t seq) {
  absl::MutexLock lock(&mu_);
  live_start_ = seq;
}

std::vector<bool> FakeControlService::LiveOnlyWatches() const {
  absl::MutexLock lock(&mu_);
  return live_only_;
}

int FakeControlService::Calls(const std::string& method) const {
  absl::MutexLock lock(&mu_);
  auto it = requests_.find(method);
  return it == requests_.end() ? 0 : static_cast<int>(it->second.size());
}

int FakeControlService::TotalCalls() const {
  absl::MutexLock lock(&mu_);
  int total = 0;
  for (const auto& [method, requests] : requests_) total += static_cast<int>(requests.size());
  return total;
}

std::string FakeControlService::LastAuthorization() const {
  absl::MutexLock lock(&mu_);
  return last_authorization_;
}

int FakeControlService::EventsWritten() const {
  absl::MutexLock lock(&mu_);
  return events_written_;
}

void FakeControlService::EndStreams() {
  absl::MutexLock lock(&mu_);
  ending_ = true;
}

void FakeControlService::Record(const std::string& method, grpc::ServerContext* context,
                                const google::protobuf::Message& request) {
  requests_[method].push_back(request.SerializeAsString());
  auto it = context->client_metadata().find("authorization");
  last_authorization_ = it == context->client_metadata().end()
                            ? "<none>"
                            : std::string(it->second.data(), it->second.size());
}

grpc::Status FakeControlService::Reply(const std::string& method, grpc::ServerContext* context,
                                       const google::protobuf::Message& request,
                                       google::protobuf::Message* response) {
  absl::Duration delay;
  {
    absl::MutexLock lock(&mu_);
    Record(method, context, request);
    delay = delay_;
  }
  if (delay > absl::ZeroDuration()) absl::SleepFor(delay);
  absl::MutexLock lock(&mu_);
  auto it = answers_.find(method);
  if (it == answers_.end()) return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "");
  if (!it->second.status.ok()) return it->second.status;
  response->ParseFromString(it->second.response);
  return grpc::Status::OK;
}

grpc::Status FakeControlService::ListAgents(grpc::ServerContext* context,
                                            const v1::ListAgentsRequest* request,
                                            v1::ListAgentsResponse* response) {
  return Reply("ListAgents", context, *request, response);
}
grpc::Status FakeControlService::GetMetrics(grpc::ServerContext* context,
                                            const v1::GetMetricsRequest* request,
                                            v1::GetMetricsResponse* response) {
  return Reply("GetMetrics", context, *request, response);
}
grpc::Status FakeControlService::ListAlerts(grpc::ServerContext* context,
                                            const v1::ListAlertsRequest* request,
                                            v1::ListAlertsResponse* response) {
  return Reply("ListAlerts", context, *request, response);
}
grpc::Status FakeControlService::ListIncidents(grpc::ServerContext* context,
                                               const v1::ListIncidentsRequest* request,
                                               v1::ListIncidentsResponse* response) {
  return Reply("ListIncidents", context, *request, response);
}
grpc::Status FakeControlService::GetIncident(grpc::ServerContext* context,
                                             const v1::GetIncidentRequest* request,
                                             v1::GetIncidentResponse* response) {
  return Reply("GetIncident", context, *request, response);
}
grpc::Status FakeControlService::UpdateIncident(grpc::ServerContext* context,
                                                const v1::UpdateIncidentRequest* request,
                                                v1::Incident* response) {
  return Reply("UpdateIncident", context, *request, response);
}
grpc::Status FakeControlService::ProposeAction(grpc::ServerContext* context,
                                               const v1::ProposeActionRequest* request,
                                               v1::ActionProposal* response) {
  return Reply("ProposeAction", context, *request, response);
}
grpc::Status FakeControlService::ReviewAction(grpc::ServerContext* context,
                                              const v1::ReviewActionRequest* request,
                                              v1::ActionProposal* response) {
  return Reply("ReviewAction", context, *request, response);
}
grpc::Status FakeControlService::ListActions(grpc::ServerContext* context,
                                             const v1::ListActionsRequest* request,
                                             v1::ListActionsResponse* response) {
  return Reply("ListActions", context, *request, response);
}
grpc::Status FakeControlService::VerifyAudit(grpc::ServerContext* context,
                                             const v1::VerifyAuditRequest* request,
                                             v1::VerifyAuditResponse* response) {
  return Reply("VerifyAudit", context, *request, response);
}
grpc::Status FakeControlService::ExportIncident(grpc::ServerContext* context,
                                                const v1::ExportIncidentRequest* request,
                                                v1::ExportIncidentResponse* response) {
  return Reply("ExportIncident", context, *request, response);
}
grpc::Status FakeControlService::WhoAmI(grpc::ServerContext* context,
                                        const v1::WhoAmIRequest* request,
                                        v1::WhoAmIResponse* response) {
  return Reply("WhoAmI", context, *request, response);
}
grpc::Status FakeControlService::ListUsers(grpc::ServerContext* context,
                                           const v1::ListUsersRequest* request,
                                           v1::ListUsersResponse* response) {
  return Reply("ListUsers", context, *request, response);
}
grpc::Status FakeControlService::DisableUser(grpc::ServerContext* context,
                                             const v1::DisableUserRequest* request,
                                             v1::UserInfo* response) {
  return Reply("DisableUser", context, *request, response);
}
grpc::Status FakeControlService::EnableUser(grpc::ServerContext* context,
                                            const v1::EnableUserRequest* request,
                                            v1::UserInfo* response) {
  return Reply("EnableUser", context, *request, response);
}
grpc::Status FakeControlService::RotateUserToken(grpc::ServerContext* context,
                                                 const v1::RotateUserTokenRequest* request,
                                                 v1::RotateUserTokenResponse* response) {
  return Reply("RotateUserToken", context, *request, response);
}

grpc::Status FakeControlService::Watch(grpc::ServerContext* context,
                                       const v1::WatchRequest* request,
                                       grpc::ServerWriter<v1::TimelineEvent>* writer) {
  std::vector<v1::TimelineEvent> events;
  uint64_t start = request->after_seq();
  int behind_after = -1;
  {
    absl::MutexLock lock(&mu_);
    Record("Watch", context, *request);
    auto it = answers_.find("Watch");
    if (it != answers_.end() && !it->second.status.ok()) return it->second.status;
    events = events_;
    auto live = context->client_metadata().find(std::string(kWatchLiveOnlyKey));
    const bool live_only = live != context->client_metadata().end() && live->second == "1";
    live_only_.push_back(live_only);
    if (live_only) start = live_start_;
    behind_after = behind_after_;
    behind_after_ = -1;
  }
  context->AddInitialMetadata(std::string(kWatchStartSeqKey), std::to_string(start));
  writer->SendInitialMetadata();
  int written = 0;
  uint64_t last = start;
  for (const v1::TimelineEvent& event : events) {
    if (event.seq() <= start) continue;
    if (!request->incident_id().empty() && event.incident_id() != request->incident_id()) {
      continue;
    }
    if (written == behind_after) {
      context->AddTrailingMetadata(std::string(kResumeAfterSeqKey), std::to_string(last));
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          absl::StrCat("the watcher fell behind; resume after seq ", last));
    }
    if (!writer->Write(event)) return grpc::Status::CANCELLED;
    ++written;
    last = event.seq();
    absl::MutexLock lock(&mu_);
    ++events_written_;
  }
  while (!context->IsCancelled()) {
    {
      absl::MutexLock lock(&mu_);
      if (ending_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "controller shutting down");
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return grpc::Status::CANCELLED;
}

FakeController::FakeController(int port) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:" + std::to_string(port), grpc::InsecureServerCredentials(),
                           &port_);
  builder.RegisterService(&service_);
  server_ = builder.BuildAndStart();
  if (port_ == 0) server_.reset();
}

FakeController::~FakeController() { Stop(); }

void FakeController::Stop(bool graceful) {
  if (server_ == nullptr) return;
  if (graceful) service_.EndStreams();
  server_->Shutdown(std::chrono::system_clock::now() +
                    (graceful ? std::chrono::seconds(2) : std::chrono::seconds(0)));
  server_->Wait();
  server_.reset();
}

}  // namespace vigil::cli::testing
