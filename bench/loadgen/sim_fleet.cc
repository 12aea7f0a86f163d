#include "bench/loadgen/sim_fleet.h"

#include <cstdio>
#include <deque>
#include <map>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/loadgen/agent_policy.h"
#include "bench/loadgen/reconnect_backoff.h"
#include "common/agent_channel.h"
#include "common/wire_metadata.h"
#include "vigil/v1/agent_service.grpc.pb.h"

namespace vigil::loadgen {

using v1::AgentMessage;
using v1::ControllerMessage;

// One attempt: a callback stream from Hello to its end. Owned by gRPC from construction until
// OnDone, which hands the outcome to its agent and deletes it. Its state is guarded by the
// agent's mutex.
class SimStream final : public grpc::ClientBidiReactor<AgentMessage, ControllerMessage> {
 public:
  SimStream(SimAgent* agent, v1::AgentService::Stub* stub, const v1::Hello& hello,
            size_t max_outbox);

  // Queues a message; false (nothing queued) when the outbox is full or writing failed.
  // Caller holds the agent's mutex.
  bool Write(AgentMessage message);
  // A batch to fill: the last one written, cleared, with its parts kept (a few dozen allocations
  // a round saved, on the cores the controller is measured on), or a new one.
  // Caller holds the agent's mutex.
  std::unique_ptr<v1::TelemetryBatch> TakeBatch();
  // Ends the stream; OnDone follows. Caller holds the agent's mutex.
  void Cancel() { context_.TryCancel(); }

 private:
  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;
  void ReleaseHold();  // once, when reading or writing failed

  SimAgent* const agent_;
  const size_t max_outbox_;
  grpc::ClientContext context_;
  ControllerMessage in_;  // touched by gRPC only between StartRead and OnReadDone
  std::deque<AgentMessage> outbox_;
  std::unique_ptr<v1::TelemetryBatch> spare_;
  bool writing_ = false;
  bool failed_ = false;
  bool hold_released_ = false;
};

// One simulated agent across all of its streams. Its methods run on the scheduler thread, the
// watcher thread and gRPC's threads; one mutex guards everything.
class SimAgent {
 public:
  SimAgent(Fleet* fleet, int index)
      : fleet_(fleet),
        index_(index),
        backoff_(fleet->options().initial_backoff, fleet->options().max_backoff),
        rng_(std::random_device{}() ^ (static_cast<uint64_t>(index) << 20)) {
    const FleetOptions& o = fleet->options();
    id_ = absl::StrCat(o.id_prefix, "-", index);
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    send_offset_ = o.send_spread * unit(rng_);
    hello_ = fleet->model().MakeHello(id_, absl::ToInt64Milliseconds(o.interval),
                                      absl::StrFormat("%016x", rng_()));
  }

  int index() const { return index_; }

  // Makes the channel ahead of the first attempt (it stays idle until a stream starts): an
  // agent process has its channel before it connects, and a storm of first attempts should
  // measure the controller, not this process building thousands of channels.
  void Prepare() {
    absl::MutexLock lock(&mu_);
    if (channel_ == nullptr) {
      MakeChannel();
    }
  }

  void Attempt(uint64_t epoch) {
    absl::MutexLock lock(&mu_);
    if (stopping_ || epoch != epoch_) {
      return;
    }
    AttemptLocked();
  }

  void Round(uint64_t epoch) {
    absl::MutexLock lock(&mu_);
    if (stopping_ || epoch != epoch_ || state_ != State::kStreaming || stream_ == nullptr) {
      return;
    }
    const FleetOptions& o = fleet_->options();
    FleetCounters& c = fleet_->counters();
    const absl::Time now = absl::Now();
    if (now >= next_round_ + send_offset_) {
      AgentMessage message;
      message.set_allocated_telemetry(stream_->TakeBatch().release());
      fleet_->model().FillBatch(static_cast<uint64_t>(index_), next_sequence_,
                                absl::ToUnixMillis(next_round_ + send_offset_), !declared_,
                                message.mutable_telemetry(), o.snapshots);
      if (stream_->Write(std::move(message))) {
        const int samples = fleet_->model().samples_per_batch() * o.snapshots;
        c.batches_sent.fetch_add(1, std::memory_order_relaxed);
        c.samples_sent.fetch_add(samples, std::memory_order_relaxed);
        in_flight_.push_back(next_sequence_);
        ++next_sequence_;
        declared_ = true;
        last_write_ = now;
      } else {
        // The real agent would spool it; here it is only counted.
        c.rounds_skipped.fetch_add(1, std::memory_order_relaxed);
      }
      // A round that overran skips the missed slots, like the agent's collector.
      while (next_round_ + send_offset_ <= now) {
        next_round_ += o.interval;
      }
    } else if (now >= last_write_ + heartbeat_) {
      AgentMessage beat;
      beat.mutable_telemetry();  // sequence 0: nothing to store or acknowledge
      if (stream_->Write(std::move(beat))) {
        c.heartbeats.fetch_add(1, std::memory_order_relaxed);
      }
      last_write_ = now;
    }
    fleet_->Schedule(std::min(next_round_ + send_offset_, last_write_ + heartbeat_), this,
                     Fleet::EventKind::kRound, epoch_);
  }

  void WelcomeDeadline(uint64_t epoch) {
    absl::MutexLock lock(&mu_);
    if (epoch != epoch_ || state_ != State::kConnecting || stream_ == nullptr) {
      return;
    }
    cancelled_for_welcome_ = true;
    stream_->Cancel();
  }

  void ChannelWatchDone(uint64_t epoch) {
    absl::MutexLock lock(&mu_);
    if (stopping_ || epoch != epoch_ || state_ != State::kWatching) {
      return;
    }
    const grpc_connectivity_state state = channel_->GetState(false);
    const absl::Time now = absl::Now();
    if (state == GRPC_CHANNEL_READY) {
      AttemptLocked();
      return;
    }
    if (now < watch_deadline_) {
      fleet_->Watch(channel_, state, watch_deadline_, this, epoch_);
      return;
    }
    const FleetOptions& o = fleet_->options();
    if (now - down_since_ >= o.fresh_channel_after &&
        now - fresh_channel_at_ >= o.fresh_channel_after) {
      // Whatever state the old channel is stuck in, a new one starts from scratch.
      MakeChannel();
      fresh_channel_at_ = now;
      fleet_->counters().fresh_channels.fetch_add(1, std::memory_order_relaxed);
    }
    AttemptLocked();
  }

  using State = AgentState;
  AgentCensus Now() {
    absl::MutexLock lock(&mu_);
    return AgentCensus{state_, state_since_, next_attempt_, attempted_};
  }

  void Stop() {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    ++epoch_;  // every pending timer and watch is now stale
    if (stream_ != nullptr) {
      stream_->Cancel();
    }
  }

  // From the stream's reactions.
  void OnMessage(SimStream* stream, const ControllerMessage& message) {
    absl::MutexLock lock(&mu_);
    if (stream != stream_) {
      return;
    }
    FleetCounters& c = fleet_->counters();
    const FleetOptions& o = fleet_->options();
    if (message.has_welcome() && state_ == State::kConnecting) {
      SetState(State::kStreaming);
      ++epoch_;
      CountWelcome(&ever_welcomed_, c);
      backoff_.Reset();
      declared_ = false;  // a new stream, a new series dictionary
      const absl::Time now = absl::Now();
      const StreamPace pace =
          Welcomed(o, message.welcome(), now, silence_timeout_, &next_sequence_);
      heartbeat_ = pace.heartbeat;
      silence_timeout_ = pace.silence_timeout;
      next_round_ = pace.next_round;
      last_write_ = now;
      fleet_->Schedule(std::min(next_round_ + send_offset_, last_write_ + heartbeat_), this,
                       Fleet::EventKind::kRound, epoch_);
    } else if (message.has_ack()) {
      Acknowledged(message.ack().sequence(),
                   static_cast<uint64_t>(fleet_->model().samples_per_batch()) * o.snapshots,
                   &in_flight_, c);
    }
  }

  // The fleet to tell StreamGone() once the stream itself is destroyed (null: not this agent's
  // current stream). Once the count is zero, Fleet::Stop returns and the fleet, this agent and
  // its channel may be destroyed, so nothing of the stream (its ClientContext above all) may
  // outlive that call.
  Fleet* OnStreamDone(SimStream* stream, const grpc::Status& status,
                      const std::multimap<grpc::string_ref, grpc::string_ref>& trailers) {
    Fleet* const fleet = fleet_;
    return StreamDone(stream, status, trailers) ? fleet : nullptr;
  }

 private:
  // True when `stream` was this agent's current stream (then counted as gone by the caller).
  bool StreamDone(SimStream* stream, const grpc::Status& status,
                  const std::multimap<grpc::string_ref, grpc::string_ref>& trailers) {
    absl::MutexLock lock(&mu_);
    if (stream != stream_) {
      return false;
    }
    stream_ = nullptr;
    FleetCounters& c = fleet_->counters();
    const FleetOptions& o = fleet_->options();
    c.batches_unacked.fetch_add(in_flight_.size(), std::memory_order_relaxed);
    in_flight_.clear();
    const bool was_streaming = state_ == State::kStreaming;
    if (was_streaming) {
      c.streaming.fetch_sub(1);
    }
    if (stopping_) {
      SetState(State::kStopped);
      return true;
    }
    const absl::Time now = absl::Now();
    std::string retry_after;
    auto it = trailers.find(grpc::string_ref(kRetryAfterMsKey.data(), kRetryAfterMsKey.size()));
    if (it != trailers.end()) {
      retry_after.assign(it->second.data(), it->second.size());
    }
    const std::string message = status.error_message();
    const std::optional<absl::Duration> hinted =
        CountStreamEnd(StreamEnd{.code = static_cast<int>(status.error_code()),
                                 .message = message,
                                 .was_streaming = was_streaming,
                                 .cancelled_for_welcome = cancelled_for_welcome_,
                                 .silent_ourselves = now - last_write_ >= silence_timeout_,
                                 .retry_after = it != trailers.end() ? &retry_after : nullptr},
                       o, id_, &dropped_in_phase_, c);
    if (was_streaming) {
      backoff_.Reset();
      down_since_ = now;
    }
    const absl::Duration hint = hinted.value_or(absl::ZeroDuration());
    ++epoch_;
    const grpc_connectivity_state state = channel_->GetState(true);
    if (state == GRPC_CHANNEL_READY || hinted.has_value()) {
      // Connected, yet the stream failed: the hint, if any, plus full jitter in [0, backoff].
      SetState(State::kWaiting);
      next_attempt_ = now + backoff_.Next(hint, rng_);
      fleet_->Schedule(next_attempt_, this, Fleet::EventKind::kAttempt, epoch_);
      return true;
    }
    // Not connected: the channel's own reconnect attempts pace us, up to max_backoff.
    SetState(State::kWatching);
    watch_deadline_ = now + o.max_backoff;
    fleet_->Watch(channel_, state, watch_deadline_, this, epoch_);
    return true;
  }

 private:
  void SetState(State state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    state_ = state;
    state_since_ = absl::Now();
  }

  void MakeChannel() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const FleetOptions& o = fleet_->options();
    grpc::ChannelArguments args = AgentChannelArguments();  // the agent's own settings
    // Channel tracing costs every connection attempt in a process holding thousands of them;
    // a real agent's single channel would not notice it.
    args.SetInt(GRPC_ARG_ENABLE_CHANNELZ, 0);
    // Its own connection, as a separate host would have: a private subchannel pool and
    // arguments no other channel shares.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("vigil.loadgen.agent", index_);
    args.SetInt("vigil.loadgen.generation", ++channel_generation_);
    std::shared_ptr<grpc::ChannelCredentials> credentials =
        o.credentials ? o.credentials(index_) : nullptr;
    channel_ = grpc::CreateCustomChannel(
        o.target, credentials ? credentials : grpc::InsecureChannelCredentials(), args);
    stub_ = v1::AgentService::NewStub(channel_);
  }

  void AttemptLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (channel_ == nullptr) {
      MakeChannel();
    }
    if (!attempted_) {
      attempted_ = true;
      down_since_ = absl::Now();
    }
    const FleetOptions& o = fleet_->options();
    const uint32_t phase = o.phase != nullptr ? o.phase->load() : 0;
    if (attempted_in_phase_ != phase + 1) {
      attempted_in_phase_ = phase + 1;
      fleet_->counters().phase_attempted.fetch_add(1);
    }
    ++epoch_;
    SetState(State::kConnecting);
    cancelled_for_welcome_ = false;
    fleet_->StreamStarted();
    fleet_->counters().attempts.fetch_add(1, std::memory_order_relaxed);
    stream_ = new SimStream(this, stub_.get(), hello_, fleet_->options().max_outbox);
    fleet_->Schedule(absl::Now() + fleet_->options().welcome_timeout, this,
                     Fleet::EventKind::kWelcomeDeadline, epoch_);
  }

  Fleet* const fleet_;
  const int index_;
  std::string id_;
  v1::Hello hello_;
  absl::Duration send_offset_;

  absl::Mutex mu_;
  State state_ ABSL_GUARDED_BY(mu_) = State::kWaiting;
  absl::Time state_since_ ABSL_GUARDED_BY(mu_) = absl::Now();
  absl::Time next_attempt_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;  // changes with every state change: stale timers
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  SimStream* stream_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool cancelled_for_welcome_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<grpc::Channel> channel_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<v1::AgentService::Stub> stub_ ABSL_GUARDED_BY(mu_);
  int channel_generation_ ABSL_GUARDED_BY(mu_) = 0;
  ReconnectBackoff backoff_ ABSL_GUARDED_BY(mu_);
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  absl::Time down_since_ ABSL_GUARDED_BY(mu_) = absl::Now();
  absl::Time fresh_channel_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time watch_deadline_ ABSL_GUARDED_BY(mu_);
  bool ever_welcomed_ ABSL_GUARDED_BY(mu_) = false;
  bool attempted_ ABSL_GUARDED_BY(mu_) = false;
  uint32_t attempted_in_phase_ ABSL_GUARDED_BY(mu_) = 0;  // phase + 1 of the last attempt
  uint32_t dropped_in_phase_ ABSL_GUARDED_BY(mu_) = 0;  // phase + 1 of the last drop counted
  // The stream.
  uint64_t next_sequence_ ABSL_GUARDED_BY(mu_) = 1;
  bool declared_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time next_round_ ABSL_GUARDED_BY(mu_);
  absl::Time last_write_ ABSL_GUARDED_BY(mu_);
  // The controller's silence timeout, from its Welcome.
  absl::Duration silence_timeout_ ABSL_GUARDED_BY(mu_) = absl::Milliseconds(2500);
  absl::Duration heartbeat_ ABSL_GUARDED_BY(mu_) = absl::Seconds(1);
  std::deque<uint64_t> in_flight_ ABSL_GUARDED_BY(mu_);  // sequences sent, not yet acknowledged

  friend class SimStream;
};

SimStream::SimStream(SimAgent* agent, v1::AgentService::Stub* stub, const v1::Hello& hello,
                     size_t max_outbox)
    : agent_(agent), max_outbox_(max_outbox) {
  stub->async()->Connect(&context_, this);
  AgentMessage first;
  *first.mutable_hello() = hello;
  outbox_.push_back(std::move(first));
  // Writes start from the scheduler thread, outside reactions: the hold keeps the call open
  // until reading or writing has failed.
  AddHold();
  writing_ = true;
  StartWrite(&outbox_.front());
  StartRead(&in_);
  StartCall();
}

bool SimStream::Write(AgentMessage message) {
  if (failed_ || outbox_.size() >= max_outbox_) {
    return false;
  }
  outbox_.push_back(std::move(message));
  if (!writing_) {
    writing_ = true;
    StartWrite(&outbox_.front());
  }
  return true;
}

std::unique_ptr<v1::TelemetryBatch> SimStream::TakeBatch() {
  if (spare_ == nullptr) {
    return std::make_unique<v1::TelemetryBatch>();
  }
  spare_->Clear();
  return std::move(spare_);
}

void SimStream::ReleaseHold() {
  if (!hold_released_) {
    hold_released_ = true;
    RemoveHold();
  }
}

void SimStream::OnWriteDone(bool ok) {
  absl::MutexLock lock(&agent_->mu_);
  // Not the batch that declared the series: its definitions would be kept for nothing.
  if (spare_ == nullptr && outbox_.front().has_telemetry() &&
      outbox_.front().telemetry().snapshots_size() > 0 &&
      outbox_.front().telemetry().new_series_size() == 0) {
    spare_.reset(outbox_.front().release_telemetry());
  }
  outbox_.pop_front();
  if (!ok) {
    failed_ = true;
    outbox_.clear();
    writing_ = false;
    ReleaseHold();
    return;
  }
  if (!outbox_.empty()) {
    StartWrite(&outbox_.front());
  } else {
    writing_ = false;
  }
}

void SimStream::OnReadDone(bool ok) {
  if (!ok) {
    absl::MutexLock lock(&agent_->mu_);
    failed_ = true;
    ReleaseHold();
    return;
  }
  agent_->OnMessage(this, in_);
  StartRead(&in_);
}

void SimStream::OnDone(const grpc::Status& status) {
  Fleet* const gone = agent_->OnStreamDone(this, status, context_.GetServerTrailingMetadata());
  delete this;  // before the fleet may go: its ClientContext must not outlive the channel
  if (gone != nullptr) {
    gone->StreamGone();
  }
}

Fleet::Fleet(FleetOptions options, FleetCounters* counters)
    : options_(std::move(options)),
      counters_(counters),
      model_(options_.gauges, options_.histograms) {
  agents_.reserve(options_.indexes.size());
  for (int index : options_.indexes) {
    agents_.push_back(std::make_unique<SimAgent>(this, index));
    agents_.back()->Prepare();
  }
  scheduler_ = std::thread([this] { SchedulerLoop(); });
  watcher_ = std::thread([this] { WatcherLoop(); });
}

Fleet::~Fleet() { Stop(); }

void Fleet::Start(absl::Time start, absl::Duration ramp) {
  {
    absl::MutexLock lock(&mu_);
    started_ = true;
  }
  const int total = std::max(options_.total_agents, 1);
  for (auto& agent : agents_) {
    Schedule(start + ramp * (static_cast<double>(agent->index()) / total), agent.get(),
             EventKind::kAttempt, 0);
  }
}

void Fleet::Stop() {
  if (stopped_) {
    return;
  }
  stopped_ = true;
  for (auto& agent : agents_) {
    agent->Stop();
  }
  {
    absl::MutexLock lock(&mu_);
    // Every stream ends (cancelled) and every watch expires within max_backoff.
    auto idle = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return live_streams_ == 0 && pending_watches_ == 0;
    };
    mu_.Await(absl::Condition(&idle));
    stopping_ = true;
    wake_.Signal();
  }
  scheduler_.join();
  watch_queue_.Shutdown();
  watcher_.join();
}

std::string Fleet::Census() const {
  std::vector<AgentCensus> census;
  census.reserve(agents_.size());
  for (const auto& agent : agents_) {
    census.push_back(agent->Now());
  }
  return DescribeNotStreaming(census, absl::Now());
}

void Fleet::Schedule(absl::Time when, SimAgent* agent, EventKind kind, uint64_t epoch) {
  absl::MutexLock lock(&mu_);
  const bool earliest = events_.empty() || when < events_.top().when;
  events_.push(Event{when, agent, kind, epoch});
  if (earliest) {
    wake_.Signal();
  }
}

void Fleet::SchedulerLoop() {
  std::vector<Event> due;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      while (!stopping_) {
        const absl::Time now = absl::Now();
        if (!events_.empty() && events_.top().when <= now) {
          break;
        }
        const absl::Time until =
            events_.empty() ? now + absl::Milliseconds(100) : events_.top().when;
        wake_.WaitWithDeadline(&mu_, until);
      }
      if (stopping_) {
        return;
      }
      const absl::Time now = absl::Now();
      while (!events_.empty() && events_.top().when <= now && due.size() < 4096) {
        due.push_back(events_.top());
        events_.pop();
      }
    }
    for (const Event& e : due) {
      switch (e.kind) {
        case EventKind::kAttempt:
          e.agent->Attempt(e.epoch);
          break;
        case EventKind::kRound:
          e.agent->Round(e.epoch);
          break;
        case EventKind::kWelcomeDeadline:
          e.agent->WelcomeDeadline(e.epoch);
          break;
      }
    }
    due.clear();
  }
}

namespace {
struct WatchTag {
  std::shared_ptr<grpc::Channel> channel;  // kept alive until the notification arrives
  SimAgent* agent;
  uint64_t epoch;
};
}  // namespace

void Fleet::Watch(std::shared_ptr<grpc::Channel> channel, grpc_connectivity_state last,
                  absl::Time deadline, SimAgent* agent, uint64_t epoch) {
  {
    absl::MutexLock lock(&mu_);
    ++pending_watches_;
  }
  auto* tag = new WatchTag{channel, agent, epoch};
  channel->NotifyOnStateChange(last, absl::ToChronoTime(deadline), &watch_queue_, tag);
}

void Fleet::WatcherLoop() {
  void* raw = nullptr;
  bool ok = false;
  while (watch_queue_.Next(&raw, &ok)) {
    std::unique_ptr<WatchTag> tag(static_cast<WatchTag*>(raw));
    tag->agent->ChannelWatchDone(tag->epoch);
    tag.reset();
    absl::MutexLock lock(&mu_);
    --pending_watches_;
  }
}

void Fleet::StreamStarted() {
  absl::MutexLock lock(&mu_);
  ++live_streams_;
}

void Fleet::StreamGone() {
  absl::MutexLock lock(&mu_);
  --live_streams_;
}

}  // namespace vigil::loadgen
