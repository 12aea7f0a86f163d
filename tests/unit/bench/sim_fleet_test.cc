// The simulated fleet against a scripted in-process AgentService on a loopback port: the
// retry-after-ms hint is honoured, streams start once welcomed, acks are counted, and a stream
// the controller ends after its Welcome is counted as a drop.
#include "bench/loadgen/sim_fleet.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/wire_metadata.h"
#include "vigil/v1/agent_service.grpc.pb.h"

namespace vigil::loadgen {
namespace {

// Refuses each agent's first stream with RESOURCE_EXHAUSTED and a retry hint, then welcomes
// it and acknowledges every batch; ends the stream of an agent named in drop_once (once).
class ScriptedController final : public v1::AgentService::Service {
 public:
  explicit ScriptedController(int retry_after_ms) : retry_after_ms_(retry_after_ms) {}

  grpc::Status Connect(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::ControllerMessage, v1::AgentMessage>* stream) override {
    v1::AgentMessage in;
    if (!stream->Read(&in) || !in.has_hello()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "Hello first");
    }
    const std::string id = in.hello().agent_id();
    {
      absl::MutexLock lock(&mu_);
      attempts_[id].push_back(absl::Now());
      if (attempts_[id].size() == 1) {
        context->AddTrailingMetadata(std::string(kRetryAfterMsKey),
                                     absl::StrCat(retry_after_ms_));
        return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "admission queue full");
      }
    }
    v1::ControllerMessage welcome;
    welcome.mutable_welcome()->set_heartbeat_timeout_ms(2500);
    stream->Write(welcome);
    int batches = 0;
    while (stream->Read(&in)) {
      if (!in.has_telemetry()) {
        continue;
      }
      absl::MutexLock lock(&mu_);
      if (in.telemetry().sequence() == 0) {
        heartbeat_times_.push_back(absl::Now());
        continue;
      }
      ++batches;
      if (in.telemetry().new_series_size() > 0) {
        declared_[id] += in.telemetry().new_series_size();
      }
      v1::ControllerMessage ack;
      ack.mutable_ack()->set_sequence(in.telemetry().sequence());
      stream->Write(ack);
      if (batches >= 2 && drop_once_.erase(id) > 0) {
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "going away");
      }
    }
    return grpc::Status::OK;
  }

  void DropOnce(const std::string& id) {
    absl::MutexLock lock(&mu_);
    drop_once_.insert(id);
  }
  std::vector<absl::Time> Attempts(const std::string& id) {
    absl::MutexLock lock(&mu_);
    return attempts_[id];
  }
  int Declared(const std::string& id) {
    absl::MutexLock lock(&mu_);
    return declared_[id];
  }
  std::vector<absl::Time> HeartbeatTimes() {
    absl::MutexLock lock(&mu_);
    return heartbeat_times_;
  }

 private:
  const int retry_after_ms_;
  absl::Mutex mu_;
  std::map<std::string, std::vector<absl::Time>> attempts_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> declared_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> drop_once_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Time> heartbeat_times_ ABSL_GUARDED_BY(mu_);
};

class SimFleetTest : public ::testing::Test {
 protected:
  void StartServer(int retry_after_ms) {
    service_ = std::make_unique<ScriptedController>(retry_after_ms);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
  }
  void TearDown() override {
    if (server_) {
      server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    }
  }
  FleetOptions Options(int agents) {
    FleetOptions o;
    o.target = absl::StrCat("127.0.0.1:", port_);
    o.id_prefix = "t";
    for (int i = 0; i < agents; ++i) {
      o.indexes.push_back(i);
    }
    o.total_agents = agents;
    o.interval = absl::Milliseconds(200);
    o.gauges = 9;
    o.histograms = 1;
    return o;
  }
  // Polls `done` until it holds or 10 s pass.
  template <typename F>
  bool WaitFor(F done) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (absl::Now() < deadline) {
      if (done()) {
        return true;
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    return done();
  }

  std::unique_ptr<ScriptedController> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

TEST_F(SimFleetTest, HonoursTheRetryHintThenStreams) {
  StartServer(/*retry_after_ms=*/400);
  FleetCounters counters;
  Fleet fleet(Options(3), &counters);
  fleet.Start(absl::Now(), absl::ZeroDuration());
  ASSERT_TRUE(WaitFor([&] { return counters.streaming.load() == 3; }));
  EXPECT_EQ(counters.refused_exhausted.load(), 3u);
  EXPECT_EQ(counters.retry_hints.load(), 3u);
  EXPECT_EQ(counters.retry_hint_ms_total.load(), 3u * 400);
  for (int i = 0; i < 3; ++i) {
    const std::vector<absl::Time> attempts = service_->Attempts(absl::StrCat("t-", i));
    ASSERT_EQ(attempts.size(), 2u);
    // The hint plus a jitter of at most the initial backoff (100 ms).
    const absl::Duration gap = attempts[1] - attempts[0];
    EXPECT_GE(gap, absl::Milliseconds(400)) << i;
    // Not the reconnect backoff's later steps (seconds): slack for a loaded machine.
    EXPECT_LE(gap, absl::Milliseconds(400 + 100 + 1000)) << i;
  }
  // Streaming at once: batches flow and are acknowledged; each stream declared its 10 series.
  ASSERT_TRUE(WaitFor([&] { return counters.batches_acked.load() >= 9; }));
  EXPECT_EQ(counters.samples_acked.load(), counters.batches_acked.load() * 10);
  EXPECT_EQ(service_->Declared("t-0"), 10);
  EXPECT_EQ(counters.drops.load(), 0u);
  fleet.Stop();
  EXPECT_EQ(counters.streaming.load(), 0);
  EXPECT_EQ(counters.drops.load(), 0u) << "streams we end ourselves are not drops";
}

TEST_F(SimFleetTest, AStreamEndedAfterItsWelcomeIsADropAndTheAgentComesBack) {
  StartServer(/*retry_after_ms=*/0);
  service_->DropOnce("t-1");
  FleetCounters counters;
  Fleet fleet(Options(2), &counters);
  fleet.Start(absl::Now(), absl::ZeroDuration());
  ASSERT_TRUE(WaitFor([&] { return counters.drops.load() == 1; }));
  EXPECT_EQ(counters.drops_unavailable.load(), 1u);
  EXPECT_EQ(counters.drop_agents.load(), 1u);
  // Back with a new stream, which declares its series again.
  ASSERT_TRUE(WaitFor([&] { return counters.streaming.load() == 2; }));
  ASSERT_TRUE(WaitFor([&] { return service_->Declared("t-1") == 20; }));
  EXPECT_EQ(service_->Attempts("t-1").size(), 3u);
  EXPECT_EQ(counters.ever_welcomed.load(), 2);
  fleet.Stop();
}

TEST_F(SimFleetTest, HeartbeatsFillRoundsLongerThanTheHeartbeatPeriod) {
  // The Welcome's 2.5 s silence timeout asks for a message every 1.125 s (45 %); rounds every
  // 10 s leave heartbeats (sequence 0) to keep the stream alive, as the agent does. The
  // configured period (10 s) would let the stream die: only the Welcome's timeout paces them.
  StartServer(/*retry_after_ms=*/0);
  FleetOptions options = Options(1);
  options.interval = absl::Seconds(10);
  options.heartbeat = absl::Seconds(10);
  FleetCounters counters;
  Fleet fleet(options, &counters);
  fleet.Start(absl::Now(), absl::ZeroDuration());
  ASSERT_TRUE(WaitFor([&] { return counters.streaming.load() == 1; }));
  // Three heartbeats inside the 10 s wait: a sim paced by its configured 10 s sends at most
  // one. Only the lower bound on each gap is exact; how late a loaded machine delivers them is
  // not this test's business.
  ASSERT_TRUE(WaitFor([&] { return service_->HeartbeatTimes().size() >= 3; }));
  const std::vector<absl::Time> times = service_->HeartbeatTimes();
  for (size_t i = 1; i < times.size(); ++i) {
    // Not earlier than the period, less a little for the write's path through gRPC.
    EXPECT_GE(times[i] - times[i - 1], absl::Milliseconds(1125 - 100)) << i;
  }
  // Counted once Write has returned, which may be after the controller already has it.
  EXPECT_TRUE(WaitFor([&] { return counters.heartbeats.load() >= times.size(); }))
      << counters.heartbeats.load() << " counted, " << times.size() << " received";
  EXPECT_EQ(counters.drops.load(), 0u);
  fleet.Stop();
}

}  // namespace
}  // namespace vigil::loadgen
