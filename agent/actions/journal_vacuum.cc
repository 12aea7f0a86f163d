#include "agent/actions/journal_vacuum.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "agent/actions/action_util.h"
#include "common/action_schema.h"
#include "common/status.h"
#include "common/yaml_util.h"
#include "spdlog/spdlog.h"

namespace vigil::agent {
namespace {

constexpr char kJournalVacuum[] = "journal_vacuum";

class JournalVacuum final : public Action {
 public:
  JournalVacuum(CommandRunner* runner, absl::Duration min_age, std::string directory)
      : runner_(runner), min_age_(min_age), directory_(std::move(directory)) {}

  absl::string_view name() const override { return kJournalVacuum; }

  absl::Status Check(const ActionParams& params) const override {
    RETURN_IF_ERROR(CheckActionParams(kJournalVacuum, params));
    ASSIGN_OR_RETURN(absl::Duration older_than, ParseDurationText(params.at("older_than")));
    if (older_than < min_age_) {
      return absl::PermissionDeniedError(
          absl::StrCat(kJournalVacuum, ": older_than ", params.at("older_than"),
                       " is below the limit ", absl::FormatDuration(min_age_), " (min_age)"));
    }
    return absl::OkStatus();
  }

  ActionResult Run(const ActionParams& params, absl::Duration timeout) override {
    if (absl::Status s = Check(params); !s.ok()) {
      return Failure(std::string(s.message()));
    }
    const absl::Duration older_than = *ParseDurationText(params.at("older_than"));
    std::vector<std::string> argv = {"journalctl"};
    if (!directory_.empty()) {
      argv.push_back(absl::StrCat("--directory=", directory_));
    }
    // Whole seconds: journalctl reads "604800s" whatever its locale.
    argv.push_back(absl::StrCat("--vacuum-time=", absl::ToInt64Seconds(older_than), "s"));
    StepRunner steps(kJournalVacuum, runner_, timeout);
    if (steps.Run(argv)) {
      spdlog::info("{}: journals older than {} vacuumed", kJournalVacuum, params.at("older_than"));
    } else {
      spdlog::warn("{}", steps.Finish().reason);
    }
    return steps.Finish();
  }

 private:
  CommandRunner* runner_;
  absl::Duration min_age_;
  std::string directory_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Action>> NewJournalVacuumAction(const YAML::Node& options,
                                                               const ActionContext& context,
                                                               absl::string_view file) {
  ActionOptions o(options, file, kJournalVacuum);
  RETURN_IF_ERROR(o.CheckKeys({"min_age", "directory"}));
  ASSIGN_OR_RETURN(absl::Duration min_age, o.Duration("min_age", absl::Hours(24)));
  if (min_age <= absl::ZeroDuration()) {
    return o.Error("min_age", "must be positive");
  }
  ASSIGN_OR_RETURN(std::string directory, o.Path("directory", ""));
  return std::make_unique<JournalVacuum>(context.runner, min_age, std::move(directory));
}

}  // namespace vigil::agent
