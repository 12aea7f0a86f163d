// CliProbe: the call it is told to make, every period, with the caller's token, each sample
// recorded with its outcome; against a fake ControlService on loopback.
#include "bench/loadgen/cli_probe.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "vigil/v1/control_service.grpc.pb.h"

namespace vigil::loadgen {
namespace {

class FakeControl final : public v1::ControlService::Service {
 public:
  grpc::Status ListAgents(grpc::ServerContext* context, const v1::ListAgentsRequest*,
                          v1::ListAgentsResponse* response) override {
    ++list_agents;
    if (!Authorized(*context)) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "no token");
    }
    response->add_agents()->set_agent_id("a1");
    response->add_agents()->set_agent_id("a2");
    return grpc::Status::OK;
  }
  grpc::Status ListIncidents(grpc::ServerContext* context, const v1::ListIncidentsRequest*,
                             v1::ListIncidentsResponse*) override {
    ++list_incidents;
    return Authorized(*context) ? grpc::Status::OK
                                : grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "no token");
  }
  std::atomic<int> list_agents{0};
  std::atomic<int> list_incidents{0};

 private:
  static bool Authorized(const grpc::ServerContext& context) {
    auto it = context.client_metadata().find("authorization");
    return it != context.client_metadata().end() && it->second == "Bearer t0ken";
  }
};

class CliProbeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                   grpc::InsecureChannelCredentials());
  }
  void TearDown() override { server_->Shutdown(); }

  // Runs a probe for about `run`, then returns what it recorded.
  std::vector<ProbeSample> Probe(ProbeCall call, const std::string& token, absl::Duration run,
                                 std::string* first_error) {
    CliProbe probe(channel_, token, absl::Milliseconds(20), absl::Seconds(5), call);
    const absl::Time start = absl::Now();
    probe.Start();
    absl::SleepFor(run);
    probe.Stop();
    *first_error = probe.first_error();
    return probe.SamplesBetween(start, absl::Now());
  }

  FakeControl service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(CliProbeTest, ListsAgentsByDefault) {
  std::string error;
  std::vector<ProbeSample> samples =
      Probe(ProbeCall::kListAgents, "t0ken", absl::Milliseconds(200), &error);
  ASSERT_GE(samples.size(), 2u);
  for (const ProbeSample& s : samples) {
    EXPECT_TRUE(s.ok);
    EXPECT_EQ(s.agents, 2);
    EXPECT_GE(s.latency_ms, 0);
  }
  EXPECT_EQ(error, "");
  EXPECT_EQ(service_.list_incidents.load(), 0);
  EXPECT_GE(service_.list_agents.load(), static_cast<int>(samples.size()));
}

TEST_F(CliProbeTest, ListsIncidentsWhenToldTo) {
  std::string error;
  std::vector<ProbeSample> samples =
      Probe(ProbeCall::kListIncidents, "t0ken", absl::Milliseconds(200), &error);
  ASSERT_GE(samples.size(), 2u);
  for (const ProbeSample& s : samples) {
    EXPECT_TRUE(s.ok);
  }
  EXPECT_EQ(error, "");
  EXPECT_EQ(service_.list_agents.load(), 0);
  EXPECT_GE(service_.list_incidents.load(), static_cast<int>(samples.size()));
}

TEST_F(CliProbeTest, AFailedCallIsASampleNotOkAndItsErrorIsKept) {
  std::string error;
  std::vector<ProbeSample> samples =
      Probe(ProbeCall::kListIncidents, "wrong", absl::Milliseconds(100), &error);
  ASSERT_FALSE(samples.empty());
  for (const ProbeSample& s : samples) {
    EXPECT_FALSE(s.ok);
  }
  EXPECT_NE(error.find("no token"), std::string::npos) << error;
}

TEST(ProbeCallTest, NamesAreTheCommandLinesAndNothingElse) {
  EXPECT_EQ(ParseProbeCall("list-agents"), ProbeCall::kListAgents);
  EXPECT_EQ(ParseProbeCall("list-incidents"), ProbeCall::kListIncidents);
  EXPECT_EQ(ParseProbeCall("ListAgents"), std::nullopt);
  EXPECT_EQ(ParseProbeCall(""), std::nullopt);
}

}  // namespace
}  // namespace vigil::loadgen
