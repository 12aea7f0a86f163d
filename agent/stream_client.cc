#include "agent/stream_client.h"

#include <spdlog/spdlog.h>

#include <optional>
#include <random>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/agent_channel.h"
#include "common/heartbeat.h"
#include "common/logging.h"
#include "common/status.h"
#include "common/wire_metadata.h"

namespace vigil::agent {
namespace {

using Stream = grpc::ClientReaderWriter<v1::AgentMessage, v1::ControllerMessage>;

std::shared_ptr<grpc::Channel> MakeChannel(
    const std::string& controller, const std::shared_ptr<grpc::ChannelCredentials>& credentials) {
  return grpc::CreateCustomChannel(
      controller, credentials ? credentials : grpc::InsecureChannelCredentials(),
      AgentChannelArguments());
}

std::string Describe(const absl::Status& status) {
  return absl::StrCat(absl::StatusCodeToString(status.code()), ": ", status.message());
}

}  // namespace

StreamClient::StreamClient(StreamClientOptions options, const Clock* clock)
    : options_(std::move(options)),
      clock_(clock),
      // A simulated clock moves without telling anyone, so its deadlines must be polled.
      sleeps_to_deadline_(dynamic_cast<const RealClock*>(clock) != nullptr),
      channel_(MakeChannel(options_.controller, options_.credentials)),
      stub_(v1::AgentService::NewStub(channel_)),
      credentials_(options_.credentials) {
  absl::StatusOr<std::unique_ptr<TelemetrySpool>> spool = TelemetrySpool::Open(
      TelemetrySpoolOptions{.dir = options_.spool_dir,
                            .max_bytes = options_.spool_max_bytes,
                            .agent_id = options_.hello.agent_id()});
  if (spool.ok()) {
    spool_ = std::move(*spool);
  } else {
    spdlog::error("{}; telemetry is spooled in memory only and lost if the agent restarts",
                  spool.status().message());
    spool_ = std::make_unique<TelemetrySpool>(options_.spool_max_bytes);
  }
}

StreamClient::~StreamClient() { Stop(); }

void StreamClient::PushTelemetry(Collection collection) {
  absl::MutexLock lock(&mu_);
  pending_.telemetry.push_back(std::move(collection));
}

void StreamClient::Send(v1::AgentMessage message) {
  absl::MutexLock lock(&mu_);
  if (pending_.messages.size() >= options_.max_queued_messages) {
    pending_.messages.pop_front();
  }
  pending_.messages.push_back(std::move(message));
}

void StreamClient::ResultRecorded() {
  absl::MutexLock lock(&mu_);
  wake_ = true;
}

void StreamClient::ReloadCredentials(std::shared_ptr<grpc::ChannelCredentials> credentials) {
  absl::MutexLock lock(&mu_);
  new_credentials_ = std::move(credentials);
  if (active_context_ != nullptr) {
    active_context_->TryCancel();  // the Run thread reconnects with them
  }
}

void StreamClient::Stop() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  if (active_context_ != nullptr) {
    active_context_->TryCancel();
  }
}

StreamClient::Pending StreamClient::WaitForWork(absl::Time deadline,
                                                const std::atomic<bool>* broken,
                                                bool take_messages) {
  absl::MutexLock lock(&mu_);
  auto ready = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return stopping_ || wake_ || !pending_.telemetry.empty() ||
           (take_messages && !pending_.messages.empty()) || (broken != nullptr && broken->load());
  };
  // Sleeps to the deadline: every producer and the reader change what `ready` reads under mu_
  // (the reader sets wake_ after `broken`). Only a simulated clock is polled.
  while (!ready()) {
    const absl::Time now = clock_->Now();
    if (now >= deadline) {
      break;
    }
    if (sleeps_to_deadline_) {
      mu_.AwaitWithDeadline(absl::Condition(&ready), deadline);
    } else {
      mu_.AwaitWithTimeout(absl::Condition(&ready),
                           std::min(absl::Milliseconds(100), deadline - now));
    }
  }
  wake_ = false;
  Pending out;
  out.telemetry.swap(pending_.telemetry);
  // Before a Welcome, messages wait: they need a stream the controller accepted.
  if (take_messages) {
    out.messages.swap(pending_.messages);
  }
  return out;
}

void StreamClient::SendSpoolEntry(const TelemetrySpool::Entry& entry, Stream* stream, bool* ok) {
  if (!*ok) {
    return;
  }
  v1::TelemetryBatch contained;
  if (!contained.ParseFromString(entry.batch)) {
    // Verified by its checksum, so written so by this agent: send the number (and any drop
    // reports) with no values rather than leave a hole.
    spdlog::warn("telemetry spool: round {} does not parse; sent without values", entry.sequence);
    contained.Clear();
  }
  v1::AgentMessage message;
  v1::TelemetryBatch* batch = message.mutable_telemetry();
  spool_->AttachReports(entry, batch);
  dictionary_.Translate(contained, batch);
  *ok = stream->Write(message);
  if (*ok) {
    sent_.fetch_add(1);
  }
}

void StreamClient::SpoolPending(Pending& work) {
  if (!work.telemetry.empty()) {
    spool_->Add(work.telemetry);
    work.telemetry.clear();
  }
}

bool StreamClient::WaitForChannel(absl::Time until) {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) {
        return false;
      }
    }
    const absl::Time now = clock_->Now();
    if (now >= until) {
      return false;
    }
    // Short slices: telemetry keeps going to the spool meanwhile.
    const absl::Time slice = std::min(until, now + absl::Milliseconds(100));
    if (channel_->WaitForConnected(absl::ToChronoTime(slice))) {
      return true;
    }
    Pending work = WaitForWork(now, nullptr, false);
    SpoolPending(work);
  }
}

std::string StreamClient::TotalsLine() const {
  return absl::StrCat("telemetry totals: collected=", spool_->totals().collected,
                      " sent=", sent_.load(), " acknowledged_through=", acked_.load(),
                      " dropped=", spool_->dropped(), " refused=", spool_->refused(),
                      " spooled=", spool_->entries().size(),
                      " replayed=", spool_->totals().replayed);
}

bool StreamClient::SendResults(Stream* stream, bool acks_results, uint64_t* cursor, bool* ok) {
  if (results_ == nullptr) {
    return false;
  }
  bool wrote = false;
  while (*ok) {
    const std::vector<v1::CommandResult> batch = results_->PendingAfter(*cursor, 64);
    if (batch.empty()) {
      break;
    }
    for (const v1::CommandResult& result : batch) {
      v1::AgentMessage message;
      *message.mutable_command_result() = result;
      *ok = stream->Write(message);
      if (!*ok) {
        return wrote;  // still pending: the next stream sends it again
      }
      wrote = true;
      *cursor = result.sequence();
      if (!acks_results) {
        // An older controller never acknowledges results: sent once, as it always was.
        results_->Acknowledge({result.sequence()});
      }
    }
  }
  return wrote;
}

void StreamClient::NoteStreamEnded(const absl::Status& why) {
  const bool was_connected = connected_.exchange(false);
  ++failed_attempts_;
  if (was_connected) {
    down_since_ = clock_->Now();
  }
  const std::string text = Describe(why);
  // The same outage reads differently from one attempt to the next (refused, handshake shut
  // down, ...): a new line only when the kind of failure changes.
  const std::string kind(absl::StatusCodeToString(why.code()));
  // One line per change of state, not one per retry.
  if (was_connected) {
    spdlog::warn("lost the stream to controller {}: {}; reconnecting with backoff",
                 options_.controller, text);
  } else if (kind != last_error_) {
    if (why.code() == absl::StatusCode::kAlreadyExists ||
        why.code() == absl::StatusCode::kPermissionDenied ||
        why.code() == absl::StatusCode::kUnauthenticated ||
        why.code() == absl::StatusCode::kInvalidArgument) {
      spdlog::error("controller {} refused agent '{}': {}; retrying with backoff",
                    options_.controller, options_.hello.agent_id(), why.message());
    } else {
      spdlog::warn("cannot reach controller {}: {}; retrying with backoff", options_.controller,
                   text);
    }
  }
  last_error_ = kind;
}

void StreamClient::Run() {
  std::mt19937_64 rng(std::random_device{}());
  absl::Duration backoff = options_.initial_backoff;
  down_since_ = clock_->Now();
  absl::Time fresh_channel_at = clock_->Now();
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) {
        break;
      }
    }
    const absl::Status ended = RunStream();
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) {
        break;
      }
    }
    if (connected_.load() || failed_attempts_ == 0) {
      backoff = options_.initial_backoff;
    }
    {
      absl::MutexLock lock(&mu_);
      if (new_credentials_ != nullptr) {
        // Ended to take new certificates: not a failure, reconnect now.
        connected_ = false;
        continue;
      }
    }
    NoteStreamEnded(ended);
    const grpc_connectivity_state state = channel_->GetState(true);
    if (state == GRPC_CHANNEL_READY) {
      // Connected, yet the stream failed (refused, or a controller going down): full jitter
      // in [0, backoff], so a fleet does not come back in lockstep.
      // A controller admitting a storm says when to come back: then that, plus as much jitter
      // again, so the refused spread over the time it asked for.
      std::uniform_real_distribution<double> jitter(0.0, 1.0);
      const absl::Duration wait = retry_after_ > absl::ZeroDuration()
                                      ? retry_after_ * (1 + jitter(rng))
                                      : backoff * jitter(rng);
      const absl::Time until = clock_->Now() + wait;
      while (clock_->Now() < until) {
        Pending work = WaitForWork(until, nullptr, false);
        SpoolPending(work);
        absl::MutexLock lock(&mu_);
        if (stopping_) {
          break;
        }
      }
      backoff = std::min(backoff * 2, options_.max_backoff);
      continue;
    }
    // Not connected: the channel's own (jittered, at most 0.5 s) reconnect attempts pace us;
    // a stream starts the moment one succeeds.
    if (!WaitForChannel(clock_->Now() + options_.max_backoff)) {
      const absl::Time now = clock_->Now();
      if (now - down_since_ >= options_.fresh_channel_after &&
          now - fresh_channel_at >= options_.fresh_channel_after) {
        // Whatever state the old channel is stuck in, a new one starts from scratch.
        channel_ = MakeChannel(options_.controller, credentials_);
        stub_ = v1::AgentService::NewStub(channel_);
        fresh_channel_at = now;
        spdlog::debug("replaced the channel to controller {} after {} down", options_.controller,
                      absl::FormatDuration(now - down_since_));
      }
    }
  }
  connected_ = false;
  // What was collected but not yet spooled goes to disk, for the next start.
  Pending rest;
  {
    absl::MutexLock lock(&mu_);
    rest.telemetry.swap(pending_.telemetry);
  }
  SpoolPending(rest);
  spdlog::info("{}", TotalsLine());
  if (witness_ != nullptr) {
    spdlog::info("{}", witness_->StatusLine());
  }
}

void StreamClient::DropRefusedBatch(const grpc::ClientContext& context,
                                    const grpc::Status& status) {
  const auto& trailers = context.GetServerTrailingMetadata();
  auto it = trailers.find(grpc::string_ref(kRefusedSequenceKey.data(), kRefusedSequenceKey.size()));
  uint64_t sequence = 0;
  if (it == trailers.end() ||
      !absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()), &sequence)) {
    return;
  }
  // Resending a batch the controller judged invalid would only be refused again, forever.
  if (spool_->Refuse(sequence)) {
    spdlog::error("controller refused telemetry batch {} and it is dropped ({} refused so far): {}",
                  sequence, spool_->refused(), status.error_message());
  }
}

namespace {

// The longest wait a controller's retry hint can ask for.
constexpr absl::Duration kMaxRetryHint = absl::Seconds(60);

// The retry-after-ms hint of a stream the controller could not admit yet; zero when none.
absl::Duration RetryHint(const grpc::ClientContext& context) {
  const auto& trailers = context.GetServerTrailingMetadata();
  auto it = trailers.find(grpc::string_ref(kRetryAfterMsKey.data(), kRetryAfterMsKey.size()));
  int64_t ms = 0;
  if (it == trailers.end() ||
      !absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()), &ms) || ms <= 0) {
    return absl::ZeroDuration();
  }
  // A controller that lies must not park the agent for long: the spool keeps filling meanwhile.
  return std::min(absl::Milliseconds(ms), kMaxRetryHint);
}

}  // namespace

absl::Status StreamClient::RunStream() {
  grpc::ClientContext context;
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      return absl::CancelledError("stopping");
    }
    credentials = std::move(new_credentials_);
    new_credentials_ = nullptr;
  }
  if (credentials != nullptr) {
    // A new channel: the old one keeps its TLS session, and so the old certificates.
    channel_ = MakeChannel(options_.controller, credentials);
    stub_ = v1::AgentService::NewStub(channel_);
    credentials_ = credentials;
    spdlog::info("connecting to controller {} with the reloaded certificates", options_.controller);
  }
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      return absl::CancelledError("stopping");
    }
    active_context_ = &context;
    wake_ = false;
  }
  std::unique_ptr<Stream> stream = stub_->Connect(&context);

  std::atomic<bool> broken{false};
  std::atomic<bool> welcomed{false};
  std::atomic<uint64_t> welcome_last_sequence{0};
  std::atomic<bool> acks_results{false};
  std::atomic<int64_t> heartbeat_timeout_ms{0};

  v1::AgentMessage hello;
  *hello.mutable_hello() = options_.hello;
  if (witness_ != nullptr) {
    if (std::optional<v1::AuditCheckpoint> held = witness_->Held(); held.has_value()) {
      *hello.mutable_hello()->mutable_audit_checkpoint() = std::move(*held);
    }
  }
  bool ok = stream->Write(hello);

  std::thread reader([&] {
    v1::ControllerMessage message;
    while (stream->Read(&message)) {
      switch (message.body_case()) {
        case v1::ControllerMessage::kWelcome:
          welcome_last_sequence = message.welcome().last_sequence();
          heartbeat_timeout_ms = message.welcome().heartbeat_timeout_ms();
          acks_results = message.welcome().acks_results();
          welcomed = true;
          break;
        case v1::ControllerMessage::kAck: {
          uint64_t seen = acked_.load();
          while (seen < message.ack().sequence() &&
                 !acked_.compare_exchange_weak(seen, message.ack().sequence())) {
          }
          if (results_ != nullptr && message.ack().result_sequences_size() > 0) {
            results_->Acknowledge(message.ack().result_sequences());
          }
          break;
        }
        case v1::ControllerMessage::kCollectDiagnostics:
          if (diagnostics_handler_) {
            diagnostics_handler_(message.collect_diagnostics());
          }
          break;
        case v1::ControllerMessage::kCommand:
          if (command_handler_) {
            command_handler_(message.command());
          }
          break;
        case v1::ControllerMessage::kWatchThresholds:
          if (watch_handler_) {
            watch_handler_(message.watch_thresholds());
          }
          break;
        case v1::ControllerMessage::kAuditCheckpoint:
          // Kept and synced on this thread: one small file per checkpoint the controller signs.
          if (witness_ != nullptr) {
            witness_->Offer(message.audit_checkpoint());
          }
          break;
        default:
          break;
      }
      absl::MutexLock lock(&mu_);
      wake_ = true;
    }
    broken = true;
    absl::MutexLock lock(&mu_);
    wake_ = true;
  });

  // Wait for the Welcome: it tells what the controller already holds.
  const absl::Time welcome_deadline = clock_->Now() + options_.welcome_timeout;
  while (ok && !welcomed && !broken && clock_->Now() < welcome_deadline) {
    Pending work = WaitForWork(welcome_deadline, &broken, false);
    SpoolPending(work);
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      break;
    }
  }

  absl::Status ended = absl::UnavailableError("stream closed");
  if (ok && welcomed && !broken) {
    spool_->StartStream(welcome_last_sequence, clock_->Now());
    dictionary_.Reset();
    connected_ = true;
    if (failed_attempts_ > 0 || !last_error_.empty()) {
      spdlog::info(
          "connected to controller {} as '{}' after {} failed attempt(s), {} down",
          options_.controller, options_.hello.agent_id(), failed_attempts_,
          absl::FormatDuration(absl::Trunc(clock_->Now() - down_since_, absl::Milliseconds(100))));
    } else {
      spdlog::info("connected to controller {} as '{}'", options_.controller,
                   options_.hello.agent_id());
    }
    failed_attempts_ = 0;
    last_error_.clear();
    const absl::Duration heartbeat = HeartbeatPeriod(options_.heartbeat, heartbeat_timeout_ms);
    // Resend what the controller has not acknowledged, then stream.
    for (const TelemetrySpool::Entry& entry : spool_->entries()) {
      SendSpoolEntry(entry, stream.get(), &ok);
    }
    // Every result still unacknowledged, oldest first, before any new one.
    uint64_t result_cursor = 0;
    SendResults(stream.get(), acks_results, &result_cursor, &ok);
    absl::Time last_write = clock_->Now();
    while (ok && !broken) {
      Pending work = WaitForWork(last_write + heartbeat, &broken, true);
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) {
          break;
        }
      }
      spool_->AckThrough(acked_.load());
      if (!work.telemetry.empty()) {
        SendSpoolEntry(spool_->Add(work.telemetry), stream.get(), &ok);
        last_write = clock_->Now();
      }
      for (const v1::AgentMessage& message : work.messages) {
        ok = ok && stream->Write(message);
        last_write = clock_->Now();
      }
      if (SendResults(stream.get(), acks_results, &result_cursor, &ok)) {
        last_write = clock_->Now();
      }
      if (ok && clock_->Now() >= last_write + heartbeat) {
        // Sequence 0: a heartbeat, nothing to store or acknowledge.
        v1::AgentMessage beat;
        beat.mutable_telemetry();
        ok = stream->Write(beat);
        last_write = clock_->Now();
      }
    }
  } else if (ok && !welcomed && !broken) {
    ended = absl::DeadlineExceededError("no Welcome from the controller in time");
  }

  if (!broken) {
    context.TryCancel();
  }
  reader.join();
  const grpc::Status status = stream->Finish();
  {
    absl::MutexLock lock(&mu_);
    active_context_ = nullptr;
  }
  retry_after_ = absl::ZeroDuration();
  if (!status.ok()) {
    ended = FromGrpcStatus(status);
    DropRefusedBatch(context, status);
    if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      retry_after_ = RetryHint(context);
    }
  }
  return ended;
}

}  // namespace vigil::agent
