#include "agent/actions/drop_caches.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/actions/action_util.h"
#include "common/action_schema.h"
#include "common/status.h"
#include "spdlog/spdlog.h"

namespace vigil::agent {
namespace {

constexpr char kDropCaches[] = "drop_caches";
constexpr char kDefaultPath[] = "/proc/sys/vm/drop_caches";

// "Cached:" of /proc/meminfo, or "" when it cannot be read.
std::string CachedMemory() {
  absl::StatusOr<std::string> meminfo = ReadWholeFile("/proc/meminfo");
  if (!meminfo.ok()) {
    return "";
  }
  for (absl::string_view line : absl::StrSplit(*meminfo, '\n')) {
    if (absl::ConsumePrefix(&line, "Cached:")) {
      return std::string(absl::StripAsciiWhitespace(line));
    }
  }
  return "";
}

class DropCaches final : public Action {
 public:
  DropCaches(CommandRunner* runner, std::string path) : runner_(runner), path_(std::move(path)) {}

  absl::string_view name() const override { return kDropCaches; }

  absl::Status Check(const ActionParams& params) const override {
    return CheckActionParams(kDropCaches, params);
  }

  ActionResult Run(const ActionParams& params, absl::Duration timeout) override {
    if (absl::Status s = Check(params); !s.ok()) {
      return Failure(std::string(s.message()));
    }
    StepRunner steps(kDropCaches, runner_, timeout);
    const std::string before = CachedMemory();
    // Dirty pages are written first: only clean pages can be dropped.
    if (!steps.Run({"sync"})) {
      spdlog::warn("{}", steps.Finish().reason);
      return steps.Finish();
    }
    steps.Note(absl::StrCat("$ echo 3 > ", path_));
    // No O_CREAT: the file is the kernel's (or a test's stand-in), never one we make up.
    const int fd = open(path_.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
      steps.Fail(absl::StrCat("cannot open ", path_, ": ", std::strerror(errno)));
    } else {
      if (write(fd, "3\n", 2) != 2) {
        steps.Fail(absl::StrCat("cannot write to ", path_, ": ", std::strerror(errno)));
      }
      close(fd);
    }
    if (!steps.failed()) {
      const std::string after = CachedMemory();
      steps.Note(before.empty()
                     ? "caches dropped"
                     : absl::StrCat("page cache: ", before, " before, ", after, " after"));
      spdlog::info("{}: done ({})", kDropCaches, path_);
    } else {
      spdlog::warn("{}", steps.Finish().reason);
    }
    return steps.Finish();
  }

 private:
  CommandRunner* runner_;
  std::string path_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Action>> NewDropCachesAction(const YAML::Node& options,
                                                            const ActionContext& context,
                                                            absl::string_view file) {
  ActionOptions o(options, file, kDropCaches);
  RETURN_IF_ERROR(o.CheckKeys({"path"}));
  ASSIGN_OR_RETURN(std::string path, o.Path("path", kDefaultPath));
  return std::make_unique<DropCaches>(context.runner, std::move(path));
}

}  // namespace vigil::agent
