// The real vigil-agent's command results survive kill -9: against a small in-process controller
// that acknowledges results, the agent resends the results of a command it ran after each
// restart, with the same sequences, until they are acknowledged; a resent command id is answered
// DUPLICATE and does not run again.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <deque>
#include <filesystem>
#include <map>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "agent/result_journal.h"
#include "common/command_signing.h"
#include "tests/support/process.h"
#include "vigil/v1/agent_service.grpc.pb.h"

namespace vigil {
namespace {

using testing::BinaryPath;
using testing::Subprocess;
using testing::WaitUntil;

// Welcomes each stream (acks_results set), writes the commands it is given, records the command
// results each stream carries, and acknowledges them on streams from a chosen one on.
class FakeController final : public v1::AgentService::Service {
 public:
  grpc::Status Connect(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::ControllerMessage, v1::AgentMessage>* stream) override {
    v1::AgentMessage message;
    if (!stream->Read(&message) || !message.has_hello()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no Hello");
    }
    size_t index = 0;
    {
      absl::MutexLock lock(&mu_);
      index = streams_.size();
      streams_.emplace_back();
    }
    v1::ControllerMessage welcome;
    welcome.mutable_welcome()->set_acks_results(true);
    welcome.mutable_welcome()->set_heartbeat_timeout_ms(600);  // heartbeats every 200 ms
    stream->Write(welcome);
    while (stream->Read(&message)) {
      std::vector<v1::ControllerMessage> out;
      {
        absl::MutexLock lock(&mu_);
        if (message.has_command_result()) {
          streams_[index].push_back(message.command_result());
          if (index >= ack_from_) {
            v1::ControllerMessage ack;
            ack.mutable_ack()->add_result_sequences(message.command_result().sequence());
            out.push_back(std::move(ack));
          }
        }
        while (!commands_.empty()) {
          v1::ControllerMessage command;
          *command.mutable_command() = std::move(commands_.front());
          commands_.pop_front();
          out.push_back(std::move(command));
        }
      }
      for (const auto& m : out) {
        stream->Write(m);
      }
    }
    return grpc::Status::OK;
  }

  std::vector<v1::CommandResult> Received(size_t index) {
    absl::MutexLock lock(&mu_);
    return index < streams_.size() ? streams_[index] : std::vector<v1::CommandResult>{};
  }
  size_t streams() {
    absl::MutexLock lock(&mu_);
    return streams_.size();
  }
  void AckFromStream(size_t index) {
    absl::MutexLock lock(&mu_);
    ack_from_ = index;
  }
  // Written on the current stream at its next message from the agent.
  void Send(v1::Command command) {
    absl::MutexLock lock(&mu_);
    commands_.push_back(std::move(command));
  }

 private:
  absl::Mutex mu_;
  std::vector<std::vector<v1::CommandResult>> streams_ ABSL_GUARDED_BY(mu_);
  std::deque<v1::Command> commands_ ABSL_GUARDED_BY(mu_);
  size_t ack_from_ ABSL_GUARDED_BY(mu_) = SIZE_MAX;
};

std::vector<std::string> Summary(const std::vector<v1::CommandResult>& results) {
  std::vector<std::string> out;
  for (const auto& r : results) {
    out.push_back(absl::StrCat(r.sequence(), " ", r.command_id(), " ",
                               v1::CommandResult::Phase_Name(r.phase())));
  }
  return out;
}

TEST(ResultResendTest, ResultsOutliveKillNineUntilAcknowledgedAndAResendIsADuplicate) {
  testing::TempDir dir;
  auto signer = CommandSigner::LoadOrCreate(dir.File("c.key"), dir.File("c.pub"));
  ASSERT_TRUE(signer.ok()) << signer.status();
  FakeController controller;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&controller);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);

  const std::string runs = dir.File("runs.txt");
  testing::WriteFile(
      dir.File("agent.yaml"),
      absl::StrCat("id: web-1\ncollectors: {host: {}}\n"
                   "actions:\n  restart_service: {units: [\"demo\"]}\n"
                   "service_manager: {restart: [sh, -c, \"echo ran >> ",
                   runs, "; echo restarted {unit}\"]}\ncontroller_public_key: ",
                   dir.File("c.pub"), "\njournal: ", dir.File("state/web-1.journal"), "\n"));
  int starts = 0;
  auto start_agent = [&] {
    return std::make_unique<Subprocess>(
        std::vector<std::string>{BinaryPath("vigil-agent"),
                                 absl::StrCat("--controller=127.0.0.1:", port),
                                 "--config=" + dir.File("agent.yaml"), "--insecure"},
        std::map<std::string, std::string>{},
        dir.File(absl::StrCat("agent-", ++starts, ".log")));
  };
  auto wait_for = [&](size_t stream, size_t results) {
    return WaitUntil([&] { return controller.Received(stream).size() >= results; },
                     absl::Seconds(20));
  };

  v1::Command command;
  command.set_id("cmd-restart-1");
  command.set_agent_id("web-1");
  command.set_action("restart_service");
  (*command.mutable_params())["unit"] = "demo";
  command.set_expires_unix_ms(absl::ToUnixMillis(absl::Now() + absl::Minutes(5)));
  command.set_timeout_ms(10'000);
  ASSERT_TRUE((*signer)->Sign(command).ok());

  auto agent = start_agent();
  ASSERT_TRUE(WaitUntil([&] { return controller.streams() >= 1; }, absl::Seconds(20)))
      << agent->Output();
  controller.Send(command);
  ASSERT_TRUE(wait_for(0, 2)) << agent->Output();
  EXPECT_THAT(Summary(controller.Received(0)),
              ::testing::ElementsAre("1 cmd-restart-1 STARTED", "2 cmd-restart-1 FINISHED"));
  EXPECT_EQ(controller.Received(0)[1].exit_code(), 0);
  EXPECT_THAT(controller.Received(0)[1].output_tail(), ::testing::HasSubstr("restarted demo"));

  // Killed before the controller acknowledged anything: the next process sends both again.
  agent->Kill();
  agent = start_agent();
  ASSERT_TRUE(wait_for(1, 2)) << agent->Output();
  EXPECT_THAT(Summary(controller.Received(1)),
              ::testing::ElementsAre("1 cmd-restart-1 STARTED", "2 cmd-restart-1 FINISHED"));
  // The same result, not a new one.
  EXPECT_EQ(controller.Received(1)[1].output_tail(), controller.Received(0)[1].output_tail());
  EXPECT_EQ(controller.Received(1)[1].time_unix_ms(), controller.Received(0)[1].time_unix_ms());

  // Acknowledged on the third stream; after that, a restart sends nothing.
  controller.AckFromStream(2);
  agent->Kill();
  agent = start_agent();
  ASSERT_TRUE(wait_for(2, 2)) << agent->Output();
  // The acknowledgements reached the agent's journal: a copy of its file holds nothing pending
  // (the copy, so the running agent's file is only read).
  ASSERT_TRUE(WaitUntil(
      [&] {
        const std::string copy = dir.File("results-copy");
        std::error_code error;
        std::filesystem::copy_file(dir.File("state/web-1.results"), copy,
                                   std::filesystem::copy_options::overwrite_existing, error);
        if (error) return false;
        auto journal = agent::ResultJournal::Open({.path = copy});
        return journal.ok() && (*journal)->PendingAfter(0, 10).empty();
      },
      absl::Seconds(10)))
      << agent->Output();
  agent->Kill();
  agent = start_agent();
  ASSERT_TRUE(WaitUntil([&] { return controller.streams() >= 4; }, absl::Seconds(20)))
      << agent->Output();
  absl::SleepFor(absl::Seconds(1));
  EXPECT_TRUE(controller.Received(3).empty()) << ::testing::PrintToString(
      Summary(controller.Received(3)));

  // The controller resends the command (as after its own restart): DUPLICATE, nothing runs.
  controller.Send(command);
  ASSERT_TRUE(wait_for(3, 1)) << agent->Output();
  const v1::CommandResult duplicate = controller.Received(3)[0];
  EXPECT_EQ(duplicate.phase(), v1::CommandResult::DUPLICATE);
  EXPECT_EQ(duplicate.sequence(), 3u);  // numbering went on across the restarts
  EXPECT_THAT(duplicate.reason(), ::testing::HasSubstr("its results are resent on their own"));
  std::vector<std::string> lines =
      absl::StrSplit(testing::ReadFileOrEmpty(runs), '\n', absl::SkipEmpty());
  EXPECT_EQ(lines.size(), 1u);  // it ran once

  agent->Stop();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
}

}  // namespace
}  // namespace vigil
