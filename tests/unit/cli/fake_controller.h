// A fake ControlService for the CLI's tests: a real gRPC server on 127.0.0.1 (port 0, or a
// given port to simulate a restart) that answers with canned responses and records every
// request and its authorization metadata. Methods without a canned answer are UNIMPLEMENTED.
// Thread-safe.
#pragma once

#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "vigil/v1/control_service.grpc.pb.h"

namespace vigil::cli::testing {

class FakeControlService final : public v1::ControlService::Service {
 public:
  // The answer to `method` ("ListAgents"): a response, or an error status.
  void SetResponse(const std::string& method, const google::protobuf::Message& response);
  void SetError(const std::string& method, grpc::Status status);
  // Every unary answer waits this long first (for deadline tests).
  void SetDelay(absl::Duration delay);
  // Watch streams the events with seq > after_seq (and of the incident, when asked), then
  // stays open until the client goes or the server stops.
  void SetEvents(std::vector<v1::TimelineEvent> events);
  // The next Watch stream ends after `n` events, as for a watcher that fell behind:
  // RESOURCE_EXHAUSTED with the last seq sent in trailing metadata.
  void SetWatchBehindAfter(int n);
  // A live-only Watch (request metadata) starts after `seq` rather than after_seq. Every stream
  // names its start in initial metadata.
  void SetLiveStart(uint64_t seq);
  // Whether each Watch so far asked for live events only, in order.
  std::vector<bool> LiveOnlyWatches() const;

  // The last request of `method` (default-constructed if none), and how many there were.
  template <typename Request>
  Request LastRequest(const std::string& method) const {
    absl::MutexLock lock(&mu_);
    Request request;
    auto it = requests_.find(method);
    if (it != requests_.end() && !it->second.empty()) request.ParseFromString(it->second.back());
    return request;
  }
  int Calls(const std::string& method) const;
  int TotalCalls() const;
  // The "authorization" metadata of the last call; "<none>" when absent.
  std::string LastAuthorization() const;
  // Events written on Watch streams so far.
  int EventsWritten() const;

  grpc::Status ListAgents(grpc::ServerContext* context, const v1::ListAgentsRequest* request,
                          v1::ListAgentsResponse* response) override;
  grpc::Status GetMetrics(grpc::ServerContext* context, const v1::GetMetricsRequest* request,
                          v1::GetMetricsResponse* response) override;
  grpc::Status ListAlerts(grpc::ServerContext* context, const v1::ListAlertsRequest* request,
                          v1::ListAlertsResponse* response) override;
  grpc::Status ListIncidents(grpc::ServerContext* context, const v1::ListIncidentsRequest* request,
                             v1::ListIncidentsResponse* response) override;
  grpc::Status GetIncident(grpc::ServerContext* context, const v1::GetIncidentRequest* request,
                           v1::GetIncidentResponse* response) override;
  grpc::Status UpdateIncident(grpc::ServerContext* context,
                              const v1::UpdateIncidentRequest* request,
                              v1::Incident* response) override;
  grpc::Status ProposeAction(grpc::ServerContext* context, const v1::ProposeActionRequest* request,
                             v1::ActionProposal* response) override;
  grpc::Status ReviewAction(grpc::ServerContext* context, const v1::ReviewActionRequest* request,
                            v1::ActionProposal* response) override;
  grpc::Status ListActions(grpc::ServerContext* context, const v1::ListActionsRequest* request,
                           v1::ListActionsResponse* response) override;
  grpc::Status Watch(grpc::ServerContext* context, const v1::WatchRequest* request,
                     grpc::ServerWriter<v1::TimelineEvent>* writer) override;
  grpc::Status VerifyAudit(grpc::ServerContext* context, const v1::VerifyAuditRequest* request,
                           v1::VerifyAuditResponse* response) override;
  grpc::Status ExportIncident(grpc::ServerContext* context,
                              const v1::ExportIncidentRequest* request,
                              v1::ExportIncidentResponse* response) override;
  grpc::Status WhoAmI(grpc::ServerContext* context, const v1::WhoAmIRequest* request,
                      v1::WhoAmIResponse* response) override;
  grpc::Status ListUsers(grpc::ServerContext* context, const v1::ListUsersRequest* request,
                         v1::ListUsersResponse* response) override;
  grpc::Status DisableUser(grpc::ServerContext* context, const v1::DisableUserRequest* request,
                           v1::UserInfo* response) override;
  grpc::Status EnableUser(grpc::ServerContext* context, const v1::EnableUserRequest* request,
                          v1::UserInfo* response) override;
  grpc::Status RotateUserToken(grpc::ServerContext* context,
                               const v1::RotateUserTokenRequest* request,
                               v1::RotateUserTokenResponse* response) override;

  // Ends open Watch streams (before the server shuts down).
  void EndStreams();

 private:
  struct Answer {
    grpc::Status status;
    std::string response;  // serialized
  };

  void Record(const std::string& method, grpc::ServerContext* context,
              const google::protobuf::Message& request) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  grpc::Status Reply(const std::string& method, grpc::ServerContext* context,
                     const google::protobuf::Message& request, google::protobuf::Message* response);

  mutable absl::Mutex mu_;
  std::map<std::string, Answer> answers_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::vector<std::string>> requests_ ABSL_GUARDED_BY(mu_);
  std::string last_authorization_ ABSL_GUARDED_BY(mu_);
  absl::Duration delay_ ABSL_GUARDED_BY(mu_) = absl::ZeroDuration();
  std::vector<v1::TimelineEvent> events_ ABSL_GUARDED_BY(mu_);
  int events_written_ ABSL_GUARDED_BY(mu_) = 0;
  int behind_after_ ABSL_GUARDED_BY(mu_) = -1;
  uint64_t live_start_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<bool> live_only_ ABSL_GUARDED_BY(mu_);
  bool ending_ ABSL_GUARDED_BY(mu_) = false;
};

// The fake service behind a running server on 127.0.0.1.
class FakeController {
 public:
  // Listens on `port` (0: any free port). Check ok() before use.
  explicit FakeController(int port = 0);
  ~FakeController();

  bool ok() const { return server_ != nullptr; }
  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  FakeControlService& service() { return service_; }
  // Stops serving and frees the port. Graceful: open Watch streams end with UNAVAILABLE first;
  // otherwise they are cut off, as when the controller dies.
  void Stop(bool graceful = true);

 private:
  FakeControlService service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace vigil::cli::testing
