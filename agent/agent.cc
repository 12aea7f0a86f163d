#include "agent/agent.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "common/ids.h"

namespace vigil::agent {

v1::Hello MakeHello(const AgentConfig& config, absl::Duration interval) {
  v1::Hello hello;
  hello.set_agent_id(config.id);
  hello.set_hostname(Hostname());
  hello.set_version(VIGIL_VERSION);
  for (const auto& [k, v] : config.labels) {
    (*hello.mutable_labels())[k] = v;
  }
  for (const auto& c : config.collectors) {
    hello.add_collectors(std::string(c->name()));
    for (v1::MetricDeclaration& m : c->DeclaredMetrics()) {
      m.set_collector(std::string(c->name()));
      *hello.add_metrics() = std::move(m);
    }
  }
  hello.set_interval_ms(absl::ToInt64Milliseconds(interval));
  // The actions the config allows; the agent refuses to start when one of them is invalid.
  if (config.actions.IsMap()) {
    for (const auto& kv : config.actions) {
      if (kv.first.IsScalar()) {  // BuildActions refused any other key
        hello.add_actions()->set_name(kv.first.Scalar());
      }
    }
  }
  hello.set_instance_id(RandomId(""));
  return hello;
}

Agent::Agent(AgentConfig config, AgentOptions options, const Clock* clock)
    : config_(std::move(config)), options_(std::move(options)), clock_(clock) {
  StreamClientOptions stream_options;
  stream_options.controller = options_.controller;
  stream_options.credentials = options_.credentials;
  stream_options.hello = MakeHello(config_, options_.interval);
  stream_options.spool_dir = config_.spool_dir;
  stream_options.spool_max_bytes = config_.spool_max_bytes;
  stream_ = std::make_unique<StreamClient>(std::move(stream_options), clock_);
  witness_ = CheckpointWitness::Open({.path = CheckpointPath(config_), .clock = clock_});
  stream_->SetCheckpointWitness(witness_.get());
  stream_->SetDiagnosticsHandler(
      [this](const v1::CollectDiagnostics& request) { OnCollectDiagnostics(request); });

  stream_->SetWatchHandler(
      [this](const v1::WatchThresholds& message) { OnWatchThresholds(message); });

  SensingOptions sensing;
  if (options_.sense_every > absl::ZeroDuration()) {
    sensing.watch = &watch_;
    sensing.every = options_.sense_every;
    // One early snapshot per crossing, and per collector at most four a round.
    sensing.min_early_gap = std::max(options_.sense_every, options_.interval / 4);
  }
  const absl::Duration phase =
      options_.aligned_rounds ? absl::ZeroDuration() : RoundPhase(config_.id, options_.interval);
  for (auto& collector : config_.collectors) {
    runners_.push_back(std::make_unique<CollectorRunner>(
        std::move(collector), options_.interval, clock_,
        [this](Collection c) { stream_->PushTelemetry(std::move(c)); }, sensing, phase));
  }
  config_.collectors.clear();
}

Agent::~Agent() {
  Stop();
  if (executor_ != nullptr) {
    executor_->Stop();
  }
}

absl::Status Agent::EnableCommands(std::vector<std::unique_ptr<Action>> actions) {
  absl::StatusOr<std::unique_ptr<ResultJournal>> results =
      ResultJournal::Open(ResultJournalOptions{.path = ResultJournalPath(config_),
                                               .max_bytes = config_.result_journal_max_bytes});
  if (!results.ok()) {
    return results.status();
  }
  results_ = std::move(*results);
  stream_->SetResultJournal(results_.get());
  absl::StatusOr<std::unique_ptr<CommandExecutor>> executor = CommandExecutor::Create(
      CommandExecutorOptions{.agent_id = config_.id,
                             .journal_path = config_.journal_path,
                             .init_journal = options_.init_journal,
                             .controller_public_key_pem = config_.controller_public_key_pem,
                             .max_lifetime = config_.max_command_lifetime,
                             .results = results_.get()},
      std::move(actions), clock_,
      // The result is in the journal already; the stream takes it from there.
      [this](v1::AgentMessage) { stream_->ResultRecorded(); });
  if (!executor.ok()) {
    return executor.status();
  }
  executor_ = std::move(*executor);
  stream_->SetCommandHandler([this](const v1::Command& command) { executor_->Submit(command); });
  return absl::OkStatus();
}

void Agent::Run() {
  for (auto& runner : runners_) {
    runner->Start();
  }
  stream_->Run();
  for (auto& runner : runners_) {
    runner->Stop();
  }
}

void Agent::Stop() { stream_->Stop(); }

uint64_t Agent::early_snapshots() const {
  uint64_t total = 0;
  for (const auto& runner : runners_) {
    total += runner->early_snapshots();
  }
  return total;
}

void Agent::OnWatchThresholds(const v1::WatchThresholds& message) {
  if (options_.sense_every <= absl::ZeroDuration()) {
    return;
  }
  std::vector<std::string> errors;
  std::shared_ptr<const ThresholdSet> set = ThresholdSet::Build(message, config_.labels, &errors);
  for (const std::string& e : errors) {
    spdlog::warn("controller thresholds: {}; left to the collection rounds", e);
  }
  // Which watched metrics some collector senses; the others wait for the rounds.
  std::vector<std::string> sensed, unsensed;
  for (const std::string& metric : set->metrics()) {
    bool found = false;
    for (const auto& runner : runners_) {
      const std::vector<std::string>& gauges = runner->sensed_gauges();
      found = found || std::find(gauges.begin(), gauges.end(), metric) != gauges.end();
    }
    (found ? sensed : unsensed).push_back(metric);
  }
  const std::string previous = watch_summary_;
  watch_summary_ = absl::StrCat(
      set->size(), " threshold(s); sensed every ", absl::FormatDuration(options_.sense_every), ": ",
      sensed.empty() ? "none" : absl::StrJoin(sensed, ", "),
      "; at the rounds only: ", unsensed.empty() ? "none" : absl::StrJoin(unsensed, ", "));
  // Every Welcome brings the set again: a line only when it changed.
  if (watch_summary_ != previous) {
    spdlog::info("watching between rounds: {}", watch_summary_);
  }
  watch_.Replace(std::move(set));
}

void Agent::OnCollectDiagnostics(const v1::CollectDiagnostics& request) {
  // Each runner answers on its own thread; the last one to answer sends the message.
  struct Gather {
    absl::Mutex mu;
    int waiting ABSL_GUARDED_BY(mu) = 0;
    v1::AgentMessage message ABSL_GUARDED_BY(mu);
  };
  auto gather = std::make_shared<Gather>();
  std::vector<CollectorRunner*> asked;
  for (auto& runner : runners_) {
    bool wanted = request.names().empty();
    for (const std::string& name : request.names()) {
      for (const std::string& have : runner->diagnostic_names()) {
        wanted = wanted || DiagnosticNameMatches(name, have);
      }
    }
    if (wanted) {
      asked.push_back(runner.get());
    }
  }
  {
    absl::MutexLock lock(&gather->mu);
    gather->waiting = static_cast<int>(asked.size());
    gather->message.mutable_diagnostics()->set_request_id(request.request_id());
  }
  if (asked.empty()) {
    absl::MutexLock lock(&gather->mu);
    stream_->Send(gather->message);
    return;
  }
  std::vector<std::string> names(request.names().begin(), request.names().end());
  for (CollectorRunner* runner : asked) {
    runner->RequestDiagnostics(names, [this, gather](std::vector<v1::DiagnosticTable> tables) {
      absl::MutexLock lock(&gather->mu);
      for (auto& table : tables) {
        *gather->message.mutable_diagnostics()->add_tables() = std::move(table);
      }
      if (--gather->waiting == 0) {
        stream_->Send(gather->message);
      }
    });
  }
}

}  // namespace vigil::agent
