#include "agent/actions/restart_service.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "agent/actions/action_util.h"
#include "common/action_schema.h"
#include "common/status.h"
#include "common/yaml_util.h"
#include "spdlog/spdlog.h"

namespace vigil::agent {
namespace {

constexpr char kRestartService[] = "restart_service";
constexpr char kUnitPlaceholder[] = "{unit}";

bool ValidUnitName(absl::string_view unit) {
  if (unit.empty() || unit.size() > 256 || unit[0] == '-') {
    return false;
  }
  for (char c : unit) {
    if (!absl::ascii_isalnum(c) && c != '@' && c != '.' && c != '_' && c != ':' && c != '-') {
      return false;
    }
  }
  return true;
}

class RestartService final : public Action {
 public:
  RestartService(CommandRunner* runner, std::vector<std::string> units,
                 std::vector<std::string> restart_template)
      : runner_(runner), units_(std::move(units)), template_(std::move(restart_template)) {}

  absl::string_view name() const override { return kRestartService; }

  absl::Status Check(const ActionParams& params) const override {
    RETURN_IF_ERROR(CheckActionParams(kRestartService, params));
    const std::string& unit = params.at("unit");
    if (!ValidUnitName(unit)) {
      return absl::InvalidArgumentError(
          absl::StrCat(kRestartService, ": unit '", unit,
                       "' is not a valid unit name (letters, digits, @._:-)"));
    }
    for (const std::string& glob : units_) {
      if (GlobMatches(glob, unit)) {
        return absl::OkStatus();
      }
    }
    return absl::PermissionDeniedError(
        absl::StrCat(kRestartService, ": unit '", unit,
                     "' is not allowed (allowed: ", absl::StrJoin(units_, ", "), ")"));
  }

  ActionResult Run(const ActionParams& params, absl::Duration timeout) override {
    if (absl::Status s = Check(params); !s.ok()) {
      return Failure(std::string(s.message()));
    }
    const std::string& unit = params.at("unit");
    StepRunner steps(kRestartService, runner_, timeout);
    if (steps.Run(RestartArgv(template_, unit))) {
      steps.Note(absl::StrCat("restarted ", unit));
      spdlog::info("{}: restarted {}", kRestartService, unit);
    } else {
      spdlog::warn("{}", steps.Finish().reason);
    }
    return steps.Finish();
  }

 private:
  CommandRunner* runner_;
  std::vector<std::string> units_;
  std::vector<std::string> template_;
};

}  // namespace

absl::StatusOr<std::vector<std::string>> ParseServiceManager(const YAML::Node& service_manager,
                                                             absl::string_view file) {
  const std::vector<std::string> systemd = {"systemctl", "restart", kUnitPlaceholder};
  if (!service_manager.IsDefined() || service_manager.IsNull()) {
    return systemd;
  }
  if (service_manager.IsScalar()) {
    if (service_manager.Scalar() == "systemd") {
      return systemd;
    }
    return absl::InvalidArgumentError(absl::StrCat(
        YamlWhere(file, service_manager), ": key 'service_manager': '", service_manager.Scalar(),
        "' is not known (write systemd, or {restart: \"COMMAND ... {unit}\"})"));
  }
  RETURN_IF_ERROR(YamlCheckKeys(service_manager, file, "service_manager", {"restart"}));
  const YAML::Node restart = service_manager["restart"];
  auto error = [&](absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat(YamlWhere(file, restart.IsDefined() ? restart : service_manager),
                     ": key 'service_manager.restart' ", what));
  };
  std::vector<std::string> argv;
  if (!restart.IsDefined() || restart.IsNull()) {
    return error("is missing (a command such as \"supervisorctl restart {unit}\")");
  }
  if (restart.IsScalar()) {
    argv = absl::StrSplit(restart.Scalar(), absl::ByAnyChar(" \t\n"), absl::SkipEmpty());
  } else if (restart.IsSequence()) {
    for (const YAML::Node& arg : restart) {
      if (!arg.IsScalar()) {
        return error("must be a command string or a list of strings");
      }
      argv.push_back(arg.Scalar());
    }
  } else {
    return error("must be a command string or a list of strings");
  }
  if (argv.empty() || argv[0].empty()) {
    return error("is empty");
  }
  if (absl::StrContains(argv[0], kUnitPlaceholder)) {
    return error("must not have {unit} in the program name");
  }
  bool has_unit = false;
  for (const std::string& arg : argv) {
    has_unit = has_unit || absl::StrContains(arg, kUnitPlaceholder);
  }
  if (!has_unit) {
    return error("must contain {unit}");
  }
  return argv;
}

std::vector<std::string> RestartArgv(const std::vector<std::string>& restart_template,
                                     absl::string_view unit) {
  std::vector<std::string> argv;
  for (const std::string& arg : restart_template) {
    argv.push_back(absl::StrReplaceAll(arg, {{kUnitPlaceholder, unit}}));
  }
  return argv;
}

absl::StatusOr<std::unique_ptr<Action>> NewRestartServiceAction(const YAML::Node& options,
                                                                const ActionContext& context,
                                                                absl::string_view file) {
  ActionOptions o(options, file, kRestartService);
  RETURN_IF_ERROR(o.CheckKeys({"units"}));
  ASSIGN_OR_RETURN(std::vector<std::string> units, o.List("units", /*required=*/true));
  ASSIGN_OR_RETURN(std::vector<std::string> restart_template,
                   ParseServiceManager(context.service_manager, file));
  return std::make_unique<RestartService>(context.runner, std::move(units),
                                          std::move(restart_template));
}

}  // namespace vigil::agent
