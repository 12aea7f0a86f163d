// Test support for integration tests with real processes on loopback: child processes, free
// ports, temp dirs, polling. Not for production code. Subprocess is thread-compatible.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace vigil::testing {

// A child process with stdout and stderr in a log file. Killed and reaped on destruction; the
// child also dies with the test (PR_SET_PDEATHSIG), so nothing outlives a crashed test.
class Subprocess {
 public:
  Subprocess(std::vector<std::string> argv, std::map<std::string, std::string> env = {},
             std::string log_path = "");
  ~Subprocess();
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  pid_t pid() const { return pid_; }
  bool Running();
  void Signal(int sig);
  void Kill();  // SIGKILL and reap
  // SIGTERM, then SIGKILL after `timeout`; returns the exit code (128 + signal when signalled).
  int Stop(absl::Duration timeout = absl::Seconds(5));
  // Waits for exit; -1 on timeout.
  int Wait(absl::Duration timeout);
  std::string Output() const;
  const std::string& log_path() const { return log_path_; }

 private:
  std::string log_path_;
  pid_t pid_ = -1;
  int exit_code_ = -1;
  bool reaped_ = false;
};

// A port on 127.0.0.1 that was free a moment ago, outside the range the kernel picks from for
// outgoing connections, and not returned before by this process.
uint16_t FreeLoopbackPort();

// mkdtemp under /tmp, removed recursively unless VIGIL_KEEP_TEMP is set.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string File(absl::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

// Polls `condition` until true or `timeout`.
bool WaitUntil(const std::function<bool()>& condition, absl::Duration timeout,
               absl::Duration poll = absl::Milliseconds(50));

// A built binary: "vigil-agent", "vigil-controller", "vigil", or a bench/test target path.
std::string BinaryPath(absl::string_view name);
std::string SourcePath(absl::string_view relative);
std::string ReadFileOrEmpty(const std::string& path);
void WriteFile(const std::string& path, absl::string_view content);

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
  std::string stdout_text;
};
// For RunCommand's env: blanks every VIGIL_* setting the CLI reads, so a developer's exported
// settings never change what the binaries are given in a test.
inline const std::map<std::string, std::string>& CleanVigilEnvironment() {
  static const auto* const kEnvironment = new std::map<std::string, std::string>{
      {"VIGIL_TLS_CA", ""},   {"VIGIL_TLS_CERT", ""},   {"VIGIL_TLS_KEY", ""},
      {"VIGIL_INSECURE", ""}, {"VIGIL_CONTROLLER", ""}, {"VIGIL_TOKEN", ""}};
  return *kEnvironment;
}

// Runs argv to completion (killed after `timeout`).
CommandResult RunCommand(const std::vector<std::string>& argv,
                         absl::Duration timeout = absl::Seconds(30),
                         std::map<std::string, std::string> env = {});

// Adds a user to a controller's database with `vigil-controller users add` and returns the
// token it printed (empty, with a test failure, when it could not).
std::string AddVigilUser(const std::string& db_path, const std::string& name,
                         const std::string& role);

}  // namespace vigil::testing
