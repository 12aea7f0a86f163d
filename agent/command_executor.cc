#include "agent/command_executor.h"

#include <spdlog/spdlog.h>

#include <cstdint>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/logging.h"
#include "common/redact.h"

namespace vigil::agent {

absl::StatusOr<std::unique_ptr<CommandExecutor>> CommandExecutor::Create(
    CommandExecutorOptions options, std::vector<std::unique_ptr<Action>> actions,
    const Clock* clock, Sender send) {
  std::unique_ptr<CommandVerifier> verifier;
  if (!options.controller_public_key_pem.empty()) {
    absl::StatusOr<std::unique_ptr<CommandVerifier>> v =
        CommandVerifier::FromPem(options.controller_public_key_pem);
    if (!v.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("controller_public_key: ", v.status().message()));
    }
    verifier = std::move(*v);
  }
  std::unique_ptr<CommandJournal> journal;
  if (!options.journal_path.empty()) {
    absl::StatusOr<std::unique_ptr<CommandJournal>> opened =
        CommandJournal::Open(options.journal_path, options.init_journal);
    if (!opened.ok()) {
      return opened.status();
    }
    journal = std::move(*opened);
  }
  std::unique_ptr<ResultJournal> owned_results;
  if (options.results == nullptr) {
    absl::StatusOr<std::unique_ptr<ResultJournal>> opened = ResultJournal::Open({});
    if (!opened.ok()) {
      return opened.status();
    }
    owned_results = std::move(*opened);
  }
  return std::unique_ptr<CommandExecutor>(new CommandExecutor(
      std::move(options), std::move(actions), std::move(verifier), std::move(journal),
      std::move(owned_results), clock, std::move(send)));
}

CommandExecutor::CommandExecutor(CommandExecutorOptions options,
                                 std::vector<std::unique_ptr<Action>> actions,
                                 std::unique_ptr<CommandVerifier> verifier,
                                 std::unique_ptr<CommandJournal> journal,
                                 std::unique_ptr<ResultJournal> owned_results, const Clock* clock,
                                 Sender send)
    : options_(std::move(options)),
      actions_(std::move(actions)),
      verifier_(std::move(verifier)),
      journal_(std::move(journal)),
      owned_results_(std::move(owned_results)),
      results_(options_.results != nullptr ? options_.results : owned_results_.get()),
      clock_(clock),
      send_(std::move(send)) {
  worker_ = std::thread([this] { WorkerLoop(); });
}

CommandExecutor::~CommandExecutor() { Stop(); }

void CommandExecutor::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (worker_.joinable()) {
    worker_.join();
  }
}

std::vector<std::string> CommandExecutor::action_names() const {
  std::vector<std::string> names;
  for (const auto& action : actions_) {
    names.emplace_back(action->name());
  }
  return names;
}

void CommandExecutor::Submit(const v1::Command& command) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(command);
}

void CommandExecutor::WorkerLoop() {
  while (true) {
    v1::Command command;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](CommandExecutor* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
            return self->stopping_ || !self->queue_.empty();
          },
          this));
      if (stopping_) {
        return;  // queued commands are not run: the controller times them out
      }
      command = std::move(queue_.front());
      queue_.pop_front();
    }
    Handle(command);
  }
}

std::string CommandExecutor::Refusal(const v1::Command& command, Action** action,
                                     v1::CommandResult::Phase* phase) {
  *phase = v1::CommandResult::REFUSED;
  if (verifier_ == nullptr) {
    return "this agent has no controller_public_key in its config, so it runs no commands";
  }
  if (absl::Status s = verifier_->Verify(command); !s.ok()) {
    return std::string(s.message());
  }
  if (command.agent_id() != options_.agent_id) {
    return absl::StrCat("the command is for agent '", command.agent_id(), "', this is '",
                        options_.agent_id, "'");
  }
  if (!IsValidCommandId(command.id())) {
    return absl::StrCat("command id '", Redact(command.id().substr(0, 40)),
                        "' is not an id (want 1 to ", kMaxCommandIdBytes,
                        " characters of A-Z a-z 0-9 . _ : -)");
  }
  if (journal_ != nullptr ? journal_->Contains(command.id()) : ran_.contains(command.id())) {
    // Signed and ours: a resend (a controller restart resumes with the same ids), not an attack.
    *phase = v1::CommandResult::DUPLICATE;
    std::optional<int64_t> at = results_->FirstSeen(command.id());
    if (!at.has_value()) {
      if (auto it = accepted_at_.find(command.id()); it != accepted_at_.end()) {
        at = it->second;
      }
    }
    const std::string when =
        at.has_value() ? absl::StrCat("at ", absl::FormatTime(absl::RFC3339_sec,
                                                               absl::FromUnixMillis(*at),
                                                               absl::UTCTimeZone()))
                       : "before (the time is no longer known here)";
    return absl::StrCat("command ", command.id(), " was already accepted ", when,
                        "; its results are resent on their own");
  }
  const int64_t now = clock_->NowUnixMillis();
  if (now > command.expires_unix_ms()) {
    return absl::StrCat("the command expired ", (now - command.expires_unix_ms()) / 1000.0,
                        " s ago (check the clocks of agent and controller)");
  }
  const int64_t max_lifetime_ms = absl::ToInt64Milliseconds(options_.max_lifetime);
  // Subtraction in unsigned arithmetic: expires_unix_ms comes from the wire and may be anything.
  if (static_cast<uint64_t>(command.expires_unix_ms()) - static_cast<uint64_t>(now) >
      static_cast<uint64_t>(max_lifetime_ms)) {
    return absl::StrCat("the command would stay valid for ",
                        (command.expires_unix_ms() - now) / 1000,
                        " s, longer than this agent's "
                        "max_command_lifetime of ",
                        absl::FormatDuration(options_.max_lifetime),
                        " (check the controller's command_ttl and the clocks)");
  }
  for (const auto& a : actions_) {
    if (a->name() == command.action()) {
      *action = a.get();
    }
  }
  if (*action == nullptr) {
    std::vector<std::string> names = action_names();
    return absl::StrCat("action ", command.action(), " is not allowed by this agent's config",
                        " (allowed: ", names.empty() ? "none" : absl::StrJoin(names, ", "), ")");
  }
  const ActionParams params(command.params().begin(), command.params().end());
  if (absl::Status s = (*action)->Check(params); !s.ok()) {
    return std::string(s.message());
  }
  return "";
}

absl::Status CommandExecutor::Journal(const std::string& id) {
  if (journal_ == nullptr) {
    ran_.insert(id);
    return absl::OkStatus();
  }
  return journal_->Append(id);
}

absl::Status CommandExecutor::Report(const v1::Command& command, v1::CommandResult::Phase phase,
                                     int exit_code, std::string output, int64_t duration_ms,
                                     std::string reason) {
  v1::AgentMessage message;
  v1::CommandResult* result = message.mutable_command_result();
  result->set_command_id(command.id());
  result->set_phase(phase);
  result->set_exit_code(exit_code);
  // Output and reasons may quote command lines, query texts or config: mask their secrets.
  result->set_output_tail(Redact(output));
  result->set_duration_ms(duration_ms);
  result->set_reason(Redact(reason));
  result->set_time_unix_ms(clock_->NowUnixMillis());
  // On disk before anyone sees it: from here it is resent until the controller acknowledges it.
  absl::Status journaled = results_->Record(*result);
  if (!journaled.ok() && phase == v1::CommandResult::STARTED) {
    // The command will not run: the STARTED is taken back, and the refusal that follows says why.
    results_->Acknowledge({result->sequence()});
    return journaled;
  }
  send_(std::move(message));
  return journaled;
}

void CommandExecutor::Handle(const v1::Command& command) {
  Action* action = nullptr;
  v1::CommandResult::Phase phase = v1::CommandResult::REFUSED;
  const std::string refusal = Refusal(command, &action, &phase);
  if (!refusal.empty()) {
    if (phase == v1::CommandResult::DUPLICATE) {
      spdlog::info("command {} ({}) again: {}", command.id(), Redact(command.action().substr(0, 40)),
                   refusal);
    } else {
      spdlog::warn("refused command {} ({}): {}", Redact(command.id().substr(0, 40)),
                   Redact(command.action().substr(0, 40)), Redact(refusal));
    }
    (void)Report(command, phase, -1, "", 0, refusal);  // a failed journal write is logged there
    return;
  }
  // Journaled before it runs: after a crash mid-run, a replay is answered DUPLICATE rather than
  // run twice.
  if (absl::Status s = Journal(command.id()); !s.ok()) {
    (void)Report(command, v1::CommandResult::REFUSED, -1, "", 0, std::string(s.message()));
    return;
  }
  accepted_at_[command.id()] = clock_->NowUnixMillis();
  // STARTED is durable before the action starts: if it cannot be, the outcome could not be
  // reported after a crash either, so the command does not run.
  if (absl::Status s = Report(command, v1::CommandResult::STARTED, 0, "", 0, ""); !s.ok()) {
    spdlog::error("command {} not run: {}", command.id(), s.message());
    (void)Report(command, v1::CommandResult::REFUSED, -1, "", 0,
                 absl::StrCat("not run: cannot journal its result: ", s.message()));
    return;
  }
  absl::Duration timeout = absl::Milliseconds(command.timeout_ms());
  if (timeout <= absl::ZeroDuration() || timeout > options_.max_timeout) {
    timeout = options_.max_timeout;
  }
  const absl::Time start = clock_->Now();
  spdlog::info("running command {}: {} for incident {}", command.id(), command.action(),
               command.incident_id());
  const ActionParams params(command.params().begin(), command.params().end());
  ActionResult result = action->Run(params, timeout);
  const int64_t duration_ms = absl::ToInt64Milliseconds(clock_->Now() - start);
  spdlog::info("command {} finished: exit {} in {} ms{}{}", command.id(), result.exit_code,
               duration_ms, result.reason.empty() ? "" : ": ", Redact(result.reason));
  (void)Report(command, v1::CommandResult::FINISHED, result.exit_code,
               std::move(result.output_tail), duration_ms, std::move(result.reason));
}

}  // namespace vigil::agent
