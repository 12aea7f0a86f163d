#include "agent/actions/docker_prune.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/actions/action_util.h"
#include "agent/actions/api_answers.h"
#include "common/action_schema.h"
#include "common/http/http_client.h"
#include "common/status.h"
#include "spdlog/spdlog.h"

namespace vigil::agent {
namespace {

constexpr char kDockerPrune[] = "docker_prune";
constexpr char kDefaultSocket[] = "/var/run/docker.sock";
// A host with thousands of images answers with a long list.
constexpr size_t kMaxDockerAnswerBytes = 8 * 1024 * 1024;

struct PruneStep {
  const char* what;
  const char* target;
};
// {"dangling":["false"]} percent-encoded: every unused image, not only dangling ones.
constexpr PruneStep kSteps[] = {
    {"containers", "/containers/prune"},
    {"networks", "/networks/prune"},
    {"images", "/images/prune?filters=%7B%22dangling%22%3A%5B%22false%22%5D%7D"},
    {"build cache", "/build/prune?all=true"},
};

class DockerPrune final : public Action {
 public:
  explicit DockerPrune(std::string socket) : socket_(std::move(socket)) {}

  absl::string_view name() const override { return kDockerPrune; }

  absl::Status Check(const ActionParams& params) const override {
    RETURN_IF_ERROR(CheckActionParams(kDockerPrune, params));
    struct stat st;
    if (stat(socket_.c_str(), &st) != 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          kDockerPrune, ": no Docker socket at ", socket_, " (socket): ", std::strerror(errno)));
    }
    if (!S_ISSOCK(st.st_mode)) {
      return absl::FailedPreconditionError(
          absl::StrCat(kDockerPrune, ": ", socket_, " is not a unix socket (socket)"));
    }
    return absl::OkStatus();
  }

  ActionResult Run(const ActionParams& params, absl::Duration timeout) override {
    if (absl::Status s = Check(params); !s.ok()) {
      return Failure(std::string(s.message()));
    }
    StepRunner steps(kDockerPrune, nullptr, timeout);
    int64_t total = 0;
    for (const PruneStep& step : kSteps) {
      const absl::Duration left = steps.remaining();
      if (left <= absl::ZeroDuration()) {
        steps.Fail(absl::StrCat(TimedOutAfter(timeout), " (before pruning ", step.what, ")"),
                   kExitKilled);
        break;
      }
      http::HttpClientOptions options;
      options.unix_socket = socket_;
      options.timeout = left;
      options.connect_timeout = std::min(left, absl::Seconds(5));
      options.max_response_bytes = kMaxDockerAnswerBytes;
      options.headers = {{"User-Agent", "vigil-agent"}};
      // The host part only fills the Host header: the connection goes to the socket.
      const std::string url = absl::StrCat("http://docker", step.target);
      steps.Note(absl::StrCat("> POST ", step.target));
      absl::StatusOr<http::HttpClientResponse> answer =
          http::HttpFetch("POST", url, "", "", options);
      if (!answer.ok()) {
        steps.Fail(std::string(answer.status().message()),
                   answer.status().code() == absl::StatusCode::kDeadlineExceeded ? kExitKilled
                                                                                 : kExitFailed);
        break;
      }
      if (answer->status != 200) {
        const std::string message = JsonErrorMessage(answer->body);
        steps.Fail(absl::StrCat("POST ", step.target, ": HTTP ", answer->status,
                                message.empty() ? "" : ": ", message));
        break;
      }
      absl::StatusOr<DockerPruned> pruned = ParseDockerPrune(answer->body);
      if (!pruned.ok()) {
        steps.Fail(absl::StrCat("POST ", step.target, ": ", pruned.status().message()));
        break;
      }
      total += pruned->space_reclaimed;
      steps.Note(absl::StrCat(step.what, ": ", pruned->deleted, " deleted, ",
                              pruned->space_reclaimed, " bytes reclaimed"));
    }
    steps.Note(absl::StrCat("total reclaimed: ", total, " bytes"));
    const ActionResult result = steps.Finish();
    if (result.exit_code == 0) {
      spdlog::info("{}: {} bytes reclaimed", kDockerPrune, total);
    } else {
      spdlog::warn("{}", result.reason);
    }
    return result;
  }

 private:
  std::string socket_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Action>> NewDockerPruneAction(const YAML::Node& options,
                                                             const ActionContext& context,
                                                             absl::string_view file) {
  ActionOptions o(options, file, kDockerPrune);
  RETURN_IF_ERROR(o.CheckKeys({"socket"}));
  ASSIGN_OR_RETURN(std::string socket, o.Path("socket", kDefaultSocket));
  return std::make_unique<DockerPrune>(std::move(socket));
}

}  // namespace vigil::agent
