// Readiness for a service manager: writes states such as READY=1 to $NOTIFY_SOCKET, the way
// systemd's sd_notify(3) does, without libsystemd (it has no static library, and the agent links
// statically). A path or an abstract ('@') AF_UNIX datagram socket. Immutable once made;
// thread-safe.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace vigil {

class SdNotifier {
 public:
  // No socket: every Notify is a no-op.
  SdNotifier() = default;
  // `socket` as $NOTIFY_SOCKET writes it: "/run/systemd/notify" or "@abstract-name".
  explicit SdNotifier(std::string socket) : socket_(std::move(socket)) {}

  // Takes $NOTIFY_SOCKET and removes it from the environment, so commands this process runs
  // (actions, service managers) do not inherit it and speak for us. Call before starting threads.
  static SdNotifier FromEnvironment();

  bool enabled() const { return !socket_.empty(); }
  const std::string& socket() const { return socket_; }

  // Sends `state` (newline-separated assignments, e.g. "READY=1") in one datagram. OK without a
  // socket; otherwise an error naming the socket and why (bad address, nobody listening).
  absl::Status Notify(absl::string_view state) const;

  // The states the daemons send. Reloading carries MONOTONIC_USEC, which systemd's notify-reload
  // wants beside RELOADING=1. Failures are logged once per call and otherwise ignored: a service
  // manager that went away must not stop the daemon.
  void Ready() const;
  void Reloading() const;
  void Stopping() const;

 private:
  std::string socket_;
};

}  // namespace vigil
