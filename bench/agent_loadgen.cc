// Load generator: N simulated agents on real gRPC streams against a real vigil-controller, each
// sending M gauge series every interval. Prints samples/s sent and acknowledged, and the
// controller's CPU share and peak RSS read from /proc. The controller is started here (or an
// address is given with --target to load one started elsewhere).
//
//   agent_loadgen --controller-bin build/controller/vigil-controller --agents 1000 --series 50
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <deque>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "vigil/v1/agent_service.grpc.pb.h"

namespace {

using vigil::v1::AgentMessage;
using vigil::v1::ControllerMessage;

std::atomic<uint64_t> g_samples_sent{0};
std::atomic<uint64_t> g_samples_acked{0};
std::atomic<int> g_welcomed{0};
std::atomic<int> g_failed{0};

// One simulated agent: a callback stream that writes a batch per tick from the driver thread.
class SimulatedAgent final : public grpc::ClientBidiReactor<AgentMessage, ControllerMessage> {
 public:
  SimulatedAgent(vigil::v1::AgentService::Stub* stub, int index, int series, int snapshots)
      : index_(index), series_(series), snapshots_(snapshots) {
    stub->async()->Connect(&context_, this);
    AgentMessage hello;
    auto* h = hello.mutable_hello();
    h->set_agent_id(absl::StrCat("sim-", index));
    h->set_hostname(absl::StrCat("sim-host-", index));
    h->set_version("loadgen");
    (*h->mutable_labels())["role"] = index % 5 == 0 ? "postgres" : "api";
    h->add_collectors("host");
    outbox_.push_back(std::move(hello));
    writing_ = true;
    AddHold();  // writes are started from the driver thread, outside reactions
    StartWrite(&outbox_.front());
    StartRead(&in_);
    StartCall();
  }

  // Called by the driver once per interval.
  void Tick(int64_t now_ms) {
    absl::MutexLock lock(&mu_);
    if (done_ || !welcomed_) return;
    AgentMessage message;
    auto* batch = message.mutable_telemetry();
    batch->set_sequence(next_sequence_);
    if (!declared_) {
      for (int i = 0; i < series_; ++i) {
        auto* def = batch->add_new_series();
        def->set_id(i + 1);
        def->set_name(i == 0 ? "host_cpu_usage_ratio" : "host_disk_used_ratio");
        if (i > 0) (*def->mutable_labels())["mount"] = absl::StrCat("/m", i);
      }
      declared_ = true;
    }
    for (int s = 0; s < snapshots_; ++s) {
      auto* snap = batch->add_snapshots();
      snap->set_time_unix_ms(now_ms - (snapshots_ - 1 - s) * 10);
      for (int i = 0; i < series_; ++i) {
        snap->add_series_ids(i + 1);
        snap->add_values(((index_ + i + next_sequence_) % 100) / 100.0);
      }
    }
    sent_[next_sequence_ % kRing] = static_cast<uint64_t>(series_) * snapshots_;
    ++next_sequence_;
    g_samples_sent += static_cast<uint64_t>(series_) * snapshots_;
    if (outbox_.size() > 4) return;  // the controller is behind: skip rather than queue forever
    outbox_.push_back(std::move(message));
    if (!writing_) {
      writing_ = true;
      StartWrite(&outbox_.front());
    }
  }

  void Finish() {
    absl::MutexLock lock(&mu_);
    if (!done_) context_.TryCancel();
  }

  void WaitDone() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&finished_));
  }

 private:
  static constexpr uint64_t kRing = 64;

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    outbox_.pop_front();
    if (!ok) {
      writing_ = false;
      if (!hold_removed_) {
        hold_removed_ = true;
        RemoveHold();
      }
      return;
    }
    if (!outbox_.empty()) {
      StartWrite(&outbox_.front());
    } else {
      writing_ = false;
    }
  }
  void OnReadDone(bool ok) override {
    if (!ok) {
      absl::MutexLock lock(&mu_);
      if (!hold_removed_) {
        hold_removed_ = true;
        RemoveHold();
      }
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      if (in_.has_welcome()) {
        welcomed_ = true;
        next_sequence_ = in_.welcome().last_sequence() + 1;
        g_welcomed++;
      } else if (in_.has_ack()) {
        const uint64_t seq = in_.ack().sequence();
        g_samples_acked += sent_[seq % kRing];
        sent_[seq % kRing] = 0;
      }
    }
    StartRead(&in_);
  }
  void OnDone(const grpc::Status& status) override {
    absl::MutexLock lock(&mu_);
    if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) {
      if (g_failed++ < 3) fprintf(stderr, "agent %d: %s\n", index_, status.error_message().c_str());
    }
    done_ = true;
    finished_ = true;
  }

  const int index_;
  const int series_;
  const int snapshots_;
  grpc::ClientContext context_;
  ControllerMessage in_;
  absl::Mutex mu_;
  std::deque<AgentMessage> outbox_;
  bool writing_ = false;
  bool welcomed_ = false;
  bool declared_ = false;
  bool done_ = false;
  bool finished_ = false;
  bool hold_removed_ = false;
  uint64_t next_sequence_ = 1;
  uint64_t sent_[kRing] = {};
};

struct ProcessUsage {
  double cpu_seconds = 0;
  double peak_rss_mb = 0;
  double rss_mb = 0;
};

ProcessUsage ReadUsage(pid_t pid) {
  ProcessUsage usage;
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  size_t close = text.rfind(')');
  if (close != std::string::npos) {
    std::istringstream fields(text.substr(close + 2));
    std::string f;
    unsigned long long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && fields >> f; ++i) {
      if (i == 14) utime = std::stoull(f);
      if (i == 15) stime = std::stoull(f);
    }
    usage.cpu_seconds = static_cast<double>(utime + stime) / sysconf(_SC_CLK_TCK);
  }
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) usage.peak_rss_mb = std::stod(line.substr(6)) / 1024.0;
    if (line.rfind("VmRSS:", 0) == 0) usage.rss_mb = std::stod(line.substr(6)) / 1024.0;
  }
  return usage;
}

pid_t StartController(const std::string& binary, const std::string& address,
                      const std::string& db) {
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    execl(binary.c_str(), binary.c_str(), ("--listen=" + address).c_str(), ("--db=" + db).c_str(),
          "--insecure", "--log-level=warn", "--http-listen=off", static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"agent_loadgen: simulated agents against a real vigil-controller"};
  std::string controller_bin, target;
  int agents = 1000, series = 50, snapshots = 1, channels = 100;
  double interval_s = 1, duration_s = 30, warmup_s = 5;
  app.add_option("--controller-bin", controller_bin, "vigil-controller to start and measure");
  app.add_option("--target", target, "address of a controller started elsewhere (no measurements)");
  app.add_option("--agents", agents);
  app.add_option("--series", series, "gauge series per agent");
  app.add_option("--snapshots", snapshots, "snapshots per batch (larger batches)");
  app.add_option("--interval", interval_s, "seconds between batches");
  app.add_option("--duration", duration_s, "measured seconds");
  app.add_option("--warmup", warmup_s, "seconds before measuring");
  app.add_option("--channels", channels, "gRPC channels (TCP connections) to spread agents on");
  CLI11_PARSE(app, argc, argv);

  pid_t controller = 0;
  std::string db;
  if (target.empty()) {
    if (controller_bin.empty()) {
      fprintf(stderr, "give --controller-bin or --target\n");
      return 2;
    }
    char dir[] = "/tmp/vigil-loadgen-XXXXXX";
    db = std::string(mkdtemp(dir)) + "/vigil.db";
    const int port = 20000 + getpid() % 20000;
    target = absl::StrCat("127.0.0.1:", port);
    controller = StartController(controller_bin, target, db);
  }
  // Real agents each have their own connection; a few channels keep this client's own cost low
  // while still spreading streams over several HTTP/2 connections.
  std::vector<std::unique_ptr<vigil::v1::AgentService::Stub>> stubs;
  for (int c = 0; c < channels; ++c) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetString("vigil.loadgen.channel", absl::StrCat(c));
    auto channel = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
    if (!channel->WaitForConnected(absl::ToChronoTime(absl::Now() + absl::Seconds(10)))) {
      fprintf(stderr, "controller at %s did not come up\n", target.c_str());
      return 1;
    }
    stubs.push_back(vigil::v1::AgentService::NewStub(channel));
  }
  std::vector<std::unique_ptr<SimulatedAgent>> sims;
  for (int i = 0; i < agents; ++i) {
    sims.push_back(
        std::make_unique<SimulatedAgent>(stubs[i % channels].get(), i, series, snapshots));
  }
  const absl::Time connect_deadline = absl::Now() + absl::Seconds(30);
  while (g_welcomed.load() < agents && absl::Now() < connect_deadline)
    absl::SleepFor(absl::Milliseconds(50));
  printf("agents welcomed: %d/%d\n", g_welcomed.load(), agents);

  const absl::Duration interval = absl::Seconds(interval_s);
  std::atomic<bool> running{true};
  std::thread driver([&] {
    absl::Time next = absl::Now();
    while (running) {
      // Spread the agents over the interval like a real fleet whose clocks differ a little.
      for (int i = 0; i < agents && running; ++i) {
        absl::Time due = next + interval * (static_cast<double>(i) / agents);
        absl::Duration wait = due - absl::Now();
        if (wait > absl::ZeroDuration()) absl::SleepFor(wait);
        sims[i]->Tick(absl::ToUnixMillis(absl::Now()));
      }
      next += interval;
    }
  });

  absl::SleepFor(absl::Seconds(warmup_s));
  ProcessUsage before = controller ? ReadUsage(controller) : ProcessUsage{};
  const uint64_t sent0 = g_samples_sent, acked0 = g_samples_acked;
  const absl::Time t0 = absl::Now();
  absl::SleepFor(absl::Seconds(duration_s));
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - t0);
  ProcessUsage after = controller ? ReadUsage(controller) : ProcessUsage{};
  const uint64_t sent = g_samples_sent - sent0, acked = g_samples_acked - acked0;
  running = false;
  driver.join();

  printf("agents=%d series=%d snapshots_per_batch=%d interval=%.3gs measured=%.1fs\n", agents,
         series, snapshots, interval_s, elapsed);
  printf("samples_sent_per_s=%.0f samples_acked_per_s=%.0f acked_ratio=%.4f\n", sent / elapsed,
         acked / elapsed, sent ? static_cast<double>(acked) / sent : 0);
  if (controller) {
    printf(
        "controller_cpu_share_of_one_core=%.4f controller_rss_mb=%.1f "
        "controller_peak_rss_mb=%.1f\n",
        (after.cpu_seconds - before.cpu_seconds) / elapsed, after.rss_mb, after.peak_rss_mb);
  }
  printf("stream_failures=%d\n", g_failed.load());
  for (auto& sim : sims) sim->Finish();
  for (auto& sim : sims) sim->WaitDone();
  if (controller) {
    kill(controller, SIGTERM);
    waitpid(controller, nullptr, 0);
    std::string dir = db.substr(0, db.rfind('/'));
    std::system(("rm -rf '" + dir + "'").c_str());
  }
  return 0;
}
