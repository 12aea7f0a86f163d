// Pieces every action shares: reading its strict `actions.<name>` options, the bounded output tail,
// failure results, globs, and StepRunner, which runs the commands of one action against a single
// deadline and keeps what they printed. Internal to agent/actions. StepRunner is used by one
// thread; the free functions are stateless and thread-safe.
#pragma once

#include <yaml-cpp/yaml.h>

#include <initializer_list>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "agent/actions/action.h"

namespace vigil::agent {

// ActionResult::output_tail keeps at most this many bytes (the end of the output).
inline constexpr size_t kOutputTailBytes = 4096;

// Exit codes of results that did not come from a process.
inline constexpr int kExitFailed = 1;         // refused at run time, or a client-side error
inline constexpr int kExitCannotStart = 127;  // the program could not be started
inline constexpr int kExitKilled = -1;        // timed out or killed by a signal

// The last `max_bytes` of `text`, starting on a UTF-8 character boundary.
std::string Tail(absl::string_view text, size_t max_bytes = kOutputTailBytes);

// `text` on one line: trimmed, its newlines made spaces (a server's message in a result).
std::string OneLine(absl::string_view text);

// A failed result; `reason` must not be empty.
ActionResult Failure(std::string reason, absl::string_view output = "",
                     int exit_code = kExitFailed);

// fnmatch(3) of `text` against `pattern` (flags as fnmatch's).
bool GlobMatches(absl::string_view pattern, absl::string_view text, int flags = 0);

// "timed out after 10s".
std::string TimedOutAfter(absl::Duration timeout);

// Options of one action: `options` is the node of actions.<action> (null = no options).
class ActionOptions {
 public:
  ActionOptions(const YAML::Node& options, absl::string_view file, absl::string_view action)
      : node_(options), file_(file), context_(std::string("actions.") + std::string(action)) {}

  // Unknown keys, and options that are not a map, are refused.
  absl::Status CheckKeys(std::initializer_list<absl::string_view> allowed) const;
  // A string; a missing key yields `fallback`, an empty one is refused.
  absl::StatusOr<std::string> String(absl::string_view key, absl::string_view fallback) const;
  // The same, and it must be an absolute path.
  absl::StatusOr<std::string> Path(absl::string_view key, absl::string_view fallback) const;
  absl::StatusOr<bool> Bool(absl::string_view key, bool fallback) const;
  absl::StatusOr<absl::Duration> Duration(absl::string_view key, absl::Duration fallback) const;
  // A list of strings; `fallback` when missing; an empty list is refused when `required`.
  absl::StatusOr<std::vector<std::string>> List(absl::string_view key, bool required,
                                                std::vector<std::string> fallback = {}) const;
  // "agent.yaml:12: actions.restart_service.units: <what>" (the line of the key when present).
  absl::Status Error(absl::string_view key, absl::string_view what) const;

  const YAML::Node& node() const { return node_; }
  absl::string_view file() const { return file_; }

 private:
  YAML::Node node_;
  std::string file_;
  std::string context_;
};

// Runs the commands of one action one after the other within one overall timeout; their output
// (each preceded by "$ argv") goes to a bounded tail. The first failure is recorded.
class StepRunner {
 public:
  StepRunner(absl::string_view action, CommandRunner* runner, absl::Duration timeout);

  // Runs `argv` with the time left; true when it exited 0. Otherwise the failure (exit code, and
  // a reason naming the command) is recorded and false returned.
  bool Run(const std::vector<std::string>& argv);
  // Appends a line of our own to the output.
  void Note(absl::string_view line);
  // Records a failure that is not a command's (e.g. a refusal found at run time).
  void Fail(std::string reason, int exit_code = kExitFailed);
  bool failed() const { return !reason_.empty(); }
  // The output of the last command run (bounded by the runner).
  const std::string& last_output() const { return last_output_; }
  absl::Duration remaining() const { return deadline_ - absl::Now(); }

  // The result: exit code 0 unless a step failed, the output tail, the reason.
  ActionResult Finish() const;

 private:
  std::string action_;
  CommandRunner* runner_;
  absl::Duration timeout_;
  absl::Time deadline_;
  std::string output_;
  std::string last_output_;
  int exit_code_ = 0;
  std::string reason_;
};

// "nginx -t -c /etc/nginx/nginx.conf", for messages.
std::string CommandText(const std::vector<std::string>& argv);

// The whole file.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path);
// Replaces `path` with `content` atomically: a temp file in the same directory (same mode and
// owner as the file it replaces), fsync, rename, fsync of the directory.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view content);

}  // namespace vigil::agent
