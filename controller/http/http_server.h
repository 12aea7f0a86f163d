// A tiny HTTP/1.1 server on plain POSIX sockets for the controller's Prometheus port (metrics
// scrapes, the Alertmanager webhook). It exists so that this port needs no new dependency; it is
// not a general web server: routes are exact (method, path) pairs, one request per connection
// (`Connection: close`), bodies only with Content-Length.
// A slow or silent client cannot stall it: every read has a timeout, a whole request has a
// deadline, and headers and bodies have size limits. One accept thread hands connections to a
// small fixed pool of workers, each serving one connection at a time.
// Thread-safe: Handle, Start, Stop and port may be called from any thread; handlers run on the
// worker threads, possibly concurrently with each other.
#pragma once

#include <atomic>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace vigil::controller {

struct HttpRequest {
  std::string method;
  std::string path;                            // the request target before '?', not percent-decoded
  std::string query;                           // after '?', without it; empty when there is none
  std::map<std::string, std::string> headers;  // names lower-cased; repeated ones joined by ", "
  std::string body;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;

  struct Options {
    // Longest wait for any one read from a client (SO_RCVTIMEO) and for any one write.
    absl::Duration read_timeout = absl::Seconds(5);
    absl::Duration write_timeout = absl::Seconds(5);
    // Longest time to receive a whole request, however steadily a client trickles it in.
    absl::Duration request_timeout = absl::Seconds(30);
    size_t max_header_bytes = 16 * 1024;      // request line and headers -> 431 beyond
    size_t max_body_bytes = 4 * 1024 * 1024;  // Content-Length -> 413 beyond
    int worker_threads = 2;
    // Accepted connections waiting for a worker; further ones get a 503 at once.
    size_t max_pending_connections = 64;
  };

  HttpServer() : HttpServer(Options{}) {}
  explicit HttpServer(Options options) : options_(options) {}
  ~HttpServer() { Stop(); }
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Routes are exact (method, path) pairs; unknown path -> 404, known path with another method
  // -> 405 (with Allow). A second handler for the same pair replaces the first.
  void Handle(std::string method, std::string path, Handler handler);

  // Binds HOST:PORT ("127.0.0.1:9464", "[::1]:0", ":9464" or "*:9464" for every address; port 0
  // picks a free one, see port()) and starts the accept thread and the workers. The error names
  // the address. FailedPrecondition when already started.
  absl::Status Start(const std::string& listen);

  // Stops accepting, cuts connections in progress short, and joins every thread. Idempotent;
  // also called by the destructor. A handler that is running is waited for, so a handler must
  // not call it.
  void Stop();

  // The bound port after a successful Start, else 0.
  int port() const { return port_.load(); }

 private:
  void AcceptLoop();
  void WorkerLoop();
  void Serve(int fd);
  HttpResponse Dispatch(const HttpRequest& request);

  const Options options_;

  absl::Mutex routes_mu_;
  // path -> method -> handler.
  std::map<std::string, std::map<std::string, Handler>> routes_ ABSL_GUARDED_BY(routes_mu_);

  // Serializes Start and Stop against each other.
  absl::Mutex lifecycle_mu_;
  bool running_ ABSL_GUARDED_BY(lifecycle_mu_) = false;
  std::thread accept_thread_;
  std::vector<std::thread> workers_;

  int listen_fd_ = -1;  // set by Start before the threads start, closed by Stop after joining
  std::atomic<int> port_{0};

  absl::Mutex queue_mu_;
  bool stopping_ ABSL_GUARDED_BY(queue_mu_) = false;
  std::deque<int> pending_ ABSL_GUARDED_BY(queue_mu_);  // accepted, not yet picked by a worker
  std::vector<int> active_ ABSL_GUARDED_BY(queue_mu_);  // being served; Stop shuts them down
};

}  // namespace vigil::controller
