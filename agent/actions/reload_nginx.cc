#include "agent/actions/reload_nginx.h"

#include "absl/strings/str_cat.h"
#include "common/action_schema.h"
#include "common/status.h"
#include "spdlog/spdlog.h"

namespace vigil::agent {
namespace {

constexpr char kReloadNginx[] = "reload_nginx";

class ReloadNginx final : public Action {
 public:
  ReloadNginx(CommandRunner* runner, NginxCommands nginx)
      : runner_(runner), nginx_(std::move(nginx)) {}

  absl::string_view name() const override { return kReloadNginx; }

  absl::Status Check(const ActionParams& params) const override {
    return CheckActionParams(kReloadNginx, params);
  }

  ActionResult Run(const ActionParams& params, absl::Duration timeout) override {
    if (absl::Status s = Check(params); !s.ok()) {
      return Failure(std::string(s.message()));
    }
    StepRunner steps(kReloadNginx, runner_, timeout);
    if (!steps.Run(nginx_.TestArgv())) {
      steps.Note("configuration test failed: nginx not reloaded");
      spdlog::warn("{}; nginx not reloaded", steps.Finish().reason);
      return steps.Finish();
    }
    if (steps.Run(nginx_.ReloadArgv())) {
      steps.Note("nginx reloaded");
      spdlog::info("{}: nginx reloaded ({})", kReloadNginx, nginx_.config);
    }
    return steps.Finish();
  }

 private:
  CommandRunner* runner_;
  NginxCommands nginx_;
};

}  // namespace

absl::StatusOr<NginxCommands> ReadNginxCommands(const ActionOptions& options) {
  NginxCommands commands;
  ASSIGN_OR_RETURN(commands.nginx, options.String("nginx", commands.nginx));
  ASSIGN_OR_RETURN(commands.config, options.Path("config", commands.config));
  return commands;
}

absl::StatusOr<std::unique_ptr<Action>> NewReloadNginxAction(const YAML::Node& options,
                                                             const ActionContext& context,
                                                             absl::string_view file) {
  ActionOptions o(options, file, kReloadNginx);
  RETURN_IF_ERROR(o.CheckKeys({"config", "nginx"}));
  ASSIGN_OR_RETURN(NginxCommands commands, ReadNginxCommands(o));
  return std::make_unique<ReloadNginx>(context.runner, std::move(commands));
}

}  // namespace vigil::agent
