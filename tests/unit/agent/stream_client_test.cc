// The stream client's command results against a small in-process controller: unacknowledged
// results are resent in order after every reconnect until acknowledged, and a controller that
// does not acknowledge results gets each one once. And the audit checkpoint the controller sends
// comes back in the agent's next Hello, after a reconnect and after a restart.
#include "agent/stream_client.h"

#include <grpcpp/grpcpp.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <optional>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "agent/checkpoint_witness.h"
#include "agent/result_journal.h"
#include "common/clock.h"
#include "common/wire_metadata.h"
#include "tests/support/process.h"

namespace vigil::agent {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// Welcomes every stream and records the command results each one carries. It acknowledges them
// when told to, and can end a stream after a number of results (a break between the write and
// the acknowledgement) or on demand.
class FakeController final : public v1::AgentService::Service {
 public:
  explicit FakeController(bool acks_results) : acks_results_(acks_results) {}

  grpc::Status Connect(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::ControllerMessage, v1::AgentMessage>* stream) override {
    v1::AgentMessage message;
    if (!stream->Read(&message) || !message.has_hello()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no Hello");
    }
    {
      absl::MutexLock lock(&mu_);
      hellos_.push_back(absl::Now());
      hello_checkpoints_.push_back(message.hello().has_audit_checkpoint()
                                       ? std::optional(message.hello().audit_checkpoint())
                                       : std::nullopt);
      if (busy_streams_ > 0) {
        --busy_streams_;
        context->AddTrailingMetadata(std::string(kRetryAfterMsKey),
                                     absl::StrCat(absl::ToInt64Milliseconds(retry_after_)));
        return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "admitting other agents");
      }
    }
    size_t index = 0;
    {
      absl::MutexLock lock(&mu_);
      index = streams_.size();
      streams_.emplace_back();
    }
    v1::ControllerMessage welcome;
    welcome.mutable_welcome()->set_acks_results(acks_results_);
    welcome.mutable_welcome()->set_heartbeat_timeout_ms(30'000);
    stream->Write(welcome);
    std::optional<v1::AuditCheckpoint> checkpoint;
    {
      absl::MutexLock lock(&mu_);
      checkpoint = checkpoint_;
    }
    if (checkpoint.has_value()) {
      v1::ControllerMessage sent;
      *sent.mutable_audit_checkpoint() = *checkpoint;
      stream->Write(sent);
    }
    while (stream->Read(&message)) {
      bool ack = false;
      {
        absl::MutexLock lock(&mu_);
        if (end_now_) {
          end_now_ = false;
          return grpc::Status(grpc::StatusCode::UNAVAILABLE, "ended by the test");
        }
        if (!message.has_command_result()) {
          continue;  // a heartbeat
        }
        streams_[index].push_back(message.command_result().sequence());
        if (auto it = end_after_.find(index);
            it != end_after_.end() && streams_[index].size() >= it->second) {
          return grpc::Status(grpc::StatusCode::UNAVAILABLE, "gone before acknowledging");
        }
        ack = index >= ack_from_;
      }
      if (ack) {
        v1::ControllerMessage reply;
        reply.mutable_ack()->add_result_sequences(message.command_result().sequence());
        stream->Write(reply);
      }
    }
    return grpc::Status::OK;
  }

  // Result sequences received on stream `index` (0 = the first).
  std::vector<uint64_t> Received(size_t index) {
    absl::MutexLock lock(&mu_);
    return index < streams_.size() ? streams_[index] : std::vector<uint64_t>{};
  }
  size_t streams() {
    absl::MutexLock lock(&mu_);
    return streams_.size();
  }
  // Streams from `index` on acknowledge every result they receive.
  void AckFromStream(size_t index) {
    absl::MutexLock lock(&mu_);
    ack_from_ = index;
  }
  void EndStreamAfter(size_t index, size_t results) {
    absl::MutexLock lock(&mu_);
    end_after_[index] = results;
  }
  void EndCurrentStream() {
    absl::MutexLock lock(&mu_);
    end_now_ = true;
  }
  // The next `streams` streams are refused as a busy controller refuses them.
  void RefuseBusy(int streams, absl::Duration retry_after) {
    absl::MutexLock lock(&mu_);
    busy_streams_ = streams;
    retry_after_ = retry_after;
  }
  // When each Hello arrived.
  std::vector<absl::Time> Hellos() {
    absl::MutexLock lock(&mu_);
    return hellos_;
  }
  // The audit checkpoint each Hello carried.
  std::vector<std::optional<v1::AuditCheckpoint>> HelloCheckpoints() {
    absl::MutexLock lock(&mu_);
    return hello_checkpoints_;
  }
  // Sent to every stream after its Welcome, as the controller sends its newest checkpoint.
  void SendCheckpoint(v1::AuditCheckpoint checkpoint) {
    absl::MutexLock lock(&mu_);
    checkpoint_ = std::move(checkpoint);
  }

 private:
  const bool acks_results_;
  absl::Mutex mu_;
  std::vector<std::vector<uint64_t>> streams_ ABSL_GUARDED_BY(mu_);
  std::map<size_t, size_t> end_after_ ABSL_GUARDED_BY(mu_);
  size_t ack_from_ ABSL_GUARDED_BY(mu_) = SIZE_MAX;
  bool end_now_ ABSL_GUARDED_BY(mu_) = false;
  int busy_streams_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Duration retry_after_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Time> hellos_ ABSL_GUARDED_BY(mu_);
  std::vector<std::optional<v1::AuditCheckpoint>> hello_checkpoints_ ABSL_GUARDED_BY(mu_);
  std::optional<v1::AuditCheckpoint> checkpoint_ ABSL_GUARDED_BY(mu_);
};

class StreamClientResultsTest : public ::testing::Test {
 protected:
  void StartController(bool acks_results) {
    controller_ = std::make_unique<FakeController>(acks_results);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(controller_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }

  void OpenJournal() {
    auto journal = ResultJournal::Open({.path = dir_.File("web-1.results")});
    ASSERT_TRUE(journal.ok()) << journal.status();
    journal_ = std::move(*journal);
  }

  void RecordResult(const std::string& command_id, v1::CommandResult::Phase phase) {
    v1::CommandResult r;
    r.set_command_id(command_id);
    r.set_phase(phase);
    ASSERT_TRUE(journal_->Record(r).ok());
    if (client_ != nullptr) {
      client_->ResultRecorded();
    }
  }

  void StartClient() {
    StreamClientOptions options;
    options.controller = absl::StrCat("127.0.0.1:", port_);
    options.hello.set_agent_id("web-1");
    options.heartbeat = absl::Milliseconds(50);
    options.initial_backoff = absl::Milliseconds(20);
    options.max_backoff = absl::Milliseconds(100);
    client_ = std::make_unique<StreamClient>(std::move(options), RealClock::Get());
    client_->SetResultJournal(journal_.get());
    if (witness_ != nullptr) {
      client_->SetCheckpointWitness(witness_.get());
    }
    runner_ = std::thread([this] { client_->Run(); });
  }

  void TearDown() override {
    if (client_ != nullptr) {
      client_->Stop();
      runner_.join();
    }
    if (server_ != nullptr) {
      server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    }
  }

  bool WaitFor(const std::function<bool()>& condition) {
    return testing::WaitUntil(condition, absl::Seconds(10), absl::Milliseconds(10));
  }

  testing::TempDir dir_;
  std::unique_ptr<FakeController> controller_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::unique_ptr<ResultJournal> journal_;
  std::unique_ptr<CheckpointWitness> witness_;
  std::unique_ptr<StreamClient> client_;
  std::thread runner_;
};

TEST_F(StreamClientResultsTest, UnacknowledgedResultsAreResentAfterReconnectUntilAcknowledged) {
  StartController(/*acks_results=*/true);
  // Results left by an earlier agent process.
  OpenJournal();
  RecordResult("cmd-1", v1::CommandResult::STARTED);
  RecordResult("cmd-1", v1::CommandResult::FINISHED);
  journal_.reset();
  OpenJournal();
  // The first stream breaks after the results are written, before they are acknowledged.
  controller_->EndStreamAfter(0, 2);
  controller_->AckFromStream(1);
  StartClient();
  ASSERT_TRUE(WaitFor([&] { return controller_->Received(0).size() == 2; }));
  EXPECT_THAT(controller_->Received(0), ElementsAre(1, 2));
  // The first stream acknowledged nothing: the second gets them again, in order (that they are
  // resent is the proof they were kept; reading `pending` here would race the second stream,
  // which reconnects within 20 ms), and this time they are acknowledged.
  ASSERT_TRUE(WaitFor([&] { return journal_->stats().pending == 0; }));
  EXPECT_THAT(controller_->Received(1), ElementsAre(1, 2));
  // A new result follows on the same stream.
  RecordResult("cmd-2", v1::CommandResult::REFUSED);
  ASSERT_TRUE(WaitFor([&] { return journal_->stats().pending == 0; }));
  EXPECT_THAT(controller_->Received(1), ElementsAre(1, 2, 3));
  // Acknowledged results are not sent again on the next stream, nor after a restart.
  controller_->EndCurrentStream();
  ASSERT_TRUE(WaitFor([&] { return controller_->streams() == 3; }));
  absl::SleepFor(absl::Milliseconds(300));  // several heartbeats
  EXPECT_THAT(controller_->Received(2), IsEmpty());
  client_->Stop();
  runner_.join();
  client_.reset();
  journal_.reset();
  OpenJournal();
  EXPECT_EQ(journal_->stats().pending, 0u);
  EXPECT_EQ(journal_->stats().next_sequence, 4u);
}

TEST_F(StreamClientResultsTest, ResultsRecordedWhileDisconnectedWaitForTheNextStream) {
  StartController(/*acks_results=*/true);
  OpenJournal();
  StartClient();
  ASSERT_TRUE(WaitFor([&] { return controller_->streams() == 1; }));
  RecordResult("cmd-1", v1::CommandResult::STARTED);
  ASSERT_TRUE(WaitFor([&] { return controller_->Received(0).size() == 1; }));
  // The controller goes away without acknowledging; more results come while it is gone.
  server_->Shutdown(std::chrono::system_clock::now());
  server_.reset();
  RecordResult("cmd-1", v1::CommandResult::FINISHED);
  RecordResult("cmd-2", v1::CommandResult::DUPLICATE);
  EXPECT_EQ(journal_->stats().pending, 3u);
  // It comes back on the same port: everything, in order, then acknowledged.
  auto controller = std::make_unique<FakeController>(true);
  controller->AckFromStream(0);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat("127.0.0.1:", port_), grpc::InsecureServerCredentials());
  builder.RegisterService(controller.get());
  server_ = builder.BuildAndStart();
  ASSERT_NE(server_, nullptr);
  ASSERT_TRUE(WaitFor([&] { return journal_->stats().pending == 0; }));
  EXPECT_THAT(controller->Received(0), ElementsAre(1, 2, 3));
  client_->Stop();
  runner_.join();
  client_.reset();
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  server_.reset();
}

TEST_F(StreamClientResultsTest, AControllerWithoutResultAcksGetsEachResultOnce) {
  StartController(/*acks_results=*/false);
  OpenJournal();
  RecordResult("cmd-1", v1::CommandResult::STARTED);
  RecordResult("cmd-1", v1::CommandResult::FINISHED);
  StartClient();
  ASSERT_TRUE(WaitFor([&] { return controller_->Received(0).size() == 2; }));
  // Written to the stream: dropped from the journal, as nothing will acknowledge them.
  ASSERT_TRUE(WaitFor([&] { return journal_->stats().pending == 0; }));
  RecordResult("cmd-2", v1::CommandResult::REFUSED);
  ASSERT_TRUE(WaitFor([&] { return controller_->Received(0).size() == 3; }));
  ASSERT_TRUE(WaitFor([&] { return journal_->stats().pending == 0; }));
  EXPECT_THAT(controller_->Received(0), ElementsAre(1, 2, 3));
  // No resend on the next stream.
  controller_->EndCurrentStream();
  ASSERT_TRUE(WaitFor([&] { return controller_->streams() == 2; }));
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_THAT(controller_->Received(1), IsEmpty());
}

// A controller admitting a storm says when to come back: the agent waits at least that long (its
// own backoff here is 20–100 ms), and no more than twice that, then streams.
TEST_F(StreamClientResultsTest, ABusyControllersRetryHintIsHonoured) {
  StartController(/*acks_results=*/true);
  controller_->RefuseBusy(2, absl::Milliseconds(600));
  OpenJournal();
  StartClient();
  ASSERT_TRUE(WaitFor([&] { return controller_->streams() == 1; }));
  const std::vector<absl::Time> hellos = controller_->Hellos();
  ASSERT_EQ(hellos.size(), 3u);
  for (size_t i = 1; i < hellos.size(); ++i) {
    EXPECT_GE(hellos[i] - hellos[i - 1], absl::Milliseconds(600)) << "attempt " << i;
    EXPECT_LE(hellos[i] - hellos[i - 1], absl::Milliseconds(1200 + 300)) << "attempt " << i;
  }
}

v1::AuditCheckpoint SentCheckpoint(uint64_t seq, char digit) {
  v1::AuditCheckpoint c;
  c.set_seq(seq);
  c.set_hash(std::string(64, digit));
  c.set_time_unix_ms(1'700'000'000'000);
  c.set_signature(std::string(64, 's'));
  c.set_key_id("0123456789abcdef");
  return c;
}

TEST_F(StreamClientResultsTest, TheControllersCheckpointComesBackInTheNextHello) {
  StartController(/*acks_results=*/true);
  OpenJournal();
  witness_ = CheckpointWitness::Open({.path = dir_.File("web-1.checkpoint")});
  controller_->SendCheckpoint(SentCheckpoint(7, 'a'));
  StartClient();
  ASSERT_TRUE(WaitFor([&] { return witness_->Held().has_value(); }));
  EXPECT_EQ(witness_->Held()->seq(), 7u);
  // The first Hello had none; after a reconnect the Hello carries it.
  controller_->EndCurrentStream();
  ASSERT_TRUE(WaitFor([&] { return controller_->streams() == 2; }));
  std::vector<std::optional<v1::AuditCheckpoint>> hellos = controller_->HelloCheckpoints();
  ASSERT_EQ(hellos.size(), 2u);
  EXPECT_FALSE(hellos[0].has_value());
  ASSERT_TRUE(hellos[1].has_value());
  EXPECT_EQ(hellos[1]->SerializeAsString(), SentCheckpoint(7, 'a').SerializeAsString());

  // A controller restored from an older database sends an older checkpoint: the agent keeps
  // reporting the newer one, across a restart of the agent too.
  controller_->SendCheckpoint(SentCheckpoint(5, 'b'));
  controller_->EndCurrentStream();
  ASSERT_TRUE(WaitFor([&] { return witness_->stats().older >= 1; }));
  client_->Stop();
  runner_.join();
  client_.reset();
  witness_ = CheckpointWitness::Open({.path = dir_.File("web-1.checkpoint")});
  const size_t before = controller_->HelloCheckpoints().size();
  StartClient();
  ASSERT_TRUE(WaitFor([&] { return controller_->HelloCheckpoints().size() > before; }));
  hellos = controller_->HelloCheckpoints();
  ASSERT_TRUE(hellos.back().has_value());
  EXPECT_EQ(hellos.back()->seq(), 7u);
  EXPECT_EQ(hellos.back()->hash(), std::string(64, 'a'));
}

}  // namespace
}  // namespace vigil::agent
