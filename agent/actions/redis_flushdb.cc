#include "agent/actions/redis_flushdb.h"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/actions/action_util.h"
#include "common/action_schema.h"
#include "common/status.h"
#include "common/yaml_util.h"
#include "spdlog/spdlog.h"

namespace vigil::agent {
namespace {

constexpr char kName[] = "redis_flushdb";

// One reply, freed on scope exit.
struct Reply {
  explicit Reply(void* r) : reply(static_cast<redisReply*>(r)) {}
  ~Reply() {
    if (reply != nullptr) {
      freeReplyObject(reply);
    }
  }
  Reply(const Reply&) = delete;
  Reply& operator=(const Reply&) = delete;
  redisReply* reply;
};

class RedisFlushdb final : public Action {
 public:
  RedisFlushdb(std::string host, int port, std::vector<int> databases)
      : host_(std::move(host)), port_(port), databases_(std::move(databases)) {}

  absl::string_view name() const override { return kName; }

  absl::Status Check(const ActionParams& params) const override {
    RETURN_IF_ERROR(CheckActionParams(kName, params));
    int db = -1;
    if (!absl::SimpleAtoi(params.at("db"), &db) ||
        std::find(databases_.begin(), databases_.end(), db) == databases_.end()) {
      return absl::PermissionDeniedError(
          absl::StrCat(kName, ": db ", params.at("db"),
                       " is not allowed (allowed: ", absl::StrJoin(databases_, ", "), ")"));
    }
    return absl::OkStatus();
  }

  ActionResult Run(const ActionParams& params, absl::Duration timeout) override {
    if (absl::Status s = Check(params); !s.ok()) {
      return Failure(std::string(s.message()));
    }
    const int db = std::stoi(params.at("db"));
    StepRunner steps(kName, nullptr, timeout);
    const timeval tv = absl::ToTimeval(std::max(timeout, absl::Milliseconds(1)));
    redisContext* context = redisConnectWithTimeout(host_.c_str(), port_, tv);
    if (context == nullptr || context->err != 0) {
      steps.Fail(absl::StrCat("cannot connect to Redis at ", host_, ":", port_, ": ",
                              context == nullptr ? "cannot allocate a context" : context->errstr));
      if (context != nullptr) {
        redisFree(context);
      }
      spdlog::warn("{}", steps.Finish().reason);
      return steps.Finish();
    }
    // The commands get what is left of the timeout.
    redisSetTimeout(context, absl::ToTimeval(std::max(steps.remaining(), absl::Milliseconds(1))));
    Flush(context, db, steps, timeout);
    redisFree(context);
    const ActionResult result = steps.Finish();
    if (result.exit_code == 0) {
      spdlog::info("{}: flushed db {} of {}:{}", kName, db, host_, port_);
    } else {
      spdlog::warn("{}", result.reason);
    }
    return result;
  }

 private:
  void Flush(redisContext* context, int db, StepRunner& steps, absl::Duration timeout) {
    auto error = [&](absl::string_view command, const Reply& r) {
      if (r.reply == nullptr) {
        // hiredis reports a read timeout as an I/O error with strerror(EAGAIN).
        const bool timed_out =
            context->err == REDIS_ERR_IO && std::string(context->errstr) == std::strerror(EAGAIN);
        steps.Fail(timed_out ? absl::StrCat(TimedOutAfter(timeout), " (", command, ")")
                             : absl::StrCat(command, ": ", context->errstr),
                   timed_out ? kExitKilled : kExitFailed);
      } else {
        steps.Fail(absl::StrCat(command, ": ",
                                r.reply->type == REDIS_REPLY_ERROR
                                    ? std::string(r.reply->str, r.reply->len)
                                    : "unexpected reply"));
      }
    };
    const std::string select = absl::StrCat("SELECT ", db);
    Reply selected(redisCommand(context, "SELECT %d", db));
    if (selected.reply == nullptr || selected.reply->type != REDIS_REPLY_STATUS) {
      error(select, selected);
      return;
    }
    Reply size(redisCommand(context, "DBSIZE"));
    if (size.reply == nullptr || size.reply->type != REDIS_REPLY_INTEGER) {
      error("DBSIZE", size);
      return;
    }
    Reply flushed(redisCommand(context, "FLUSHDB"));
    if (flushed.reply == nullptr || flushed.reply->type != REDIS_REPLY_STATUS) {
      error("FLUSHDB", flushed);
      return;
    }
    steps.Note(absl::StrCat("flushed db ", db, " of ", host_, ":", port_, " (", size.reply->integer,
                            " keys)"));
  }

  std::string host_;
  int port_;
  std::vector<int> databases_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Action>> NewRedisFlushdbAction(const YAML::Node& options,
                                                              const ActionContext& context,
                                                              absl::string_view file) {
  ActionOptions o(options, file, kName);
  RETURN_IF_ERROR(o.CheckKeys({"databases"}));
  ASSIGN_OR_RETURN(std::vector<std::string> listed, o.List("databases", /*required=*/true));
  std::vector<int> databases;
  for (const std::string& text : listed) {
    int db = -1;
    if (!absl::SimpleAtoi(text, &db) || db < 0) {
      return o.Error("databases", absl::StrCat("'", text, "' is not a database number"));
    }
    databases.push_back(db);
  }
  const std::string& address = context.redis_address;
  const size_t colon = address.rfind(':');
  int port = 0;
  if (address.empty() || colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) || port <= 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        YamlWhere(file, options), ": actions.", kName,
        address.empty() ? " needs the redis collector (collectors.redis.address) to connect to"
                        : absl::StrCat(": the Redis address '", address, "' is not host:port")));
  }
  return std::make_unique<RedisFlushdb>(address.substr(0, colon), port, std::move(databases));
}

}  // namespace vigil::agent
