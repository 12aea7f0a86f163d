#include "controller/accept_queue.h"

#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace vigil::controller {
namespace {

int SocketOption(int fd, int option) {
  int value = 0;
  socklen_t size = sizeof(value);
  if (getsockopt(fd, SOL_SOCKET, option, &value, &size) != 0) {
    return -1;
  }
  return value;
}

// The local port of a listening TCP socket, or -1 for anything else (files, pipes, UDP, TCP
// sockets that connect or are connected, Unix sockets).
int ListeningTcpPort(int fd) {
  if (SocketOption(fd, SO_ACCEPTCONN) != 1 || SocketOption(fd, SO_TYPE) != SOCK_STREAM) {
    return -1;
  }
  sockaddr_storage address{};
  socklen_t size = sizeof(address);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size) != 0) {
    return -1;
  }
  if (address.ss_family == AF_INET) {
    return ntohs(reinterpret_cast<const sockaddr_in&>(address).sin_port);
  }
  if (address.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6&>(address).sin6_port);
  }
  return -1;
}

}  // namespace

absl::StatusOr<int> SetAcceptQueue(int port, int backlog) {
  if (port <= 0 || port > 65535 || backlog < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("accept queue: port ", port, " or length ", backlog, " out of range"));
  }
  // gRPC keeps its listening sockets to itself: find them among the process's descriptors.
  DIR* fds = opendir("/proc/self/fd");
  if (fds == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("accept queue of port ", port, ": /proc/self/fd: ", std::strerror(errno)));
  }
  int changed = 0;
  absl::Status failure;
  while (const dirent* entry = readdir(fds)) {
    int fd = -1;
    if (!absl::SimpleAtoi(entry->d_name, &fd) || fd == dirfd(fds) || ListeningTcpPort(fd) != port) {
      continue;
    }
    if (listen(fd, backlog) != 0) {
      failure = absl::InternalError(
          absl::StrCat("accept queue of port ", port, ": listen: ", std::strerror(errno)));
      break;
    }
    ++changed;
  }
  closedir(fds);
  if (!failure.ok()) {
    return failure;
  }
  if (changed == 0) {
    return absl::NotFoundError(absl::StrCat("accept queue: nothing listens on port ", port));
  }
  return changed;
}

}  // namespace vigil::controller
