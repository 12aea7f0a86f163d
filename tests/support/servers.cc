#include "tests/support/servers.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace vigil::testing {
namespace {

std::string Script(absl::string_view name) {
  return SourcePath(absl::StrCat("scripts/test-servers/", name));
}

int ConnectLoopback(uint16_t port, absl::Duration timeout) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  timeval tv = absl::ToTimeval(timeout);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

PostgresServer::PostgresServer(const std::string& dir) : dir_(dir), port_(FreeLoopbackPort()) {
  Start();
}

void PostgresServer::Start() {
  process_ = std::make_unique<Subprocess>(
      std::vector<std::string>{Script("postgres.sh"), dir_, absl::StrCat(port_)},
      std::map<std::string, std::string>{}, dir_ + "/postgres.log");
  ok_ = WaitUntil(
      [&] {
        return Psql("SELECT 1").exit_code == 0 && access((dir_ + "/pg/ready").c_str(), F_OK) == 0;
      },
      absl::Seconds(60), absl::Milliseconds(100));
}

void PostgresServer::Stop() {
  if (process_) {
    process_->Stop(absl::Seconds(10));
  }
}

std::string PostgresServer::Dsn(const std::string& user) const {
  return absl::StrCat("host=127.0.0.1 port=", port_, " user=", user, " dbname=postgres");
}

CommandResult PostgresServer::Psql(const std::string& sql, const std::string& user) const {
  return RunCommand({"psql", "-X", "-q", "-A", "-t", "-h", "127.0.0.1", "-p", absl::StrCat(port_),
                     "-U", user, "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql},
                    absl::Seconds(30));
}

std::unique_ptr<Subprocess> PostgresServer::Background(const std::string& sql,
                                                       const std::string& user) const {
  return std::make_unique<Subprocess>(
      std::vector<std::string>{"psql", "-X", "-q", "-h", "127.0.0.1", "-p", absl::StrCat(port_),
                               "-U", user, "-d", "postgres", "-c", sql});
}

RedisServer::RedisServer(const std::string& dir) : dir_(dir), port_(FreeLoopbackPort()) { Start(); }

void RedisServer::Start() {
  process_ = std::make_unique<Subprocess>(
      std::vector<std::string>{Script("redis.sh"), dir_, absl::StrCat(port_)},
      std::map<std::string, std::string>{}, dir_ + "/redis.log");
  ok_ = WaitUntil([&] { return Cli({"ping"}).stdout_text == "PONG\n"; }, absl::Seconds(20));
}

void RedisServer::Stop() {
  if (process_) {
    process_->Stop(absl::Seconds(10));
  }
}

CommandResult RedisServer::Cli(std::vector<std::string> args) const {
  args.insert(args.begin(), {"redis-cli", "-h", "127.0.0.1", "-p", absl::StrCat(port_)});
  return RunCommand(args, absl::Seconds(20));
}

HttpUpstream::HttpUpstream() {
  listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  listen(listen_fd_, 128);
  acceptor_ = std::thread([this] {
    while (!stopping_) {
      int fd = accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) {
        continue;
      }
      std::lock_guard lock(mu_);
      workers_.emplace_back([this, fd] { Serve(fd); });
    }
  });
}

HttpUpstream::~HttpUpstream() {
  stopping_ = true;
  shutdown(listen_fd_, SHUT_RDWR);
  close(listen_fd_);
  acceptor_.join();
  std::lock_guard lock(mu_);
  for (auto& w : workers_) {
    w.join();
  }
}

void HttpUpstream::SetRoute(const std::string& path, absl::Duration delay, int status) {
  std::lock_guard lock(mu_);
  routes_[path] = {delay, status};
}

void HttpUpstream::Serve(int fd) {
  timeval tv{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::string buffer;
  char chunk[4096];
  while (!stopping_) {
    size_t end = buffer.find("\r\n\r\n");
    if (end == std::string::npos) {
      ssize_t n = read(fd, chunk, sizeof(chunk));
      if (n == 0) {
        break;
      }
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
          continue;
        }
        break;
      }
      buffer.append(chunk, n);
      continue;
    }
    std::string request = buffer.substr(0, end);
    buffer.erase(0, end + 4);
    std::vector<std::string> parts = absl::StrSplit(request.substr(0, request.find("\r\n")), ' ');
    std::string path = parts.size() > 1 ? parts[1] : "/";
    path = path.substr(0, path.find('?'));
    absl::Duration delay;
    int status = 200;
    {
      std::lock_guard lock(mu_);
      auto it = routes_.find(path);
      if (it != routes_.end()) {
        std::tie(delay, status) = it->second;
      }
    }
    absl::SleepFor(delay);
    std::string body = "ok\n";
    std::string response = absl::StrCat("HTTP/1.1 ", status, " X\r\nContent-Length: ", body.size(),
                                        "\r\nConnection: keep-alive\r\n\r\n", body);
    if (write(fd, response.data(), response.size()) < 0) {
      break;
    }
  }
  close(fd);
}

NginxServer::NginxServer(const std::string& dir, uint16_t upstream_port,
                         const std::string& log_format, const std::string& access_log)
    : dir_(dir),
      access_log_(access_log.empty() ? dir + "/nginx/access.log" : access_log),
      port_(FreeLoopbackPort()) {
  std::map<std::string, std::string> env;
  if (!log_format.empty()) {
    env["LOG_FORMAT"] = log_format;
  }
  env["ACCESS_LOG"] = access_log_;
  process_ = std::make_unique<Subprocess>(
      std::vector<std::string>{Script("nginx.sh"), dir_, absl::StrCat(port_),
                               absl::StrCat(upstream_port)},
      env, dir_ + "/nginx.log");
  ok_ = WaitUntil(
      [&] {
        int fd = ConnectLoopback(port_, absl::Seconds(1));
        if (fd >= 0) {
          close(fd);
        }
        return fd >= 0;
      },
      absl::Seconds(20));
}

void NginxServer::Stop() {
  if (process_) {
    process_->Stop(absl::Seconds(10));
  }
}

int HttpGet(uint16_t port, const std::string& path, absl::Duration timeout, std::string* body) {
  int fd = ConnectLoopback(port, timeout);
  if (fd < 0) {
    return -1;
  }
  std::string request =
      absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  if (write(fd, request.data(), request.size()) < 0) {
    close(fd);
    return -1;
  }
  std::string response;
  char chunk[4096];
  ssize_t n;
  while ((n = read(fd, chunk, sizeof(chunk))) > 0) {
    response.append(chunk, n);
  }
  close(fd);
  int status = -1;
  if (response.size() > 12) {
    absl::SimpleAtoi(response.substr(9, 3), &status);
  }
  if (body != nullptr) {
    const size_t start = response.find("\r\n\r\n");
    *body = start == std::string::npos ? "" : response.substr(start + 4);
  }
  return status;
}

std::map<int, int> HttpLoad(uint16_t port, const std::vector<std::string>& paths, int concurrency) {
  std::mutex mu;
  std::map<int, int> statuses;
  std::atomic<size_t> next{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < concurrency; ++t) {
    threads.emplace_back([&] {
      for (size_t i = next++; i < paths.size(); i = next++) {
        int status = HttpGet(port, paths[i]);
        std::lock_guard lock(mu);
        ++statuses[status];
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  return statuses;
}

}  // namespace vigil::testing
