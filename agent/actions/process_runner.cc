// The real CommandRunner: posix_spawnp (no shell) of the program in a new session, so the child
// and everything it starts share one process group that a timeout kills at once (SIGKILL to the
// group). stdin is /dev/null; stdout and stderr go to one pipe whose tail is kept. Only the
// descriptors 0-2 are passed on. Stateless between runs; one Run at a time per thread.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/actions/action.h"
#include "spdlog/spdlog.h"

extern char** environ;

namespace vigil::agent {
namespace {

// Signals the agent may ignore or handle that a child must get with their default action.
constexpr int kDefaultSignals[] = {SIGPIPE, SIGINT,  SIGTERM, SIGHUP, SIGQUIT,
                                   SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM};

class ProcessRunner final : public CommandRunner {
 public:
  explicit ProcessRunner(size_t max_output_bytes)
      : max_output_(std::max<size_t>(1, max_output_bytes)) {}

  absl::StatusOr<ProcessResult> Run(const std::vector<std::string>& argv,
                                    absl::Duration timeout) override {
    if (argv.empty() || argv[0].empty()) {
      return absl::InvalidArgumentError("empty command");
    }
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
      return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
    }
    absl::Cleanup close_read = [&] { close(fds[0]); };
    pid_t pid = -1;
    int rc = Spawn(argv, fds[1], &pid);
    close(fds[1]);
    if (rc != 0) {
      return absl::NotFoundError(absl::StrCat("cannot run '", argv[0], "': ", std::strerror(rc)));
    }
    fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    return Wait(pid, fds[0], absl::Now() + timeout);
  }

 private:
  static int Spawn(const std::vector<std::string>& argv, int out_fd, pid_t* pid) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, out_fd, 1);
    posix_spawn_file_actions_adddup2(&actions, out_fd, 2);
    posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    sigset_t mask;
    sigemptyset(&mask);
    posix_spawnattr_setsigmask(&attr, &mask);
    sigset_t defaults;
    sigemptyset(&defaults);
    for (int sig : kDefaultSignals) {
      sigaddset(&defaults, sig);
    }
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(&attr,
                             POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    std::vector<char*> args;
    for (const std::string& a : argv) {
      args.push_back(const_cast<char*>(a.c_str()));
    }
    args.push_back(nullptr);
    int rc = posix_spawnp(pid, args[0], &actions, &attr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    return rc;
  }

  // Reads what is available; false at end of file (or a read error).
  bool Drain(int fd, std::string& out) {
    char buffer[16384];
    while (true) {
      ssize_t n = read(fd, buffer, sizeof(buffer));
      if (n > 0) {
        out.append(buffer, n);
        if (out.size() > 2 * max_output_) {
          out.erase(0, out.size() - max_output_);
        }
        continue;
      }
      if (n < 0 && errno == EINTR) {
        continue;
      }
      return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
  }

  ProcessResult Wait(pid_t pid, int fd, absl::Time deadline) {
    ProcessResult result;
    bool open = true;
    int status = 0;
    absl::Duration nap = absl::Milliseconds(1);
    while (true) {
      const pid_t r = waitpid(pid, &status, WNOHANG);
      const bool lost = r < 0 && errno != EINTR;
      if (lost) {
        // Reaped elsewhere (SIGCHLD ignored): the exit status is lost.
        spdlog::warn("process {}: cannot get its exit status: {}", pid, std::strerror(errno));
        status = -1;
      }
      if (r == pid || lost) {
        // Exited. What it wrote is in the pipe; children it left behind that still hold the pipe
        // are not waited for.
        if (open) {
          Drain(fd, result.output);
        }
        break;
      }
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) {
        killpg(pid, SIGKILL);
        kill(pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        if (open) {
          Drain(fd, result.output);
        }
        result.timed_out = true;
        spdlog::warn("process group {} killed after its timeout", pid);
        break;
      }
      if (open) {
        pollfd p{fd, POLLIN, 0};
        const int ms =
            static_cast<int>(std::clamp<int64_t>(absl::ToInt64Milliseconds(left) + 1, 1, 50));
        if (poll(&p, 1, ms) > 0) {
          open = Drain(fd, result.output);
        }
      } else {
        // Output closed but the child still runs: poll for its exit.
        absl::SleepFor(std::min(nap, left));
        nap = std::min(nap * 2, absl::Milliseconds(20));
      }
    }
    if (!result.timed_out && status != -1 && WIFEXITED(status)) {
      result.exit_code = WEXITSTATUS(status);
    }
    if (result.output.size() > max_output_) {
      result.output.erase(0, result.output.size() - max_output_);
    }
    return result;
  }

  size_t max_output_;
};

}  // namespace

std::unique_ptr<CommandRunner> NewProcessRunner(size_t max_output_bytes) {
  return std::make_unique<ProcessRunner>(max_output_bytes);
}

}  // namespace vigil::agent
