#include "agent/actions/action_util.h"

#include <fcntl.h>
#include <fnmatch.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/yaml_util.h"
#include "spdlog/spdlog.h"

namespace vigil::agent {
namespace {

// The first non-empty line of a command's output, shortened, to say why it failed.
std::string FirstLine(absl::string_view output) {
  for (absl::string_view line : absl::StrSplit(output, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (!line.empty()) {
      return std::string(line.substr(0, 200));
    }
  }
  return "";
}

}  // namespace

std::string OneLine(absl::string_view text) {
  return absl::StrReplaceAll(absl::StripAsciiWhitespace(text), {{"\n", " "}});
}

std::string Tail(absl::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) {
    return std::string(text);
  }
  size_t start = text.size() - max_bytes;
  while (start < text.size() && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) {
    ++start;
  }
  return std::string(text.substr(start));
}

ActionResult Failure(std::string reason, absl::string_view output, int exit_code) {
  ActionResult result;
  result.exit_code = exit_code == 0 ? kExitFailed : exit_code;
  result.output_tail = Tail(output);
  result.reason = reason.empty() ? "failed" : std::move(reason);
  return result;
}

bool GlobMatches(absl::string_view pattern, absl::string_view text, int flags) {
  return fnmatch(std::string(pattern).c_str(), std::string(text).c_str(), flags) == 0;
}

std::string TimedOutAfter(absl::Duration timeout) {
  return absl::StrCat("timed out after ", absl::FormatDuration(timeout));
}

std::string CommandText(const std::vector<std::string>& argv) { return absl::StrJoin(argv, " "); }

absl::Status ActionOptions::CheckKeys(std::initializer_list<absl::string_view> allowed) const {
  return YamlCheckKeys(node_, file_, context_, allowed);
}

absl::Status ActionOptions::Error(absl::string_view key, absl::string_view what) const {
  const YAML::Node value = node_.IsMap() ? node_[std::string(key)] : YAML::Node();
  const std::string where =
      value.IsDefined() && !value.IsNull() ? YamlWhere(file_, value) : YamlWhere(file_, node_);
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", context_, ".", key, ": ", what));
}

absl::StatusOr<std::string> ActionOptions::String(absl::string_view key,
                                                  absl::string_view fallback) const {
  const YAML::Node present = node_.IsMap() ? node_[std::string(key)] : YAML::Node();
  if (!present.IsDefined() || present.IsNull()) {
    return std::string(fallback);
  }
  absl::StatusOr<std::string> value = YamlString(node_, key, file_, false, fallback);
  if (value.ok() && value->empty()) {
    return Error(key, "must not be empty");
  }
  return value;
}

absl::StatusOr<std::string> ActionOptions::Path(absl::string_view key,
                                                absl::string_view fallback) const {
  absl::StatusOr<std::string> value = String(key, fallback);
  if (value.ok() && !value->empty() && !absl::StartsWith(*value, "/")) {
    return Error(key, absl::StrCat("'", *value, "' must be an absolute path"));
  }
  return value;
}

absl::StatusOr<bool> ActionOptions::Bool(absl::string_view key, bool fallback) const {
  return YamlBool(node_, key, file_, fallback);
}

absl::StatusOr<absl::Duration> ActionOptions::Duration(absl::string_view key,
                                                       absl::Duration fallback) const {
  return YamlDuration(node_, key, file_, fallback);
}

absl::StatusOr<std::vector<std::string>> ActionOptions::List(
    absl::string_view key, bool required, std::vector<std::string> fallback) const {
  const YAML::Node value = node_.IsMap() ? node_[std::string(key)] : YAML::Node();
  if (!value.IsDefined() || value.IsNull()) {
    if (required && fallback.empty()) {
      return Error(key, "is required (a non-empty list)");
    }
    return fallback;
  }
  absl::StatusOr<std::vector<std::string>> list = YamlStringList(node_, key, file_);
  if (!list.ok()) {
    return list.status();
  }
  if (required && list->empty()) {
    return Error(key, "must not be empty");
  }
  for (const std::string& item : *list) {
    if (item.empty()) {
      return Error(key, "has an empty entry");
    }
  }
  return list;
}

StepRunner::StepRunner(absl::string_view action, CommandRunner* runner, absl::Duration timeout)
    : action_(action), runner_(runner), timeout_(timeout), deadline_(absl::Now() + timeout) {}

void StepRunner::Note(absl::string_view line) {
  absl::StrAppend(&output_, line, "\n");
  if (output_.size() > 2 * kOutputTailBytes) {
    output_ = Tail(output_);
  }
}

void StepRunner::Fail(std::string reason, int exit_code) {
  if (failed()) {
    return;  // the first failure is the reason
  }
  exit_code_ = exit_code == 0 ? kExitFailed : exit_code;
  reason_ = absl::StartsWith(reason, absl::StrCat(action_, ": "))
                ? std::move(reason)
                : absl::StrCat(action_, ": ", reason);
}

bool StepRunner::Run(const std::vector<std::string>& argv) {
  if (failed()) {
    return false;
  }
  const std::string command = CommandText(argv);
  Note(absl::StrCat("$ ", command));
  last_output_.clear();
  const absl::Duration left = remaining();
  if (left <= absl::ZeroDuration()) {
    Fail(absl::StrCat(TimedOutAfter(timeout_), " (before ", command, ")"), kExitKilled);
    return false;
  }
  if (runner_ == nullptr) {
    Fail("no command runner", kExitCannotStart);
    return false;
  }
  absl::StatusOr<ProcessResult> result = runner_->Run(argv, left);
  if (!result.ok()) {
    Fail(absl::StrCat("cannot run ", command, ": ", result.status().message()), kExitCannotStart);
    Note(result.status().message());
    return false;
  }
  last_output_ = result->output;
  if (!result->output.empty()) {
    Note(absl::StripSuffix(result->output, "\n"));
  }
  if (result->timed_out) {
    Fail(absl::StrCat(TimedOutAfter(timeout_), " (", command, ")"), kExitKilled);
    return false;
  }
  if (result->exit_code != 0) {
    const std::string first = FirstLine(result->output);
    Fail(
        absl::StrCat(command,
                     result->exit_code < 0 ? " was killed by a signal"
                                           : absl::StrCat(" failed (exit ", result->exit_code, ")"),
                     first.empty() ? "" : ": ", first),
        result->exit_code < 0 ? kExitKilled : result->exit_code);
    return false;
  }
  return true;
}

ActionResult StepRunner::Finish() const {
  ActionResult result;
  result.exit_code = exit_code_;
  result.output_tail = Tail(output_);
  result.reason = reason_;
  return result;
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) {
    return absl::DataLossError(absl::StrCat("cannot read ", path));
  }
  return buffer.str();
}

absl::Status WriteFileAtomically(const std::string& path, absl::string_view content) {
  const size_t slash = path.rfind('/');
  const std::string dir =
      slash == std::string::npos ? "." : path.substr(0, std::max<size_t>(slash, 1));
  const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  std::string temp = absl::StrCat(dir, "/.", base, ".vigil-XXXXXX");
  const int fd = mkostemp(temp.data(), O_CLOEXEC);
  if (fd < 0) {
    return absl::InternalError(
        absl::StrCat("cannot create a temp file in ", dir, ": ", std::strerror(errno)));
  }
  auto fail = [&](absl::string_view what) {
    const std::string why = std::strerror(errno);
    close(fd);
    unlink(temp.c_str());
    return absl::InternalError(absl::StrCat("cannot ", what, " ", temp, ": ", why));
  };
  struct stat st;
  if (stat(path.c_str(), &st) == 0) {
    fchmod(fd, st.st_mode & 07777);
    if (fchown(fd, st.st_uid, st.st_gid) != 0) {
      // Not root: the new file keeps our ownership.
      spdlog::debug("cannot keep the owner of {}: {}", path, std::strerror(errno));
    }
  } else {
    fchmod(fd, 0644);
  }
  size_t written = 0;
  while (written < content.size()) {
    const ssize_t n = write(fd, content.data() + written, content.size() - written);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return fail("write");
    }
    written += n;
  }
  if (fsync(fd) != 0) {
    return fail("fsync");
  }
  if (close(fd) != 0) {
    const std::string why = std::strerror(errno);
    unlink(temp.c_str());
    return absl::InternalError(absl::StrCat("cannot close ", temp, ": ", why));
  }
  if (rename(temp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    unlink(temp.c_str());
    return absl::InternalError(absl::StrCat("cannot rename ", temp, " to ", path, ": ", why));
  }
  if (const int dir_fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dir_fd >= 0) {
    fsync(dir_fd);
    close(dir_fd);
  }
  return absl::OkStatus();
}

}  // namespace vigil::agent
