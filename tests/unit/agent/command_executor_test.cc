// The agent's command executor: only signed, unexpired, allow-listed commands for this agent
// that it has never run run, and the journal survives a restart.
#include "agent/command_executor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>

#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "tests/support/process.h"

namespace vigil::agent {
namespace {

using ::testing::HasSubstr;

// An action that records its runs and allows only units starting with "azalscore".
class FakeRestart : public Action {
 public:
  explicit FakeRestart(int* runs) : runs_(runs) {}
  absl::string_view name() const override { return "restart_service"; }
  absl::Status Check(const ActionParams& params) const override {
    auto it = params.find("unit");
    if (it == params.end() || it->second.rfind("azalscore", 0) != 0) {
      return absl::PermissionDeniedError(absl::StrCat("restart_service: unit '",
                                                      it == params.end() ? "" : it->second,
                                                      "' is not allowed (allowed: azalscore@*)"));
    }
    return absl::OkStatus();
  }
  ActionResult Run(const ActionParams& params, absl::Duration timeout) override {
    ++*runs_;
    return ActionResult{.exit_code = 0, .output_tail = "restarted " + params.at("unit")};
  }

 private:
  int* runs_;
};

class CommandExecutorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto signer = CommandSigner::LoadOrCreate(dir_.File("c.key"), dir_.File("c.pub"));
    ASSERT_TRUE(signer.ok());
    signer_ = std::move(*signer);
    auto other = CommandSigner::LoadOrCreate(dir_.File("x.key"), dir_.File("x.pub"));
    ASSERT_TRUE(other.ok());
    other_ = std::move(*other);
    Start();
  }

  void Start(const std::string& results_path = "") {
    std::vector<std::unique_ptr<Action>> actions;
    actions.push_back(std::make_unique<FakeRestart>(&runs_));
    auto journal = ResultJournal::Open(
        {.path = results_path.empty() ? dir_.File("state/web-1.results") : results_path});
    ASSERT_TRUE(journal.ok()) << journal.status();
    result_journal_ = std::move(*journal);
    auto executor = CommandExecutor::Create(
        CommandExecutorOptions{.agent_id = "web-1",
                               .journal_path = dir_.File("state/web-1.journal"),
                               .controller_public_key_pem = signer_->public_key_pem(),
                               .results = result_journal_.get()},
        std::move(actions), &clock_, [this](v1::AgentMessage m) {
          // Journaled first, with its sequence: only then may the stream see it.
          const uint64_t seq = m.command_result().sequence();
          const auto pending = result_journal_->PendingAfter(seq - 1, 1);
          absl::MutexLock lock(&mu_);
          if (seq == 0 || pending.empty() || pending[0].sequence() != seq) {
            ++sent_before_journaled_;
          }
          results_.push_back(m.command_result());
        });
    ASSERT_TRUE(executor.ok()) << executor.status();
    executor_ = std::move(*executor);
  }

  v1::Command Make(const std::string& id, const std::string& unit = "azalscore@2") {
    v1::Command c;
    c.set_id(id);
    c.set_agent_id("web-1");
    c.set_action("restart_service");
    (*c.mutable_params())["unit"] = unit;
    c.set_expires_unix_ms(clock_.NowUnixMillis() + 60'000);
    c.set_timeout_ms(5'000);
    EXPECT_TRUE(signer_->Sign(c).ok());
    return c;
  }

  // Submits and waits for the final result (FINISHED or REFUSED).
  v1::CommandResult Run(const v1::Command& c) {
    size_t before = 0;
    {
      absl::MutexLock lock(&mu_);
      before = results_.size();
    }
    executor_->Submit(c);
    v1::CommandResult last;
    EXPECT_TRUE(testing::WaitUntil(
        [&] {
          absl::MutexLock lock(&mu_);
          for (size_t i = before; i < results_.size(); ++i) {
            const v1::CommandResult& r = results_[i];
            if (r.command_id() == c.id() && r.phase() != v1::CommandResult::STARTED) {
              last = r;
              return true;
            }
          }
          return false;
        },
        absl::Seconds(5)));
    return last;
  }

  void Restart() {
    executor_->Stop();
    executor_.reset();
    result_journal_.reset();
    Start();  // a new process reads both journals
    absl::MutexLock lock(&mu_);
    results_.clear();
  }

  void TearDown() override {
    absl::MutexLock lock(&mu_);
    EXPECT_EQ(sent_before_journaled_, 0);
  }

  testing::TempDir dir_;
  SimulatedClock clock_;
  std::unique_ptr<ResultJournal> result_journal_;  // outlives executor_ (declared first)
  std::unique_ptr<CommandSigner> signer_;
  std::unique_ptr<CommandSigner> other_;
  std::unique_ptr<CommandExecutor> executor_;
  int runs_ = 0;
  absl::Mutex mu_;
  std::vector<v1::CommandResult> results_;
  int sent_before_journaled_ = 0;
};

TEST_F(CommandExecutorTest, SignedCommandRunsAndReportsStartedThenFinished) {
  v1::CommandResult r = Run(Make("cmd-1"));
  EXPECT_EQ(r.phase(), v1::CommandResult::FINISHED);
  EXPECT_EQ(r.exit_code(), 0);
  EXPECT_EQ(r.output_tail(), "restarted azalscore@2");
  EXPECT_EQ(runs_, 1);
  absl::MutexLock lock(&mu_);
  ASSERT_EQ(results_.size(), 2u);
  EXPECT_EQ(results_[0].phase(), v1::CommandResult::STARTED);
}

TEST_F(CommandExecutorTest, WrongSignatureIsRefused) {
  v1::Command c = Make("cmd-2");
  ASSERT_TRUE(other_->Sign(c).ok());
  v1::CommandResult r = Run(c);
  EXPECT_EQ(r.phase(), v1::CommandResult::REFUSED);
  EXPECT_THAT(r.reason(), HasSubstr("bad signature"));
  EXPECT_EQ(runs_, 0);
}

TEST_F(CommandExecutorTest, ChangedParameterBreaksTheSignature) {
  v1::Command c = Make("cmd-3");
  (*c.mutable_params())["unit"] = "azalscore@9";
  EXPECT_THAT(Run(c).reason(), HasSubstr("bad signature"));
  EXPECT_EQ(runs_, 0);
}

TEST_F(CommandExecutorTest, ExpiredIsRefused) {
  v1::Command c = Make("cmd-4");
  clock_.Advance(absl::Seconds(61));
  v1::CommandResult r = Run(c);
  EXPECT_EQ(r.phase(), v1::CommandResult::REFUSED);
  EXPECT_THAT(r.reason(), HasSubstr("expired"));
  EXPECT_EQ(runs_, 0);
}

TEST_F(CommandExecutorTest, ResultsCarryIncreasingSequencesAndWaitInTheJournal) {
  EXPECT_EQ(Run(Make("cmd-s1")).phase(), v1::CommandResult::FINISHED);
  EXPECT_EQ(Run(Make("cmd-s2", "sshd")).phase(), v1::CommandResult::REFUSED);
  {
    absl::MutexLock lock(&mu_);
    ASSERT_EQ(results_.size(), 3u);
    EXPECT_EQ(results_[0].sequence(), 1u);
    EXPECT_EQ(results_[1].sequence(), 2u);
    EXPECT_EQ(results_[2].sequence(), 3u);
  }
  EXPECT_EQ(result_journal_->stats().pending, 3u);
  Restart();
  // Still unacknowledged after a restart, and the numbering goes on.
  EXPECT_EQ(result_journal_->stats().pending, 3u);
  v1::CommandResult r = Run(Make("cmd-s3"));
  EXPECT_EQ(r.sequence(), 5u);  // 4 was its STARTED
}

TEST_F(CommandExecutorTest, ResentIdIsAnsweredDuplicateAndRunsNothingEvenAfterARestart) {
  v1::Command c = Make("cmd-5");
  EXPECT_EQ(Run(c).phase(), v1::CommandResult::FINISHED);
  {
    absl::MutexLock lock(&mu_);
    results_.clear();
  }
  v1::CommandResult again = Run(c);
  EXPECT_EQ(again.phase(), v1::CommandResult::DUPLICATE);
  EXPECT_THAT(again.reason(), HasSubstr("already accepted at 2023-11-14T22:13:20+00:00; its "
                                        "results are resent on their own"));
  EXPECT_EQ(again.sequence(), 3u);
  {
    absl::MutexLock lock(&mu_);
    EXPECT_EQ(results_.size(), 1u);  // no STARTED: nothing ran
  }
  // A new process knows the time from the results still waiting for their acknowledgement.
  Restart();
  v1::CommandResult after_restart = Run(c);
  EXPECT_EQ(after_restart.phase(), v1::CommandResult::DUPLICATE);
  EXPECT_THAT(after_restart.reason(), HasSubstr("already accepted at 2023-11-14T22:13:20"));
  // Once every result is acknowledged, the id alone still keeps the command from running.
  result_journal_->Acknowledge({1, 2, 3, 4});
  Restart();
  v1::CommandResult acked = Run(c);
  EXPECT_EQ(acked.phase(), v1::CommandResult::DUPLICATE);
  EXPECT_THAT(acked.reason(), HasSubstr("already accepted before (the time is no longer known"));
  EXPECT_EQ(runs_, 1);
  // A resend that is not properly signed is still refused as such.
  v1::Command forged = c;
  ASSERT_TRUE(other_->Sign(forged).ok());
  v1::CommandResult refused = Run(forged);
  EXPECT_EQ(refused.phase(), v1::CommandResult::REFUSED);
  EXPECT_THAT(refused.reason(), HasSubstr("bad signature"));
  EXPECT_EQ(runs_, 1);
}

// Needs root (a tmpfs of its own); skipped otherwise.
TEST_F(CommandExecutorTest, ACommandWhoseStartCannotBeJournaledDoesNotRun) {
  const std::string mount_point = dir_.File("small");
  std::filesystem::create_directories(mount_point);
  if (geteuid() != 0 || mount("tmpfs", mount_point.c_str(), "tmpfs", 0, "size=64k") != 0) {
    GTEST_SKIP() << "needs root to mount a small tmpfs";
  }
  struct Unmount {
    std::string path;
    ~Unmount() { umount2(path.c_str(), MNT_DETACH); }
  } unmount{mount_point};
  executor_->Stop();
  executor_.reset();
  Start(mount_point + "/web-1.results");
  // Fill the disk, then the journal's last page, so that the next result cannot be written.
  {
    std::ofstream filler(mount_point + "/filler", std::ios::binary);
    const std::string block(4096, 'f');
    for (int i = 0; i < 64 && filler.good(); ++i) {
      filler.write(block.data(), block.size());
      filler.flush();
    }
  }
  for (int i = 0; i < 1000; ++i) {
    v1::CommandResult padding;
    padding.set_command_id(absl::StrCat("pad-", i));
    padding.set_output_tail(std::string(200, 'p'));
    if (!result_journal_->Record(padding).ok()) {
      break;
    }
  }
  ASSERT_GT(result_journal_->stats().write_errors, 0u);

  v1::CommandResult r = Run(Make("cmd-full"));
  EXPECT_EQ(r.phase(), v1::CommandResult::REFUSED);
  EXPECT_THAT(r.reason(), HasSubstr("not run: cannot journal its result"));
  EXPECT_EQ(runs_, 0);
  {
    absl::MutexLock lock(&mu_);
    for (const auto& sent : results_) {
      EXPECT_NE(sent.phase(), v1::CommandResult::STARTED) << "a STARTED for a command not run";
    }
  }

  // Space comes back: the journal catches up by itself and commands run again.
  ASSERT_EQ(unlink((mount_point + "/filler").c_str()), 0);
  EXPECT_EQ(Run(Make("cmd-after")).phase(), v1::CommandResult::FINISHED);
  EXPECT_EQ(runs_, 1);
  const uint64_t pending = result_journal_->stats().pending;
  executor_->Stop();
  executor_.reset();
  result_journal_.reset();
  auto reopened = ResultJournal::Open({.path = mount_point + "/web-1.results"});
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  // What was kept in memory while the disk was full reached the file once it could.
  EXPECT_EQ((*reopened)->stats().pending, pending);
  reopened->reset();
  Start();
}

TEST_F(CommandExecutorTest, LifetimeAboveTheCapIsRefused) {
  v1::Command c = Make("cmd-long");
  c.set_expires_unix_ms(clock_.NowUnixMillis() + 16 * 60'000);
  ASSERT_TRUE(signer_->Sign(c).ok());
  v1::CommandResult r = Run(c);
  EXPECT_EQ(r.phase(), v1::CommandResult::REFUSED);
  EXPECT_THAT(r.reason(), HasSubstr("would stay valid for 960 s, longer than this agent's "
                                    "max_command_lifetime of 15m"));
  // The far future, where a naive subtraction would overflow.
  v1::Command far = Make("cmd-far");
  far.set_expires_unix_ms(INT64_MAX);
  ASSERT_TRUE(signer_->Sign(far).ok());
  EXPECT_THAT(Run(far).reason(), HasSubstr("max_command_lifetime"));
  // Just inside the cap runs.
  v1::Command inside = Make("cmd-inside");
  inside.set_expires_unix_ms(clock_.NowUnixMillis() + 15 * 60'000);
  ASSERT_TRUE(signer_->Sign(inside).ok());
  EXPECT_EQ(Run(inside).phase(), v1::CommandResult::FINISHED);
  EXPECT_EQ(runs_, 1);
}

TEST_F(CommandExecutorTest, IdsThatCannotBeJournaledAreRefused) {
  v1::Command c = Make("cmd-1\n2 cmd-2 00000000");
  v1::CommandResult r = Run(c);
  EXPECT_EQ(r.phase(), v1::CommandResult::REFUSED);
  EXPECT_THAT(r.reason(), HasSubstr("is not an id"));
  EXPECT_EQ(runs_, 0);
}

TEST_F(CommandExecutorTest, SecretsInOutputAreMasked) {
  v1::Command c = Make("cmd-secret", "azalscore@x password=hunter2");
  v1::CommandResult r = Run(c);
  EXPECT_EQ(r.phase(), v1::CommandResult::FINISHED);
  EXPECT_EQ(r.output_tail(), "restarted azalscore@x password=***");
}

TEST_F(CommandExecutorTest, DeletedJournalStopsTheExecutorUntilInit) {
  EXPECT_EQ(Run(Make("cmd-j")).phase(), v1::CommandResult::FINISHED);
  executor_->Stop();
  executor_.reset();
  ASSERT_EQ(unlink(dir_.File("state/web-1.journal").c_str()), 0);
  std::vector<std::unique_ptr<Action>> actions;
  auto refused = CommandExecutor::Create(
      CommandExecutorOptions{.agent_id = "web-1",
                             .journal_path = dir_.File("state/web-1.journal"),
                             .controller_public_key_pem = signer_->public_key_pem()},
      std::move(actions), &clock_, [](v1::AgentMessage) {});
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("is missing"));
  auto fresh = CommandExecutor::Create(
      CommandExecutorOptions{.agent_id = "web-1",
                             .journal_path = dir_.File("state/web-1.journal"),
                             .init_journal = true,
                             .controller_public_key_pem = signer_->public_key_pem()},
      {}, &clock_, [](v1::AgentMessage) {});
  EXPECT_TRUE(fresh.ok()) << fresh.status();
}

TEST_F(CommandExecutorTest, UnitOutsideTheAllowListIsRefused) {
  v1::CommandResult r = Run(Make("cmd-6", "sshd"));
  EXPECT_EQ(r.phase(), v1::CommandResult::REFUSED);
  EXPECT_THAT(r.reason(), HasSubstr("unit 'sshd' is not allowed"));
  EXPECT_EQ(runs_, 0);
}

TEST_F(CommandExecutorTest, ActionNotInTheConfigAndOtherAgentsCommandsAreRefused) {
  v1::Command c = Make("cmd-7");
  c.set_action("redis_flushdb");
  ASSERT_TRUE(signer_->Sign(c).ok());
  EXPECT_THAT(Run(c).reason(), HasSubstr("not allowed by this agent's config"));
  v1::Command d = Make("cmd-8");
  d.set_agent_id("web-2");
  ASSERT_TRUE(signer_->Sign(d).ok());
  EXPECT_THAT(Run(d).reason(), HasSubstr("for agent 'web-2', this is 'web-1'"));
  EXPECT_EQ(runs_, 0);
}

TEST(CommandExecutor, WithoutAControllerKeyEverythingIsRefused) {
  testing::TempDir dir;
  SimulatedClock clock;
  std::vector<v1::CommandResult> results;
  absl::Mutex mu;
  auto executor = CommandExecutor::Create(
      CommandExecutorOptions{.agent_id = "web-1", .journal_path = dir.File("j")}, {}, &clock,
      [&](v1::AgentMessage m) {
        absl::MutexLock lock(&mu);
        results.push_back(m.command_result());
      });
  ASSERT_TRUE(executor.ok());
  v1::Command c;
  c.set_id("cmd-1");
  (*executor)->Submit(c);
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        absl::MutexLock lock(&mu);
        return !results.empty();
      },
      absl::Seconds(5)));
  EXPECT_THAT(results[0].reason(), HasSubstr("no controller_public_key"));
}

TEST(CommandExecutor, BadKeyIsAConfigError) {
  SimulatedClock clock;
  auto executor = CommandExecutor::Create(
      CommandExecutorOptions{.agent_id = "a", .controller_public_key_pem = "garbage"}, {}, &clock,
      [](v1::AgentMessage) {});
  ASSERT_FALSE(executor.ok());
  EXPECT_THAT(std::string(executor.status().message()), HasSubstr("controller_public_key"));
}

}  // namespace
}  // namespace vigil::agent
