// The simulated fleet, on either client (gRPC's, and the bare HTTP/2 one), against a scripted
// in-process gRPC AgentService on a loopback port: the retry-after-ms hint is honoured, streams
// start once welcomed, acks are counted, a stream the controller ends after its Welcome is
// counted as a drop, and heartbeats follow the Welcome's timeout. The HTTP/2 client also against
// peers that are not gRPC servers: one that never welcomes, one that speaks garbage.
#include "bench/loadgen/sim_fleet.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench/loadgen/h2_fleet.h"
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
    if (never_welcome_) {
      {
        absl::MutexLock lock(&mu_);
        attempts_[id].push_back(absl::Now());
      }
      while (stream->Read(&in)) {
      }
      return grpc::Status::OK;
    }
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

  // Takes every stream's Hello and then says nothing until the agent gives up.
  void NeverWelcome() { never_welcome_ = true; }
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
  std::atomic<bool> never_welcome_{false};
  absl::Mutex mu_;
  std::map<std::string, std::vector<absl::Time>> attempts_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> declared_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> drop_once_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Time> heartbeat_times_ ABSL_GUARDED_BY(mu_);
};

class SimFleetTest : public ::testing::TestWithParam<std::string> {
 protected:
  // The fleet on the client under test.
  std::unique_ptr<AgentFleet> MakeFleet(FleetOptions options, FleetCounters* counters) {
    if (GetParam() == "grpc") {
      return std::make_unique<Fleet>(std::move(options), counters);
    }
    absl::StatusOr<std::unique_ptr<H2Fleet>> fleet = H2Fleet::Create(std::move(options), counters);
    EXPECT_TRUE(fleet.ok()) << fleet.status();
    return fleet.ok() ? *std::move(fleet) : nullptr;
  }
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

TEST_P(SimFleetTest, HonoursTheRetryHintThenStreams) {
  StartServer(/*retry_after_ms=*/400);
  FleetCounters counters;
  std::unique_ptr<AgentFleet> fleet = MakeFleet(Options(3), &counters);
  ASSERT_NE(fleet, nullptr);
  fleet->Start(absl::Now(), absl::ZeroDuration());
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
  fleet->Stop();
  EXPECT_EQ(counters.streaming.load(), 0);
  EXPECT_EQ(counters.drops.load(), 0u) << "streams we end ourselves are not drops";
}

TEST_P(SimFleetTest, AStreamEndedAfterItsWelcomeIsADropAndTheAgentComesBack) {
  StartServer(/*retry_after_ms=*/0);
  service_->DropOnce("t-1");
  FleetCounters counters;
  std::unique_ptr<AgentFleet> fleet = MakeFleet(Options(2), &counters);
  ASSERT_NE(fleet, nullptr);
  fleet->Start(absl::Now(), absl::ZeroDuration());
  ASSERT_TRUE(WaitFor([&] { return counters.drops.load() == 1; }));
  EXPECT_EQ(counters.drops_unavailable.load(), 1u);
  EXPECT_EQ(counters.drop_agents.load(), 1u);
  // Back with a new stream, which declares its series again.
  ASSERT_TRUE(WaitFor([&] { return counters.streaming.load() == 2; }));
  ASSERT_TRUE(WaitFor([&] { return service_->Declared("t-1") == 20; }));
  EXPECT_EQ(service_->Attempts("t-1").size(), 3u);
  EXPECT_EQ(counters.ever_welcomed.load(), 2);
  fleet->Stop();
}

TEST_P(SimFleetTest, HeartbeatsFillRoundsLongerThanTheHeartbeatPeriod) {
  // The Welcome's 2.5 s silence timeout asks for a message every 1.125 s (45 %); rounds every
  // 10 s leave heartbeats (sequence 0) to keep the stream alive, as the agent does. The
  // configured period (10 s) would let the stream die: only the Welcome's timeout paces them.
  StartServer(/*retry_after_ms=*/0);
  FleetOptions options = Options(1);
  options.interval = absl::Seconds(10);
  options.heartbeat = absl::Seconds(10);
  FleetCounters counters;
  std::unique_ptr<AgentFleet> fleet = MakeFleet(options, &counters);
  ASSERT_NE(fleet, nullptr);
  fleet->Start(absl::Now(), absl::ZeroDuration());
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
  fleet->Stop();
}

TEST_P(SimFleetTest, NoWelcomeInTimeCancelsTheStreamAndTriesAgain) {
  StartServer(/*retry_after_ms=*/0);
  service_->NeverWelcome();
  FleetOptions options = Options(1);
  options.welcome_timeout = absl::Milliseconds(300);
  FleetCounters counters;
  std::unique_ptr<AgentFleet> fleet = MakeFleet(options, &counters);
  ASSERT_NE(fleet, nullptr);
  fleet->Start(absl::Now(), absl::ZeroDuration());
  ASSERT_TRUE(WaitFor([&] { return counters.welcome_timeouts.load() >= 2; }));
  EXPECT_GE(service_->Attempts("t-0").size(), 2u);
  EXPECT_EQ(counters.streaming.load(), 0);
  EXPECT_EQ(counters.welcomes.load(), 0u);
  EXPECT_EQ(counters.batches_sent.load(), 0u) << "nothing streams before a Welcome";
  fleet->Stop();
}

INSTANTIATE_TEST_SUITE_P(Clients, SimFleetTest, ::testing::Values("grpc", "h2"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

// A TCP peer on loopback that is not a gRPC server: it answers every connection with `reply`
// (nothing when empty, keeping it open) and closes it `close_after` later.
class RawPeer {
 public:
  RawPeer(std::string reply, absl::Duration close_after)
      : reply_(std::move(reply)), close_after_(close_after) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t size = sizeof(address);
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&address), size) != 0 ||
        listen(fd_, 16) != 0 ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &size) != 0) {
      return;
    }
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~RawPeer() {
    stop_ = true;
    shutdown(fd_, SHUT_RDWR);  // wakes accept()
    if (thread_.joinable()) {
      thread_.join();
    }
    close(fd_);
  }
  int port() const { return port_; }
  int connections() const { return connections_.load(); }

 private:
  void Serve() {
    while (!stop_) {
      const int client = accept(fd_, nullptr, nullptr);
      if (client < 0) {
        return;
      }
      connections_.fetch_add(1);
      if (!reply_.empty()) {
        // A short write only shortens the garbage: the client's handling is under test.
        (void)!write(client, reply_.data(), reply_.size());
      }
      absl::SleepFor(close_after_);
      close(client);
    }
  }

  const std::string reply_;
  const absl::Duration close_after_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::thread thread_;
};

TEST(H2FleetTest, APeerSpeakingGarbageCostsAttemptsNotTheProcess) {
  RawPeer peer("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", absl::ZeroDuration());
  ASSERT_GT(peer.port(), 0);
  FleetOptions options;
  options.target = absl::StrCat("127.0.0.1:", peer.port());
  options.indexes = {0, 1};
  options.total_agents = 2;
  FleetCounters counters;
  absl::StatusOr<std::unique_ptr<H2Fleet>> fleet = H2Fleet::Create(options, &counters);
  ASSERT_TRUE(fleet.ok()) << fleet.status();
  (*fleet)->Start(absl::Now(), absl::ZeroDuration());
  // Each attempt's stream ends with its connection, and the agents keep reconnecting.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (counters.failed_unavailable.load() < 4 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_GE(counters.failed_unavailable.load(), 4u);
  EXPECT_GE(peer.connections(), 4);
  EXPECT_EQ(counters.welcomes.load(), 0u);
  EXPECT_EQ(counters.streaming.load(), 0);
  (*fleet)->Stop();
}

TEST(H2FleetTest, ASilentPeerHitsTheWelcomeDeadline) {
  RawPeer peer("", absl::Seconds(3));
  ASSERT_GT(peer.port(), 0);
  FleetOptions options;
  options.target = absl::StrCat("127.0.0.1:", peer.port());
  options.indexes = {0};
  options.total_agents = 1;
  options.welcome_timeout = absl::Milliseconds(200);
  FleetCounters counters;
  absl::StatusOr<std::unique_ptr<H2Fleet>> fleet = H2Fleet::Create(options, &counters);
  ASSERT_TRUE(fleet.ok()) << fleet.status();
  (*fleet)->Start(absl::Now(), absl::ZeroDuration());
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (counters.welcome_timeouts.load() < 2 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_GE(counters.welcome_timeouts.load(), 2u);
  EXPECT_EQ(counters.streaming.load(), 0);
  (*fleet)->Stop();
}

TEST(H2FleetTest, RefusesWhatItCannotDo) {
  FleetCounters counters;
  FleetOptions tls;
  tls.target = "127.0.0.1:1";
  tls.credentials = [](int) { return grpc::InsecureChannelCredentials(); };
  absl::StatusOr<std::unique_ptr<H2Fleet>> fleet = H2Fleet::Create(tls, &counters);
  EXPECT_EQ(fleet.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(fleet.status().message().find("plain text only"), std::string::npos);
  FleetOptions no_port;
  no_port.target = "127.0.0.1";
  fleet = H2Fleet::Create(no_port, &counters);
  EXPECT_EQ(fleet.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(fleet.status().message().find("'127.0.0.1'"), std::string::npos);
}

}  // namespace
}  // namespace vigil::loadgen
