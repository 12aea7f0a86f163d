#include "agent/actions/logrotate.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/actions/action_util.h"
#include "common/action_schema.h"
#include "common/status.h"
#include "spdlog/spdlog.h"

namespace vigil::agent {
namespace {

constexpr char kLogrotate[] = "logrotate";

class Logrotate final : public Action {
 public:
  Logrotate(CommandRunner* runner, std::string logrotate, std::vector<std::string> configs,
            std::string state)
      : runner_(runner),
        logrotate_(std::move(logrotate)),
        configs_(std::move(configs)),
        state_(std::move(state)) {}

  absl::string_view name() const override { return kLogrotate; }

  absl::Status Check(const ActionParams& params) const override {
    RETURN_IF_ERROR(CheckActionParams(kLogrotate, params));
    auto it = params.find("config");
    if (it != params.end() &&
        std::find(configs_.begin(), configs_.end(), it->second) == configs_.end()) {
      return absl::PermissionDeniedError(
          absl::StrCat(kLogrotate, ": config '", it->second,
                       "' is not allowed (allowed: ", absl::StrJoin(configs_, ", "), ")"));
    }
    return absl::OkStatus();
  }

  ActionResult Run(const ActionParams& params, absl::Duration timeout) override {
    if (absl::Status s = Check(params); !s.ok()) {
      return Failure(std::string(s.message()));
    }
    auto it = params.find("config");
    const std::string& config = it == params.end() ? configs_.front() : it->second;
    std::vector<std::string> argv = {logrotate_, "-f"};
    if (!state_.empty()) {
      argv.insert(argv.end(), {"-s", state_});
    }
    argv.push_back(config);
    StepRunner steps(kLogrotate, runner_, timeout);
    if (steps.Run(argv)) {
      steps.Note(absl::StrCat("rotated the logs of ", config));
      spdlog::info("{}: rotated the logs of {}", kLogrotate, config);
    }
    return steps.Finish();
  }

 private:
  CommandRunner* runner_;
  std::string logrotate_;
  std::vector<std::string> configs_;
  std::string state_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Action>> NewLogrotateAction(const YAML::Node& options,
                                                           const ActionContext& context,
                                                           absl::string_view file) {
  ActionOptions o(options, file, kLogrotate);
  RETURN_IF_ERROR(o.CheckKeys({"configs", "state", "logrotate"}));
  ASSIGN_OR_RETURN(std::vector<std::string> configs,
                   o.List("configs", /*required=*/true, {"/etc/logrotate.conf"}));
  for (const std::string& config : configs) {
    if (!absl::StartsWith(config, "/")) {
      return o.Error("configs", absl::StrCat("'", config, "' must be an absolute path"));
    }
  }
  ASSIGN_OR_RETURN(std::string state, o.Path("state", ""));
  ASSIGN_OR_RETURN(std::string logrotate, o.String("logrotate", "/usr/sbin/logrotate"));
  return std::make_unique<Logrotate>(context.runner, std::move(logrotate), std::move(configs),
                                     std::move(state));
}

}  // namespace vigil::agent
