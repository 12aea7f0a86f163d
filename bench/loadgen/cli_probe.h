// What an incident commander sees while the fleet storms: ListAgents (what `vigil agents` calls:
// the whole fleet, 2.4 MB at 10,000 agents) or ListIncidents (`vigil incidents`: a small answer
// read off the store on the controller's readers) issued every `period` on its own channel, open
// loop (a slow answer does not delay the next call, so slowness is not hidden), each with a
// deadline. Thread-safe.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "vigil/v1/control_service.grpc.pb.h"

namespace vigil::loadgen {

struct ProbeSample {
  absl::Time sent;
  double latency_ms = 0;  // until the answer or the failure
  bool ok = false;
  int agents = 0;  // agents in the answer (ListAgents)
};

enum class ProbeCall { kListAgents, kListIncidents };

// "list-agents" or "list-incidents"; nullopt for anything else.
std::optional<ProbeCall> ParseProbeCall(absl::string_view name);

class CliProbe {
 public:
  // `token`: the bearer token ("" when the controller needs none, e.g. a client certificate).
  CliProbe(std::shared_ptr<grpc::Channel> channel, std::string token, absl::Duration period,
           absl::Duration deadline, ProbeCall call = ProbeCall::kListAgents);
  ~CliProbe();  // Stop()

  void Start();
  // Stops issuing calls and waits for those in flight (at most one deadline).
  void Stop();

  // The calls sent in [from, to) that have completed.
  std::vector<ProbeSample> SamplesBetween(absl::Time from, absl::Time to) const;
  // The first failure's message, for the report ("" when none failed).
  std::string first_error() const;

 private:
  void Loop();
  void Issue();
  void IssueListIncidents();
  // A call's deadline and token, counted in flight; returns when it is sent.
  absl::Time Begin(grpc::ClientContext& context);
  // Keeps a finished call's sample (and its error, if it is the first).
  void Record(absl::Time sent, const grpc::Status& status, int agents);

  std::unique_ptr<v1::ControlService::Stub> stub_;
  const std::string token_;
  const absl::Duration period_;
  const absl::Duration deadline_;
  const ProbeCall call_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};

  mutable absl::Mutex mu_;
  std::vector<ProbeSample> samples_ ABSL_GUARDED_BY(mu_);
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  std::string first_error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vigil::loadgen
