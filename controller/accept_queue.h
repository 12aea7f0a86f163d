// The accept queue (listen backlog) of a port gRPC already listens on. gRPC sizes every listening
// socket's queue from net.core.somaxconn and offers no setting for it; Linux lets a process call
// listen() again on a socket that is listening, which changes only the queue's length. The
// controller keeps its agents' port short so that a reconnect storm waits in the agents' own SYN
// retries instead of in gRPC's shared queues, ahead of the CLI (measured in docs/scale-log.md).
#pragma once

#include "absl/status/statusor.h"

namespace vigil::controller {

// Sets the accept queue of every listening TCP socket of this process bound to `port` (IPv4 or
// IPv6, any address) to `backlog` connections (the kernel caps it at net.core.somaxconn).
// Returns how many sockets it changed; NotFound when none listens on `port`, and the system's
// error (naming the port) when listen() fails. Sockets on other ports are left as they are.
absl::StatusOr<int> SetAcceptQueue(int port, int backlog);

}  // namespace vigil::controller
