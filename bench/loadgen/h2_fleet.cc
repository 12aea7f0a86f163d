#include "bench/loadgen/h2_fleet.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <optional>
#include <queue>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/loadgen/agent_policy.h"
#include "bench/loadgen/reconnect_backoff.h"
#include "common/wire_metadata.h"
#include "vigil/v1/agent_service.pb.h"

namespace vigil::loadgen {

using v1::AgentMessage;
using v1::ControllerMessage;

namespace {

// The agent's channel arguments (common/agent_channel.cc): reconnects from 100 ms to 500 ms, a
// 2 s connect timeout, a keepalive PING every 10 s.
constexpr absl::Duration kReconnectInitial = absl::Milliseconds(100);
constexpr absl::Duration kReconnectMax = absl::Milliseconds(500);
constexpr absl::Duration kConnectTimeout = absl::Seconds(2);
constexpr absl::Duration kKeepalive = absl::Seconds(10);
// A message from the controller larger than this ends the connection (the agent's limit).
constexpr uint32_t kMaxReceiveMessage = 16u << 20;

// Appends `message` with gRPC's length prefix (uncompressed).
void AppendFramed(const google::protobuf::MessageLite& message, std::string* out) {
  const size_t size = message.ByteSizeLong();
  const size_t at = out->size();
  out->resize(at + 5 + size);
  auto* p = reinterpret_cast<uint8_t*>(out->data() + at);
  p[0] = 0;
  p[1] = static_cast<uint8_t>(size >> 24);
  p[2] = static_cast<uint8_t>(size >> 16);
  p[3] = static_cast<uint8_t>(size >> 8);
  p[4] = static_cast<uint8_t>(size);
  message.SerializeWithCachedSizesToArray(p + 5);
}

nghttp2_nv Header(const char* name, const std::string& value) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name)),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), std::strlen(name),
                    value.size(), NGHTTP2_NV_FLAG_NO_COPY_NAME};
}

}  // namespace

// The event loop: every agent's socket, the timers and the wake-up from Start and Stop. Owns the
// agents. Everything but the fields under mu_ and the agents' published states is the loop
// thread's alone.
class H2Loop {
 public:
  enum class EventKind { kAttempt, kRound, kWelcomeDeadline, kReconnect, kConnectTimeout, kPing };

  H2Loop(FleetOptions options, FleetCounters* counters, sockaddr_storage address,
         socklen_t address_size, int epoll_fd, int wake_fd);
  ~H2Loop();

  void Run();  // on the loop's thread, until Stop()
  void RequestStart(absl::Time start, absl::Duration ramp);
  void RequestStop();
  std::string Census() const;

  // For H2Agent.
  void Schedule(absl::Time when, H2Agent* agent, EventKind kind, uint64_t epoch);
  const FleetOptions& options() const { return options_; }
  FleetCounters& counters() { return *counters_; }
  const TelemetryModel& model() const { return model_; }
  const sockaddr_storage& address() const { return address_; }
  socklen_t address_size() const { return address_size_; }
  int epoll_fd() const { return epoll_fd_; }
  nghttp2_session_callbacks* callbacks() const { return callbacks_; }
  const std::string& authority() const { return options_.target; }
  AgentMessage& scratch() { return scratch_; }

 private:
  struct Event {
    absl::Time when;
    H2Agent* agent;
    EventKind kind;
    uint64_t epoch;
    bool operator>(const Event& other) const { return when > other.when; }
  };
  void RunDue(absl::Time now);

  const FleetOptions options_;
  FleetCounters* const counters_;
  const TelemetryModel model_;
  const sockaddr_storage address_;
  const socklen_t address_size_;
  const int epoll_fd_;
  const int wake_fd_;
  nghttp2_session_callbacks* callbacks_ = nullptr;
  std::vector<std::unique_ptr<H2Agent>> agents_;
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> events_;
  std::vector<Event> due_;
  AgentMessage scratch_;  // each round's batch is built here, then serialized

  mutable absl::Mutex mu_;
  std::optional<std::pair<absl::Time, absl::Duration>> start_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
};

// One simulated agent: its connection, its current stream and its reconnect state.
class H2Agent {
 public:
  using State = AgentState;

  H2Agent(H2Loop* loop, int index);
  ~H2Agent() { CloseConnection(/*count=*/false); }

  int index() const { return index_; }

  // Timer events.
  void Attempt(uint64_t epoch);
  void Round(uint64_t epoch);
  void WelcomeDeadline(uint64_t epoch);
  void Reconnect(uint64_t generation);
  void ConnectTimeout(uint64_t generation);
  void Ping(uint64_t generation);
  // The socket is readable or writable (epoll events).
  void OnSocket(uint32_t events);
  // Ends the stream and the connection; nothing counted as a drop.
  void Stop();

  // Published for Census (any thread).
  AgentCensus Now() const {
    return AgentCensus{state_.load(std::memory_order_relaxed),
                       absl::FromUnixNanos(since_ns_.load(std::memory_order_relaxed)),
                       absl::FromUnixNanos(next_ns_.load(std::memory_order_relaxed)),
                       attempted_.load(std::memory_order_relaxed)};
  }

  // nghttp2's callbacks.
  static ssize_t ReadOutbox(nghttp2_session* session, int32_t stream_id, uint8_t* buf,
                            size_t length, uint32_t* flags, nghttp2_data_source* source,
                            void* user_data);
  static int OnHeader(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t* name,
                      size_t namelen, const uint8_t* value, size_t valuelen, uint8_t flags,
                      void* user_data);
  static int OnData(nghttp2_session* session, uint8_t flags, int32_t stream_id, const uint8_t* data,
                    size_t len, void* user_data);
  static int OnFrame(nghttp2_session* session, const nghttp2_frame* frame, void* user_data);
  static int OnStreamClose(nghttp2_session* session, int32_t stream_id, uint32_t error_code,
                           void* user_data);

 private:
  enum class Link { kDown, kConnecting, kUp };

  void SetState(State state);
  void StartConnect();
  void ConnectionUp();
  // Closes the socket and the session; a live stream ends as UNAVAILABLE when `count`.
  void CloseConnection(bool count);
  void ConnectionLost();  // then reconnects, when the agent still wants a stream
  void StartStream();
  // The stream has ended with `code`; counts it and decides what comes next.
  void StreamEnded(int code, const std::string& message);
  void Queue(const google::protobuf::MessageLite& message);
  void HandleMessages();  // the whole messages in in_
  // Hands nghttp2's output to the socket; false when the connection was lost meanwhile.
  bool Flush();
  void WantWrite(bool want);

  H2Loop* const loop_;
  const int index_;
  std::string id_;
  absl::Duration send_offset_;
  std::string hello_;      // the Hello, framed
  std::string heartbeat_;  // an empty batch (sequence 0), framed
  ReconnectBackoff backoff_;
  std::mt19937_64 rng_;

  std::atomic<State> state_{State::kWaiting};
  std::atomic<int64_t> since_ns_{absl::ToUnixNanos(absl::Now())};
  std::atomic<int64_t> next_ns_{absl::ToUnixNanos(absl::InfinitePast())};
  std::atomic<bool> attempted_{false};

  uint64_t epoch_ = 0;  // changes with every state change: stale timers
  bool stopping_ = false;
  uint32_t attempted_in_phase_ = 0;
  uint32_t dropped_in_phase_ = 0;
  bool ever_welcomed_ = false;
  absl::Time down_since_ = absl::Now();

  // The connection.
  Link link_ = Link::kDown;
  int fd_ = -1;
  uint64_t generation_ = 0;  // of the connection: stale connection timers
  nghttp2_session* session_ = nullptr;
  std::string pending_out_;  // bytes nghttp2 produced that the socket has not taken
  bool want_write_ = false;
  absl::Duration reconnect_backoff_ = kReconnectInitial;
  bool lost_ = false;  // set inside nghttp2's callbacks: close once they return

  // The stream.
  int32_t stream_id_ = -1;
  bool cancelled_for_welcome_ = false;
  std::string outbox_;  // framed messages not yet taken by nghttp2, from outbox_read_
  size_t outbox_read_ = 0;
  std::deque<size_t> outbox_ends_;  // where each queued message ends in outbox_
  std::string in_;                  // DATA received, not yet a whole message
  int grpc_status_ = -1;
  std::string grpc_message_;
  std::string retry_after_;
  bool has_retry_after_ = false;
  uint64_t next_sequence_ = 1;
  bool declared_ = false;
  absl::Time next_round_;
  absl::Time last_write_;
  absl::Duration silence_timeout_ = absl::Milliseconds(2500);
  absl::Duration heartbeat_period_ = absl::Seconds(1);
  std::deque<uint64_t> in_flight_;  // sequences sent, not yet acknowledged
};

H2Agent::H2Agent(H2Loop* loop, int index)
    : loop_(loop),
      index_(index),
      backoff_(loop->options().initial_backoff, loop->options().max_backoff),
      rng_(std::random_device{}() ^ (static_cast<uint64_t>(index) << 20)) {
  const FleetOptions& o = loop->options();
  id_ = absl::StrCat(o.id_prefix, "-", index);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  send_offset_ = o.send_spread * unit(rng_);
  AgentMessage hello;
  *hello.mutable_hello() = loop->model().MakeHello(id_, absl::ToInt64Milliseconds(o.interval),
                                                   absl::StrFormat("%016x", rng_()));
  AppendFramed(hello, &hello_);
  AgentMessage beat;
  beat.mutable_telemetry();  // sequence 0: nothing to store or acknowledge
  AppendFramed(beat, &heartbeat_);
}

void H2Agent::SetState(State state) {
  state_.store(state, std::memory_order_relaxed);
  since_ns_.store(absl::ToUnixNanos(absl::Now()), std::memory_order_relaxed);
}

void H2Agent::Attempt(uint64_t epoch) {
  if (stopping_ || epoch != epoch_) {
    return;
  }
  if (!attempted_.load(std::memory_order_relaxed)) {
    attempted_.store(true, std::memory_order_relaxed);
    down_since_ = absl::Now();
  }
  const FleetOptions& o = loop_->options();
  const uint32_t phase = o.phase != nullptr ? o.phase->load() : 0;
  if (attempted_in_phase_ != phase + 1) {
    attempted_in_phase_ = phase + 1;
    loop_->counters().phase_attempted.fetch_add(1);
  }
  ++epoch_;
  if (link_ != Link::kUp) {
    // Like a stream on a channel that is not ready: it waits for the connection.
    SetState(State::kWatching);
    if (link_ == Link::kDown) {
      StartConnect();
    }
    return;
  }
  StartStream();
}

void H2Agent::StartStream() {
  SetState(State::kConnecting);
  cancelled_for_welcome_ = false;
  grpc_status_ = -1;
  grpc_message_.clear();
  has_retry_after_ = false;
  in_.clear();
  outbox_.clear();
  outbox_read_ = 0;
  outbox_ends_.clear();
  loop_->counters().attempts.fetch_add(1, std::memory_order_relaxed);
  static const std::string kPost = "POST";
  static const std::string kScheme = "http";
  static const std::string kPath = "/vigil.v1.AgentService/Connect";
  static const std::string kGrpc = "application/grpc";
  static const std::string kTrailers = "trailers";
  static const std::string kUserAgent = "vigil-loadgen-h2";
  const nghttp2_nv headers[] = {
      Header(":method", kPost),         Header(":scheme", kScheme),
      Header(":path", kPath),           Header(":authority", loop_->authority()),
      Header("content-type", kGrpc),    Header("te", kTrailers),
      Header("user-agent", kUserAgent),
  };
  nghttp2_data_provider provider{};
  provider.source.ptr = this;
  provider.read_callback = &H2Agent::ReadOutbox;
  outbox_ = hello_;
  outbox_ends_.push_back(outbox_.size());
  const int32_t id = nghttp2_submit_request(session_, nullptr, headers,
                                            sizeof(headers) / sizeof(headers[0]), &provider, this);
  if (id < 0) {
    // After a GOAWAY, say: a new connection, as gRPC's channel would make.
    PrintFailure(absl::StrCat(id_, ": cannot start a stream: ", nghttp2_strerror(id)));
    stream_id_ = -1;
    ConnectionLost();  // schedules the reconnect
    StreamEnded(kUnavailable, "cannot start a stream");
    return;
  }
  stream_id_ = id;
  loop_->Schedule(absl::Now() + loop_->options().welcome_timeout, this,
                  H2Loop::EventKind::kWelcomeDeadline, epoch_);
  Flush();
}

void H2Agent::Round(uint64_t epoch) {
  if (stopping_ || epoch != epoch_ || state_.load(std::memory_order_relaxed) != State::kStreaming) {
    return;
  }
  const FleetOptions& o = loop_->options();
  FleetCounters& c = loop_->counters();
  const absl::Time now = absl::Now();
  const size_t queued = outbox_ends_.size();
  if (now >= next_round_ + send_offset_) {
    if (queued >= o.max_outbox) {
      // The real agent would spool it; here it is only counted.
      c.rounds_skipped.fetch_add(1, std::memory_order_relaxed);
    } else {
      AgentMessage& message = loop_->scratch();
      message.Clear();
      loop_->model().FillBatch(static_cast<uint64_t>(index_), next_sequence_,
                               absl::ToUnixMillis(next_round_ + send_offset_), !declared_,
                               message.mutable_telemetry(), o.snapshots);
      Queue(message);
      c.batches_sent.fetch_add(1, std::memory_order_relaxed);
      c.samples_sent.fetch_add(
          static_cast<uint64_t>(loop_->model().samples_per_batch()) * o.snapshots,
          std::memory_order_relaxed);
      in_flight_.push_back(next_sequence_);
      ++next_sequence_;
      declared_ = true;
      last_write_ = now;
    }
    // A round that overran skips the missed slots, like the agent's collector.
    while (next_round_ + send_offset_ <= now) {
      next_round_ += o.interval;
    }
  } else if (now >= last_write_ + heartbeat_period_) {
    if (queued < o.max_outbox) {
      outbox_.append(heartbeat_);
      outbox_ends_.push_back(outbox_.size());
      c.heartbeats.fetch_add(1, std::memory_order_relaxed);
    }
    last_write_ = now;
  }
  const uint64_t epoch_now = epoch_;
  // Fails harmlessly when nghttp2 is not waiting for data (flow control holds it).
  nghttp2_session_resume_data(session_, stream_id_);
  if (!Flush()) {
    return;  // the connection went: the stream's end is counted already
  }
  if (epoch_now == epoch_) {
    loop_->Schedule(std::min(next_round_ + send_offset_, last_write_ + heartbeat_period_), this,
                    H2Loop::EventKind::kRound, epoch_);
  }
}

void H2Agent::Queue(const google::protobuf::MessageLite& message) {
  AppendFramed(message, &outbox_);
  outbox_ends_.push_back(outbox_.size());
}

void H2Agent::WelcomeDeadline(uint64_t epoch) {
  if (epoch != epoch_ || state_.load(std::memory_order_relaxed) != State::kConnecting ||
      stream_id_ < 0) {
    return;
  }
  cancelled_for_welcome_ = true;
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream_id_, NGHTTP2_CANCEL);
  // Ended here, as gRPC's client ends a cancelled call at once, not when the peer says so.
  StreamEnded(kCancelled, "no Welcome in time");
  Flush();
}

void H2Agent::Stop() {
  stopping_ = true;
  ++epoch_;
  if (state_.load(std::memory_order_relaxed) == State::kStreaming) {
    loop_->counters().streaming.fetch_sub(1);
  }
  in_flight_.clear();
  stream_id_ = -1;
  CloseConnection(/*count=*/false);
  SetState(State::kStopped);
}

void H2Agent::StartConnect() {
  const sockaddr_storage& address = loop_->address();
  fd_ = socket(address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    PrintFailure(absl::StrCat(id_, ": socket: ", std::strerror(errno)));
    ConnectionLost();
    return;
  }
  const int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));  // as gRPC sets it
  ++generation_;
  link_ = Link::kConnecting;
  if (connect(fd_, reinterpret_cast<const sockaddr*>(&address), loop_->address_size()) != 0 &&
      errno != EINPROGRESS) {
    ConnectionLost();
    return;
  }
  epoll_event ev{};
  ev.events = EPOLLOUT;
  ev.data.ptr = this;
  want_write_ = true;
  if (epoll_ctl(loop_->epoll_fd(), EPOLL_CTL_ADD, fd_, &ev) != 0) {
    PrintFailure(absl::StrCat(id_, ": epoll_ctl: ", std::strerror(errno)));
    ConnectionLost();
    return;
  }
  loop_->Schedule(absl::Now() + kConnectTimeout, this, H2Loop::EventKind::kConnectTimeout,
                  generation_);
}

void H2Agent::ConnectionUp() {
  link_ = Link::kUp;
  reconnect_backoff_ = kReconnectInitial;
  if (const int rc = nghttp2_session_client_new(&session_, loop_->callbacks(), this); rc != 0) {
    session_ = nullptr;
    PrintFailure(absl::StrCat(id_, ": HTTP/2 session: ", nghttp2_strerror(rc)));
    ConnectionLost();
    return;
  }
  const nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, 1);
  loop_->Schedule(absl::Now() + kKeepalive, this, H2Loop::EventKind::kPing, generation_);
  if (!stopping_ && state_.load(std::memory_order_relaxed) == State::kWatching) {
    StartStream();  // it calls Flush
    return;
  }
  Flush();
}

void H2Agent::CloseConnection(bool count) {
  if (fd_ >= 0) {
    epoll_ctl(loop_->epoll_fd(), EPOLL_CTL_DEL, fd_, nullptr);
    close(fd_);
    fd_ = -1;
  }
  if (session_ != nullptr) {
    nghttp2_session_del(session_);
    session_ = nullptr;
  }
  pending_out_.clear();
  want_write_ = false;
  lost_ = false;
  link_ = Link::kDown;
  ++generation_;
  if (count && stream_id_ >= 0) {
    StreamEnded(kUnavailable, "connection lost");
  }
  stream_id_ = -1;
}

void H2Agent::ConnectionLost() {
  CloseConnection(/*count=*/true);
  if (stopping_) {
    return;
  }
  // gRPC's channel backoff: grows 1.6 times, up to the maximum, with 20 % jitter either way.
  std::uniform_real_distribution<double> jitter(0.8, 1.2);
  const absl::Duration wait = reconnect_backoff_ * jitter(rng_);
  reconnect_backoff_ = std::min(reconnect_backoff_ * 1.6, kReconnectMax);
  loop_->Schedule(absl::Now() + wait, this, H2Loop::EventKind::kReconnect, generation_);
}

void H2Agent::Reconnect(uint64_t generation) {
  if (stopping_ || generation != generation_ || link_ != Link::kDown) {
    return;
  }
  // Only an agent that wants a stream reconnects (gRPC's channel goes idle otherwise); one
  // waiting to retry connects when its attempt comes.
  if (state_.load(std::memory_order_relaxed) == State::kWatching) {
    StartConnect();
  }
}

void H2Agent::ConnectTimeout(uint64_t generation) {
  if (generation == generation_ && link_ == Link::kConnecting) {
    ConnectionLost();
  }
}

void H2Agent::Ping(uint64_t generation) {
  if (stopping_ || generation != generation_ || link_ != Link::kUp) {
    return;
  }
  nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, nullptr);
  if (Flush()) {
    loop_->Schedule(absl::Now() + kKeepalive, this, H2Loop::EventKind::kPing, generation_);
  }
}

void H2Agent::OnSocket(uint32_t events) {
  if (link_ == Link::kConnecting) {
    int error = 0;
    socklen_t size = sizeof(error);
    if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &error, &size) != 0 || error != 0 ||
        (events & (EPOLLERR | EPOLLHUP)) != 0) {
      ConnectionLost();
      return;
    }
    WantWrite(false);
    ConnectionUp();
    return;
  }
  if (link_ != Link::kUp) {
    return;
  }
  if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0) {
    uint8_t buffer[16384];
    while (true) {
      const ssize_t n = recv(fd_, buffer, sizeof(buffer), 0);
      if (n > 0) {
        const ssize_t used = nghttp2_session_mem_recv(session_, buffer, static_cast<size_t>(n));
        if (used < 0) {
          PrintFailure(absl::StrCat(id_, ": HTTP/2: ", nghttp2_strerror(static_cast<int>(used))));
          ConnectionLost();
          return;
        }
        if (lost_) {
          ConnectionLost();
          return;
        }
        if (static_cast<size_t>(n) < sizeof(buffer)) {
          break;
        }
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        break;
      }
      if (n < 0 && errno == EINTR) {
        continue;
      }
      ConnectionLost();  // end of stream or a socket error: the controller went away
      return;
    }
  }
  if (!Flush()) {
    return;
  }
  if (!nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_) &&
      pending_out_.empty()) {
    ConnectionLost();  // GOAWAY received and every stream done
  }
}

bool H2Agent::Flush() {
  if (link_ != Link::kUp) {
    return false;
  }
  while (true) {
    const uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) {
      PrintFailure(absl::StrCat(id_, ": HTTP/2: ", nghttp2_strerror(static_cast<int>(n))));
      ConnectionLost();
      return false;
    }
    if (n == 0) {
      break;
    }
    pending_out_.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
  if (lost_) {
    ConnectionLost();
    return false;
  }
  size_t sent = 0;
  while (sent < pending_out_.size()) {
    const ssize_t n =
        send(fd_, pending_out_.data() + sent, pending_out_.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      break;
    }
    ConnectionLost();
    return false;
  }
  pending_out_.erase(0, sent);
  WantWrite(!pending_out_.empty());
  return true;
}

void H2Agent::WantWrite(bool want) {
  if (want == want_write_ || fd_ < 0) {
    return;
  }
  want_write_ = want;
  epoll_event ev{};
  ev.events = want ? (EPOLLIN | EPOLLOUT) : EPOLLIN;
  ev.data.ptr = this;
  epoll_ctl(loop_->epoll_fd(), EPOLL_CTL_MOD, fd_, &ev);
}

ssize_t H2Agent::ReadOutbox(nghttp2_session* /*session*/, int32_t stream_id, uint8_t* buf,
                            size_t length, uint32_t* /*flags*/, nghttp2_data_source* source,
                            void* /*user_data*/) {
  auto* agent = static_cast<H2Agent*>(source->ptr);
  if (stream_id != agent->stream_id_) {
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // a stream already ended: reset it
  }
  const size_t available = agent->outbox_.size() - agent->outbox_read_;
  if (available == 0) {
    return NGHTTP2_ERR_DEFERRED;  // resumed when a message is queued
  }
  const size_t n = std::min(length, available);
  std::memcpy(buf, agent->outbox_.data() + agent->outbox_read_, n);
  agent->outbox_read_ += n;
  while (!agent->outbox_ends_.empty() && agent->outbox_ends_.front() <= agent->outbox_read_) {
    agent->outbox_ends_.pop_front();
  }
  if (agent->outbox_read_ == agent->outbox_.size()) {
    agent->outbox_.clear();
    agent->outbox_read_ = 0;
    agent->outbox_ends_.clear();
  }
  return static_cast<ssize_t>(n);
}

int H2Agent::OnHeader(nghttp2_session* /*session*/, const nghttp2_frame* frame, const uint8_t* name,
                      size_t namelen, const uint8_t* value, size_t valuelen, uint8_t /*flags*/,
                      void* user_data) {
  auto* agent = static_cast<H2Agent*>(user_data);
  if (frame->hd.type != NGHTTP2_HEADERS || frame->hd.stream_id != agent->stream_id_) {
    return 0;
  }
  const absl::string_view key(reinterpret_cast<const char*>(name), namelen);
  const absl::string_view text(reinterpret_cast<const char*>(value), valuelen);
  if (key == "grpc-status") {
    int code = 0;
    for (char c : text) {
      code = (c >= '0' && c <= '9' && code < 1000) ? code * 10 + (c - '0') : 1000;
    }
    agent->grpc_status_ = text.empty() || code >= 1000 ? kUnknown : code;
  } else if (key == "grpc-message") {
    agent->grpc_message_.assign(text.data(), text.size());
  } else if (key == kRetryAfterMsKey) {
    agent->retry_after_.assign(text.data(), text.size());
    agent->has_retry_after_ = true;
  }
  return 0;
}

int H2Agent::OnData(nghttp2_session* /*session*/, uint8_t /*flags*/, int32_t stream_id,
                    const uint8_t* data, size_t len, void* user_data) {
  auto* agent = static_cast<H2Agent*>(user_data);
  if (stream_id != agent->stream_id_) {
    return 0;
  }
  agent->in_.append(reinterpret_cast<const char*>(data), len);
  agent->HandleMessages();
  return 0;
}

void H2Agent::HandleMessages() {
  FleetCounters& c = loop_->counters();
  const FleetOptions& o = loop_->options();
  size_t at = 0;
  ControllerMessage message;
  while (in_.size() - at >= 5 && stream_id_ >= 0) {
    const auto* p = reinterpret_cast<const uint8_t*>(in_.data() + at);
    const uint32_t size =
        (uint32_t{p[1]} << 24) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 8) | uint32_t{p[4]};
    if (p[0] != 0 || size > kMaxReceiveMessage) {
      PrintFailure(absl::StrCat(id_, ": a compressed or oversized message from the controller"));
      lost_ = true;
      return;
    }
    if (in_.size() - at - 5 < size) {
      break;
    }
    if (!message.ParseFromArray(p + 5, static_cast<int>(size))) {
      PrintFailure(absl::StrCat(id_, ": a message from the controller does not parse"));
      lost_ = true;
      return;
    }
    at += 5 + size;
    if (message.has_welcome() && state_.load(std::memory_order_relaxed) == State::kConnecting) {
      SetState(State::kStreaming);
      ++epoch_;
      CountWelcome(&ever_welcomed_, c);
      backoff_.Reset();
      declared_ = false;  // a new stream, a new series dictionary
      const absl::Time now = absl::Now();
      const StreamPace pace =
          Welcomed(o, message.welcome(), now, silence_timeout_, &next_sequence_);
      heartbeat_period_ = pace.heartbeat;
      silence_timeout_ = pace.silence_timeout;
      next_round_ = pace.next_round;
      last_write_ = now;
      loop_->Schedule(std::min(next_round_ + send_offset_, last_write_ + heartbeat_period_), this,
                      H2Loop::EventKind::kRound, epoch_);
    } else if (message.has_ack()) {
      Acknowledged(message.ack().sequence(),
                   static_cast<uint64_t>(loop_->model().samples_per_batch()) * o.snapshots,
                   &in_flight_, c);
    }
  }
  in_.erase(0, at);
}

int H2Agent::OnFrame(nghttp2_session* /*session*/, const nghttp2_frame* frame, void* user_data) {
  auto* agent = static_cast<H2Agent*>(user_data);
  // The controller ended its side (trailers, or a trailers-only refusal): the call is over for
  // a gRPC client too, though our side of the stream is still open. Reset it.
  if (frame->hd.stream_id == agent->stream_id_ && agent->stream_id_ >= 0 &&
      (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0 &&
      (frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA)) {
    const int32_t id = agent->stream_id_;
    agent->StreamEnded(agent->grpc_status_ >= 0 ? agent->grpc_status_ : kUnknown,
                       agent->grpc_message_);
    nghttp2_submit_rst_stream(agent->session_, NGHTTP2_FLAG_NONE, id, NGHTTP2_NO_ERROR);
  }
  return 0;
}

int H2Agent::OnStreamClose(nghttp2_session* /*session*/, int32_t stream_id, uint32_t error_code,
                           void* user_data) {
  auto* agent = static_cast<H2Agent*>(user_data);
  if (stream_id != agent->stream_id_) {
    return 0;  // ended already (trailers, our cancel)
  }
  int code = agent->grpc_status_;
  if (code < 0) {
    switch (error_code) {
      case NGHTTP2_CANCEL:
        code = kCancelled;
        break;
      case NGHTTP2_REFUSED_STREAM:
        code = kUnavailable;
        break;
      case NGHTTP2_NO_ERROR:
        code = kUnknown;
        break;
      default:
        code = kInternal;
    }
  }
  agent->StreamEnded(code, agent->grpc_message_.empty()
                               ? absl::StrCat("stream reset: ", nghttp2_http2_strerror(error_code))
                               : agent->grpc_message_);
  return 0;
}

void H2Agent::StreamEnded(int code, const std::string& message) {
  stream_id_ = -1;
  outbox_.clear();
  outbox_read_ = 0;
  outbox_ends_.clear();
  in_.clear();
  FleetCounters& c = loop_->counters();
  const FleetOptions& o = loop_->options();
  c.batches_unacked.fetch_add(in_flight_.size(), std::memory_order_relaxed);
  in_flight_.clear();
  const bool was_streaming = state_.load(std::memory_order_relaxed) == State::kStreaming;
  if (was_streaming) {
    c.streaming.fetch_sub(1);
  }
  if (stopping_) {
    SetState(State::kStopped);
    return;
  }
  const absl::Time now = absl::Now();
  const std::optional<absl::Duration> hinted =
      CountStreamEnd(StreamEnd{.code = code,
                               .message = message,
                               .was_streaming = was_streaming,
                               .cancelled_for_welcome = cancelled_for_welcome_,
                               .silent_ourselves = now - last_write_ >= silence_timeout_,
                               .retry_after = has_retry_after_ ? &retry_after_ : nullptr},
                     o, id_, &dropped_in_phase_, c);
  if (was_streaming) {
    backoff_.Reset();
    down_since_ = now;
  }
  const absl::Duration hint = hinted.value_or(absl::ZeroDuration());
  ++epoch_;
  if (link_ == Link::kUp || hinted.has_value()) {
    // Connected, yet the stream failed: the hint, if any, plus full jitter in [0, backoff].
    SetState(State::kWaiting);
    const absl::Time next = now + backoff_.Next(hint, rng_);
    next_ns_.store(absl::ToUnixNanos(next), std::memory_order_relaxed);
    loop_->Schedule(next, this, H2Loop::EventKind::kAttempt, epoch_);
    return;
  }
  // Not connected: the connection's own reconnects pace the next attempt.
  SetState(State::kWatching);
}

H2Loop::H2Loop(FleetOptions options, FleetCounters* counters, sockaddr_storage address,
               socklen_t address_size, int epoll_fd, int wake_fd)
    : options_(std::move(options)),
      counters_(counters),
      model_(options_.gauges, options_.histograms),
      address_(address),
      address_size_(address_size),
      epoll_fd_(epoll_fd),
      wake_fd_(wake_fd) {
  nghttp2_session_callbacks_new(&callbacks_);
  nghttp2_session_callbacks_set_on_header_callback(callbacks_, &H2Agent::OnHeader);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks_, &H2Agent::OnData);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks_, &H2Agent::OnFrame);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks_, &H2Agent::OnStreamClose);
  agents_.reserve(options_.indexes.size());
  for (int index : options_.indexes) {
    agents_.push_back(std::make_unique<H2Agent>(this, index));
  }
}

H2Loop::~H2Loop() {
  agents_.clear();  // their sockets go before the loop's
  nghttp2_session_callbacks_del(callbacks_);
  close(wake_fd_);
  close(epoll_fd_);
}

void H2Loop::Schedule(absl::Time when, H2Agent* agent, EventKind kind, uint64_t epoch) {
  events_.push(Event{when, agent, kind, epoch});
}

void H2Loop::RequestStart(absl::Time start, absl::Duration ramp) {
  {
    absl::MutexLock lock(&mu_);
    start_ = std::make_pair(start, ramp);
  }
  const uint64_t one = 1;
  // Fails only when the counter is full, and a full counter already wakes the loop.
  (void)!write(wake_fd_, &one, sizeof(one));
}

void H2Loop::RequestStop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  const uint64_t one = 1;
  // Fails only when the counter is full, and a full counter already wakes the loop.
  (void)!write(wake_fd_, &one, sizeof(one));
}

void H2Loop::RunDue(absl::Time now) {
  // Only what is due now: events scheduled meanwhile for now wait for the next turn, after the
  // sockets have been read.
  due_.clear();
  while (!events_.empty() && events_.top().when <= now) {
    due_.push_back(events_.top());
    events_.pop();
  }
  for (const Event& e : due_) {
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
      case EventKind::kReconnect:
        e.agent->Reconnect(e.epoch);
        break;
      case EventKind::kConnectTimeout:
        e.agent->ConnectTimeout(e.epoch);
        break;
      case EventKind::kPing:
        e.agent->Ping(e.epoch);
        break;
    }
  }
}

void H2Loop::Run() {
  std::vector<epoll_event> ready(1024);
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stop_) {
        break;
      }
      if (start_.has_value()) {
        const int total = std::max(options_.total_agents, 1);
        for (auto& agent : agents_) {
          Schedule(start_->first + start_->second * (static_cast<double>(agent->index()) / total),
                   agent.get(), EventKind::kAttempt, 0);
        }
        start_.reset();
      }
    }
    int timeout_ms = 100;
    if (!events_.empty()) {
      const absl::Duration until = events_.top().when - absl::Now();
      timeout_ms = static_cast<int>(std::clamp<int64_t>(
          absl::ToInt64Milliseconds(absl::Ceil(until, absl::Milliseconds(1))), 0, 100));
    }
    const int n = epoll_wait(epoll_fd_, ready.data(), static_cast<int>(ready.size()), timeout_ms);
    if (n < 0 && errno != EINTR) {
      PrintFailure(absl::StrCat("epoll_wait: ", std::strerror(errno)));
      break;
    }
    for (int i = 0; i < n; ++i) {
      if (ready[i].data.ptr == nullptr) {
        uint64_t count = 0;
        // Only clears the wake-up (EAGAIN: another read cleared it); the requests are in mu_.
        (void)!read(wake_fd_, &count, sizeof(count));
        continue;
      }
      static_cast<H2Agent*>(ready[i].data.ptr)->OnSocket(ready[i].events);
    }
    RunDue(absl::Now());
  }
  for (auto& agent : agents_) {
    agent->Stop();
  }
}

std::string H2Loop::Census() const {
  std::vector<AgentCensus> census;
  census.reserve(agents_.size());
  for (const auto& agent : agents_) {
    census.push_back(agent->Now());
  }
  return DescribeNotStreaming(census, absl::Now());
}

absl::StatusOr<std::unique_ptr<H2Fleet>> H2Fleet::Create(FleetOptions options,
                                                         FleetCounters* counters) {
  if (options.credentials) {
    return absl::InvalidArgumentError(
        "the HTTP/2 simulator speaks plain text only: use the gRPC client for mutual TLS");
  }
  const size_t colon = options.target.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("target '", options.target, "' is not HOST:PORT"));
  }
  std::string host = options.target.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string port = options.target.substr(colon + 1);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("target '", options.target, "': ", gai_strerror(rc)));
  }
  sockaddr_storage address{};
  const socklen_t size = found->ai_addrlen;
  std::memcpy(&address, found->ai_addr, found->ai_addrlen);
  freeaddrinfo(found);
  const int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd < 0) {
    return absl::InternalError(absl::StrCat("epoll_create1: ", std::strerror(errno)));
  }
  const int wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;
  if (wake_fd < 0 || epoll_ctl(epoll_fd, EPOLL_CTL_ADD, wake_fd, &ev) != 0) {
    const std::string error = std::strerror(errno);
    close(epoll_fd);
    if (wake_fd >= 0) {
      close(wake_fd);
    }
    return absl::InternalError(absl::StrCat("eventfd: ", error));
  }
  auto loop =
      std::make_unique<H2Loop>(std::move(options), counters, address, size, epoll_fd, wake_fd);
  return std::unique_ptr<H2Fleet>(new H2Fleet(std::move(loop)));
}

H2Fleet::H2Fleet(std::unique_ptr<H2Loop> loop) : loop_(std::move(loop)) {
  thread_ = std::thread([this] { loop_->Run(); });
}

H2Fleet::~H2Fleet() { Stop(); }

void H2Fleet::Start(absl::Time start, absl::Duration ramp) { loop_->RequestStart(start, ramp); }

void H2Fleet::Stop() {
  if (stopped_) {
    return;
  }
  stopped_ = true;
  loop_->RequestStop();
  thread_.join();
}

std::string H2Fleet::Census() const { return loop_->Census(); }

}  // namespace vigil::loadgen
