#include "agent/actions/redis_session.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/yaml_util.h"

namespace vigil::agent {

absl::StatusOr<RedisEndpoint> RedisEndpointFor(const std::string& address, const YAML::Node& options,
                                               absl::string_view file, absl::string_view action) {
  const size_t colon = address.rfind(':');
  int port = 0;
  if (address.empty() || colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) || port <= 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        YamlWhere(file, options), ": actions.", action,
        address.empty() ? " needs the redis collector (collectors.redis.address) to connect to"
                        : absl::StrCat(": the Redis address '", address, "' is not host:port")));
  }
  return RedisEndpoint{address.substr(0, colon), port};
}

RedisSession::RedisSession(const std::string& host, int port, absl::Duration timeout,
                           StepRunner& steps)
    : steps_(steps), timeout_(timeout) {
  const timeval tv = absl::ToTimeval(std::max(timeout, absl::Milliseconds(1)));
  redisContext* context = redisConnectWithTimeout(host.c_str(), port, tv);
  if (context == nullptr || context->err != 0) {
    steps_.Fail(absl::StrCat("cannot connect to Redis at ", host, ":", port, ": ",
                             context == nullptr ? "cannot allocate a context" : context->errstr));
    if (context != nullptr) {
      redisFree(context);
    }
    return;
  }
  // The commands get what is left of the timeout.
  redisSetTimeout(context, absl::ToTimeval(std::max(steps_.remaining(), absl::Milliseconds(1))));
  context_ = context;
}

RedisSession::~RedisSession() {
  if (context_ != nullptr) {
    redisFree(context_);
  }
}

void RedisSession::Fail(absl::string_view command, const RedisReply& r) {
  if (r.reply == nullptr) {
    // hiredis reports a read timeout as an I/O error with strerror(EAGAIN).
    const bool timed_out =
        context_->err == REDIS_ERR_IO && std::string(context_->errstr) == std::strerror(EAGAIN);
    steps_.Fail(timed_out ? absl::StrCat(TimedOutAfter(timeout_), " (", command, ")")
                          : absl::StrCat(command, ": ", context_->errstr),
                timed_out ? kExitKilled : kExitFailed);
    return;
  }
  steps_.Fail(absl::StrCat(command, ": ",
                           r.reply->type == REDIS_REPLY_ERROR
                               ? std::string(r.reply->str, r.reply->len)
                               : "unexpected reply"));
}

}  // namespace vigil::agent
