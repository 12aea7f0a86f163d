// HttpServer: the epoll loop (accept, TLS handshake, read, write, deadlines, the connection cap),
// the worker pool that runs handlers, and Stop's bounded shutdown. Worker threads and the loop
// share only `Shared` (held by shared_ptr), so a handler that outlives Stop's deadline can finish
// later, detached, without touching a destroyed server.
#include "common/http/http_server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <deque>
#include <exception>
#include <optional>
#include <unordered_map>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/http/error_text.h"
#include "common/http/request_parser.h"
#include "common/logging.h"
#include "spdlog/spdlog.h"

namespace vigil::http {
namespace {

// A TLS failure with no OpenSSL error queued.
constexpr char kNoTlsErrorQueued[] = "unknown TLS error";

constexpr size_t kReadChunk = 16 * 1024;
// After the response, unread request bytes are drained for this long (at most kDrainBytes) so that
// closing does not reset the connection before the client has read the response.
constexpr absl::Duration kDrainTime = absl::Milliseconds(500);
constexpr size_t kDrainBytes = 256 * 1024;
// How often the loop looks for missed deadlines.
constexpr absl::Duration kSweepEvery = absl::Milliseconds(25);
constexpr int kMaxEvents = 256;
// epoll tags that are not connection ids.
constexpr uint64_t kListenTag = 0;
constexpr uint64_t kWakeTag = 1;

std::string PeerText(const sockaddr_storage& addr) {
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (addr.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    port = ntohs(in->sin_port);
    return absl::StrCat(host, ":", port);
  }
  if (addr.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
    port = ntohs(in6->sin6_port);
  }
  return absl::StrCat("[", host, "]:", port);
}

// The verified peer certificate's common name; "" without a certificate, when verification did
// not succeed, or when the name holds control characters.
std::string VerifiedClientCn(SSL* ssl) {
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (cert == nullptr) {
    return "";
  }
  std::string cn;
  if (SSL_get_verify_result(ssl) == X509_V_OK) {
    X509_NAME* subject = X509_get_subject_name(cert);
    int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (index >= 0) {
      ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index));
      unsigned char* utf8 = nullptr;
      int length = ASN1_STRING_to_UTF8(&utf8, data);
      if (length > 0) {
        cn.assign(reinterpret_cast<char*>(utf8), static_cast<size_t>(length));
      }
      OPENSSL_free(utf8);
    }
  }
  X509_free(cert);
  for (char c : cn) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return "";
    }
  }
  return cn;
}

}  // namespace

struct HttpServer::Routes {
  absl::Mutex mu;
  // path -> method -> handler.
  std::map<std::string, std::map<std::string, Handler>> by_path ABSL_GUARDED_BY(mu);
};

struct HttpServer::Counters {
  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> evicted{0};
  std::atomic<uint64_t> refused{0};
  std::atomic<uint64_t> timeouts{0};
  std::atomic<uint64_t> tls_failures{0};
  std::atomic<uint64_t> requests{0};
};

// What the loop and the workers share: requests to run and the answers coming back.
struct HttpServer::Shared {
  struct Job {
    uint64_t connection;
    Handler handler;
    HttpRequest request;
  };
  struct Done {
    uint64_t connection;
    HttpResponse response;
  };

  explicit Shared(int workers) : finished(static_cast<size_t>(workers), false) {
    wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  }
  ~Shared() {
    if (wake_fd >= 0) {
      close(wake_fd);
    }
  }
  // Wakes the loop's epoll_wait.
  void Wake() {
    uint64_t one = 1;
    ssize_t unused = write(wake_fd, &one, sizeof(one));
    (void)unused;
  }

  int wake_fd = -1;
  absl::Mutex mu;
  bool stopping ABSL_GUARDED_BY(mu) = false;
  std::deque<Job> jobs ABSL_GUARDED_BY(mu);
  std::vector<Done> done ABSL_GUARDED_BY(mu);
  std::vector<bool> finished ABSL_GUARDED_BY(mu);  // per worker: its thread function returned
};

namespace {

// Runs one handler; a throw or an impossible status becomes a 500.
HttpResponse RunHandler(const HttpServer::Handler& handler, const HttpRequest& request) {
  HttpResponse response;
  try {
    response = handler(request);
  } catch (const std::exception& e) {
    spdlog::error("HTTP handler for {} {} threw: {}", request.method, request.path, e.what());
    return TextResponse(500, "internal error");
  } catch (...) {
    spdlog::error("HTTP handler for {} {} threw a non-standard exception", request.method,
                  request.path);
    return TextResponse(500, "internal error");
  }
  if (response.status < 100 || response.status > 599) {
    spdlog::error("HTTP handler for {} {} returned status {}", request.method, request.path,
                  response.status);
    return TextResponse(500, "internal error");
  }
  return response;
}

}  // namespace

void HttpServer::WorkerLoop(std::shared_ptr<Shared> shared, size_t index) {
  while (true) {
    std::optional<Shared::Job> job;
    {
      absl::MutexLock lock(&shared->mu);
      auto ready = [&shared]() ABSL_SHARED_LOCKS_REQUIRED(shared->mu) {
        return shared->stopping || !shared->jobs.empty();
      };
      shared->mu.Await(absl::Condition(&ready));
      if (shared->stopping) {
        shared->finished[index] = true;
        return;
      }
      job = std::move(shared->jobs.front());
      shared->jobs.pop_front();
    }
    HttpResponse response = RunHandler(job->handler, job->request);
    absl::MutexLock lock(&shared->mu);
    if (!shared->stopping) {
      shared->done.push_back({job->connection, std::move(response)});
      shared->Wake();
    }
  }
}

// The event loop: owns the listening socket, the epoll set, the TLS context and every connection.
// Only the loop thread touches it after Start.
class HttpServer::Loop {
 public:
  static absl::StatusOr<std::unique_ptr<Loop>> Create(const Options& options,
                                                      const std::string& listen,
                                                      std::shared_ptr<Shared> shared,
                                                      std::shared_ptr<Routes> routes,
                                                      std::shared_ptr<Counters> counters);
  ~Loop();
  int port() const { return port_; }
  void Run();

 private:
  enum class State { kHandshake, kHead, kBody, kHandling, kWriting, kDraining };
  struct Conn {
    uint64_t id = 0;
    int fd = -1;
    SSL* ssl = nullptr;
    std::string peer;
    State state = State::kHead;
    absl::Time accepted;
    absl::Time last_activity;
    absl::Time deadline = absl::InfiniteFuture();
    uint32_t interest = 0;
    std::string in;
    size_t head_end = 0;  // where the body starts, once the head is complete
    uint64_t body_length = 0;
    HttpRequest request;
    std::string client_cn;
    std::string out;
    size_t out_pos = 0;
    size_t drained = 0;
  };
  enum class Io { kProgress, kWouldBlock, kClosed };

  Loop(const Options& options, std::shared_ptr<Shared> shared, std::shared_ptr<Routes> routes,
       std::shared_ptr<Counters> counters)
      : options_(options),
        shared_(std::move(shared)),
        routes_(std::move(routes)),
        counters_(std::move(counters)) {}
  absl::Status Listen(const std::string& listen);
  absl::Status SetUpTls();

  void AcceptAll();
  bool MakeRoom();
  void OnEvent(Conn* c, uint32_t events);
  void OnReadable(Conn* c);
  void Handshake(Conn* c);
  void ReadRequest(Conn* c);
  // Takes one request's worth of progress from the buffer: head, then body, then dispatch.
  void Advance(Conn* c);
  void Dispatch(Conn* c);
  void Respond(Conn* c, const HttpResponse& response);
  void Write(Conn* c);
  void StartDrain(Conn* c);
  void Drain(Conn* c);
  void TakeAnswers();
  void Sweep(absl::Time now);
  void SetInterest(Conn* c, uint32_t events);
  void Close(uint64_t id);
  void CloseAll();
  // Reads what is available into c->in (TLS or plain). kProgress when bytes were added.
  Io ReadSome(Conn* c, std::string* into, uint32_t* want);

  const Options options_;
  const std::shared_ptr<Shared> shared_;
  const std::shared_ptr<Routes> routes_;
  const std::shared_ptr<Counters> counters_;
  int listen_fd_ = -1;
  int epoll_fd_ = -1;
  int port_ = 0;
  SSL_CTX* tls_ = nullptr;
  bool accept_paused_ = false;
  absl::Time accept_resume_ = absl::InfinitePast();
  uint64_t next_id_ = 2;  // 0 and 1 are kListenTag and kWakeTag
  std::unordered_map<uint64_t, std::unique_ptr<Conn>> conns_;
  RateLimitedLog log_limit_{5, absl::Minutes(1)};
};

absl::StatusOr<std::unique_ptr<HttpServer::Loop>> HttpServer::Loop::Create(
    const Options& options, const std::string& listen, std::shared_ptr<Shared> shared,
    std::shared_ptr<Routes> routes, std::shared_ptr<Counters> counters) {
  std::unique_ptr<Loop> loop(
      new Loop(options, std::move(shared), std::move(routes), std::move(counters)));
  if (loop->shared_->wake_fd < 0) {
    return absl::InternalError(absl::StrCat("HTTP server: eventfd: ", ErrnoText(errno)));
  }
  if (absl::Status s = loop->SetUpTls(); !s.ok()) {
    return s;
  }
  if (absl::Status s = loop->Listen(listen); !s.ok()) {
    return s;
  }
  loop->epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (loop->epoll_fd_ < 0) {
    return absl::InternalError(absl::StrCat("HTTP server: epoll_create1: ", ErrnoText(errno)));
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kListenTag;
  epoll_ctl(loop->epoll_fd_, EPOLL_CTL_ADD, loop->listen_fd_, &ev);
  ev.data.u64 = kWakeTag;
  epoll_ctl(loop->epoll_fd_, EPOLL_CTL_ADD, loop->shared_->wake_fd, &ev);
  return loop;
}

HttpServer::Loop::~Loop() {
  CloseAll();
  if (epoll_fd_ >= 0) {
    close(epoll_fd_);
  }
  if (listen_fd_ >= 0) {
    close(listen_fd_);
  }
  if (tls_ != nullptr) {
    SSL_CTX_free(tls_);
  }
}

absl::Status HttpServer::Loop::SetUpTls() {
  if (options_.tls_cert_file.empty() && options_.tls_key_file.empty()) {
    if (!options_.tls_ca_file.empty()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "HTTP TLS: a CA file (%s) needs a certificate and a key as well", options_.tls_ca_file));
    }
    return absl::OkStatus();
  }
  if (options_.tls_cert_file.empty() || options_.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "HTTP TLS needs both a certificate and a key file (one of them is missing)");
  }
  ERR_clear_error();
  tls_ = SSL_CTX_new(TLS_server_method());
  if (tls_ == nullptr) {
    return absl::InternalError(absl::StrCat("HTTP TLS: ", SslErrorText(kNoTlsErrorQueued)));
  }
  SSL_CTX_set_min_proto_version(tls_, TLS1_2_VERSION);
  SSL_CTX_set_mode(tls_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (SSL_CTX_use_certificate_chain_file(tls_, options_.tls_cert_file.c_str()) != 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "HTTP TLS certificate %s: %s", options_.tls_cert_file, SslErrorText(kNoTlsErrorQueued)));
  }
  if (SSL_CTX_use_PrivateKey_file(tls_, options_.tls_key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return absl::InvalidArgumentError(absl::StrFormat("HTTP TLS key %s: %s", options_.tls_key_file,
                                                      SslErrorText(kNoTlsErrorQueued)));
  }
  if (SSL_CTX_check_private_key(tls_) != 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("HTTP TLS key %s does not match the certificate %s", options_.tls_key_file,
                        options_.tls_cert_file));
  }
  if (!options_.tls_ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(tls_, options_.tls_ca_file.c_str(), nullptr) != 1) {
      return absl::InvalidArgumentError(absl::StrFormat("HTTP TLS CA %s: %s", options_.tls_ca_file,
                                                        SslErrorText(kNoTlsErrorQueued)));
    }
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(options_.tls_ca_file.c_str());
    if (names != nullptr) {
      SSL_CTX_set_client_CA_list(tls_, names);
    }
    // Asked for, not required: a client without a certificate still connects (and must then
    // authenticate otherwise); a certificate that does not verify ends the handshake.
    SSL_CTX_set_verify(tls_, SSL_VERIFY_PEER, nullptr);
  }
  return absl::OkStatus();
}

absl::Status HttpServer::Loop::Listen(const std::string& listen) {
  size_t colon = listen.rfind(':');
  int port = -1;
  if (colon == std::string::npos || colon + 1 == listen.size() ||
      !std::all_of(listen.begin() + colon + 1, listen.end(), absl::ascii_isdigit) ||
      !absl::SimpleAtoi(absl::string_view(listen).substr(colon + 1), &port) || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrFormat("HTTP listen address \"%s\" is not HOST:PORT", listen));
  }
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host == "*") {
    host.clear();
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* addrs = nullptr;
  std::string port_text = std::to_string(port);
  int gai = getaddrinfo(host.empty() ? nullptr : host.c_str(), port_text.c_str(), &hints, &addrs);
  if (gai != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("cannot listen on %s: %s", listen, gai_strerror(gai)));
  }
  int fd = -1;
  std::string failure;
  for (addrinfo* ai = addrs; ai != nullptr && fd < 0; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) {
      failure = absl::StrCat("socket: ", ErrnoText(errno));
      continue;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    const char* step = nullptr;
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      step = "bind";
    } else if (::listen(fd, SOMAXCONN) != 0) {
      step = "listen";
    }
    if (step != nullptr) {
      failure = absl::StrCat(step, ": ", ErrnoText(errno));
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(addrs);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrFormat("cannot listen on %s: %s", listen, failure));
  }
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof(bound);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_len) != 0) {
    int err = errno;
    close(fd);
    return absl::InternalError(
        absl::StrFormat("cannot listen on %s: getsockname: %s", listen, ErrnoText(err)));
  }
  port_ = bound.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                                      : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  listen_fd_ = fd;
  return absl::OkStatus();
}

void HttpServer::Loop::Run() {
  // A write to a client that went away must fail with EPIPE, not kill the process: SIGPIPE from
  // a socket write is sent to the writing thread, and this one blocks it (SSL_write cannot pass
  // MSG_NOSIGNAL).
  sigset_t sigpipe;
  sigemptyset(&sigpipe);
  sigaddset(&sigpipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &sigpipe, nullptr);

  epoll_event events[kMaxEvents];
  absl::Time next_sweep = absl::Now() + kSweepEvery;
  while (true) {
    int n = epoll_wait(epoll_fd_, events, kMaxEvents,
                       static_cast<int>(absl::ToInt64Milliseconds(kSweepEvery)));
    if (n < 0 && errno != EINTR) {
      spdlog::error("HTTP server on port {}: epoll_wait: {}", port_, ErrnoText(errno));
      absl::SleepFor(absl::Milliseconds(10));
    }
    for (int i = 0; i < n; ++i) {
      uint64_t tag = events[i].data.u64;
      if (tag == kListenTag) {
        AcceptAll();
      } else if (tag == kWakeTag) {
        uint64_t count;
        while (read(shared_->wake_fd, &count, sizeof(count)) > 0) {
        }
        TakeAnswers();
      } else if (auto it = conns_.find(tag); it != conns_.end()) {
        OnEvent(it->second.get(), events[i].events);
      }
    }
    {
      absl::MutexLock lock(&shared_->mu);
      if (shared_->stopping) {
        break;
      }
    }
    absl::Time now = absl::Now();
    if (now >= next_sweep) {
      Sweep(now);
      next_sweep = now + kSweepEvery;
    }
  }
  CloseAll();
}

void HttpServer::Loop::AcceptAll() {
  if (accept_paused_) {
    return;
  }
  while (true) {
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    int fd =
        accept4(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK) {
        return;
      }
      if (err == EINTR || err == ECONNABORTED || err == EPROTO) {
        continue;
      }
      if ((err == EMFILE || err == ENFILE) && MakeRoom()) {
        continue;  // an idle connection gave its descriptor back
      }
      // Out of descriptors or memory with nothing to give back: stop polling the listening
      // socket for a moment rather than spin on it.
      if (uint64_t suppressed = 0; log_limit_.Allow(absl::Now(), &suppressed)) {
        spdlog::warn("HTTP server on port {}: accept: {}; pausing accepts for 100 ms", port_,
                     ErrnoText(err));
      }
      accept_paused_ = true;
      accept_resume_ = absl::Now() + absl::Milliseconds(100);
      epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
      return;
    }
    counters_->accepted.fetch_add(1, std::memory_order_relaxed);
    if (conns_.size() >= options_.max_connections && !MakeRoom()) {
      counters_->refused.fetch_add(1, std::memory_order_relaxed);
      if (tls_ == nullptr) {
        std::string busy = SerializeResponse(TextResponse(503, "server busy"));
        ssize_t unused = send(fd, busy.data(), busy.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)unused;
      }
      close(fd);
      continue;
    }
    auto c = std::make_unique<Conn>();
    c->id = next_id_++;
    c->fd = fd;
    c->peer = PeerText(addr);
    c->accepted = c->last_activity = absl::Now();
    c->deadline = c->accepted + std::min(options_.header_timeout, options_.request_timeout);
    c->state = tls_ != nullptr ? State::kHandshake : State::kHead;
    if (tls_ != nullptr) {
      c->ssl = SSL_new(tls_);
      if (c->ssl == nullptr || SSL_set_fd(c->ssl, fd) != 1) {
        spdlog::error("HTTP server: cannot set up TLS for {}: {}", c->peer,
                      SslErrorText(kNoTlsErrorQueued));
        if (c->ssl != nullptr) {
          SSL_free(c->ssl);
        }
        close(fd);
        continue;
      }
      SSL_set_accept_state(c->ssl);
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = c->id;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      spdlog::error("HTTP server: epoll_ctl for {}: {}", c->peer, ErrnoText(errno));
      if (c->ssl != nullptr) {
        SSL_free(c->ssl);
      }
      close(fd);
      continue;
    }
    c->interest = EPOLLIN;
    conns_.emplace(c->id, std::move(c));
  }
}

bool HttpServer::Loop::MakeRoom() {
  // The connection that has waited longest for its client: draining ones first (their answer is
  // out), then those still sending a request. Handlers' and slow readers' connections stay.
  Conn* oldest = nullptr;
  for (auto& [id, c] : conns_) {
    const bool waiting = c->state == State::kHandshake || c->state == State::kHead ||
                         c->state == State::kBody || c->state == State::kDraining;
    if (!waiting) {
      continue;
    }
    if (oldest == nullptr || (c->state == State::kDraining) > (oldest->state == State::kDraining) ||
        ((c->state == State::kDraining) == (oldest->state == State::kDraining) &&
         c->last_activity < oldest->last_activity)) {
      oldest = c.get();
    }
  }
  if (oldest == nullptr) {
    return false;
  }
  if (oldest->state != State::kDraining) {
    counters_->evicted.fetch_add(1, std::memory_order_relaxed);
    if (uint64_t suppressed = 0; log_limit_.Allow(absl::Now(), &suppressed)) {
      spdlog::warn(
          "HTTP server on port {}: {} connections open; closing the one idle longest ({}) "
          "({} similar messages suppressed)",
          port_, conns_.size(), oldest->peer, suppressed);
    }
  }
  Close(oldest->id);
  return true;
}

void HttpServer::Loop::OnEvent(Conn* c, uint32_t events) {
  if (c->state == State::kHandling) {
    if ((events & (EPOLLHUP | EPOLLERR)) != 0) {
      Close(c->id);  // the client is gone; its answer will be dropped
    }
    return;
  }
  switch (c->state) {
    case State::kHandshake:
      Handshake(c);
      return;
    case State::kHead:
    case State::kBody:
      ReadRequest(c);
      return;
    case State::kWriting:
      Write(c);
      return;
    case State::kDraining:
      Drain(c);
      return;
    case State::kHandling:
      return;
  }
}

void HttpServer::Loop::Handshake(Conn* c) {
  ERR_clear_error();
  int r = SSL_do_handshake(c->ssl);
  if (r == 1) {
    c->client_cn = VerifiedClientCn(c->ssl);
    c->state = State::kHead;
    c->last_activity = absl::Now();
    SetInterest(c, EPOLLIN);
    ReadRequest(c);  // the request may have come with the last handshake bytes
    return;
  }
  int err = SSL_get_error(c->ssl, r);
  if (err == SSL_ERROR_WANT_READ) {
    SetInterest(c, EPOLLIN);
    return;
  }
  if (err == SSL_ERROR_WANT_WRITE) {
    SetInterest(c, EPOLLOUT);
    return;
  }
  counters_->tls_failures.fetch_add(1, std::memory_order_relaxed);
  std::string why = err == SSL_ERROR_SSL ? SslErrorText(kNoTlsErrorQueued) : "connection closed";
  ERR_clear_error();
  if (uint64_t suppressed = 0; log_limit_.Allow(absl::Now(), &suppressed)) {
    spdlog::warn("HTTP server: TLS handshake with {} failed: {}", c->peer, why);
  }
  Close(c->id);
}

HttpServer::Loop::Io HttpServer::Loop::ReadSome(Conn* c, std::string* into, uint32_t* want) {
  char chunk[kReadChunk];
  *want = EPOLLIN;
  if (c->ssl == nullptr) {
    while (true) {
      ssize_t n = recv(c->fd, chunk, sizeof(chunk), 0);
      if (n > 0) {
        into->append(chunk, static_cast<size_t>(n));
        return Io::kProgress;
      }
      if (n == 0) {
        return Io::kClosed;
      }
      if (errno == EINTR) {
        continue;
      }
      return errno == EAGAIN || errno == EWOULDBLOCK ? Io::kWouldBlock : Io::kClosed;
    }
  }
  ERR_clear_error();
  int n = SSL_read(c->ssl, chunk, sizeof(chunk));
  if (n > 0) {
    into->append(chunk, static_cast<size_t>(n));
    return Io::kProgress;
  }
  int err = SSL_get_error(c->ssl, n);
  if (err == SSL_ERROR_WANT_READ) {
    return Io::kWouldBlock;
  }
  if (err == SSL_ERROR_WANT_WRITE) {
    *want = EPOLLOUT;
    return Io::kWouldBlock;
  }
  ERR_clear_error();
  return Io::kClosed;
}

void HttpServer::Loop::ReadRequest(Conn* c) {
  while (c->state == State::kHead || c->state == State::kBody) {
    uint32_t want = EPOLLIN;
    Io io = ReadSome(c, &c->in, &want);
    if (io == Io::kClosed) {
      Close(c->id);  // closed or failed mid-request: nobody to answer
      return;
    }
    if (io == Io::kWouldBlock) {
      SetInterest(c, want);
      return;
    }
    c->last_activity = absl::Now();
    const uint64_t id = c->id;
    Advance(c);
    if (conns_.find(id) == conns_.end()) {
      return;
    }
  }
}

void HttpServer::Loop::Advance(Conn* c) {
  if (c->state == State::kHead) {
    size_t end = c->in.find("\r\n\r\n");
    if (end == std::string::npos) {
      if (c->in.size() >= options_.max_header_bytes) {
        Respond(c, TextResponse(431, absl::StrFormat("request headers exceed %d bytes",
                                                     options_.max_header_bytes)));
      }
      return;
    }
    if (end + 4 > options_.max_header_bytes) {
      Respond(c, TextResponse(431, absl::StrFormat("request headers exceed %d bytes",
                                                   options_.max_header_bytes)));
      return;
    }
    c->head_end = end + 4;
    if (std::optional<HttpResponse> error =
            ParseRequestHead(absl::string_view(c->in).substr(0, end), &c->request)) {
      Respond(c, *error);
      return;
    }
    if (std::optional<HttpResponse> error =
            RequestBodyLength(c->request, options_.max_body_bytes, &c->body_length)) {
      Respond(c, *error);
      return;
    }
    c->state = State::kBody;
    c->deadline = c->accepted + options_.request_timeout;
  }
  if (c->state == State::kBody && c->in.size() - c->head_end >= c->body_length) {
    c->request.body = c->in.substr(c->head_end, c->body_length);
    c->in.clear();
    c->in.shrink_to_fit();
    Dispatch(c);
  }
}

void HttpServer::Loop::Dispatch(Conn* c) {
  HttpRequest& request = c->request;
  request.client_cn = c->client_cn;
  request.peer = c->peer;
  Handler handler;
  {
    absl::MutexLock lock(&routes_->mu);
    auto path = routes_->by_path.find(request.path);
    if (path == routes_->by_path.end()) {
      Respond(c, TextResponse(404, absl::StrCat("no such path: ", request.path)));
      return;
    }
    auto method = path->second.find(request.method);
    if (method == path->second.end()) {
      std::vector<std::string> allowed;
      for (const auto& [name, unused] : path->second) {
        allowed.push_back(name);
      }
      HttpResponse response =
          TextResponse(405, absl::StrCat(request.method, " is not allowed on ", request.path,
                                         "; use ", absl::StrJoin(allowed, ", ")));
      response.headers.emplace_back("Allow", absl::StrJoin(allowed, ", "));
      Respond(c, response);
      return;
    }
    handler = method->second;
  }
  c->state = State::kHandling;
  c->deadline = absl::InfiniteFuture();
  SetInterest(c, 0);  // hang-ups and errors are still reported
  absl::MutexLock lock(&shared_->mu);
  shared_->jobs.push_back({c->id, std::move(handler), std::move(request)});
}

void HttpServer::Loop::TakeAnswers() {
  std::vector<Shared::Done> done;
  {
    absl::MutexLock lock(&shared_->mu);
    done.swap(shared_->done);
  }
  for (Shared::Done& d : done) {
    auto it = conns_.find(d.connection);
    if (it != conns_.end() && it->second->state == State::kHandling) {
      spdlog::debug("HTTP {} {} from {} -> {}", it->second->request.method,
                    it->second->request.path, it->second->peer, d.response.status);
      Respond(it->second.get(), d.response);
    }
  }
}

void HttpServer::Loop::Respond(Conn* c, const HttpResponse& response) {
  counters_->requests.fetch_add(1, std::memory_order_relaxed);
  c->out = SerializeResponse(response);
  c->out_pos = 0;
  c->state = State::kWriting;
  c->deadline = absl::Now() + options_.write_timeout;
  Write(c);
}

void HttpServer::Loop::Write(Conn* c) {
  while (c->out_pos < c->out.size()) {
    const char* data = c->out.data() + c->out_pos;
    size_t left = c->out.size() - c->out_pos;
    if (c->ssl == nullptr) {
      ssize_t n = send(c->fd, data, left, MSG_NOSIGNAL);
      if (n >= 0) {
        c->out_pos += static_cast<size_t>(n);
        continue;
      }
      if (errno == EINTR) {
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        SetInterest(c, EPOLLOUT);
        return;
      }
      Close(c->id);
      return;
    }
    ERR_clear_error();
    int n = SSL_write(c->ssl, data, static_cast<int>(std::min<size_t>(left, INT_MAX)));
    if (n > 0) {
      c->out_pos += static_cast<size_t>(n);
      continue;
    }
    int err = SSL_get_error(c->ssl, n);
    if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
      SetInterest(c, err == SSL_ERROR_WANT_WRITE ? EPOLLOUT : EPOLLIN);
      return;
    }
    ERR_clear_error();
    Close(c->id);
    return;
  }
  StartDrain(c);
}

void HttpServer::Loop::StartDrain(Conn* c) {
  if (c->ssl != nullptr) {
    ERR_clear_error();
    SSL_shutdown(c->ssl);  // close_notify, best effort
    ERR_clear_error();
  }
  shutdown(c->fd, SHUT_WR);
  c->out.clear();
  c->out.shrink_to_fit();
  c->state = State::kDraining;
  c->deadline = absl::Now() + kDrainTime;
  c->last_activity = absl::Now();
  SetInterest(c, EPOLLIN);
  Drain(c);
}

void HttpServer::Loop::Drain(Conn* c) {
  char chunk[kReadChunk];
  while (c->drained < kDrainBytes) {
    ssize_t n = recv(c->fd, chunk, sizeof(chunk), 0);
    if (n > 0) {
      c->drained += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return;
    }
    break;  // the client closed too, or failed
  }
  Close(c->id);
}

void HttpServer::Loop::Sweep(absl::Time now) {
  if (accept_paused_ && now >= accept_resume_) {
    accept_paused_ = false;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kListenTag;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev);
  }
  std::vector<uint64_t> late;
  for (auto& [id, c] : conns_) {
    if (now >= c->deadline) {
      late.push_back(id);
    }
  }
  for (uint64_t id : late) {
    auto it = conns_.find(id);
    if (it == conns_.end()) {
      continue;
    }
    Conn* c = it->second.get();
    switch (c->state) {
      case State::kHead:
      case State::kBody:
        counters_->timeouts.fetch_add(1, std::memory_order_relaxed);
        spdlog::debug("HTTP server: {} missed the request deadline", c->peer);
        Respond(c, TextResponse(408, c->state == State::kHead
                                         ? "timed out waiting for the request"
                                         : "timed out waiting for the request body"));
        break;
      case State::kHandshake:
      case State::kWriting:
        counters_->timeouts.fetch_add(1, std::memory_order_relaxed);
        Close(id);
        break;
      case State::kDraining:
        Close(id);
        break;
      case State::kHandling:
        break;
    }
  }
}

void HttpServer::Loop::SetInterest(Conn* c, uint32_t events) {
  if (c->interest == events) {
    return;
  }
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = c->id;
  epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c->fd, &ev);
  c->interest = events;
}

void HttpServer::Loop::Close(uint64_t id) {
  auto it = conns_.find(id);
  if (it == conns_.end()) {
    return;
  }
  Conn* c = it->second.get();
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c->fd, nullptr);
  if (c->ssl != nullptr) {
    SSL_free(c->ssl);
  }
  close(c->fd);
  conns_.erase(it);
}

void HttpServer::Loop::CloseAll() {
  std::vector<uint64_t> ids;
  ids.reserve(conns_.size());
  for (const auto& [id, c] : conns_) {
    ids.push_back(id);
  }
  for (uint64_t id : ids) {
    Close(id);
  }
}

HttpServer::HttpServer() : HttpServer(Options{}) {}

HttpServer::HttpServer(Options options)
    : options_(std::move(options)),
      routes_(std::make_shared<Routes>()),
      counters_(std::make_shared<Counters>()) {}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Handle(std::string method, std::string path, Handler handler) {
  absl::MutexLock lock(&routes_->mu);
  routes_->by_path[std::move(path)][std::move(method)] = std::move(handler);
}

absl::Status HttpServer::Start(const std::string& listen) {
  absl::MutexLock life(&lifecycle_mu_);
  if (shared_ != nullptr) {
    return absl::FailedPreconditionError(
        absl::StrFormat("HTTP server already listening on port %d", port_.load()));
  }
  const int workers = std::max(1, options_.worker_threads);
  auto shared = std::make_shared<Shared>(workers);
  absl::StatusOr<std::unique_ptr<Loop>> loop =
      Loop::Create(options_, listen, shared, routes_, counters_);
  if (!loop.ok()) {
    return loop.status();
  }
  const int port = (*loop)->port();
  shared_ = shared;
  for (int i = 0; i < workers; ++i) {
    workers_.emplace_back(WorkerLoop, shared, static_cast<size_t>(i));
  }
  loop_thread_ = std::thread([loop = std::move(*loop)]() { loop->Run(); });
  port_.store(port);
  spdlog::info("HTTP server listening on {} (port {}{})", listen, port,
               options_.tls_cert_file.empty()
                   ? ", plain HTTP"
                   : (options_.tls_ca_file.empty() ? ", TLS" : ", TLS with client certificates"));
  return absl::OkStatus();
}

void HttpServer::Stop() {
  absl::MutexLock life(&lifecycle_mu_);
  if (shared_ == nullptr) {
    return;
  }
  const absl::Time deadline = absl::Now() + options_.stop_timeout;
  {
    absl::MutexLock lock(&shared_->mu);
    shared_->stopping = true;
  }
  shared_->Wake();
  // The loop never blocks (every socket is non-blocking), so it ends within one turn; it closes
  // every connection on the way out.
  loop_thread_.join();
  std::vector<bool> finished;
  {
    absl::MutexLock lock(&shared_->mu);
    auto all_done = [this]() ABSL_SHARED_LOCKS_REQUIRED(shared_->mu) {
      return std::all_of(shared_->finished.begin(), shared_->finished.end(),
                         [](bool f) { return f; });
    };
    shared_->mu.AwaitWithDeadline(absl::Condition(&all_done), deadline);
    finished = shared_->finished;
  }
  size_t left_behind = 0;
  for (size_t i = 0; i < workers_.size(); ++i) {
    if (finished[i]) {
      workers_[i].join();
    } else {
      workers_[i].detach();  // holds only `Shared`; its answer is dropped
      ++left_behind;
    }
  }
  if (left_behind > 0) {
    spdlog::warn("HTTP server: {} handler(s) still running after {}; not waiting for them",
                 left_behind, absl::FormatDuration(options_.stop_timeout));
  }
  workers_.clear();
  shared_.reset();
  port_.store(0);
}

HttpServer::Stats HttpServer::stats() const {
  Stats s;
  s.connections_accepted = counters_->accepted.load();
  s.connections_evicted = counters_->evicted.load();
  s.connections_refused = counters_->refused.load();
  s.timeouts = counters_->timeouts.load();
  s.tls_handshake_failures = counters_->tls_failures.load();
  s.requests = counters_->requests.load();
  return s;
}

}  // namespace vigil::http
