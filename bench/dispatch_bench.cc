// Approval -> command started: how long after the approving ReviewAction each agent of a rollout
// has its signed command in hand, for one agent and for a fleet dispatched in waves.
//
// A real vigil-controller is started on loopback with a one-rule file; N simulated agents (gRPC
// streams spread over several TCP channels) say Hello offering restart_service, send one
// telemetry batch with host_cpu_usage_ratio = 0.99 so that all of them join one incident, and
// heartbeat like real agents. Each repetition then proposes restart_service on all N agents as
// one commander (alice) and approves it as another (bob). t_approve is taken just before the
// approving ReviewAction; an agent's "started" time is when its Command arrives (absl::Now()),
// after which it answers STARTED and FINISHED (exit 0) at once, so that the controller can move
// on to the next wave. Simulated agents neither verify the Ed25519 signature nor journal the
// command as the real agent does before it starts; both are local to each host and happen there
// in parallel.
//
// Per repetition: median, p99 and last (max) of t_started - t_approve; then the median of each
// over the repetitions.
//
//   dispatch_bench --controller-bin build/controller/vigil-controller --agents 1
//   dispatch_bench --controller-bin build/controller/vigil-controller --agents 1000 --wave-size 100
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/child_process.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "vigil/v1/agent_service.grpc.pb.h"
#include "vigil/v1/control_service.grpc.pb.h"

namespace {

using vigil::v1::AgentMessage;
using vigil::v1::CommandResult;
using vigil::v1::ControllerMessage;

constexpr char kRuleName[] = "BenchCPU";

// Counters the driver waits on; agents bump them on the dispatcher threads.
absl::Mutex g_mu;
int g_welcomed ABSL_GUARDED_BY(g_mu) = 0;
int g_acked ABSL_GUARDED_BY(g_mu) = 0;     // agents whose latest batch was acknowledged
int g_commands ABSL_GUARDED_BY(g_mu) = 0;  // commands received in this repetition
std::atomic<int> g_failed{0};
std::atomic<int> g_extra_commands{0};  // a second command to one agent within a repetition

// One simulated agent on gRPC's completion-queue API. Its events are handled by a few dispatcher
// threads blocked in CompletionQueue::Next, the way a real agent's reader thread blocks in Read:
// the callback API's shared threads nap 100 ms after an idle spell (gRPC 1.51), which added up
// to 100 ms to a command arriving after a quiet second and is no part of a real agent. Writes
// are queued and sent one at a time.
class SimulatedAgent {
 public:
  SimulatedAgent(vigil::v1::AgentService::Stub* stub, grpc::CompletionQueue* cq,
                 std::string agent_id)
      : agent_id_(std::move(agent_id)) {
    AgentMessage hello;
    auto* h = hello.mutable_hello();
    h->set_agent_id(agent_id_);
    h->set_hostname(agent_id_);
    h->set_version("dispatch_bench");
    (*h->mutable_labels())["role"] = "bench";
    h->add_collectors("host");
    auto* action = h->add_actions();
    action->set_name("restart_service");
    action->add_parameters("unit");
    h->set_interval_ms(800);
    h->set_instance_id(absl::StrCat("bench-", getpid()));
    absl::MutexLock lock(&mu_);
    outbox_.push_back(std::move(hello));
    last_write_ = absl::Now();
    stream_ = stub->PrepareAsyncConnect(&context_, cq);
    stream_->StartCall(&start_tag_);
  }

  // Runs on a dispatcher thread for each completed operation.
  static void Dispatch(grpc::CompletionQueue* cq) {
    void* tag = nullptr;
    bool ok = false;
    while (cq->Next(&tag, &ok)) {
      Tag* t = static_cast<Tag*>(tag);
      t->agent->OnEvent(t->op, ok);
    }
  }

  const std::string& agent_id() const { return agent_id_; }

  // One batch with host_cpu_usage_ratio; the series is declared in the first one.
  void SendTelemetry(double value) {
    AgentMessage message;
    auto* batch = message.mutable_telemetry();
    absl::MutexLock lock(&mu_);
    if (finishing_) {
      return;
    }
    batch->set_sequence(next_sequence_++);
    if (!declared_) {
      auto* def = batch->add_new_series();
      def->set_id(1);
      def->set_name("host_cpu_usage_ratio");
      declared_ = true;
    }
    auto* snap = batch->add_snapshots();
    snap->set_time_unix_ms(absl::ToUnixMillis(absl::Now()));
    snap->add_series_ids(1);
    snap->add_values(value);
    EnqueueLocked(std::move(message));
  }

  // Sequence 0: a heartbeat, as the real agent sends when it has written nothing for a while.
  void MaybeHeartbeat(absl::Duration period) {
    absl::MutexLock lock(&mu_);
    if (finishing_ || !welcomed_ || absl::Now() - last_write_ < period || !outbox_.empty()) {
      return;
    }
    AgentMessage beat;
    beat.mutable_telemetry();
    EnqueueLocked(std::move(beat));
  }

  // Forget the previous repetition's command.
  void Reset() {
    absl::MutexLock lock(&mu_);
    received_ = absl::InfinitePast();
    commands_ = 0;
  }

  absl::Time received() {
    absl::MutexLock lock(&mu_);
    return received_;
  }

  void Cancel() { context_.TryCancel(); }

  void WaitDone() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&done_));
  }

 private:
  enum class Op { kStart, kRead, kWrite, kFinish };
  struct Tag {
    SimulatedAgent* agent;
    Op op;
  };

  void EnqueueLocked(AgentMessage message) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    outbox_.push_back(std::move(message));
    last_write_ = absl::Now();
    if (started_ && !writing_) {
      writing_ = true;
      stream_->Write(outbox_.front(), &write_tag_);
    }
  }

  // Finish once reads are over and no write is in flight (one operation of a kind at a time).
  void MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finishing_ && !reading_ && !writing_ && !finish_called_) {
      finish_called_ = true;
      stream_->Finish(&status_, &finish_tag_);
    }
  }

  void OnEvent(Op op, bool ok) {
    absl::MutexLock lock(&mu_);
    switch (op) {
      case Op::kStart:
        if (!ok) {
          finishing_ = true;
          break;
        }
        started_ = true;
        reading_ = true;
        stream_->Read(&in_, &read_tag_);
        if (!outbox_.empty()) {
          writing_ = true;
          stream_->Write(outbox_.front(), &write_tag_);
        }
        break;
      case Op::kRead:
        if (!ok) {
          reading_ = false;
          finishing_ = true;
          break;
        }
        HandleLocked();
        stream_->Read(&in_, &read_tag_);
        break;
      case Op::kWrite:
        outbox_.pop_front();
        writing_ = false;
        if (!ok) {
          finishing_ = true;
        } else if (!outbox_.empty() && !finishing_) {
          writing_ = true;
          stream_->Write(outbox_.front(), &write_tag_);
        }
        break;
      case Op::kFinish:
        if (!status_.ok() && status_.error_code() != grpc::StatusCode::CANCELLED &&
            g_failed++ < 3) {
          fprintf(stderr, "agent %s: stream ended: %s\n", agent_id_.c_str(),
                  status_.error_message().c_str());
        }
        done_ = true;
        return;
    }
    MaybeFinishLocked();
  }

  void HandleLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (in_.has_command()) {
      // "Command started" for a simulated agent: the moment it has the command.
      const absl::Time now = absl::Now();
      if (commands_++ == 0) {
        received_ = now;
      } else {
        g_extra_commands++;
      }
      for (CommandResult::Phase phase : {CommandResult::STARTED, CommandResult::FINISHED}) {
        AgentMessage reply;
        CommandResult* result = reply.mutable_command_result();
        result->set_command_id(in_.command().id());
        result->set_phase(phase);
        result->set_exit_code(0);
        result->set_time_unix_ms(absl::ToUnixMillis(now));
        EnqueueLocked(std::move(reply));
      }
      absl::MutexLock global(&g_mu);
      ++g_commands;
    } else if (in_.has_welcome()) {
      welcomed_ = true;
      next_sequence_ = in_.welcome().last_sequence() + 1;
      absl::MutexLock global(&g_mu);
      ++g_welcomed;
    } else if (in_.has_ack()) {
      if (in_.ack().sequence() + 1 == next_sequence_) {
        absl::MutexLock global(&g_mu);
        ++g_acked;
      }
    }
    // CollectDiagnostics requests are ignored: the bench rule asks for none.
  }

  const std::string agent_id_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientAsyncReaderWriter<AgentMessage, ControllerMessage>> stream_;
  Tag start_tag_{this, Op::kStart};
  Tag read_tag_{this, Op::kRead};
  Tag write_tag_{this, Op::kWrite};
  Tag finish_tag_{this, Op::kFinish};
  ControllerMessage in_;
  grpc::Status status_;
  absl::Mutex mu_;
  std::deque<AgentMessage> outbox_ ABSL_GUARDED_BY(mu_);  // front is being written
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_called_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool welcomed_ ABSL_GUARDED_BY(mu_) = false;
  bool declared_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_sequence_ ABSL_GUARDED_BY(mu_) = 1;
  absl::Time last_write_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time received_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  int commands_ ABSL_GUARDED_BY(mu_) = 0;
};

// Blocks until `*counter >= target` or the timeout; returns the final value.
int AwaitCount(const int* counter, int target, absl::Duration timeout) {
  absl::MutexLock lock(&g_mu);
  auto reached = [counter, target]()
                     ABSL_SHARED_LOCKS_REQUIRED(g_mu) { return *counter >= target; };
  g_mu.AwaitWithTimeout(absl::Condition(&reached), timeout);
  return *counter;
}

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

// `vigil-controller users add NAME --role commander`; the token is its stdout.
std::string AddUser(const std::string& binary, const std::string& db, const std::string& name,
                    const std::string& log) {
  const std::string command = absl::StrCat("'", binary, "' users add ", name,
                                           " --role commander --db '", db, "' 2>>'", log, "'");
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) {
    return "";
  }
  std::string out;
  char buffer[256];
  while (fgets(buffer, sizeof(buffer), pipe) != nullptr) {
    out += buffer;
  }
  if (pclose(pipe) != 0) {
    return "";
  }
  return std::string(absl::StripAsciiWhitespace(out));
}


double Percentile(std::vector<double> values, double q) {
  if (values.empty()) {
    return NAN;
  }
  std::sort(values.begin(), values.end());
  const size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(values.size())));
  return values[std::clamp<size_t>(rank, 1, values.size()) - 1];
}

struct RepResult {
  double median_ms = NAN;
  double p99_ms = NAN;
  double last_ms = NAN;
};

class ControlClient {
 public:
  ControlClient(std::shared_ptr<grpc::Channel> channel, std::string alice, std::string bob)
      : stub_(vigil::v1::ControlService::NewStub(std::move(channel))),
        alice_(std::move(alice)),
        bob_(std::move(bob)) {}

  vigil::v1::ControlService::Stub* stub() { return stub_.get(); }

  void Prepare(grpc::ClientContext* context, bool as_bob) {
    context->AddMetadata("authorization", absl::StrCat("Bearer ", as_bob ? bob_ : alice_));
    context->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
  }

 private:
  std::unique_ptr<vigil::v1::ControlService::Stub> stub_;
  const std::string alice_;
  const std::string bob_;
};

std::string Ms(double ms) { return absl::StrFormat("%.2f", ms); }

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dispatch_bench: approval -> command started, simulated agents, real controller"};
  std::string controller_bin;
  int agents = 1000;
  int wave_size = 100;
  int reps = 0;
  int channels = 0;
  int heartbeat_ms = 800;
  int poll_threads = 2;
  bool keep = false;
  app.add_option("--controller-bin", controller_bin, "vigil-controller to start")->required();
  app.add_option("--agents", agents, "simulated agents in the rollout");
  app.add_option("--wave-size", wave_size, "agents per wave");
  app.add_option("--reps", reps, "repetitions (default: 5 for one agent, else 3)");
  app.add_option("--channels", channels, "gRPC channels (TCP connections); default min(N, 100)");
  app.add_option("--heartbeat-ms", heartbeat_ms, "agent heartbeat period (controller drops 2.5 s)");
  app.add_option("--poll-threads", poll_threads, "threads (and completion queues) of the agents");
  app.add_flag("--keep", keep, "keep the temporary folder (database, controller log)");
  CLI11_PARSE(app, argc, argv);
  setvbuf(stdout, nullptr, _IOLBF, 0);  // progress shows through a pipe (tee) as it happens
  if (agents < 1 || wave_size < 1 || poll_threads < 1) {
    fprintf(stderr, "--agents, --wave-size and --poll-threads must be positive\n");
    return 2;
  }
  if (reps <= 0) {
    reps = agents == 1 ? 5 : 3;
  }
  if (channels <= 0) {
    channels = std::min(agents, 100);
  }

  char dir_template[] = "/tmp/vigil-dispatch-XXXXXX";
  const std::string dir = mkdtemp(dir_template);
  const std::string db = dir + "/vigil.db";
  const std::string rules = dir + "/rules.yaml";
  const std::string log = dir + "/controller.log";
  {
    std::ofstream out(rules);
    out << "rules:\n  - alert: " << kRuleName
        << "\n    expr: host_cpu_usage_ratio > 0.9\n    severity: SEV3\n";
  }
  const std::string alice = AddUser(controller_bin, db, "alice", log);
  const std::string bob = AddUser(controller_bin, db, "bob", log);
  if (alice.empty() || bob.empty()) {
    fprintf(stderr, "cannot add users with %s (see %s)\n", controller_bin.c_str(), log.c_str());
    return 1;
  }
  const std::string target = absl::StrCat("127.0.0.1:", FreePort());
  const pid_t controller =
      vigil::bench::SpawnLogged({controller_bin, "--listen=" + target, "--db=" + db, "--insecure",
                       "--http-listen=off", "--rules=" + rules, "--log-level=warn"},
                      log);
  auto stop_controller = [&] {
    kill(controller, SIGTERM);
    waitpid(controller, nullptr, 0);
  };

  printf("controller %s on %s, db %s; %d agent(s) on %d channel(s), waves of %d, %d rep(s)\n",
         controller_bin.c_str(), target.c_str(), db.c_str(), agents, channels, wave_size, reps);
  printf(
      "note: simulated agents do not verify command signatures (Ed25519) nor journal commands; "
      "\"started\" = the Command arrived at the agent\n");

  std::vector<std::unique_ptr<vigil::v1::AgentService::Stub>> stubs;
  for (int c = 0; c < channels; ++c) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetString("vigil.dispatch_bench.channel", absl::StrCat(c));
    auto channel = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
    if (!channel->WaitForConnected(absl::ToChronoTime(absl::Now() + absl::Seconds(15)))) {
      fprintf(stderr, "controller at %s did not come up (log: %s)\n", target.c_str(), log.c_str());
      stop_controller();
      return 1;
    }
    stubs.push_back(vigil::v1::AgentService::NewStub(channel));
  }
  grpc::ChannelArguments control_args;
  control_args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  control_args.SetMaxReceiveMessageSize(64 << 20);
  ControlClient control(
      grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), control_args), alice,
      bob);

  std::vector<std::unique_ptr<grpc::CompletionQueue>> cqs;
  std::vector<std::thread> dispatchers;
  for (int t = 0; t < poll_threads; ++t) {
    cqs.push_back(std::make_unique<grpc::CompletionQueue>());
    dispatchers.emplace_back(SimulatedAgent::Dispatch, cqs.back().get());
  }
  std::vector<std::unique_ptr<SimulatedAgent>> sims;
  std::vector<std::string> ids;
  for (int i = 0; i < agents; ++i) {
    ids.push_back(absl::StrFormat("bench-%04d", i));
    sims.push_back(std::make_unique<SimulatedAgent>(stubs[i % channels].get(),
                                                    cqs[i % cqs.size()].get(), ids.back()));
  }
  const int welcomed = AwaitCount(&g_welcomed, agents, absl::Seconds(30));
  printf("agents welcomed: %d/%d\n", welcomed, agents);

  // Heartbeats, spread over the period like a fleet whose clocks differ a little.
  std::atomic<bool> running{true};
  const absl::Duration period = absl::Milliseconds(heartbeat_ms);
  std::thread heartbeat([&] {
    absl::Time next = absl::Now();
    while (running) {
      for (int i = 0; i < agents && running; ++i) {
        const absl::Duration wait = next + period * (static_cast<double>(i) / agents) - absl::Now();
        if (wait > absl::ZeroDuration()) {
          absl::SleepFor(wait);
        }
        sims[i]->MaybeHeartbeat(period);
      }
      next += period;
    }
  });

  auto shutdown = [&] {
    running = false;
    heartbeat.join();
    for (auto& sim : sims) {
      sim->Cancel();
    }
    for (auto& sim : sims) {
      sim->WaitDone();
    }
    for (auto& cq : cqs) {
      cq->Shutdown();
    }
    for (std::thread& t : dispatchers) {
      t.join();
    }
    stop_controller();
  };

  // Telemetry from every agent, acknowledged: keeps the alerts firing between repetitions.
  auto telemetry_round = [&]() {
    {
      absl::MutexLock lock(&g_mu);
      g_acked = 0;
    }
    for (auto& sim : sims) {
      sim->SendTelemetry(0.99);
    }
    return AwaitCount(&g_acked, agents, absl::Seconds(30));
  };
  printf("telemetry acknowledged: %d/%d\n", telemetry_round(), agents);

  // The incident all the agents' alerts join.
  std::string incident_id;
  int incident_agents = 0;
  const absl::Time incident_deadline = absl::Now() + absl::Seconds(60);
  const absl::Time incident_wait_start = absl::Now();
  while (absl::Now() < incident_deadline) {
    grpc::ClientContext context;
    control.Prepare(&context, false);
    vigil::v1::ListIncidentsRequest request;
    request.set_state("active");
    vigil::v1::ListIncidentsResponse response;
    grpc::Status status = control.stub()->ListIncidents(&context, request, &response);
    if (!status.ok()) {
      fprintf(stderr, "ListIncidents: %s\n", status.error_message().c_str());
    }
    for (const vigil::v1::Incident& incident : response.incidents()) {
      const auto& rules_of = incident.alert_rules();
      if (std::find(rules_of.begin(), rules_of.end(), kRuleName) != rules_of.end() &&
          incident.agents_size() >= incident_agents) {
        incident_id = incident.id();
        incident_agents = incident.agents_size();
      }
    }
    if (incident_agents >= agents) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(200));
  }
  if (incident_id.empty()) {
    fprintf(stderr, "no %s incident after 60 s (log: %s)\n", kRuleName, log.c_str());
    shutdown();
    return 1;
  }
  printf("incident %s has %d/%d agent(s) (after %.1f s)\n", incident_id.c_str(), incident_agents,
         agents, absl::ToDoubleSeconds(absl::Now() - incident_wait_start));

  std::vector<RepResult> results;
  const std::string label = absl::StrCat("vigil N=", agents, " waves of ", wave_size);
  for (int rep = 1; rep <= reps; ++rep) {
    const int acked = telemetry_round();
    if (acked < agents) {
      printf("rep %d: only %d/%d agents acknowledged fresh telemetry\n", rep, acked, agents);
    }
    absl::SleepFor(absl::Seconds(1));  // let the controller settle
    for (auto& sim : sims) {
      sim->Reset();
    }
    {
      absl::MutexLock lock(&g_mu);
      g_commands = 0;
    }
    vigil::v1::ActionProposal proposal;
    {
      grpc::ClientContext context;
      control.Prepare(&context, false);
      vigil::v1::ProposeActionRequest request;
      request.set_incident_id(incident_id);
      for (const std::string& id : ids) {
        request.add_agents(id);
      }
      request.set_action("restart_service");
      (*request.mutable_params())["unit"] = "bench";
      request.set_wave_size(wave_size);
      request.set_reason(absl::StrCat("dispatch_bench rep ", rep));
      grpc::Status status = control.stub()->ProposeAction(&context, request, &proposal);
      if (!status.ok()) {
        fprintf(stderr, "ProposeAction: %s\n", status.error_message().c_str());
        break;
      }
    }
    vigil::v1::ActionProposal approved;
    grpc::ClientContext review_context;
    control.Prepare(&review_context, true);
    vigil::v1::ReviewActionRequest review;
    review.set_proposal_id(proposal.id());
    review.set_approve(true);
    const absl::Time t_approve = absl::Now();
    grpc::Status status = control.stub()->ReviewAction(&review_context, review, &approved);
    const absl::Time t_review_returned = absl::Now();
    if (!status.ok()) {
      fprintf(stderr, "ReviewAction: %s\n", status.error_message().c_str());
      break;
    }
    const int received = AwaitCount(&g_commands, agents, absl::Seconds(120));
    std::vector<double> latencies;
    std::vector<double> wave_first;
    std::vector<double> wave_last;
    for (int i = 0; i < agents; ++i) {
      const absl::Time at = sims[i]->received();
      if (at == absl::InfinitePast()) {
        continue;
      }
      const double ms = absl::ToDoubleMilliseconds(at - t_approve);
      latencies.push_back(ms);
      const size_t wave = static_cast<size_t>(i / wave_size);
      if (wave_first.size() <= wave) {
        wave_first.resize(wave + 1, INFINITY);
        wave_last.resize(wave + 1, -INFINITY);
      }
      wave_first[wave] = std::min(wave_first[wave], ms);
      wave_last[wave] = std::max(wave_last[wave], ms);
    }
    // The rollout is over when the controller says so (every FINISHED recorded).
    std::string final_state = "?";
    const absl::Time done_deadline = absl::Now() + absl::Seconds(120);
    while (absl::Now() < done_deadline) {
      grpc::ClientContext context;
      control.Prepare(&context, false);
      vigil::v1::ListActionsRequest request;
      request.set_incident_id(incident_id);
      vigil::v1::ListActionsResponse response;
      if (control.stub()->ListActions(&context, request, &response).ok()) {
        for (const vigil::v1::ActionProposal& p : response.actions()) {
          if (p.id() == proposal.id()) {
            final_state = vigil::v1::ProposalState_Name(p.state());
          }
        }
      }
      if (final_state == "SUCCEEDED" || final_state == "FAILED") {
        break;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    const double rollout_ms = absl::ToDoubleMilliseconds(absl::Now() - t_approve);
    RepResult r;
    r.median_ms = Percentile(latencies, 0.5);
    r.p99_ms = Percentile(latencies, 0.99);
    r.last_ms = latencies.empty() ? NAN : *std::max_element(latencies.begin(), latencies.end());
    results.push_back(r);
    printf("%s: approval->started median %s ms, p99 %s ms, last %s ms (rep %d)\n", label.c_str(),
           Ms(r.median_ms).c_str(), Ms(r.p99_ms).c_str(), Ms(r.last_ms).c_str(), rep);
    std::vector<std::string> waves;
    for (size_t w = 0; w < wave_first.size(); ++w) {
      waves.push_back(absl::StrFormat("%.1f-%.1f", wave_first[w], wave_last[w]));
    }
    printf(
        "  rep %d: proposal %s %s, %d/%d commands received, approve RPC returned after %s ms, "
        "state seen after %.0f ms; wave starts (ms after approval, first-last): %s\n",
        rep, proposal.id().c_str(), final_state.c_str(), received, agents,
        Ms(absl::ToDoubleMilliseconds(t_review_returned - t_approve)).c_str(), rollout_ms,
        absl::StrJoin(waves, " ").c_str());
    if (final_state != "SUCCEEDED") {
      printf("  rep %d: the rollout did not succeed; stopping\n", rep);
      break;
    }
  }

  if (!results.empty()) {
    std::vector<double> medians, p99s, lasts;
    for (const RepResult& r : results) {
      medians.push_back(r.median_ms);
      p99s.push_back(r.p99_ms);
      lasts.push_back(r.last_ms);
    }
    printf("%s: approval->started median %s ms, p99 %s ms, last %s ms (median of %zu reps)\n",
           label.c_str(), Ms(Percentile(medians, 0.5)).c_str(), Ms(Percentile(p99s, 0.5)).c_str(),
           Ms(Percentile(lasts, 0.5)).c_str(), results.size());
  }
  printf("stream failures: %d, duplicate commands: %d\n", g_failed.load(), g_extra_commands.load());
  shutdown();

  // warn and above: anything there is worth reading.
  std::ifstream in(log);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    lines.push_back(line);
  }
  printf("controller log (%s): %zu line(s)\n", log.c_str(), lines.size());
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i < 10 || i + 10 >= lines.size()) {
      printf("  | %s\n", lines[i].c_str());
    } else if (i == 10) {
      printf("  | ... %zu line(s) ...\n", lines.size() - 20);
    }
  }
  if (!keep) {
    std::system(absl::StrCat("rm -rf '", dir, "'").c_str());
  }
  return results.size() == static_cast<size_t>(reps) ? 0 : 1;
}
