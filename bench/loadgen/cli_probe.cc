#include "bench/loadgen/cli_probe.h"

#include <string>

#include "google/protobuf/arena.h"

namespace vigil::loadgen {

namespace {

// The answer is parsed into an arena in a few large blocks: at 10,000 agents it is 2.4 MB of
// ~100,000 small objects, and parsing them one malloc each made this probe, beside the
// controller on the same cores, cost a third of a core (mostly malloc growing and trimming the
// heap) and count its own allocations into the latency it reports.
google::protobuf::ArenaOptions ArenaBlocks() {
  google::protobuf::ArenaOptions options;
  options.start_block_size = 64 << 10;
  options.max_block_size = 1 << 20;
  return options;
}

}  // namespace

std::optional<ProbeCall> ParseProbeCall(absl::string_view name) {
  if (name == "list-agents") {
    return ProbeCall::kListAgents;
  }
  if (name == "list-incidents") {
    return ProbeCall::kListIncidents;
  }
  return std::nullopt;
}

CliProbe::CliProbe(std::shared_ptr<grpc::Channel> channel, std::string token, absl::Duration period,
                   absl::Duration deadline, ProbeCall call)
    : stub_(v1::ControlService::NewStub(channel)),
      token_(std::move(token)),
      period_(period),
      deadline_(deadline),
      call_(call) {}

CliProbe::~CliProbe() { Stop(); }

void CliProbe::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void CliProbe::Stop() {
  stopping_ = true;
  if (thread_.joinable()) {
    thread_.join();
  }
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return in_flight_ == 0; };
  mu_.Await(absl::Condition(&idle));
}

void CliProbe::Loop() {
  absl::Time next = absl::Now();
  while (!stopping_) {
    Issue();
    next += period_;
    const absl::Duration wait = next - absl::Now();
    if (wait > absl::ZeroDuration()) {
      absl::SleepFor(wait);
    } else {
      next = absl::Now();  // this thread fell behind: no burst to catch up
    }
  }
}

absl::Time CliProbe::Begin(grpc::ClientContext& context) {
  const absl::Time sent = absl::Now();
  context.set_deadline(absl::ToChronoTime(sent + deadline_));
  if (!token_.empty()) {
    context.AddMetadata("authorization", "Bearer " + token_);
  }
  absl::MutexLock lock(&mu_);
  ++in_flight_;
  return sent;
}

void CliProbe::Issue() {
  if (call_ == ProbeCall::kListIncidents) {
    IssueListIncidents();
    return;
  }
  struct Call {
    grpc::ClientContext context;
    v1::ListAgentsRequest request;
    google::protobuf::Arena arena{ArenaBlocks()};
    v1::ListAgentsResponse* response =
        google::protobuf::Arena::CreateMessage<v1::ListAgentsResponse>(&arena);
    absl::Time sent;
  };
  auto* call = new Call;
  call->sent = Begin(call->context);
  stub_->async()->ListAgents(&call->context, &call->request, call->response,
                             [this, call](const grpc::Status& status) {
                               Record(call->sent, status, call->response->agents_size());
                               delete call;
                             });
}

void CliProbe::IssueListIncidents() {
  struct Call {
    grpc::ClientContext context;
    v1::ListIncidentsRequest request;
    v1::ListIncidentsResponse response;
    absl::Time sent;
  };
  auto* call = new Call;
  call->sent = Begin(call->context);
  stub_->async()->ListIncidents(&call->context, &call->request, &call->response,
                                [this, call](const grpc::Status& status) {
                                  Record(call->sent, status, 0);
                                  delete call;
                                });
}

void CliProbe::Record(absl::Time sent, const grpc::Status& status, int agents) {
  ProbeSample sample;
  sample.sent = sent;
  sample.ok = status.ok();
  sample.latency_ms = absl::ToDoubleMilliseconds(absl::Now() - sent);
  sample.agents = agents;
  absl::MutexLock lock(&mu_);
  if (!status.ok() && first_error_.empty()) {
    first_error_ = std::to_string(status.error_code()) + ": " + status.error_message();
  }
  samples_.push_back(sample);
  --in_flight_;
}

std::vector<ProbeSample> CliProbe::SamplesBetween(absl::Time from, absl::Time to) const {
  absl::MutexLock lock(&mu_);
  std::vector<ProbeSample> out;
  for (const ProbeSample& s : samples_) {
    if (s.sent >= from && s.sent < to) {
      out.push_back(s);
    }
  }
  return out;
}

std::string CliProbe::first_error() const {
  absl::MutexLock lock(&mu_);
  return first_error_;
}

}  // namespace vigil::loadgen
