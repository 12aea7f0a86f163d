// An HTTP/1.1 server on a unix socket for tests (the Docker Engine API's transport): one
// connection at a time, one request per connection, every request recorded, the answer from a
// handler. For the client's `unix_socket` option and the docker_prune action's fixtures.
// Thread-safe: requests() may be read while the server runs.
#pragma once

#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/http/http_message.h"

namespace vigil::testing {

class UnixHttpServer {
 public:
  using Handler = std::function<http::HttpResponse(const http::HttpRequest&)>;

  // Listens on `path` (replaced if it exists); ok() says whether it does.
  UnixHttpServer(std::string path, Handler handler);
  ~UnixHttpServer();
  bool ok() const { return listen_fd_ >= 0; }
  const std::string& path() const { return path_; }
  // Every request received so far, in order.
  std::vector<http::HttpRequest> requests() const;

 private:
  void Serve();
  void ServeOne(int fd);

  std::string path_;
  Handler handler_;
  int listen_fd_ = -1;
  int stop_pipe_[2] = {-1, -1};
  std::thread thread_;
  mutable absl::Mutex mu_;
  std::vector<http::HttpRequest> requests_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vigil::testing
