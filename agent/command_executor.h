// Runs the commands the controller sends, only when they deserve it: signed by the controller's
// key (from the agent config), meant for this agent, not run before (a persistent journal of
// command ids, written before anything runs, so not even a crash and a replay run one twice),
// not expired, not valid for longer than the lifetime cap, and allowed by this agent's own action
// list and limits. A refusal is reported with its reason and nothing runs; a command id accepted
// before (a resend after a controller restart) is answered DUPLICATE and nothing runs, since the
// results of its first run are resent from the result journal on their own. Output tails and
// reasons are sent with their secrets masked (common/redact.h). Accepted commands run one at a time
// on the executor's thread: STARTED, then FINISHED with exit status, duration and the tail of the
// output. Every result is recorded in the result journal (which gives it its sequence) before it
// is handed to the sender. Thread-safe: Submit from the stream's reader thread; it never blocks on
// a running action.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "agent/actions/action.h"
#include "agent/command_journal.h"
#include "agent/result_journal.h"
#include "common/clock.h"
#include "common/command_signing.h"
#include "vigil/v1/agent_service.pb.h"

namespace vigil::agent {

struct CommandExecutorOptions {
  std::string agent_id;
  std::string journal_path;               // empty: ids are kept in memory only (tests)
  bool init_journal = false;              // --init-journal: a missing journal may be started anew
  std::string controller_public_key_pem;  // empty: every command is refused, with that reason
  absl::Duration max_timeout = absl::Minutes(10);
  // A command whose expiry is further away than this is refused: a captured command must not
  // stay replayable for long.
  absl::Duration max_lifetime = absl::Minutes(15);
  // Where results are journaled until acknowledged (not owned; must outlive the executor).
  // Null: the executor keeps its own, in memory.
  ResultJournal* results = nullptr;
};

class CommandExecutor {
 public:
  // Called with each result once it is in the result journal, sequence set.
  using Sender = std::function<void(v1::AgentMessage message)>;

  // Opens the journal (see CommandJournal::Open: it fails closed). Errors name the file.
  static absl::StatusOr<std::unique_ptr<CommandExecutor>> Create(
      CommandExecutorOptions options, std::vector<std::unique_ptr<Action>> actions,
      const Clock* clock, Sender send);
  ~CommandExecutor();

  void Submit(const v1::Command& command);
  void Stop();  // finishes the running action first

  // The names of the actions this agent offers, for its Hello.
  std::vector<std::string> action_names() const;

 private:
  CommandExecutor(CommandExecutorOptions options, std::vector<std::unique_ptr<Action>> actions,
                  std::unique_ptr<CommandVerifier> verifier,
                  std::unique_ptr<CommandJournal> journal,
                  std::unique_ptr<ResultJournal> owned_results, const Clock* clock, Sender send);
  void WorkerLoop();
  void Handle(const v1::Command& command);
  // Why `command` must not run, with `*phase` set to REFUSED or DUPLICATE; empty when it may.
  std::string Refusal(const v1::Command& command, Action** action, v1::CommandResult::Phase* phase);
  absl::Status Journal(const std::string& id);
  // Journals the result and hands it to the sender, even when journaling failed (the error is
  // returned, and the result is still pending in memory) except for a STARTED, which is then
  // taken back: the command does not run.
  absl::Status Report(const v1::Command& command, v1::CommandResult::Phase phase, int exit_code,
                      std::string output, int64_t duration_ms, std::string reason);

  const CommandExecutorOptions options_;
  std::vector<std::unique_ptr<Action>> actions_;
  std::unique_ptr<CommandVerifier> verifier_;
  std::unique_ptr<CommandJournal> journal_;  // worker thread only; null without a path
  std::set<std::string> ran_;                // worker thread only, without a journal
  // When this process accepted each id (worker thread only), for DUPLICATE answers.
  std::map<std::string, int64_t> accepted_at_;
  std::unique_ptr<ResultJournal> owned_results_;
  ResultJournal* results_;
  const Clock* clock_;
  Sender send_;

  absl::Mutex mu_;
  std::deque<v1::Command> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread worker_;
};

}  // namespace vigil::agent
