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
#include "agent/actions/redis_session.h"
#include "common/action_schema.h"
#include "common/status.h"
#include "common/yaml_util.h"
#include "spdlog/spdlog.h"

namespace vigil::agent {
namespace {

constexpr char kRedisFlushdb[] = "redis_flushdb";

class RedisFlushdb final : public Action {
 public:
  RedisFlushdb(std::string host, int port, std::vector<int> databases)
      : host_(std::move(host)), port_(port), databases_(std::move(databases)) {}

  absl::string_view name() const override { return kRedisFlushdb; }

  absl::Status Check(const ActionParams& params) const override {
    RETURN_IF_ERROR(CheckActionParams(kRedisFlushdb, params));
    int db = -1;
    if (!absl::SimpleAtoi(params.at("db"), &db) ||
        std::find(databases_.begin(), databases_.end(), db) == databases_.end()) {
      return absl::PermissionDeniedError(
          absl::StrCat(kRedisFlushdb, ": db ", params.at("db"),
                       " is not allowed (allowed: ", absl::StrJoin(databases_, ", "), ")"));
    }
    return absl::OkStatus();
  }

  ActionResult Run(const ActionParams& params, absl::Duration timeout) override {
    if (absl::Status s = Check(params); !s.ok()) {
      return Failure(std::string(s.message()));
    }
    const int db = std::stoi(params.at("db"));
    StepRunner steps(kRedisFlushdb, nullptr, timeout);
    {
      RedisSession session(host_, port_, timeout, steps);
      if (session.ok()) {
        Flush(session, db, steps);
      }
    }
    const ActionResult result = steps.Finish();
    if (result.exit_code == 0) {
      spdlog::info("{}: flushed db {} of {}:{}", kRedisFlushdb, db, host_, port_);
    } else {
      spdlog::warn("{}", result.reason);
    }
    return result;
  }

 private:
  void Flush(RedisSession& session, int db, StepRunner& steps) {
    redisContext* context = session.context();
    const std::string select = absl::StrCat("SELECT ", db);
    RedisReply selected(redisCommand(context, "SELECT %d", db));
    if (selected.reply == nullptr || selected.reply->type != REDIS_REPLY_STATUS) {
      session.Fail(select, selected);
      return;
    }
    RedisReply size(redisCommand(context, "DBSIZE"));
    if (size.reply == nullptr || size.reply->type != REDIS_REPLY_INTEGER) {
      session.Fail("DBSIZE", size);
      return;
    }
    RedisReply flushed(redisCommand(context, "FLUSHDB"));
    if (flushed.reply == nullptr || flushed.reply->type != REDIS_REPLY_STATUS) {
      session.Fail("FLUSHDB", flushed);
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
  ActionOptions o(options, file, kRedisFlushdb);
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
  ASSIGN_OR_RETURN(const RedisEndpoint redis,
                   RedisEndpointFor(context.redis_address, options, file, kRedisFlushdb));
  return std::make_unique<RedisFlushdb>(redis.host, redis.port, std::move(databases));
}

}  // namespace vigil::agent
