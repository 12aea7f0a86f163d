// A service manager's end of $NOTIFY_SOCKET for tests: a unix datagram socket bound to a path or
// an abstract name ("@name"), read with a deadline. Header-only; thread-compatible.
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace vigil::testing {

class NotifyListener {
 public:
  explicit NotifyListener(const std::string& name) : name_(name) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (name.empty() || name.size() >= sizeof(address.sun_path)) return;
    std::memcpy(address.sun_path, name.data(), name.size());
    socklen_t length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size() + 1);
    if (name[0] == '@') {
      address.sun_path[0] = '\0';
      length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
    }
    bound_ = bind(fd_, reinterpret_cast<sockaddr*>(&address), length) == 0;
  }
  ~NotifyListener() { close(fd_); }
  NotifyListener(const NotifyListener&) = delete;
  NotifyListener& operator=(const NotifyListener&) = delete;

  bool bound() const { return bound_; }
  const std::string& name() const { return name_; }

  // The next datagram, or "" when none came within `timeout`.
  std::string Receive(absl::Duration timeout = absl::Seconds(1)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (true) {
      const int ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
      pollfd p{.fd = fd_, .events = POLLIN, .revents = 0};
      const int ready = poll(&p, 1, ms > 0 ? ms : 0);
      if (ready < 0 && errno == EINTR) continue;
      if (ready != 1) return "";
      char buffer[4096];
      const ssize_t n = recv(fd_, buffer, sizeof(buffer), 0);
      return n > 0 ? std::string(buffer, static_cast<size_t>(n)) : "";
    }
  }

 private:
  std::string name_;
  int fd_ = -1;
  bool bound_ = false;
};

}  // namespace vigil::testing
