#include "controller/ingest/agent_service.h"

#include <grpc/grpc_security_constants.h>
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <list>
#include <set>

#include "absl/base/const_init.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "common/status.h"
#include "common/wire_metadata.h"
#include "controller/ingest/agent_identity.h"
#include "controller/ingest/telemetry_validator.h"

namespace vigil::controller {

// What an agent's TLS client certificate vouches for: its DNS subjectAltNames and its common
// name. `tls` is false on plain text (--insecure, loopback only), where nothing is vouched for.
// Outside the anonymous namespace: AgentStream, which has linkage, holds one.
struct PeerIdentity {
  bool tls = false;
  std::vector<std::string> names;
};

namespace {

PeerIdentity IdentityOf(const grpc::CallbackServerContext& context) {
  PeerIdentity identity;
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth == nullptr) {
    return identity;
  }
  for (const grpc::string_ref& type :
       auth->FindPropertyValues(GRPC_TRANSPORT_SECURITY_TYPE_PROPERTY_NAME)) {
    identity.tls = identity.tls || type == GRPC_SSL_TRANSPORT_SECURITY_TYPE ||
                   type == GRPC_TLS_TRANSPORT_SECURITY_TYPE;
  }
  // "peer_dns" holds the DNS entries of the subjectAltName only (not IP, URI or e-mail ones).
  // Only those name an agent: people's certificates carry a common name but no DNS name, so a
  // user's certificate cannot pass for an agent's.
  for (const char* property : {GRPC_PEER_DNS_PROPERTY_NAME}) {
    for (const grpc::string_ref& name : auth->FindPropertyValues(property)) {
      std::string text(name.data(), name.size());
      if (std::find(identity.names.begin(), identity.names.end(), text) == identity.names.end()) {
        identity.names.push_back(std::move(text));
      }
    }
  }
  return identity;
}

// An agent over TLS is who its certificate says: one of the names the certificate carries must
// admit the id in its Hello (the id itself, or NAME.pods.vigil for the pods NAME-SUFFIX), or any
// agent holding a certificate of the fleet's CA could speak for any other.
absl::Status CheckIdentity(const PeerIdentity& identity, const std::string& peer,
                           const std::string& agent_id) {
  if (!identity.tls || std::any_of(identity.names.begin(), identity.names.end(),
                                   [&](const std::string& name) {
                                     return CertificateNameAdmits(name, agent_id);
                                   })) {
    return absl::OkStatus();
  }
  std::vector<std::string> quoted;
  bool pod_names = false;
  for (const std::string& name : identity.names) {
    quoted.push_back(absl::StrCat("'", name, "'"));
    pod_names = pod_names || absl::EndsWith(name, kPodDomain);
  }
  return absl::PermissionDeniedError(absl::StrCat(
      "certificate of peer ", peer, " names ",
      quoted.empty() ? "no DNS name (agent certificates carry their id as one)"
                     : absl::StrJoin(quoted, ", "),
      ", but the agent says it is '", agent_id, "'",
      pod_names ? " (NAME.pods.vigil admits only the pod names NAME-SUFFIX, SUFFIX being one or "
                  "two parts of 4 to 10 lowercase letters or digits)"
                : ""));
}

// True the first time `key` is seen in this process: a refused agent retries with backoff, and
// the controller says why once instead of every few seconds. Bounded; thread-safe.
bool FirstTime(const std::string& key) {
  static absl::Mutex mu(absl::kConstInit);
  static std::set<std::string>* seen = new std::set<std::string>();
  absl::MutexLock lock(&mu);
  if (seen->size() >= 10'000) {
    seen->clear();
  }
  return seen->insert(key).second;
}

// When a large share of the fleet looks silent at once, streams are ended only after this many
// silence timeouts (see WatchdogLoop).
constexpr int kMassSilenceFactor = 4;

}  // namespace

// One agent stream. Owns itself from Connect until OnDone; other threads hold it through
// shared_ptr and may call Send, Handled and Close at any time, even after the stream ended.
//
// Reading: once welcomed, a stream holds up to kMaxHeld of its agent's messages that the ingest
// thread has not finished with, and asks gRPC for the next one as soon as one arrives while it
// holds fewer. So the ingest thread rarely asks gRPC itself: asking costs gRPC 1.51 a flow-control
// write inline (16.6 % of the controller's CPU at 3,000 agents, all of it on the one ingest
// thread, which then fell behind and refused new agents at 10,000); on gRPC's own threads, that
// cost runs beside the ingest thread instead of in it. The bound keeps an agent that sends faster
// than it is handled waiting in HTTP/2 flow control, not in the controller's memory.
class AgentStream final : public grpc::ServerBidiReactor<v1::AgentMessage, v1::ControllerMessage>,
                          public std::enable_shared_from_this<AgentStream> {
 public:
  static constexpr size_t kMaxOutbox = 10'000;
  // Messages read and not yet handled, per stream (see above).
  static constexpr int kMaxHeld = 2;

  AgentStream(AgentServiceImpl* service, grpc::CallbackServerContext* context, uint64_t session)
      : service_(service),
        context_(context),
        peer_(context->peer()),
        identity_(IdentityOf(*context)),
        session_(session) {}

  void Begin() {
    absl::MutexLock lock(&mu_);
    self_ = shared_from_this();
    waiting_since_ms_ = service_->NowMs();
    reading_ = true;
    StartRead(&in_);
  }

  void Send(v1::ControllerMessage message) {
    absl::MutexLock lock(&mu_);
    if (done_ || finishing_) {
      return;
    }
    if (outbox_.size() >= kMaxOutbox) {
      // The agent stopped reading; better a reconnect than unbounded memory.
      FinishLocked(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "agent is not reading"));
      return;
    }
    outbox_.push_back(std::move(message));
    if (!writing_) {
      writing_ = true;
      StartWrite(&outbox_.front());
    }
  }

  // The ingest thread is done with one of this stream's messages (not called for one that ended
  // the stream): reads the next one unless a read is already waiting for it.
  void Handled() {
    absl::MutexLock lock(&mu_);
    if (--held_ == 0) {
      waiting_since_ms_ = service_->NowMs();
    }
    MaybeReadLocked();
  }

  // Since when the controller has been waiting for this agent to say something (unix ms), or 0
  // while it holds a message of the agent's it has not handled yet. Silence is judged by this,
  // not by when messages are handled: telemetry queued behind a storm of Hellos is not silence.
  int64_t waiting_since_ms() const { return waiting_since_ms_.load(std::memory_order_relaxed); }

  void Close(const grpc::Status& status) {
    absl::MutexLock lock(&mu_);
    FinishLocked(status);
  }

  // Ends the stream refusing the batch `sequence`: the agent reads it from the trailing metadata
  // and drops that batch instead of resending it forever.
  void CloseRefusing(const grpc::Status& status, uint64_t sequence) {
    absl::MutexLock lock(&mu_);
    if (done_ || finishing_) {
      return;
    }
    if (sequence != 0) {
      context_->AddTrailingMetadata(std::string(kRefusedSequenceKey), absl::StrCat(sequence));
    }
    FinishLocked(status);
  }

  // Ends a stream that may be stuck in flow control.
  void Cancel() {
    absl::MutexLock lock(&mu_);
    if (!done_) {
      context_->TryCancel();
    }
  }

  const std::string& peer() const { return peer_; }
  // True the first time only: the watchdog ends a silent stream once.
  bool MarkSilent() { return !marked_silent_.exchange(true); }
  // Read when the stream starts, while the context is certainly alive.
  const PeerIdentity& identity() const { return identity_; }
  uint64_t session() const { return session_; }

  // Ingest-thread state.
  std::string agent_id;
  bool accepted = false;
  std::vector<SeriesState*> dictionary;

 private:
  void OnReadDone(bool ok) override {
    if (!ok) {
      Close(grpc::Status::OK);
      return;
    }
    // Taken out of in_ before the read is marked finished: from then on, the ingest thread's
    // Handled may ask gRPC to read the next message into in_.
    auto message = std::make_unique<v1::AgentMessage>();
    message->Swap(&in_);
    {
      absl::MutexLock lock(&mu_);
      reading_ = false;
      ++held_;
      waiting_since_ms_ = 0;
    }
    if (first_read_) {
      // Nothing is read past a Hello until it is welcomed (Handled after the Welcome).
      first_read_ = false;
      // A new stream's first message is admitted only at a pace the ingest thread can serve;
      // beyond that the agent is told when to come back rather than queued without bound.
      if (std::optional<absl::Duration> retry_after =
              service_->AdmitNewStream({shared_from_this(), std::move(message)})) {
        CloseBusy(*retry_after);
      }
      return;
    }
    // Queued before the next read is asked for, so the agent's messages keep their order.
    service_->Enqueue({shared_from_this(), std::move(message)});
    absl::MutexLock lock(&mu_);
    MaybeReadLocked();
  }

  void MaybeReadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (done_ || finishing_ || reading_ || held_ >= kMaxHeld) {
      return;
    }
    reading_ = true;
    StartRead(&in_);
  }

  // Ends a stream the controller cannot admit yet: RESOURCE_EXHAUSTED with the retry hint.
  void CloseBusy(absl::Duration retry_after) {
    absl::MutexLock lock(&mu_);
    if (done_ || finishing_) {
      return;
    }
    context_->AddTrailingMetadata(std::string(kRetryAfterMsKey),
                                  absl::StrCat(absl::ToInt64Milliseconds(retry_after)));
    FinishLocked(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                              absl::StrCat("controller is admitting other agents; retry after ",
                                           absl::FormatDuration(retry_after))));
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    outbox_.pop_front();
    if (!ok) {
      outbox_.clear();
    }
    if (!outbox_.empty() && !finishing_) {
      StartWrite(&outbox_.front());
      return;
    }
    writing_ = false;
    if (finish_pending_) {
      finish_pending_ = false;
      Finish(finish_status_);
    }
  }

  void OnCancel() override { Close(grpc::Status(grpc::StatusCode::CANCELLED, "stream cancelled")); }

  void OnDone() override {
    std::shared_ptr<AgentStream> self;
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
      self.swap(self_);
    }
    service_->Enqueue({self, nullptr});
    // `self` may be the last reference: nothing may touch members after this point.
  }

  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (done_ || finishing_) {
      return;
    }
    finishing_ = true;
    if (writing_) {
      // One operation at a time: finish once the write in flight completes.
      finish_pending_ = true;
      finish_status_ = status;
      return;
    }
    Finish(status);
  }

  AgentServiceImpl* const service_;
  grpc::CallbackServerContext* const context_;
  const std::string peer_;
  const PeerIdentity identity_;
  const uint64_t session_;
  v1::AgentMessage in_;  // touched by gRPC only between StartRead and OnReadDone
  bool first_read_ = true;  // touched only by OnReadDone, which gRPC never runs concurrently
  std::atomic<int64_t> waiting_since_ms_{0};
  std::atomic<bool> marked_silent_{false};

  absl::Mutex mu_;
  std::shared_ptr<AgentStream> self_ ABSL_GUARDED_BY(mu_);
  // The front is being written (StartWrite keeps its address). A list, not a deque: empty almost
  // always, and an empty deque still holds a 512-byte block and its map, per agent.
  std::list<v1::ControllerMessage> outbox_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_pending_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status finish_status_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool reading_ ABSL_GUARDED_BY(mu_) = false;  // a StartRead is waiting for the agent
  int held_ ABSL_GUARDED_BY(mu_) = 0;          // read, and not yet Handled
};

AgentServiceImpl::AgentServiceImpl(FleetState* fleet, const Clock* clock, Options options)
    : fleet_(fleet), clock_(clock), options_(options) {}

AgentServiceImpl::~AgentServiceImpl() { Shutdown(); }

void AgentServiceImpl::Start() {
  ingest_thread_ = std::thread([this] { IngestLoop(); });
  watchdog_thread_ = std::thread([this] { WatchdogLoop(); });
}

void AgentServiceImpl::StopWatchdog() {
  {
    absl::MutexLock lock(&mu_);
    watchdog_stopping_ = true;
  }
  if (watchdog_thread_.joinable()) {
    watchdog_thread_.join();
  }
}

void AgentServiceImpl::Shutdown() {
  std::vector<std::shared_ptr<AgentStream>> streams;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      return;
    }
    stopping_ = true;
    for (auto& [id, stream] : streams_) {
      streams.push_back(stream);
    }
  }
  for (auto& stream : streams) {
    stream->Close(grpc::Status(grpc::StatusCode::UNAVAILABLE, "controller shutting down"));
  }
  if (ingest_thread_.joinable()) {
    ingest_thread_.join();
  }
  if (watchdog_thread_.joinable()) {
    watchdog_thread_.join();
  }
}

grpc::ServerBidiReactor<v1::AgentMessage, v1::ControllerMessage>* AgentServiceImpl::Connect(
    grpc::CallbackServerContext* context) {
  auto stream = std::make_shared<AgentStream>(this, context, next_session_++);
  {
    // Watched for silence until its Hello is accepted: a peer that opens streams and says
    // nothing must not hold them forever.
    absl::MutexLock lock(&mu_);
    opening_[stream->session()] = stream;
  }
  stream->Begin();
  return stream.get();
}

int64_t AgentServiceImpl::NowMs() const { return absl::ToUnixMillis(clock_->Now()); }

std::optional<absl::Duration> AgentServiceImpl::AdmitNewStream(Work work) {
  const int64_t now_ms = NowMs();
  absl::MutexLock lock(&mu_);
  RollAdmissionWindow(now_ms);
  const int64_t delay_ms = QueueDelayMsLocked(now_ms);
  bool behind = delay_ms > absl::ToInt64Milliseconds(options_.max_queue_delay);
  if (behind && delay_ms <= absl::ToInt64Milliseconds(options_.behind_admission_ceiling) &&
      behind_admitted_in_window_ < options_.behind_admissions_per_second &&
      pending_hellos_ < options_.max_pending_hellos) {
    ++behind_admitted_in_window_;
    behind = false;  // one of the few let in while behind
  }
  if (!stopping_ && (pending_hellos_ >= options_.max_pending_hellos || behind)) {
    ++refused_in_window_;
    ++refused_busy_;
    // Spread the refused over the time the ingest thread needs to admit them at the rate it
    // admitted agents lately; the agent adds jitter of its own on top.
    const double rate = std::max<double>(admitted_last_window_, 100);
    const double backlog = pending_hellos_ + refused_in_window_ + refused_last_window_;
    absl::Duration hint = absl::Seconds(backlog / rate);
    if (behind) {
      hint = std::max(hint, 2 * absl::Milliseconds(delay_ms));
    }
    return std::clamp(hint, absl::Milliseconds(250), absl::Seconds(15));
  }
  ++pending_hellos_;
  work.first = true;
  work.enqueued_ms = now_ms;
  queue_.push_back(std::move(work));
  return std::nullopt;
}

void AgentServiceImpl::RollAdmissionWindow(int64_t now_ms) {
  if (now_ms - window_start_ms_ < 1000) {
    return;
  }
  const bool consecutive = now_ms - window_start_ms_ < 2000;
  admitted_last_window_ = consecutive ? admitted_in_window_ : 0;
  refused_last_window_ = consecutive ? refused_in_window_ : 0;
  admitted_in_window_ = 0;
  refused_in_window_ = 0;
  behind_admitted_in_window_ = 0;
  window_start_ms_ = now_ms;
}

absl::Duration AgentServiceImpl::queue_delay() const {
  const int64_t now_ms = NowMs();
  absl::MutexLock lock(&mu_);
  return absl::Milliseconds(QueueDelayMsLocked(now_ms));
}

int64_t AgentServiceImpl::QueueDelayMsLocked(int64_t now_ms) const {
  int64_t oldest = handling_since_ms_.load(std::memory_order_relaxed);
  if (!queue_.empty() && (oldest == 0 || queue_.front().enqueued_ms < oldest)) {
    oldest = queue_.front().enqueued_ms;
  }
  return oldest == 0 ? 0 : std::max<int64_t>(0, now_ms - oldest);
}

bool AgentServiceImpl::SendTo(const std::string& agent_id, v1::ControllerMessage message) {
  std::shared_ptr<AgentStream> stream;
  {
    absl::MutexLock lock(&mu_);
    auto it = streams_.find(agent_id);
    if (it == streams_.end()) {
      return false;
    }
    stream = it->second;
  }
  stream->Send(std::move(message));
  return true;
}

void AgentServiceImpl::Enqueue(Work work) {
  work.enqueued_ms = NowMs();
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(work));
}

namespace {

// Runs the calling thread `steps` nice levels below the thread that made it (Linux gives each
// thread its own nice value), at most 19. Unprivileged, it cannot be undone: nothing needs to.
void LowerCallingThreadPriority(int steps) {
  const auto tid = static_cast<id_t>(gettid());
  errno = 0;
  const int base = getpriority(PRIO_PROCESS, tid);
  if (base == -1 && errno != 0) {
    spdlog::warn("ingest thread keeps its priority: getpriority: {}", std::strerror(errno));
    return;
  }
  const int target = std::min(base + steps, 19);
  if (setpriority(PRIO_PROCESS, tid, target) != 0) {
    spdlog::warn("ingest thread keeps its priority: setpriority({}): {}", target,
                 std::strerror(errno));
  }
}

}  // namespace

void AgentServiceImpl::IngestLoop() {
  pthread_setname_np(pthread_self(), "vigil-ingest");  // as top -H and perf show it
  if (options_.ingest_nice > 0) {
    LowerCallingThreadPriority(options_.ingest_nice);
  }
  while (true) {
    std::deque<Work> batch;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]()
                       ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_ || !queue_.empty(); };
      mu_.Await(absl::Condition(&ready));
      if (stopping_ && queue_.empty()) {
        return;
      }
      batch.swap(queue_);
      handling_since_ms_ = std::max<int64_t>(batch.front().enqueued_ms, 1);
    }
    for (Work& work : batch) {
      Handle(work);
    }
    handling_since_ms_ = 0;
  }
}

void AgentServiceImpl::Handle(Work& work) {
  const absl::Time now = clock_->Now();
  if (work.stream == nullptr) {  // housekeeping
    EvictGone(now);
    return;
  }
  AgentStream& stream = *work.stream;
  if (work.first) {
    absl::MutexLock lock(&mu_);
    --pending_hellos_;
    ++admitted_in_window_;
  }
  if (work.message == nullptr) {  // the stream is over
    if (!stream.accepted) {
      absl::MutexLock lock(&mu_);
      opening_.erase(stream.session());
      return;
    }
    fleet_->Disconnect(stream.agent_id, stream.session(), now);
    {
      absl::MutexLock lock(&mu_);
      auto it = streams_.find(stream.agent_id);
      if (it != streams_.end() && it->second.get() == &stream) {
        streams_.erase(it);
      }
    }
    spdlog::info("agent '{}' disconnected ({})", stream.agent_id, stream.peer());
    if (observer_) {
      observer_->OnDisconnected(stream.agent_id, now);
    }
    return;
  }
  ++messages_;
  v1::AgentMessage& message = *work.message;
  if (!stream.accepted) {
    if (message.body_case() != v1::AgentMessage::kHello) {
      stream.Close(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                "the first message on a stream must be Hello"));
      return;
    }
    const v1::Hello& hello = message.hello();
    if (absl::Status valid = ValidateHello(hello, options_.limits); !valid.ok()) {
      Refuse(stream, valid, refused_hello_);
      return;
    }
    if (absl::Status identity = CheckIdentity(stream.identity(), stream.peer(), hello.agent_id());
        !identity.ok()) {
      if (FirstTime(
              absl::StrCat(absl::StrJoin(stream.identity().names, ","), "|", hello.agent_id()))) {
        spdlog::warn("refused agent stream: {}", identity.message());
      } else {
        spdlog::debug("refused agent stream again: {}", identity.message());
      }
      stream.Close(ToGrpcStatus(identity));
      return;
    }
    absl::StatusOr<uint64_t> last = fleet_->Connect(hello, stream.peer(), stream.session(), now);
    if (!last.ok()) {
      spdlog::warn("refused agent stream from {}: {}", stream.peer(), last.status().message());
      stream.Close(ToGrpcStatus(last.status()));
      return;
    }
    stream.agent_id = hello.agent_id();
    stream.accepted = true;
    {
      absl::MutexLock lock(&mu_);
      streams_[stream.agent_id] = work.stream;
      opening_.erase(stream.session());
    }
    spdlog::info("agent '{}' connected from {} (host {}, version {})", hello.agent_id(),
                 stream.peer(), hello.hostname(), hello.version());
    v1::ControllerMessage welcome;
    welcome.mutable_welcome()->set_controller_version(VIGIL_VERSION);
    welcome.mutable_welcome()->set_last_sequence(*last);
    welcome.mutable_welcome()->set_server_time_unix_ms(absl::ToUnixMillis(now));
    welcome.mutable_welcome()->set_heartbeat_timeout_ms(
        absl::ToInt64Milliseconds(options_.silence_timeout));
    welcome.mutable_welcome()->set_acks_results(true);
    stream.Send(std::move(welcome));
    if (observer_) {
      if (std::optional<v1::AgentInfo> info = fleet_->Info(stream.agent_id)) {
        observer_->OnConnected(*info);
      }
      if (hello.has_audit_checkpoint()) {
        observer_->OnWitness(stream.agent_id, hello.audit_checkpoint());
      }
    }
    stream.Handled();
    return;
  }
  switch (message.body_case()) {
    case v1::AgentMessage::kTelemetry: {
      const v1::TelemetryBatch& batch = message.telemetry();
      const StreamView view{.dictionary_size = stream.dictionary.size(),
                            .last_sequence = fleet_->LastSequence(stream.agent_id)};
      if (absl::Status valid = ValidateBatch(batch, view, options_.limits, now); !valid.ok()) {
        Refuse(stream, valid, refused_telemetry_, batch.sequence());
        return;
      }
      absl::StatusOr<bool> applied = fleet_->Apply(stream.agent_id, batch, stream.dictionary, now);
      if (!applied.ok()) {
        Refuse(stream, applied.status(), refused_budget_, batch.sequence());
        return;
      }
      const bool fresh = *applied;
      if (batch.sequence() != 0) {
        if (fresh && observer_) {
          observer_->OnTelemetry(stream.agent_id, batch, stream.dictionary);
        }
        if (!fleet_->acknowledge_when_stored()) {
          v1::ControllerMessage ack;
          ack.mutable_ack()->set_sequence(batch.sequence());
          stream.Send(std::move(ack));
        }
      }
      break;
    }
    case v1::AgentMessage::kDiagnostics:
      if (absl::Status valid = ValidateDiagnostics(message.diagnostics(), options_.limits);
          !valid.ok()) {
        Refuse(stream, valid, refused_diagnostics_);
        return;
      }
      fleet_->Touch(stream.agent_id, now);
      fleet_->SetDiagnostics(stream.agent_id, message.diagnostics());
      if (observer_) {
        observer_->OnDiagnostics(stream.agent_id, message.diagnostics());
      }
      break;
    case v1::AgentMessage::kCommandResult:
      if (absl::Status valid = ValidateCommandResult(message.command_result(), options_.limits);
          !valid.ok()) {
        Refuse(stream, valid, refused_results_);
        return;
      }
      fleet_->Touch(stream.agent_id, now);
      if (observer_) {
        std::function<void()> acknowledge;
        if (const uint64_t sequence = message.command_result().sequence(); sequence != 0) {
          acknowledge = [this, agent_id = stream.agent_id, sequence] {
            v1::ControllerMessage ack;
            ack.mutable_ack()->add_result_sequences(sequence);
            SendTo(agent_id, std::move(ack));
          };
        }
        observer_->OnCommandResult(stream.agent_id, message.command_result(),
                                   std::move(acknowledge));
      }
      break;
    default:
      stream.Close(
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "unexpected message after Hello"));
      return;
  }
  stream.Handled();
}

void AgentServiceImpl::Refuse(AgentStream& stream, const absl::Status& status,
                              std::atomic<uint64_t>& counter, uint64_t sequence) {
  ++counter;
  const std::string who = stream.accepted
                              ? absl::StrCat("agent '", stream.agent_id, "' (", stream.peer(), ")")
                              : absl::StrCat("peer ", stream.peer());
  // One log line per agent and field would still let a fleet of broken agents flood the log.
  static RateLimitedLog limiter(10, absl::Minutes(1));
  if (uint64_t suppressed = 0; limiter.Allow(absl::Now(), &suppressed)) {
    spdlog::warn("refused {}: {}; ending its stream ({} similar refusals not logged)", who,
                 status.message(), suppressed);
  }
  const grpc::StatusCode code = absl::IsResourceExhausted(status)
                                    ? grpc::StatusCode::RESOURCE_EXHAUSTED
                                    : grpc::StatusCode::INVALID_ARGUMENT;
  stream.CloseRefusing(
      grpc::Status(code, absl::StrCat("controller refused ", who, ": ", status.message())),
      sequence);
}

AgentServiceImpl::Refusals AgentServiceImpl::refusals() const {
  return Refusals{.hello = refused_hello_.load(),
                  .telemetry = refused_telemetry_.load(),
                  .memory_budget = refused_budget_.load(),
                  .diagnostics = refused_diagnostics_.load(),
                  .command_result = refused_results_.load()};
}

void AgentServiceImpl::EvictGone(absl::Time now) {
  const absl::Time cutoff = now - options_.evict_after;
  for (const std::string& agent_id : fleet_->GoneSince(cutoff)) {
    // The rule engine lets go of the series first: it keys fleet-wide contributions by them.
    if (observer_) {
      observer_->OnEvicting(agent_id);
    }
    if (fleet_->Evict(agent_id, cutoff)) {
      ++evicted_;
      spdlog::info("agent '{}' gone for more than {}: its series are freed", agent_id,
                   absl::FormatDuration(options_.evict_after));
    }
  }
}

void AgentServiceImpl::WatchdogLoop() {
  absl::Time next_eviction = absl::InfinitePast();
  // (tick, streams opened by then), back to four silence timeouts ago; from the start, so a
  // storm at start (a restarted controller) counts from its first stream.
  std::deque<std::pair<int64_t, uint64_t>> opened_by = {
      {absl::ToUnixMillis(clock_->Now()), next_session_.load()}};
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto stopping = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return stopping_ || watchdog_stopping_;
      };
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping), absl::Milliseconds(250))) {
        return;
      }
    }
    const absl::Time now = clock_->Now();
    if (now >= next_eviction) {
      // On the ingest thread: it alone adds series and hands out pointers to them.
      next_eviction = now + absl::Seconds(10);
      Enqueue({nullptr, nullptr});
    }
    const int64_t now_ms = absl::ToUnixMillis(now);
    const int64_t timeout_ms = absl::ToInt64Milliseconds(options_.silence_timeout);
    // Opened within four timeouts: the storm is judged over only once the streams it welcomed
    // last have had as long to be read as the cutoff it set gives them.
    const uint64_t opened = next_session_.load();
    opened_by.emplace_back(now_ms, opened);
    while (opened_by.size() > 1 &&
           opened_by[1].first <= now_ms - kMassSilenceFactor * timeout_ms) {
      opened_by.pop_front();
    }
    const uint64_t opened_lately = opened - opened_by.front().second;
    int64_t cutoff_ms = now_ms - timeout_ms;
    // (agent id, stream, waiting since); no id for a stream whose Hello was not accepted yet.
    struct Quiet {
      std::string agent_id;
      std::shared_ptr<AgentStream> stream;
      int64_t since_ms;
    };
    std::vector<Quiet> quiet;
    {
      absl::MutexLock lock(&mu_);
      // One walk of the streams: those silent for the timeout are few unless the controller is
      // behind, and the longer cutoffs below only take some of them back.
      for (const auto& [agent_id, stream] : streams_) {
        if (const int64_t since = stream->waiting_since_ms(); since != 0 && since < cutoff_ms) {
          quiet.push_back({agent_id, stream, since});
        }
      }
      const size_t silent_streams = quiet.size();
      const bool storm = opened_lately >= std::max<uint64_t>(options_.storm_streams,
                                                             streams_.size() / 8);
      if (storm) {
        // Handshakes keep gRPC's threads from reading streams that did speak: the storm's own
        // newcomers, cut off and reconnecting, would only feed it (seen with mutual TLS: 2,670 of
        // 3,000 agents cut off once welcomed). Only streams silent for far longer are ended.
        cutoff_ms = now_ms - kMassSilenceFactor * timeout_ms;
        ++storm_ticks_;
        static RateLimitedLog limiter(1, absl::Minutes(1));
        if (uint64_t suppressed = 0; limiter.Allow(absl::Now(), &suppressed)) {
          const std::string longer =
              absl::FormatDuration(kMassSilenceFactor * options_.silence_timeout);
          spdlog::warn("{} agent streams opened within {}: ending only streams silent for {} while "
                       "the storm lasts ({} similar not logged)",
                       opened_lately, longer, longer, suppressed);
        }
      } else if (silent_streams >= 8 && silent_streams * 4 >= streams_.size()) {
        // A quarter of the fleet silent in the same 250 ms is this process falling behind
        // (starved of CPU, gRPC's threads busy with a storm of handshakes), not that many
        // agents failing at once: cutting them off would only feed the storm. Only streams
        // silent for far longer are ended meanwhile.
        cutoff_ms = absl::ToUnixMillis(now - kMassSilenceFactor * options_.silence_timeout);
        ++mass_silence_ticks_;
        static RateLimitedLog limiter(1, absl::Minutes(1));
        if (uint64_t suppressed = 0; limiter.Allow(absl::Now(), &suppressed)) {
          spdlog::warn("{} of {} agent streams silent for {} at once: the controller is behind, "
                       "not the agents; ending only streams silent for {} ({} similar not logged)",
                       silent_streams, streams_.size(),
                       absl::FormatDuration(options_.silence_timeout),
                       absl::FormatDuration(kMassSilenceFactor * options_.silence_timeout),
                       suppressed);
        }
      }
      if (cutoff_ms < now_ms - timeout_ms) {
        std::erase_if(quiet, [cutoff_ms](const Quiet& q) { return q.since_ms >= cutoff_ms; });
      }
      for (const auto& [session, opening] : opening_) {
        if (std::shared_ptr<AgentStream> stream = opening.lock(); stream != nullptr) {
          if (const int64_t since = stream->waiting_since_ms(); since != 0 && since < cutoff_ms) {
            quiet.push_back({"", std::move(stream), since});
          }
        }
      }
    }
    for (const auto& [agent_id, stream, since_ms] : quiet) {
      if (!stream->MarkSilent()) {
        continue;  // already cancelled; its end is on its way to the ingest thread
      }
      // How long it was silent (the cutoff is longer while the controller is behind).
      const std::string silent_for = absl::FormatDuration(
          absl::Trunc(absl::Milliseconds(now_ms - since_ms), absl::Milliseconds(100)));
      if (!agent_id.empty()) {
        // Shown disconnected now, whatever the stream does next.
        fleet_->Disconnect(agent_id, stream->session(), now);
        spdlog::warn("agent '{}' silent for {}: marking it disconnected", agent_id, silent_for);
      } else {
        spdlog::debug("peer {} opened an agent stream and said nothing for {}: ending it",
                      stream->peer(), silent_for);
      }
      stream->Cancel();
    }
  }
}

}  // namespace vigil::controller
