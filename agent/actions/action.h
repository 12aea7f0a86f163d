// The typed remediation actions an agent can run (never free-form shell). One action = one file
// pair here implementing Action + one line in builtin_actions.cc. The schema of each action's
// parameters lives in common/action_schema.h, shared with the controller.
// An Action is used by the command executor's thread only.
#pragma once

#include <yaml-cpp/yaml.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace vigil::agent {

using ActionParams = std::map<std::string, std::string>;

// What a child process did.
struct ProcessResult {
  int exit_code = -1;  // -1 when killed by a signal or not started
  bool timed_out = false;
  std::string output;  // stdout and stderr, interleaved, bounded (the tail is kept)
};

// Runs a program without a shell. Injected so unit tests need no real services.
class CommandRunner {
 public:
  virtual ~CommandRunner() = default;
  // argv[0] is looked up in PATH. A program that cannot start is an error, not a result.
  virtual absl::StatusOr<ProcessResult> Run(const std::vector<std::string>& argv,
                                            absl::Duration timeout) = 0;
};
// The real one: fork/exec, output captured through a pipe, SIGKILL of the process group on timeout.
std::unique_ptr<CommandRunner> NewProcessRunner(size_t max_output_bytes = 64 * 1024);

struct ActionResult {
  int exit_code = 0;        // 0 = success
  std::string output_tail;  // bounded, for the timeline
  std::string reason;       // why it failed (non-empty when exit_code != 0)
};

class Action {
 public:
  virtual ~Action() = default;
  virtual absl::string_view name() const = 0;
  // Checks parameters against the schema AND this agent's own limits (allowed units, directories,
  // databases). A refusal names the parameter and the limit. Nothing runs.
  virtual absl::Status Check(const ActionParams& params) const = 0;
  // Runs a checked action within `timeout`. Never throws.
  virtual ActionResult Run(const ActionParams& params, absl::Duration timeout) = 0;
};

struct ActionContext {
  CommandRunner* runner = nullptr;
  YAML::Node service_manager;  // the agent config's service_manager (systemd by default)
  std::string postgres_dsn;    // from collectors.postgres, when configured
  std::string redis_address;   // from collectors.redis, when configured
};

// Builds an action from its `actions.<name>` config node; `file` names the config for errors.
using ActionFactory = std::function<absl::StatusOr<std::unique_ptr<Action>>(
    const YAML::Node& options, const ActionContext& context, absl::string_view file)>;

class ActionRegistry {
 public:
  void Register(std::string name, ActionFactory factory) {
    factories_[std::move(name)] = std::move(factory);
  }
  const ActionFactory* Find(absl::string_view name) const {
    auto it = factories_.find(std::string(name));
    return it == factories_.end() ? nullptr : &it->second;
  }

 private:
  std::map<std::string, ActionFactory> factories_;
};

void RegisterBuiltinActions(ActionRegistry& registry);

// Builds every action listed in the config's `actions:` map (unknown names and bad options are
// refused with file, line and key).
absl::StatusOr<std::vector<std::unique_ptr<Action>>> BuildActions(const YAML::Node& actions,
                                                                  const ActionRegistry& registry,
                                                                  const ActionContext& context,
                                                                  absl::string_view file);

}  // namespace vigil::agent
