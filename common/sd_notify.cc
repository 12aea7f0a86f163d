#include "common/sd_notify.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace vigil {
namespace {

void Send(const SdNotifier& notifier, absl::string_view state) {
  if (absl::Status s = notifier.Notify(state); !s.ok()) {
    spdlog::warn("cannot tell the service manager {}: {}", state.substr(0, state.find('\n')),
                 s.message());
  }
}

}  // namespace

SdNotifier SdNotifier::FromEnvironment() {
  const char* value = std::getenv("NOTIFY_SOCKET");
  std::string socket = value != nullptr ? value : "";
  unsetenv("NOTIFY_SOCKET");
  return SdNotifier(std::move(socket));
}

absl::Status SdNotifier::Notify(absl::string_view state) const {
  if (socket_.empty()) {
    return absl::OkStatus();
  }
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  socklen_t length = 0;
  // An abstract name is not NUL-terminated: its length is all the kernel has. A path may take
  // the whole sun_path but its terminating NUL.
  const bool abstract = socket_[0] == '@';
  if (!abstract && socket_[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "NOTIFY_SOCKET=", socket_, ": want an absolute path or an abstract name starting with @"));
  }
  if (socket_.size() >= sizeof(address.sun_path) || socket_.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("NOTIFY_SOCKET=", socket_, ": longer than a unix socket address"));
  }
  std::memcpy(address.sun_path, socket_.data(), socket_.size());
  if (abstract) {
    address.sun_path[0] = '\0';
    length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket_.size());
  } else {
    length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket_.size() + 1);
  }
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("socket: ", std::strerror(errno)));
  }
  ssize_t sent = -1;
  do {
    sent = sendto(fd, state.data(), state.size(), MSG_NOSIGNAL,
                  reinterpret_cast<const sockaddr*>(&address), length);
  } while (sent < 0 && errno == EINTR);
  const int error = errno;
  close(fd);
  if (sent < 0) {
    return absl::UnavailableError(
        absl::StrCat("NOTIFY_SOCKET=", socket_, ": ", std::strerror(error)));
  }
  if (static_cast<size_t>(sent) != state.size()) {
    return absl::UnavailableError(absl::StrCat("NOTIFY_SOCKET=", socket_, ": sent ", sent, " of ",
                                               state.size(), " bytes"));
  }
  return absl::OkStatus();
}

void SdNotifier::Ready() const { Send(*this, "READY=1"); }

void SdNotifier::Reloading() const {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  const long long usec = static_cast<long long>(now.tv_sec) * 1'000'000 + now.tv_nsec / 1'000;
  Send(*this, absl::StrCat("RELOADING=1\nMONOTONIC_USEC=", usec));
}

void SdNotifier::Stopping() const { Send(*this, "STOPPING=1"); }

}  // namespace vigil
