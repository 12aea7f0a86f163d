// One Redis connection for an action's few commands, bounded by the action's timeout: connect
// within it, each command with what is left of it, every failure recorded on the action's steps
// (a read timeout as a timeout, a server error with its text). Used by one thread.
#pragma once

#include <hiredis/hiredis.h>

#include <yaml-cpp/yaml.h>

#include <string>

#include "absl/status/statusor.h"

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "agent/actions/action_util.h"

namespace vigil::agent {

// One reply, freed on scope exit.
struct RedisReply {
  explicit RedisReply(void* r) : reply(static_cast<redisReply*>(r)) {}
  ~RedisReply() {
    if (reply != nullptr) {
      freeReplyObject(reply);
    }
  }
  RedisReply(const RedisReply&) = delete;
  RedisReply& operator=(const RedisReply&) = delete;
  redisReply* reply;
};

struct RedisEndpoint {
  std::string host;
  int port = 0;
};
// The Redis an action talks to: the redis collector's `address` (HOST:PORT). An error names the
// config file, the action and what is wrong (no redis collector, or not host:port).
absl::StatusOr<RedisEndpoint> RedisEndpointFor(const std::string& address, const YAML::Node& options,
                                               absl::string_view file, absl::string_view action);

class RedisSession {
 public:
  // Connects to host:port within `timeout`; a failure is recorded on `steps` (see ok()).
  RedisSession(const std::string& host, int port, absl::Duration timeout, StepRunner& steps);
  ~RedisSession();
  RedisSession(const RedisSession&) = delete;
  RedisSession& operator=(const RedisSession&) = delete;

  bool ok() const { return context_ != nullptr; }
  redisContext* context() { return context_; }
  // Records why `command` got `r` (no reply: the connection's error or a timeout; otherwise the
  // server's error or an unexpected reply type).
  void Fail(absl::string_view command, const RedisReply& r);

 private:
  redisContext* context_ = nullptr;
  StepRunner& steps_;
  absl::Duration timeout_;
};

}  // namespace vigil::agent
