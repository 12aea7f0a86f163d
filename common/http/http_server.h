// An event-driven HTTP/1.1 server for the controller's HTTP port (/metrics, the Alertmanager
// webhook, later the fleet endpoint and the review page). It is not a general web server: routes
// are exact (method, path) pairs, one request per connection (`Connection: close`), bodies only
// with Content-Length.
//
// One event-loop thread (epoll, non-blocking sockets) accepts, reads and writes for every
// connection, so an idle or trickling client costs a file descriptor and a buffer, never a thread.
// Handlers run on a small pool of worker threads and may block briefly. Hostile clients are
// bounded by a connection cap (when full, the connection idle longest is closed; when none is
// idle, the newcomer gets a 503), per-connection deadlines (request head, whole request, response
// write) and size limits (431 for the head, 413 for the body).
// Optional TLS (OpenSSL, non-blocking on the loop); with a CA, a client certificate is requested
// and, when verified, its common name reaches the handler as HttpRequest::client_cn.
//
// Thread-safe: Handle, Start, Stop, port and stats may be called from any thread; handlers run on
// the worker threads, possibly concurrently with each other.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/http/http_message.h"

namespace vigil::http {

class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;

  struct Options {
    // From accepting a connection (and finishing its TLS handshake) to the end of the request
    // head; 408 beyond.
    absl::Duration header_timeout = absl::Seconds(10);
    // From accepting a connection to the end of the request body, however steadily a client
    // trickles it in; 408 beyond.
    absl::Duration request_timeout = absl::Seconds(30);
    // Longest time to hand the whole response to a client that reads slowly (or not at all).
    absl::Duration write_timeout = absl::Seconds(10);
    size_t max_header_bytes = 16 * 1024;      // request line and headers -> 431 beyond
    size_t max_body_bytes = 4 * 1024 * 1024;  // Content-Length -> 413 beyond
    // Open connections, whatever their state. At the cap, a new connection closes the one that
    // has waited longest for its client; when every one is busy with a handler or a response,
    // the newcomer gets a 503 at once.
    size_t max_connections = 1024;
    int worker_threads = 4;
    // How long Stop() waits for running handlers before it leaves them behind (detached; their
    // answers are dropped).
    absl::Duration stop_timeout = absl::Seconds(2);
    // TLS: a PEM certificate chain and its key; both empty for plain HTTP. With a CA file, clients
    // are asked for a certificate (not required: a client without one gets an empty client_cn).
    std::string tls_cert_file;
    std::string tls_key_file;
    std::string tls_ca_file;
  };

  // Monotonic counters since construction.
  struct Stats {
    uint64_t connections_accepted = 0;
    uint64_t connections_evicted = 0;  // idle connections closed to make room at the cap
    uint64_t connections_refused = 0;  // 503 at the cap with nothing idle to close
    uint64_t timeouts = 0;             // head, request or write deadlines missed
    uint64_t tls_handshake_failures = 0;
    uint64_t requests = 0;  // requests answered, by a handler or with an error
  };

  HttpServer();
  explicit HttpServer(Options options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Routes are exact (method, path) pairs; unknown path -> 404, known path with another method
  // -> 405 (with Allow). A second handler for the same pair replaces the first.
  void Handle(std::string method, std::string path, Handler handler);

  // Binds HOST:PORT ("127.0.0.1:9464", "[::1]:0", ":9464" or "*:9464" for every address; port 0
  // picks a free one, see port()), loads the TLS files when set, and starts the loop and the
  // workers. The error names the address or the file. FailedPrecondition when already started.
  absl::Status Start(const std::string& listen);

  // Stops accepting, closes every connection, and waits for running handlers at most
  // Options::stop_timeout. Idempotent; also called by the destructor. A handler must not call it.
  void Stop();

  // The bound port after a successful Start, else 0.
  int port() const { return port_.load(); }

  Stats stats() const;

 private:
  struct Routes;
  struct Counters;
  struct Shared;
  class Loop;

  static void WorkerLoop(std::shared_ptr<Shared> shared, size_t index);

  const Options options_;
  const std::shared_ptr<Routes> routes_;
  const std::shared_ptr<Counters> counters_;

  // Serializes Start and Stop against each other.
  absl::Mutex lifecycle_mu_;
  std::shared_ptr<Shared> shared_ ABSL_GUARDED_BY(lifecycle_mu_);
  std::thread loop_thread_ ABSL_GUARDED_BY(lifecycle_mu_);
  std::vector<std::thread> workers_ ABSL_GUARDED_BY(lifecycle_mu_);
  std::atomic<int> port_{0};
};

}  // namespace vigil::http
