// SetAcceptQueue on real loopback sockets: the queue it sets is the one the kernel enforces
// (connections beyond it stay unanswered), on the port named and no other.
#include "controller/accept_queue.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

namespace vigil::controller {
namespace {

// A socket listening on 127.0.0.1 at a port the kernel picks, never accepting.
class Listener {
 public:
  explicit Listener(int backlog) : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    EXPECT_EQ(listen(fd_, backlog), 0);
    socklen_t size = sizeof(address);
    EXPECT_EQ(getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &size), 0);
    port_ = ntohs(address.sin_port);
  }
  ~Listener() { close(fd_); }
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  int port() const { return port_; }

 private:
  int fd_;
  int port_ = 0;
};

// Starts `count` connections to `port` and returns how many the kernel completed within 300 ms
// (a SYN it drops for a full queue is resent only after a second).
int Connections(int port, int count) {
  std::vector<int> fds;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(port);
  for (int i = 0; i < count; ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    (void)connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
    fds.push_back(fd);
  }
  int completed = 0;
  for (int fd : fds) {
    pollfd p{.fd = fd, .events = POLLOUT, .revents = 0};
    int error = 0;
    socklen_t size = sizeof(error);
    if (poll(&p, 1, 300 / count + 1) == 1 &&
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size) == 0 && error == 0) {
      ++completed;
    }
    close(fd);
  }
  return completed;
}

TEST(AcceptQueueTest, ShortensTheQueueTheKernelEnforces) {
  Listener untouched(128);
  EXPECT_EQ(Connections(untouched.port(), 6), 6);

  Listener shortened(128);
  Listener other(128);
  absl::StatusOr<int> changed = SetAcceptQueue(shortened.port(), 1);
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_EQ(*changed, 1);
  // Linux queues one more than the length it is given.
  const int completed = Connections(shortened.port(), 6);
  EXPECT_GE(completed, 1);
  EXPECT_LE(completed, 2);
  // The other port's queue is as it was.
  EXPECT_EQ(Connections(other.port(), 6), 6);
}

TEST(AcceptQueueTest, APortNothingListensOnIsNamed) {
  int port = 0;
  {
    Listener gone(8);
    port = gone.port();
  }
  absl::StatusOr<int> changed = SetAcceptQueue(port, 4);
  EXPECT_EQ(changed.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(changed.status().message().find(std::to_string(port)), std::string::npos)
      << changed.status();
  EXPECT_EQ(SetAcceptQueue(0, 4).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SetAcceptQueue(port, 0).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace vigil::controller
