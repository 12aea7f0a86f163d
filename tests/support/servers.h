// Real servers for integration tests, each on a free 127.0.0.1 port under a temp dir, started by
// the scripts in scripts/test-servers/ and killed with the test. Thread-compatible.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "tests/support/process.h"

namespace vigil::testing {

class PostgresServer {
 public:
  explicit PostgresServer(const std::string& dir);
  bool ok() const { return ok_; }
  uint16_t port() const { return port_; }
  // Keyword DSN for `user` on database postgres.
  std::string Dsn(const std::string& user = "postgres") const;
  // psql -c SQL as `user`; stdout (unaligned, tuples only).
  CommandResult Psql(const std::string& sql, const std::string& user = "postgres") const;
  // A psql session kept open in the background, fed `sql` (for locks and long queries).
  std::unique_ptr<Subprocess> Background(const std::string& sql,
                                         const std::string& user = "postgres") const;
  void Stop();
  void Start();
  Subprocess& process() { return *process_; }

 private:
  std::string dir_;
  uint16_t port_;
  std::unique_ptr<Subprocess> process_;
  bool ok_ = false;
};

class RedisServer {
 public:
  explicit RedisServer(const std::string& dir);
  bool ok() const { return ok_; }
  uint16_t port() const { return port_; }
  CommandResult Cli(std::vector<std::string> args) const;
  void Stop();
  void Start();
  Subprocess& process() { return *process_; }

 private:
  std::string dir_;
  uint16_t port_;
  std::unique_ptr<Subprocess> process_;
  bool ok_ = false;
};

// An HTTP/1.1 upstream in this process whose latency and status the test sets per path.
class HttpUpstream {
 public:
  HttpUpstream();
  ~HttpUpstream();
  uint16_t port() const { return port_; }
  void SetRoute(const std::string& path, absl::Duration delay, int status);

 private:
  void Serve(int fd);
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  std::mutex mu_;
  std::map<std::string, std::pair<absl::Duration, int>> routes_;
  std::vector<std::thread> workers_;
};

class NginxServer {
 public:
  // `access_log`: where nginx writes its access log; empty: DIR/nginx/access.log.
  NginxServer(const std::string& dir, uint16_t upstream_port, const std::string& log_format = "",
              const std::string& access_log = "");
  // Stops nginx with SIGTERM: a SIGKILLed master leaves its workers running, orphaned.
  ~NginxServer() { Stop(); }
  bool ok() const { return ok_; }
  uint16_t port() const { return port_; }
  std::string access_log() const { return access_log_; }
  std::string config() const { return dir_ + "/nginx/nginx.conf"; }
  std::string upstreams_file() const { return dir_ + "/nginx/upstreams.conf"; }
  void Stop();

 private:
  std::string dir_;
  std::string access_log_;
  uint16_t port_;
  std::unique_ptr<Subprocess> process_;
  bool ok_ = false;
};

// GET http://127.0.0.1:port/path; the status code, or -1 when the request failed.
int HttpGet(uint16_t port, const std::string& path, absl::Duration timeout = absl::Seconds(10),
            std::string* body = nullptr);
// `count` GETs over `concurrency` connections; returns how many got `status`... all statuses.
std::map<int, int> HttpLoad(uint16_t port, const std::vector<std::string>& paths, int concurrency);

}  // namespace vigil::testing
