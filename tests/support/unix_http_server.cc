#include "tests/support/unix_http_server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "absl/time/clock.h"
#include "common/http/request_parser.h"

namespace vigil::testing {

UnixHttpServer::UnixHttpServer(std::string path, Handler handler)
    : path_(std::move(path)), handler_(std::move(handler)) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path_.size() >= sizeof(addr.sun_path) || pipe2(stop_pipe_, O_CLOEXEC) != 0) {
    return;
  }
  path_.copy(addr.sun_path, path_.size());
  unlink(path_.c_str());
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return;
  }
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(fd, 16) != 0) {
    close(fd);
    return;
  }
  listen_fd_ = fd;
  thread_ = std::thread([this] { Serve(); });
}

UnixHttpServer::~UnixHttpServer() {
  if (thread_.joinable()) {
    (void)!write(stop_pipe_[1], "x", 1);
    thread_.join();
  }
  for (int fd : {listen_fd_, stop_pipe_[0], stop_pipe_[1]}) {
    if (fd >= 0) {
      close(fd);
    }
  }
  unlink(path_.c_str());
}

std::vector<http::HttpRequest> UnixHttpServer::requests() const {
  absl::MutexLock lock(&mu_);
  return requests_;
}

void UnixHttpServer::Serve() {
  while (true) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      continue;
    }
    if (fds[1].revents != 0) {
      return;
    }
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) {
      ServeOne(fd);
      close(fd);
    }
  }
}

void UnixHttpServer::ServeOne(int fd) {
  // A test's client: bounded by a few seconds and a megabyte.
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::string raw;
  char buffer[4096];
  size_t head_end = std::string::npos;
  http::HttpRequest request;
  uint64_t length = 0;
  while (raw.size() < (1 << 20)) {
    if (head_end == std::string::npos && (head_end = raw.find("\r\n\r\n")) != std::string::npos) {
      if (http::ParseRequestHead(raw.substr(0, head_end), &request) ||
          http::RequestBodyLength(request, 1 << 20, &length)) {
        return;
      }
    }
    if (head_end != std::string::npos && raw.size() >= head_end + 4 + length) {
      break;
    }
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n <= 0) {
      return;
    }
    raw.append(buffer, n);
  }
  if (head_end == std::string::npos) {
    return;
  }
  request.body = raw.substr(head_end + 4, length);
  request.peer = "unix";
  {
    absl::MutexLock lock(&mu_);
    requests_.push_back(request);
  }
  const std::string answer = http::SerializeResponse(handler_(request));
  size_t sent = 0;
  while (sent < answer.size()) {
    const ssize_t n = send(fd, answer.data() + sent, answer.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      return;
    }
    sent += n;
  }
}

}  // namespace vigil::testing
