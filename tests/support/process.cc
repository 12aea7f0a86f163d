#include "tests/support/process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace vigil::testing {
namespace {

pid_t Spawn(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
            const std::string& out_path, const std::string& err_path) {
  // What the CLI remembers per controller (its audit witness) stays with this test process:
  // ports are reused across tests, and another test's controller must not look like a
  // rolled-back one.
  const std::string state_dir = absl::StrCat("/tmp/vigil-test-state-", getpid());
  pid_t pid = fork();
  if (pid != 0) {
    return pid;
  }
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  setpgid(0, 0);
  int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  int err =
      err_path == out_path ? out : open(err_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  int in = open("/dev/null", O_RDONLY);
  dup2(in, 0);
  dup2(out, 1);
  dup2(err, 2);
  setenv("VIGIL_STATE_DIR", state_dir.c_str(), 1);
  for (const auto& [k, v] : env) {
    setenv(k.c_str(), v.c_str(), 1);
  }
  std::vector<char*> args;
  for (const std::string& a : argv) {
    args.push_back(const_cast<char*>(a.c_str()));
  }
  args.push_back(nullptr);
  execvp(args[0], args.data());
  fprintf(stderr, "cannot exec %s: %s\n", args[0], strerror(errno));
  _exit(127);
}

int DecodeStatus(int status) {
  if (WIFEXITED(status)) {
    return WEXITSTATUS(status);
  }
  if (WIFSIGNALED(status)) {
    return 128 + WTERMSIG(status);
  }
  return -1;
}

}  // namespace

Subprocess::Subprocess(std::vector<std::string> argv, std::map<std::string, std::string> env,
                       std::string log_path)
    : log_path_(std::move(log_path)) {
  if (log_path_.empty()) {
    char name[] = "/tmp/vigil-subprocess-XXXXXX";
    int fd = mkstemp(name);
    close(fd);
    log_path_ = name;
  }
  pid_ = Spawn(argv, env, log_path_, log_path_);
}

Subprocess::~Subprocess() { Kill(); }

bool Subprocess::Running() {
  if (reaped_) {
    return false;
  }
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    reaped_ = true;
    exit_code_ = DecodeStatus(status);
    return false;
  }
  return true;
}

void Subprocess::Signal(int sig) {
  if (!reaped_) {
    kill(pid_, sig);
  }
}

void Subprocess::Kill() {
  if (reaped_ || pid_ <= 0) {
    return;
  }
  kill(pid_, SIGKILL);
  Wait(absl::Seconds(10));
}

int Subprocess::Wait(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (Running()) {
    if (absl::Now() >= deadline) {
      return -1;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return exit_code_;
}

int Subprocess::Stop(absl::Duration timeout) {
  if (reaped_) {
    return exit_code_;
  }
  kill(pid_, SIGCONT);
  kill(pid_, SIGTERM);
  int code = Wait(timeout);
  if (code == -1) {
    Kill();
    code = exit_code_;
  }
  return code;
}

std::string Subprocess::Output() const { return ReadFileOrEmpty(log_path_); }

namespace {

// The kernel's range for ports it picks itself (outgoing connections, binds to port 0).
std::pair<int, int> EphemeralPortRange() {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  int low = 32768;
  int high = 60999;
  in >> low >> high;
  return {low, high};
}

// Binds a socket on 127.0.0.1 to `port` (0: the kernel picks) and closes it: the port bound,
// or 0 when the bind failed.
uint16_t BindLoopback(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return 0;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  socklen_t len = sizeof(addr);
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
                  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  close(fd);
  return ok ? ntohs(addr.sin_port) : 0;
}

}  // namespace

// Ports come from below the ephemeral range: a port the kernel handed out for `bind(0)` goes
// back into the pool it also draws every outgoing connection from, and another test's client
// (or the controller's own connection to a receiver) took one such port between this call and
// the controller's bind in one CI run. Below the range only another explicit bind can take it.
// A process never gets the same port twice, and random picks keep concurrent test processes
// apart.
uint16_t FreeLoopbackPort() {
  static std::mutex mu;
  static std::set<uint16_t> handed_out;
  const auto [ephemeral_low, ephemeral_high] = EphemeralPortRange();
  int low = 10000;
  int high = ephemeral_low - 1;
  if (high - low < 1000) {  // an unusual range: use what lies above it
    low = ephemeral_high + 1;
    high = 65535;
  }
  std::lock_guard<std::mutex> lock(mu);
  if (high - low < 1000) {  // the kernel's range is nearly every port: let it pick
    for (int attempt = 0; attempt < 1000; ++attempt) {
      const uint16_t port = BindLoopback(0);
      if (port != 0 && handed_out.insert(port).second) {
        return port;
      }
    }
    ADD_FAILURE() << "no free loopback port from the kernel";
    return 0;
  }
  static std::mt19937 random(std::random_device{}() ^ static_cast<unsigned>(getpid()));
  std::uniform_int_distribution<int> pick(low, high);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const auto port = static_cast<uint16_t>(pick(random));
    if (!handed_out.contains(port) && BindLoopback(port) == port) {
      handed_out.insert(port);
      return port;
    }
  }
  ADD_FAILURE() << "no free loopback port in " << low << "-" << high;
  return 0;
}

TempDir::TempDir() {
  char name[] = "/tmp/vigil-test-XXXXXX";
  path_ = mkdtemp(name);
  chmod(path_.c_str(), 0755);
}

TempDir::~TempDir() {
  if (std::getenv("VIGIL_KEEP_TEMP") == nullptr) {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
}

bool WaitUntil(const std::function<bool()>& condition, absl::Duration timeout,
               absl::Duration poll) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (condition()) {
      return true;
    }
    if (absl::Now() >= deadline) {
      return false;
    }
    absl::SleepFor(poll);
  }
}

std::string BuildDir() {
  const char* dir = std::getenv("VIGIL_BUILD_DIR");
#ifdef VIGIL_TEST_BUILD_DIR
  if (dir == nullptr) {
    dir = VIGIL_TEST_BUILD_DIR;
  }
#endif
  return dir == nullptr ? "build" : dir;
}

std::string BinaryPath(absl::string_view name) {
  if (name == "vigil-agent") {
    return BuildDir() + "/agent/vigil-agent";
  }
  if (name == "vigil-controller") {
    return BuildDir() + "/controller/vigil-controller";
  }
  if (name == "vigil") {
    return BuildDir() + "/cli/vigil";
  }
  return absl::StrCat(BuildDir(), "/", name);
}

std::string SourcePath(absl::string_view relative) {
  const char* dir = std::getenv("VIGIL_SOURCE_DIR");
#ifdef VIGIL_TEST_SOURCE_DIR
  if (dir == nullptr) {
    dir = VIGIL_TEST_SOURCE_DIR;
  }
#endif
  return absl::StrCat(dir == nullptr ? "." : dir, "/", relative);
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void WriteFile(const std::string& path, absl::string_view content) {
  std::ofstream out(path, std::ios::trunc);
  out << content;
}

CommandResult RunCommand(const std::vector<std::string>& argv, absl::Duration timeout,
                         std::map<std::string, std::string> env) {
  char out_name[] = "/tmp/vigil-cmd-out-XXXXXX";
  char err_name[] = "/tmp/vigil-cmd-err-XXXXXX";
  close(mkstemp(out_name));
  close(mkstemp(err_name));
  CommandResult result;
  pid_t pid = Spawn(argv, env, out_name, err_name);
  const absl::Time deadline = absl::Now() + timeout;
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (absl::Now() >= deadline) {
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  result.exit_code = DecodeStatus(status);
  result.stdout_text = ReadFileOrEmpty(out_name);
  result.output = result.stdout_text + ReadFileOrEmpty(err_name);
  unlink(out_name);
  unlink(err_name);
  return result;
}

std::string AddVigilUser(const std::string& db_path, const std::string& name,
                         const std::string& role) {
  CommandResult r = RunCommand(
      {BinaryPath("vigil-controller"), "users", "add", name, "--role", role, "--db", db_path});
  if (r.exit_code != 0) {
    ADD_FAILURE() << "cannot add user " << name << ": " << r.output;
    return "";
  }
  std::string token = r.stdout_text;
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) {
    token.pop_back();
  }
  return token;
}

}  // namespace vigil::testing
