#include "tests/chaos/chaos_support.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/json_util.h"

namespace vigil::chaos {

using testing::BinaryPath;
using testing::CommandResult;
using testing::RunCommand;

uint64_t ChaosSeed() {
  static const uint64_t seed = [] {
    uint64_t s = 0;
    const char* env = std::getenv("VIGIL_CHAOS_SEED");
    if (env != nullptr && absl::SimpleAtoi(env, &s)) {
      return s;
    }
    std::random_device device;
    return (static_cast<uint64_t>(device()) << 32 | device()) % 1000000000;
  }();
  return seed;
}

int ChaosRng::Int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(engine_); }

absl::Duration ChaosRng::Between(absl::Duration lo, absl::Duration hi) {
  const int64_t ms = std::uniform_int_distribution<int64_t>(absl::ToInt64Milliseconds(lo),
                                                            absl::ToInt64Milliseconds(hi))(engine_);
  return absl::Milliseconds(ms);
}

bool ChaosRng::Chance(double p) { return std::bernoulli_distribution(p)(engine_); }

int ChaosScale() {
  int scale = 1;
  const char* env = std::getenv("VIGIL_CHAOS_SCALE");
  if (env != nullptr && absl::SimpleAtoi(env, &scale) && scale >= 1 && scale <= 1000) {
    return scale;
  }
  return 1;
}

void Report(const std::string& key, double value) {
  const char* path = std::getenv("VIGIL_CHAOS_REPORT");
  if (path == nullptr || *path == '\0') {
    return;
  }
  std::ofstream out(path, std::ios::app);
  out << key << " " << value << "\n";
}

ChaosController::~ChaosController() {
  absl::MutexLock lock(&mu_);
  process_.reset();
}

bool ChaosController::Start(const std::string& token, absl::Duration timeout) {
  {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> argv = {BinaryPath("vigil-controller"), "--listen=" + options_.listen,
                                     "--db=" + options_.db,
                                     "--http-listen=" + (options_.http_listen.empty()
                                                             ? std::string("off")
                                                             : options_.http_listen)};
    if (!options_.rules.empty()) {
      argv.push_back("--rules=" + options_.rules);
    }
    if (!options_.policy.empty()) {
      argv.push_back("--policy=" + options_.policy);
    }
    argv.insert(argv.end(), options_.transport.begin(), options_.transport.end());
    ++starts_;
    process_ = std::make_unique<testing::Subprocess>(
        argv, std::map<std::string, std::string>{},
        absl::StrCat(options_.log_dir, "/controller-", starts_, ".log"));
  }
  return testing::WaitUntil(
      [&] {
        if (!Running()) {
          return false;
        }
        return Cli(token, {"agents"}, absl::Seconds(2)).exit_code == 0;
      },
      timeout, absl::Milliseconds(20));
}

void ChaosController::Kill() {
  absl::MutexLock lock(&mu_);
  if (process_) {
    process_->Kill();
  }
}

void ChaosController::Freeze() {
  absl::MutexLock lock(&mu_);
  if (process_) {
    process_->Signal(SIGSTOP);
  }
}

void ChaosController::Thaw() {
  absl::MutexLock lock(&mu_);
  if (process_) {
    process_->Signal(SIGCONT);
  }
}

int ChaosController::Stop() {
  absl::MutexLock lock(&mu_);
  return process_ ? process_->Stop(absl::Seconds(10)) : -1;
}

bool ChaosController::Running() {
  absl::MutexLock lock(&mu_);
  return process_ && process_->Running();
}

int ChaosController::starts() const {
  absl::MutexLock lock(&mu_);
  return starts_;
}

std::string ChaosController::Output() {
  absl::MutexLock lock(&mu_);
  return process_ ? process_->Output() : "";
}

CommandResult ChaosController::Cli(const std::string& token, std::vector<std::string> args,
                                   absl::Duration timeout) const {
  std::vector<std::string> argv = {BinaryPath("vigil"), "--controller=" + options_.listen,
                                   absl::StrCat("--timeout=", absl::ToInt64Milliseconds(timeout),
                                                "ms")};
  argv.insert(argv.end(), options_.cli_transport.begin(), options_.cli_transport.end());
  if (!token.empty()) {
    argv.push_back("--token=" + token);
  }
  argv.insert(argv.end(), args.begin(), args.end());
  // The developer's VIGIL_* settings must not change what the suite sends.
  return RunCommand(argv, timeout + absl::Seconds(5),
                    {{"VIGIL_TLS_CA", ""},
                     {"VIGIL_TLS_CERT", ""},
                     {"VIGIL_TLS_KEY", ""},
                     {"VIGIL_INSECURE", ""},
                     {"VIGIL_TOKEN", ""}});
}

std::optional<std::map<std::string, v1::AgentInfo>> ListAgents(const ChaosController& controller,
                                                               const std::string& token) {
  CommandResult r = controller.Cli(token, {"agents", "-o", "json"}, absl::Seconds(3));
  v1::ListAgentsResponse response;
  if (r.exit_code != 0 ||
      !google::protobuf::util::JsonStringToMessage(r.stdout_text, &response).ok()) {
    return std::nullopt;
  }
  std::map<std::string, v1::AgentInfo> out;
  for (const v1::AgentInfo& a : response.agents()) {
    out[a.agent_id()] = a;
  }
  return out;
}

std::optional<TelemetryTotals> ParseTelemetryTotals(const std::string& log) {
  const size_t at = log.rfind("telemetry totals:");
  if (at == std::string::npos) {
    return std::nullopt;
  }
  const size_t end = log.find('\n', at);
  absl::string_view line(log.data() + at, (end == std::string::npos ? log.size() : end) - at);
  std::map<std::string, uint64_t> fields;
  for (absl::string_view word : absl::StrSplit(line, ' ', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(word, absl::MaxSplits('=', 1));
    uint64_t value = 0;
    if (!kv.second.empty() && absl::SimpleAtoi(absl::StripSuffix(kv.second, ","), &value)) {
      fields[kv.first] = value;
    }
  }
  for (const char* name :
       {"collected", "sent", "acknowledged_through", "dropped", "refused", "spooled"}) {
    if (fields.count(name) == 0) {
      return std::nullopt;
    }
  }
  return TelemetryTotals{.collected = fields["collected"],
                         .sent = fields["sent"],
                         .acknowledged_through = fields["acknowledged_through"],
                         .dropped = fields["dropped"],
                         .refused = fields["refused"],
                         .spooled = fields["spooled"],
                         .replayed = fields.count("replayed") ? fields["replayed"] : 0};
}

std::string Fault::Describe() const {
  const std::string when = absl::StrCat("+", absl::FormatDuration(at), " ");
  switch (kind) {
    case kKillController:
      return absl::StrCat(when, "SIGKILL controller, down ", absl::FormatDuration(down));
    case kFreezeController:
      return absl::StrCat(when, "SIGSTOP controller for ", absl::FormatDuration(down));
    case kKillAgent:
      return absl::StrCat(when, "SIGKILL agent ", agent, ", down ", absl::FormatDuration(down));
    case kKillAgentDuringOutage:
      return absl::StrCat(when, "SIGKILL controller, then agent ", agent,
                          " during the outage; controller down ", absl::FormatDuration(down));
  }
  return "?";
}

std::vector<Fault> DrawFaults(ChaosRng& rng, int min_faults, int max_faults, int agents,
                              absl::Duration max_gap, bool freezes) {
  const int count = rng.Int(min_faults, max_faults) * ChaosScale();
  std::vector<Fault> faults;
  for (int i = 0; i < count; ++i) {
    Fault f;
    f.at = rng.Between(absl::Milliseconds(300), max_gap);
    const int kinds = agents > 0 ? 4 : 2;
    int kind = rng.Int(0, kinds - 1);
    if (!freezes && kind == Fault::kFreezeController) {
      kind = Fault::kKillController;
    }
    f.kind = static_cast<Fault::Kind>(kind);
    f.agent = agents > 0 ? rng.Int(0, agents - 1) : 0;
    f.down = f.kind == Fault::kKillAgentDuringOutage
                 ? rng.Between(absl::Milliseconds(3500), absl::Milliseconds(5000))
                 : rng.Between(absl::Milliseconds(200), absl::Milliseconds(3000));
    faults.push_back(f);
  }
  // With agents, at least one agent dies with batches spooled while the controller is away.
  if (agents > 0 && !faults.empty() &&
      std::none_of(faults.begin(), faults.end(),
                   [](const Fault& f) { return f.kind == Fault::kKillAgentDuringOutage; })) {
    Fault& f = faults[rng.Int(0, static_cast<int>(faults.size()) - 1)];
    f.kind = Fault::kKillAgentDuringOutage;
    f.down = rng.Between(absl::Milliseconds(3500), absl::Milliseconds(5000));
  }
  return faults;
}

ControllerFaultThread::ControllerFaultThread(ChaosController& controller, std::string token,
                                             std::vector<Fault> faults)
    : thread_([this, &controller, token = std::move(token), faults = std::move(faults)] {
        for (const Fault& f : faults) {
          absl::SleepFor(f.at);
          printf("chaos fault: %s\n", f.Describe().c_str());
          if (f.kind == Fault::kFreezeController) {
            controller.Freeze();
            absl::SleepFor(f.down);
            controller.Thaw();
            continue;
          }
          controller.Kill();
          ++kills_;
          absl::SleepFor(f.down);
          if (!controller.Start(token)) {
            failed_ = true;
            break;
          }
        }
        done_ = true;
        while (!stopping_) {
          absl::SleepFor(absl::Milliseconds(20));
        }
      }) {}

ControllerFaultThread::~ControllerFaultThread() {
  stopping_ = true;
  thread_.join();
}

TmpfsMount::TmpfsMount(const std::string& dir, const std::string& size) : dir_(dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  const std::string options = absl::StrCat("size=", size, ",mode=0700");
  if (mount("tmpfs", dir_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()) != 0) {
    error_ = absl::StrCat("mount tmpfs on ", dir_, ": ", std::strerror(errno));
    return;
  }
  ok_ = true;
}

TmpfsMount::~TmpfsMount() {
  if (ok_ && umount2(dir_.c_str(), MNT_DETACH) != 0) {
    fprintf(stderr, "chaos: cannot unmount %s: %s\n", dir_.c_str(), std::strerror(errno));
  }
}

int64_t FillDisk(const std::string& path) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return -1;
  }
  static const std::string kBlock(4096, '\0');
  int64_t total = 0;
  while (true) {
    const ssize_t n = write(fd, kBlock.data(), kBlock.size());
    if (n <= 0) {
      break;
    }
    total += n;
  }
  // Single bytes fill the last partial page, if any.
  while (write(fd, kBlock.data(), 1) == 1) {
    ++total;
  }
  close(fd);
  return total;
}

namespace {

bool Run(const std::vector<std::string>& argv, std::string* error) {
  CommandResult r = RunCommand(argv, absl::Seconds(10));
  if (r.exit_code != 0) {
    if (error != nullptr) {
      *error = absl::StrCat(absl::StrJoin(argv, " "), ": exit ", r.exit_code, ": ", r.output);
    }
    return false;
  }
  return true;
}

}  // namespace

NetNamespace::NetNamespace() {
  const int id = getpid() % 100000;
  name_ = absl::StrCat("vigil-chaos-", id);
  outer_link_ = absl::StrCat("vco", id);
  const std::string inner_link = absl::StrCat("vci", id);
  // A /30 of 10.200.0.0/14 chosen by the pid: parallel runs do not share a subnet.
  const int block = id % (1 << 16);
  const std::string prefix = absl::StrCat("10.", 200 + (block >> 14), ".", (block >> 6) & 0xff, ".");
  const int base = (block & 0x3f) * 4;
  outer_ = absl::StrCat(prefix, base + 1);
  inner_ = absl::StrCat(prefix, base + 2);
  // A namespace left by a crashed run with the same pid goes first.
  RunCommand({"ip", "netns", "del", name_});
  RunCommand({"ip", "link", "del", outer_link_});
  ok_ = Run({"ip", "netns", "add", name_}, &error_) &&
        Run({"ip", "link", "add", outer_link_, "type", "veth", "peer", "name", inner_link},
            &error_) &&
        Run({"ip", "link", "set", inner_link, "netns", name_}, &error_) &&
        Run({"ip", "addr", "add", outer_ + "/30", "dev", outer_link_}, &error_) &&
        Run({"ip", "link", "set", outer_link_, "up"}, &error_) &&
        Run(Exec({"ip", "addr", "add", inner_ + "/30", "dev", inner_link}), &error_) &&
        Run(Exec({"ip", "link", "set", inner_link, "up"}), &error_) &&
        Run(Exec({"ip", "link", "set", "lo", "up"}), &error_);
}

NetNamespace::~NetNamespace() {
  // Deleting the namespace removes its nft tables and the veth pair with it.
  RunCommand({"ip", "netns", "del", name_});
  RunCommand({"ip", "link", "del", outer_link_});
}

std::vector<std::string> NetNamespace::Exec(std::vector<std::string> argv) const {
  argv.insert(argv.begin(), {"ip", "netns", "exec", name_});
  return argv;
}

bool NetNamespace::SetLink(bool up) {
  return Run({"ip", "link", "set", outer_link_, up ? "up" : "down"}, &error_);
}

bool NetNamespace::DropPackets(int percent) {
  RunCommand(Exec({"nft", "delete", "table", "inet", "vigil_chaos"}));
  if (percent <= 0) {
    return true;
  }
  return Run(Exec({"nft", "add", "table", "inet", "vigil_chaos"}), &error_) &&
         Run(Exec({"nft", "add", "chain", "inet", "vigil_chaos", "in",
                   "{ type filter hook input priority 0; }"}),
             &error_) &&
         Run(Exec({"nft", "add", "chain", "inet", "vigil_chaos", "out",
                   "{ type filter hook output priority 0; }"}),
             &error_) &&
         Run(Exec({"nft", "add", "rule", "inet", "vigil_chaos", "in", "iifname", "!=", "lo",
                   "numgen", "random", "mod", "100", "<", absl::StrCat(percent), "drop"}),
             &error_) &&
         Run(Exec({"nft", "add", "rule", "inet", "vigil_chaos", "out", "oifname", "!=", "lo",
                   "numgen", "random", "mod", "100", "<", absl::StrCat(percent), "drop"}),
             &error_);
}

bool IsRoot() { return geteuid() == 0; }

}  // namespace vigil::chaos
