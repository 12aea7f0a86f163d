// The controller against an agent that lies: crafted messages over the real wire contract, sent
// to the real vigil-controller while a real vigil-agent streams beside them. Each must end only
// the hostile stream, with INVALID_ARGUMENT naming the agent and the field, while the controller
// lives on, the honest agent keeps streaming and memory stays within its budget.
#include "tests/support/hostile_agent.h"

#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/wire_metadata.h"
#include "tests/support/process.h"
#include "tests/support/servers.h"
#include "vigil/v1/control_service.pb.h"

namespace vigil {
namespace {

using testing::BinaryPath;
using testing::CommandResult;
using testing::HostileAgent;
using testing::RunCommand;
using testing::Subprocess;
using testing::WaitUntil;

int64_t NowMs() { return absl::ToUnixMillis(absl::Now()); }

// Resident memory of a process in KiB, from /proc; 0 when unreadable.
int64_t RssKiB(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (absl::StartsWith(line, "VmRSS:")) {
      int64_t kib = 0;
      std::vector<std::string> parts = absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (parts.size() >= 2 && absl::SimpleAtoi(parts[1], &kib)) {
        return kib;
      }
    }
  }
  return 0;
}

class HostileAgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = testing::FreeLoopbackPort();
    http_port_ = testing::FreeLoopbackPort();
    address_ = absl::StrCat("127.0.0.1:", port_);
    token_ = testing::AddVigilUser(dir_.File("data/vigil.db"), "tester", "viewer");
    controller_ = std::make_unique<Subprocess>(
        std::vector<std::string>{BinaryPath("vigil-controller"), "--listen=" + address_,
                                 "--db=" + dir_.File("data/vigil.db"), "--insecure",
                                 absl::StrCat("--http-listen=127.0.0.1:", http_port_)},
        std::map<std::string, std::string>{}, dir_.File("controller.log"));
    ASSERT_TRUE(WaitUntil([&] { return Cli({"agents"}).exit_code == 0; }, absl::Seconds(15)))
        << controller_->Output();
    testing::WriteFile(dir_.File("agent.yaml"),
                       absl::StrCat("labels: {role: api}\ncollectors:\n  host: {}\njournal: ",
                                    dir_.File("honest.journal"), "\n"));
    honest_ = std::make_unique<Subprocess>(
        std::vector<std::string>{BinaryPath("vigil-agent"), "--controller=" + address_,
                                 "--config=" + dir_.File("agent.yaml"), "--id=honest-1",
                                 "--insecure"},
        std::map<std::string, std::string>{}, dir_.File("agent.log"));
    ASSERT_TRUE(WaitUntil([&] { return LastSeen("honest-1") > 0; }, absl::Seconds(15)))
        << honest_->Output();
  }

  CommandResult Cli(std::vector<std::string> args) {
    args.insert(args.begin(), {BinaryPath("vigil"), "--controller=" + address_, "--insecure",
                               "--token=" + token_});
    return RunCommand(args, absl::Seconds(15));
  }

  // The honest agent's last-seen time as the controller shows it; 0 when not connected.
  int64_t LastSeen(const std::string& id) {
    CommandResult r = Cli({"agents", "-o", "json"});
    v1::ListAgentsResponse response;
    if (r.exit_code != 0 ||
        !google::protobuf::util::JsonStringToMessage(r.stdout_text, &response).ok()) {
      return 0;
    }
    for (const v1::AgentInfo& a : response.agents()) {
      if (a.agent_id() == id && a.state() == v1::CONNECTED) {
        return a.last_seen_unix_ms();
      }
    }
    return 0;
  }

  // The controller is alive and the honest agent's telemetry still lands.
  void ExpectUndisturbed() {
    ASSERT_TRUE(controller_->Running()) << controller_->Output();
    const int64_t before = LastSeen("honest-1");
    EXPECT_GT(before, 0) << "the honest agent was disconnected";
    EXPECT_TRUE(WaitUntil([&] { return LastSeen("honest-1") > before; }, absl::Seconds(10)))
        << "the honest agent's telemetry stopped landing";
  }

  v1::Hello Hello(const std::string& id) {
    v1::Hello hello;
    hello.set_agent_id(id);
    hello.set_hostname(id);
    hello.set_version("hostile");
    return hello;
  }

  // Sends `batch` on a fresh stream of agent `id` and returns how the controller ended it.
  grpc::Status SendAndFinish(const std::string& id, const v1::TelemetryBatch& batch,
                             std::string* refused_sequence = nullptr) {
    std::unique_ptr<HostileAgent> agent = Open(id);
    EXPECT_NE(agent, nullptr) << id << " was never welcomed";
    if (agent == nullptr) {
      return grpc::Status(grpc::StatusCode::UNKNOWN, "not welcomed");
    }
    agent->SendBatch(batch);
    grpc::Status status = agent->Finish();
    if (refused_sequence != nullptr) {
      *refused_sequence = agent->Trailer(std::string(kRefusedSequenceKey));
    }
    return status;
  }

  // A welcomed stream for `id`. The controller learns that the id's previous stream ended a
  // moment after the client does, so a reconnect may first be refused as a duplicate: retried.
  std::unique_ptr<HostileAgent> Open(const std::string& id) {
    std::unique_ptr<HostileAgent> agent;
    const bool welcomed = WaitUntil(
        [&] {
          agent = std::make_unique<HostileAgent>(address_, Hello(id));
          return agent->AwaitWelcome();
        },
        absl::Seconds(10), absl::Milliseconds(100));
    return welcomed ? std::move(agent) : nullptr;
  }

  std::string Metrics() {
    std::string body;
    testing::HttpGet(static_cast<uint16_t>(http_port_), "/metrics", absl::Seconds(5), &body);
    return body;
  }

  testing::TempDir dir_;
  int port_ = 0;
  int http_port_ = 0;
  std::string address_;
  std::string token_;
  std::unique_ptr<Subprocess> controller_;
  std::unique_ptr<Subprocess> honest_;
};

v1::TelemetryBatch Define(uint64_t sequence, uint32_t id, const std::string& name) {
  v1::TelemetryBatch batch;
  batch.set_sequence(sequence);
  v1::SeriesDefinition* def = batch.add_new_series();
  def->set_id(id);
  def->set_name(name);
  return batch;
}

TEST_F(HostileAgentTest, EveryCraftedBatchEndsOnlyItsOwnStreamWithTheFieldNamed) {
  struct Case {
    std::string what;
    v1::TelemetryBatch batch;
    std::string expected;  // in the status message
  };
  std::vector<Case> cases;
  cases.push_back({"dictionary id that wraps", Define(1, 0xFFFFFFFFu, "host_load1"),
                   "new_series[0].id: 4294967295"});
  cases.push_back({"dictionary id that allocates 780 MB", Define(1, 50'000'000, "host_load1"),
                   "new_series[0].id: 50000000"});
  for (int offset : {std::numeric_limits<int>::max() - 1, std::numeric_limits<int>::min() + 1}) {
    v1::TelemetryBatch batch = Define(1, 0, "nginx_request_duration_seconds");
    v1::Snapshot* s = batch.add_snapshots();
    s->set_time_unix_ms(NowMs());
    v1::HistogramPoint* point = s->add_histograms();
    point->mutable_histogram()->set_offset(offset);
    point->mutable_histogram()->add_counts(3);
    point->mutable_histogram()->add_counts(3);
    cases.push_back({absl::StrCat("histogram offset ", offset), batch, "schema's range"});
  }
  {
    v1::TelemetryBatch batch = Define(1, 0, "host_load1");
    v1::Snapshot* s = batch.add_snapshots();
    s->set_time_unix_ms(NowMs() + absl::ToInt64Milliseconds(absl::Hours(24)));
    s->add_series_ids(0);
    s->add_values(1);
    cases.push_back({"a day in the future", batch, "ahead of the controller's clock"});
  }
  cases.push_back({"sequence 2^64-1", Define(std::numeric_limits<uint64_t>::max(), 0, "host_load1"),
                   "telemetry.sequence"});
  {
    v1::TelemetryBatch batch = Define(1, 0, "host_disk_used_ratio");
    (*batch.mutable_new_series(0)->mutable_labels())["mount"] = std::string(256 * 1024, 'x');
    cases.push_back({"a 256 KiB label value", batch, "more than the 512 allowed"});
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    std::string refused;
    grpc::Status status = SendAndFinish("hostile-1", c.batch, &refused);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
    EXPECT_TRUE(absl::StrContains(status.error_message(), "agent 'hostile-1'"))
        << status.error_message();
    EXPECT_TRUE(absl::StrContains(status.error_message(), c.expected)) << status.error_message();
    EXPECT_EQ(refused, absl::StrCat(c.batch.sequence())) << "the refused batch is named";
  }
  ExpectUndisturbed();
  // The refusals are in the controller's log, naming the agent, and counted.
  EXPECT_TRUE(absl::StrContains(testing::ReadFileOrEmpty(controller_->log_path()),
                                "refused agent 'hostile-1'"));
  EXPECT_TRUE(
      absl::StrContains(Metrics(), "vigil_ingest_streams_refused_total{reason=\"telemetry\"}"));
  // A refused sequence was never stored: the next honest batch 1 from the same id is acked.
  std::unique_ptr<HostileAgent> again_agent = Open("hostile-1");
  ASSERT_NE(again_agent, nullptr);
  HostileAgent& again = *again_agent;
  v1::TelemetryBatch fine = Define(1, 0, "host_load1");
  v1::Snapshot* s = fine.add_snapshots();
  s->set_time_unix_ms(NowMs());
  s->add_series_ids(0);
  s->add_values(0.5);
  ASSERT_TRUE(again.SendBatch(fine));
  EXPECT_TRUE(again.AwaitAck(1));
}

TEST_F(HostileAgentTest, NonFiniteValuesAreDroppedAndCountedWithoutEndingTheStream) {
  HostileAgent agent(address_, Hello("nan-1"));
  ASSERT_TRUE(agent.AwaitWelcome());
  v1::TelemetryBatch batch = Define(1, 0, "host_memory_used_ratio");
  for (double v : {std::nan(""), std::numeric_limits<double>::infinity(),
                   -std::numeric_limits<double>::infinity()}) {
    v1::Snapshot* s = batch.add_snapshots();
    s->set_time_unix_ms(NowMs());
    s->add_series_ids(0);
    s->add_values(v);
  }
  ASSERT_TRUE(agent.SendBatch(batch));
  EXPECT_TRUE(agent.AwaitAck(1)) << "the stream lives on";
  EXPECT_TRUE(WaitUntil(
      [&] {
        return absl::StrContains(Metrics(),
                                 "vigil_ingest_samples_dropped_total{reason=\"non_finite\"} 3");
      },
      absl::Seconds(5)))
      << Metrics();
  // Nothing shows the bogus values.
  CommandResult metrics = Cli({"metrics", "nan-1"});
  EXPECT_FALSE(absl::StrContains(metrics.output, "nan")) << metrics.output;
  EXPECT_FALSE(absl::StrContains(metrics.output, "inf")) << metrics.output;
}

TEST_F(HostileAgentTest, ManyBigSeriesStayWithinTheMemoryBudget) {
  const int64_t before = RssKiB(controller_->pid());
  // 1,000 series with the largest labels allowed, in batches, on one stream: the controller
  // refuses the stream once the agent's budget (8 MiB) is spent, and memory stays bounded.
  HostileAgent agent(address_, Hello("bloat-1"));
  ASSERT_TRUE(agent.AwaitWelcome());
  grpc::Status status;
  uint32_t id = 0;
  for (uint64_t seq = 1; seq <= 100; ++seq) {
    v1::TelemetryBatch batch;
    batch.set_sequence(seq);
    for (int i = 0; i < 100; ++i, ++id) {
      v1::SeriesDefinition* def = batch.add_new_series();
      def->set_id(id);
      def->set_name("host_disk_used_ratio");
      for (int l = 0; l < 32; ++l) {
        (*def->mutable_labels())[absl::StrCat("l", l)] =
            absl::StrCat(id, "-", std::string(500, 'x'));
      }
    }
    if (!agent.SendBatch(batch)) {
      break;
    }
  }
  status = agent.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_TRUE(absl::StrContains(status.error_message(), "budget")) << status.error_message();
  const int64_t after = RssKiB(controller_->pid());
  // The budget is 8 MiB of estimated series memory; allow for allocator slack and gRPC buffers.
  EXPECT_LT(after - before, 64 * 1024) << "RSS grew from " << before << " to " << after << " KiB";
  ExpectUndisturbed();
}

TEST_F(HostileAgentTest, HelloWithAnEscapeSequenceForAnIdIsRefused) {
  HostileAgent agent(address_, Hello("evil\x1b[2J"));
  EXPECT_FALSE(agent.AwaitWelcome());
  grpc::Status status = agent.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(status.error_message(), "hello.agent_id"))
      << status.error_message();
  ExpectUndisturbed();
}

}  // namespace
}  // namespace vigil
