#include "agent/actions/redis_config_set.h"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
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

constexpr char kRedisConfigSet[] = "redis_config_set";

class RedisConfigSet final : public Action {
 public:
  RedisConfigSet(std::string host, int port,
                 std::map<std::string, std::vector<std::string>> allowed)
      : host_(std::move(host)), port_(port), allowed_(std::move(allowed)) {}

  absl::string_view name() const override { return kRedisConfigSet; }

  absl::Status Check(const ActionParams& params) const override {
    RETURN_IF_ERROR(CheckActionParams(kRedisConfigSet, params));
    const std::string parameter = absl::AsciiStrToLower(params.at("parameter"));
    auto it = allowed_.find(parameter);
    if (it == allowed_.end()) {
      std::vector<std::string> names;
      for (const auto& [name, values] : allowed_) {
        names.push_back(name);
      }
      return absl::PermissionDeniedError(
          absl::StrCat(kRedisConfigSet, ": parameter '", params.at("parameter"),
                       "' is not allowed (parameters: ", absl::StrJoin(names, ", "), ")"));
    }
    const std::string& value = params.at("value");
    if (std::find(it->second.begin(), it->second.end(), value) == it->second.end()) {
      return absl::PermissionDeniedError(
          absl::StrCat(kRedisConfigSet, ": value '", value, "' is not allowed for ", parameter,
                       " (values: ", absl::StrJoin(it->second, ", "), ")"));
    }
    return absl::OkStatus();
  }

  ActionResult Run(const ActionParams& params, absl::Duration timeout) override {
    if (absl::Status s = Check(params); !s.ok()) {
      return Failure(std::string(s.message()));
    }
    const std::string parameter = absl::AsciiStrToLower(params.at("parameter"));
    const std::string& value = params.at("value");
    StepRunner steps(kRedisConfigSet, nullptr, timeout);
    {
      RedisSession session(host_, port_, timeout, steps);
      if (session.ok()) {
        Set(session, parameter, value, steps);
      }
    }
    const ActionResult result = steps.Finish();
    if (result.exit_code == 0) {
      spdlog::info("{}: {} = {} on {}:{}", kRedisConfigSet, parameter, value, host_, port_);
    } else {
      spdlog::warn("{}", result.reason);
    }
    return result;
  }

 private:
  // CONFIG GET's value, or nullopt with the failure recorded.
  std::optional<std::string> Get(RedisSession& session, const std::string& parameter) {
    RedisReply got(redisCommand(session.context(), "CONFIG GET %s", parameter.c_str()));
    if (got.reply == nullptr || got.reply->type != REDIS_REPLY_ARRAY || got.reply->elements != 2 ||
        got.reply->element[1]->type != REDIS_REPLY_STRING) {
      session.Fail(absl::StrCat("CONFIG GET ", parameter), got);
      return std::nullopt;
    }
    return std::string(got.reply->element[1]->str, got.reply->element[1]->len);
  }

  void Set(RedisSession& session, const std::string& parameter, const std::string& value,
           StepRunner& steps) {
    std::optional<std::string> before = Get(session, parameter);
    if (!before) {
      return;
    }
    RedisReply set(
        redisCommand(session.context(), "CONFIG SET %s %s", parameter.c_str(), value.c_str()));
    if (set.reply == nullptr || set.reply->type != REDIS_REPLY_STATUS) {
      session.Fail(absl::StrCat("CONFIG SET ", parameter, " ", value), set);
      return;
    }
    std::optional<std::string> after = Get(session, parameter);
    if (!after) {
      return;
    }
    steps.Note(
        absl::StrCat(parameter, ": '", *before, "' -> '", *after, "' on ", host_, ":", port_));
    if (*after != value) {
      steps.Fail(absl::StrCat("CONFIG GET ", parameter, " reads '", *after, "' after setting '",
                              value, "'"));
    }
  }

  std::string host_;
  int port_;
  std::map<std::string, std::vector<std::string>> allowed_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Action>> NewRedisConfigSetAction(const YAML::Node& options,
                                                                const ActionContext& context,
                                                                absl::string_view file) {
  ActionOptions o(options, file, kRedisConfigSet);
  RETURN_IF_ERROR(o.CheckKeys({"parameters"}));
  const YAML::Node parameters = options.IsMap() ? options["parameters"] : YAML::Node();
  if (!parameters.IsDefined() || parameters.IsNull()) {
    return o.Error("parameters", "is required (a map of parameter: [allowed values])");
  }
  if (!parameters.IsMap() || parameters.size() == 0) {
    return o.Error("parameters", "must be a non-empty map of parameter: [allowed values]");
  }
  std::map<std::string, std::vector<std::string>> allowed;
  for (const auto& kv : parameters) {
    ASSIGN_OR_RETURN(
        const std::string parameter,
        YamlKey(kv.first, file, absl::StrCat("actions.", kRedisConfigSet, ".parameters")));
    const std::string key = absl::StrCat("actions.", kRedisConfigSet, ".parameters.", parameter);
    auto error = [&](absl::string_view what) {
      return absl::InvalidArgumentError(
          absl::StrCat(YamlWhere(file, kv.second), ": ", key, ": ", what));
    };
    for (char c : parameter) {
      if (!absl::ascii_isalnum(c) && c != '-' && c != '_') {
        return error("is not a Redis parameter name (letters, digits, - and _)");
      }
    }
    if (!kv.second.IsSequence() || kv.second.size() == 0) {
      return error("must be a non-empty list of allowed values");
    }
    std::vector<std::string> values;
    for (const YAML::Node& value : kv.second) {
      if (!value.IsScalar() || value.Scalar().empty()) {
        return error("must list non-empty strings");
      }
      values.push_back(value.Scalar());
    }
    allowed[absl::AsciiStrToLower(parameter)] = std::move(values);
  }
  ASSIGN_OR_RETURN(const RedisEndpoint redis,
                   RedisEndpointFor(context.redis_address, options, file, kRedisConfigSet));
  return std::make_unique<RedisConfigSet>(redis.host, redis.port, std::move(allowed));
}

}  // namespace vigil::agent
