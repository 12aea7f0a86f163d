#include "bench/loadgen/storm_runner.h"

#include <netdb.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <new>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "bench/loadgen/agent_certs.h"
#include "bench/loadgen/cli_probe.h"
#include "bench/loadgen/h2_fleet.h"
#include "bench/loadgen/latency_stats.h"
#include "bench/loadgen/proc_usage.h"
#include "bench/loadgen/sim_fleet.h"
#include "common/control_channel.h"

extern char** environ;

namespace vigil::loadgen {
namespace {

constexpr int kMaxProcesses = 64;

// The HTTP/2 client unless asked for gRPC's or TLS is wanted (the HTTP/2 one has none).
bool UsesH2(const StormOptions& o) {
  return o.client == "h2" || (o.client.empty() && o.tls_ca_key.empty());
}

// The controller this process started, killed if we are interrupted (a timeout(1) around the
// benchmark must not leave it running).
std::atomic<pid_t> g_managed_controller{0};

void KillManagedControllerAndDie(int sig) {
  const pid_t pid = g_managed_controller.load();
  if (pid > 0) {
    kill(pid, SIGKILL);
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

// Shared between the coordinator and the simulator processes (MAP_SHARED, lock-free atomics).
struct Shared {
  std::atomic<int> ready{0};             // simulator processes initialised
  std::atomic<int> failed{0};            // simulator processes that could not start
  std::atomic<int64_t> go_unix_ms{0};    // when the agents start (0: not yet)
  std::atomic<int64_t> ramp_ms{0};
  std::atomic<int> stop{0};
  std::atomic<uint32_t> phase{0};
  std::atomic<int> census{0};  // raised: each process says what its agents not streaming do
  FleetCounters counters[kMaxProcesses];
};

// The sum of every process's counters at one instant.
struct Totals {
  int64_t streaming = 0, ever_welcomed = 0;
  uint64_t attempts = 0, phase_attempted = 0, welcomes = 0, drops = 0, drops_cancelled = 0,
           drops_cancelled_own_gap = 0, drops_unavailable = 0,
           drops_other = 0, drop_agents = 0, refused_exhausted = 0, retry_hints = 0,
           retry_hint_ms_total = 0, welcome_timeouts = 0, failed_unavailable = 0, failed_cancelled = 0,
           failed_other = 0, fresh_channels = 0, batches_sent = 0, batches_acked = 0,
           batches_unacked = 0, rounds_skipped = 0, heartbeats = 0, samples_sent = 0,
           samples_acked = 0;
};

Totals Sum(const Shared& shared, int processes) {
  Totals t;
  for (int p = 0; p < processes; ++p) {
    const FleetCounters& c = shared.counters[p];
    t.streaming += c.streaming.load();
    t.ever_welcomed += c.ever_welcomed.load();
    t.attempts += c.attempts.load();
    t.phase_attempted += c.phase_attempted.load();
    t.welcomes += c.welcomes.load();
    t.drops += c.drops.load();
    t.drops_cancelled += c.drops_cancelled.load();
    t.drops_cancelled_own_gap += c.drops_cancelled_own_gap.load();
    t.drops_unavailable += c.drops_unavailable.load();
    t.drops_other += c.drops_other.load();
    t.drop_agents += c.drop_agents.load();
    t.refused_exhausted += c.refused_exhausted.load();
    t.retry_hints += c.retry_hints.load();
    t.retry_hint_ms_total += c.retry_hint_ms_total.load();
    t.welcome_timeouts += c.welcome_timeouts.load();
    t.failed_unavailable += c.failed_unavailable.load();
    t.failed_cancelled += c.failed_cancelled.load();
    t.failed_other += c.failed_other.load();
    t.fresh_channels += c.fresh_channels.load();
    t.batches_sent += c.batches_sent.load();
    t.batches_acked += c.batches_acked.load();
    t.batches_unacked += c.batches_unacked.load();
    t.rounds_skipped += c.rounds_skipped.load();
    t.heartbeats += c.heartbeats.load();
    t.samples_sent += c.samples_sent.load();
    t.samples_acked += c.samples_acked.load();
  }
  return t;
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Each simulated agent holds a socket (and gRPC a few descriptors besides).
bool RaiseFileLimit(rlim_t wanted) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return false;
  }
  if (limit.rlim_cur >= wanted) {
    return true;
  }
  limit.rlim_cur = std::min(limit.rlim_max, std::max(limit.rlim_cur, wanted));
  if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return false;
  }
  return limit.rlim_cur >= wanted;
}

// A simulator process: its share of the agents, from go to stop. Never returns.
[[noreturn]] void RunSimulator(const StormOptions& o, Shared* shared, int process) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the coordinator
  if (o.simulator_nice > 0) {
    errno = 0;
    if (nice(o.simulator_nice) == -1 && errno != 0) {
      std::fprintf(stderr, "loadgen process %d: cannot lower its priority (nice %d): %s\n",
                   process, o.simulator_nice, std::strerror(errno));
      shared->failed.fetch_add(1);
      _exit(1);
    }
  }
  // One mutex per agent: Debian's abseil checks lock order by default, and its graph of
  // thousands of mutexes would cost more than the agents themselves.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  FleetOptions fleet;
  fleet.target = o.target;
  fleet.id_prefix = o.id_prefix;
  fleet.total_agents = o.agents;
  fleet.interval = o.interval;
  fleet.heartbeat = o.heartbeat;
  fleet.send_spread = o.send_spread > absl::ZeroDuration() ? o.send_spread : o.interval;
  fleet.gauges = o.series - o.histograms;
  fleet.histograms = o.histograms;
  fleet.snapshots = o.snapshots;
  fleet.phase = &shared->phase;
  for (int i = process; i < o.agents; i += o.processes) {
    fleet.indexes.push_back(i);
  }
  const rlim_t wanted = fleet.indexes.size() * 2 + 256;
  if (!RaiseFileLimit(wanted)) {
    rlimit limit{};
    getrlimit(RLIMIT_NOFILE, &limit);
    std::fprintf(stderr,
                 "loadgen process %d: needs %llu file descriptors, the hard limit is %llu; "
                 "use more --processes or raise it (ulimit -Hn)\n",
                 process, static_cast<unsigned long long>(wanted),
                 static_cast<unsigned long long>(limit.rlim_max));
    shared->failed.fetch_add(1);
    _exit(1);
  }
  if (!o.tls_ca_key.empty()) {
    // One certificate per agent, made before the storm so it costs nothing during it.
    absl::StatusOr<std::unique_ptr<AgentCertificateAuthority>> ca =
        AgentCertificateAuthority::Load(o.tls_ca, o.tls_ca_key);
    if (!ca.ok()) {
      std::fprintf(stderr, "loadgen process %d: %s\n", process,
                   std::string(ca.status().message()).c_str());
      shared->failed.fetch_add(1);
      _exit(1);
    }
    auto credentials =
        std::make_shared<std::vector<std::shared_ptr<grpc::ChannelCredentials>>>(o.agents);
    for (int index : fleet.indexes) {
      absl::StatusOr<AgentCertificate> cert = (*ca)->Issue(absl::StrCat(o.id_prefix, "-", index));
      if (!cert.ok()) {
        std::fprintf(stderr, "loadgen process %d: %s\n", process,
                     std::string(cert.status().message()).c_str());
        shared->failed.fetch_add(1);
        _exit(1);
      }
      grpc::SslCredentialsOptions ssl;
      ssl.pem_root_certs = (*ca)->ca_pem();
      ssl.pem_cert_chain = cert->cert_pem;
      ssl.pem_private_key = cert->key_pem;
      (*credentials)[index] = grpc::SslCredentials(ssl);
    }
    fleet.credentials = [credentials](int index) { return (*credentials)[index]; };
  }
  FleetCounters* counters = &shared->counters[process];
  {
    const absl::Time began = absl::Now();
    const size_t count = fleet.indexes.size();
    std::unique_ptr<AgentFleet> agents;
    if (UsesH2(o)) {
      absl::StatusOr<std::unique_ptr<H2Fleet>> made = H2Fleet::Create(std::move(fleet), counters);
      if (!made.ok()) {
        std::fprintf(stderr, "loadgen process %d: %s\n", process,
                     std::string(made.status().message()).c_str());
        shared->failed.fetch_add(1);
        _exit(1);
      }
      agents = *std::move(made);
    } else {
      agents = std::make_unique<Fleet>(std::move(fleet), counters);
    }
    std::fprintf(stderr, "loadgen process %d: %zu agents and their channels ready in %.2f s\n",
                 process, count, absl::ToDoubleSeconds(absl::Now() - began));
    shared->ready.fetch_add(1);
    while (shared->go_unix_ms.load() == 0 && shared->stop.load() == 0) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    if (shared->stop.load() == 0) {
      agents->Start(absl::FromUnixMillis(shared->go_unix_ms.load()),
                    absl::Milliseconds(shared->ramp_ms.load()));
    }
    int census = 0;
    while (shared->stop.load() == 0) {
      if (const int wanted = shared->census.load(); wanted != census) {
        census = wanted;
        std::fprintf(stderr, "loadgen process %d, agents not streaming: %s\n", process,
                     agents->Census().c_str());
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    agents->Stop();
  }
  std::fflush(stderr);
  _exit(0);
}

// Starts `cmd` under /bin/sh (exec'd, so the pid is the controller's). posix_spawn, not fork:
// this process runs gRPC threads by then.
pid_t SpawnController(const std::string& cmd) {
  const std::string script = "exec " + cmd;
  const char* argv[] = {"/bin/sh", "-c", script.c_str(), nullptr};
  pid_t pid = 0;
  if (posix_spawn(&pid, "/bin/sh", nullptr, nullptr, const_cast<char* const*>(argv), environ) !=
      0) {
    return 0;
  }
  return pid;
}

// True once a TCP connection to `target` (host:port) succeeds, polling until `deadline`.
bool WaitListening(const std::string& target, absl::Time deadline) {
  const size_t colon = target.rfind(':');
  if (colon == std::string::npos) {
    return false;
  }
  std::string host = target.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string port = target.substr(colon + 1);
  while (absl::Now() < deadline) {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (getaddrinfo(host.c_str(), port.c_str(), &hints, &found) == 0) {
      for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
        const int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
          continue;
        }
        const bool connected = connect(fd, a->ai_addr, a->ai_addrlen) == 0;
        close(fd);
        if (connected) {
          freeaddrinfo(found);
          return true;
        }
      }
      freeaddrinfo(found);
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

struct Sample {
  absl::Time at;
  double controller_cpu_pct = 0;  // of one core, over the last interval
  double controller_rss_mb = 0;
  // Time the controller's threads were runnable but waiting for a CPU, % of one core: high when
  // the machine, not the controller, is the limit.
  double controller_wait_pct = 0;
  double sim_cpu_pct = 0;
  double sim_rss_mb = 0;
  Totals totals;
};

// Everything the coordinator tracks while the benchmark runs.
class Coordinator {
 public:
  Coordinator(const StormOptions& o, Shared* shared, std::vector<pid_t> simulators)
      : o_(o), shared_(shared), simulators_(std::move(simulators)) {}

  int Run();

 private:
  void SamplerLoop();
  double SimulatorCpuSeconds() const;
  double SimulatorRssMb() const;
  double ControllerCpuSeconds();
  pid_t controller() {
    absl::MutexLock lock(&mu_);
    return controller_;
  }
  void SetController(pid_t pid, bool managed) {
    absl::MutexLock lock(&mu_);
    controller_ = pid;
    if (managed) {
      g_managed_controller = pid;
    }
  }
  // Polls until every agent is streaming or `until`; the time it happened, or nullopt. Notes in
  // all_attempted_ when every agent had made an attempt since the phase changed (`base`).
  std::optional<absl::Time> WaitConverged(absl::Time until, const Totals& base);
  std::vector<Sample> SamplesBetween(absl::Time from, absl::Time to) {
    absl::MutexLock lock(&mu_);
    std::vector<Sample> out;
    for (const Sample& s : samples_) {
      if (s.at >= from && s.at <= to) {
        out.push_back(s);
      }
    }
    return out;
  }
  bool StopController(int signal);

  const StormOptions& o_;
  Shared* const shared_;
  const std::vector<pid_t> simulators_;
  std::unique_ptr<CliProbe> probe_;
  std::atomic<bool> sampling_{true};
  std::optional<absl::Time> all_attempted_;
  // Restart mode: agents streaming when the controller was killed (the storm's real size).
  int64_t streaming_before_restart_ = 0;
  absl::Time began_ = absl::Now();

  absl::Mutex mu_;
  pid_t controller_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Sample> samples_ ABSL_GUARDED_BY(mu_);
};

double Coordinator::SimulatorCpuSeconds() const {
  uint64_t ticks = 0;
  if (absl::StatusOr<ProcCpu> self = ReadProcCpu(getpid()); self.ok()) {
    ticks += self->total();
  }
  for (pid_t pid : simulators_) {
    if (absl::StatusOr<ProcCpu> cpu = ReadProcCpu(pid); cpu.ok()) {
      ticks += cpu->total();
    }
  }
  return static_cast<double>(ticks) / TicksPerSecond();
}

double Coordinator::SimulatorRssMb() const {
  uint64_t kb = 0;
  if (absl::StatusOr<ProcMemory> self = ReadProcMemory(getpid()); self.ok()) {
    kb += self->rss_kb;
  }
  for (pid_t pid : simulators_) {
    if (absl::StatusOr<ProcMemory> memory = ReadProcMemory(pid); memory.ok()) {
      kb += memory->rss_kb;
    }
  }
  return static_cast<double>(kb) / 1024;
}

void Coordinator::SamplerLoop() {
  absl::Time last = absl::Now();
  double last_sim = SimulatorCpuSeconds();
  pid_t last_pid = 0;
  double last_controller = 0;
  uint64_t last_wait_ns = 0;
  while (sampling_) {
    absl::SleepFor(last + absl::Seconds(1) - absl::Now());
    const absl::Time now = absl::Now();
    const double dt = absl::ToDoubleSeconds(now - last);
    Sample s;
    s.at = now;
    const double sim = SimulatorCpuSeconds();
    s.sim_cpu_pct = 100 * (sim - last_sim) / dt;
    s.sim_rss_mb = SimulatorRssMb();
    last_sim = sim;
    const pid_t pid = controller();
    if (pid > 0) {
      absl::StatusOr<ProcCpu> cpu = ReadProcCpu(pid);
      absl::StatusOr<ProcMemory> memory = ReadProcMemory(pid);
      if (cpu.ok()) {
        const double seconds = static_cast<double>(cpu->total()) / TicksPerSecond();
        s.controller_cpu_pct = pid == last_pid ? 100 * (seconds - last_controller) / dt : 0;
        last_controller = seconds;
        last_pid = pid;
      }
      if (memory.ok()) {
        s.controller_rss_mb = static_cast<double>(memory->rss_kb) / 1024;
      }
      if (absl::StatusOr<uint64_t> wait = ReadProcWaitNs(pid); wait.ok()) {
        // Threads that ended take their wait with them: never report a negative share.
        s.controller_wait_pct = pid == last_pid && *wait >= last_wait_ns
                                    ? 100 * static_cast<double>(*wait - last_wait_ns) / 1e9 / dt
                                    : 0;
        last_wait_ns = *wait;
      }
    }
    s.totals = Sum(*shared_, o_.processes);
    double probe_p99 = 0;
    int probe_failed = 0;
    size_t probes = 0;
    if (probe_ != nullptr) {
      std::vector<double> ms;
      for (const ProbeSample& p : probe_->SamplesBetween(last - absl::Seconds(1), last)) {
        ++probes;
        if (p.ok) {
          ms.push_back(p.latency_ms);
        } else {
          ++probe_failed;
        }
      }
      probe_p99 = NearestRank(ms, 0.99);
    }
    std::fprintf(stderr,
                 "[t=%6.1fs] streaming=%lld/%d welcomed_ever=%lld attempted_agents=%llu attempts=%llu "
                 "refused_exhausted=%llu drops=%llu acked_samples=%llu ctl_cpu=%.0f%% ctl_wait=%.0f%% "
                 "ctl_rss=%.0fMB sim_cpu=%.0f%% sim_rss=%.0fMB cli(prev s): n=%zu p99=%.0fms "
                 "failed=%d\n",
                 absl::ToDoubleSeconds(now - began_), static_cast<long long>(s.totals.streaming),
                 o_.agents, static_cast<long long>(s.totals.ever_welcomed),
                 static_cast<unsigned long long>(s.totals.phase_attempted),
                 static_cast<unsigned long long>(s.totals.attempts),
                 static_cast<unsigned long long>(s.totals.refused_exhausted),
                 static_cast<unsigned long long>(s.totals.drops),
                 static_cast<unsigned long long>(s.totals.samples_acked), s.controller_cpu_pct,
                 s.controller_wait_pct,
                 s.controller_rss_mb, s.sim_cpu_pct, s.sim_rss_mb, probes, probe_p99, probe_failed);
    {
      absl::MutexLock lock(&mu_);
      samples_.push_back(s);
    }
    last = now;
  }
}

std::optional<absl::Time> Coordinator::WaitConverged(absl::Time until, const Totals& base) {
  while (absl::Now() < until) {
    const Totals now = Sum(*shared_, o_.processes);
    if (!all_attempted_ &&
        now.phase_attempted - base.phase_attempted >= static_cast<uint64_t>(o_.agents)) {
      all_attempted_ = absl::Now();
    }
    if (now.streaming >= o_.agents) {
      return absl::Now();
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return std::nullopt;
}

bool Coordinator::StopController(int signal) {
  const pid_t pid = controller();
  if (pid <= 0) {
    return true;
  }
  kill(pid, signal);
  const absl::Time deadline = absl::Now() + absl::Seconds(15);
  while (absl::Now() < deadline) {
    if (waitpid(pid, nullptr, WNOHANG) == pid) {
      SetController(0, true);
      return true;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  SetController(0, true);
  return false;
}

std::string Ms(absl::Duration d) { return absl::StrFormat("%.0f", absl::ToDoubleMilliseconds(d)); }

int Coordinator::Run() {
  const bool managed = !o_.controller_cmd.empty();
  if (managed) {
    const pid_t pid = SpawnController(o_.controller_cmd);
    if (pid == 0) {
      std::fprintf(stderr, "loadgen: cannot start the controller: %s\n", o_.controller_cmd.c_str());
      return 1;
    }
    SetController(pid, true);
  } else {
    SetController(o_.controller_pid, false);
  }
  if (!WaitListening(o_.target, absl::Now() + absl::Seconds(30))) {
    std::fprintf(stderr, "loadgen: nothing listens on %s after 30 s\n", o_.target.c_str());
    if (managed) {
      StopController(SIGKILL);
    }
    return 1;
  }
  while (shared_->ready.load() + shared_->failed.load() < o_.processes) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  if (shared_->failed.load() > 0) {
    if (managed) {
      StopController(SIGKILL);
    }
    return 1;
  }
  // gRPC in this process only now: the simulators were forked before it started threads.
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (!o_.tls_ca.empty()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ReadFileOrEmpty(o_.tls_ca);
    ssl.pem_cert_chain = ReadFileOrEmpty(o_.tls_cert);
    ssl.pem_private_key = ReadFileOrEmpty(o_.tls_key);
    credentials = grpc::SslCredentials(ssl);
  }
  grpc::ChannelArguments args = ControlChannelArguments();  // the CLI's own
  const std::string& probe_target = o_.probe_target.empty() ? o_.target : o_.probe_target;
  probe_ = std::make_unique<CliProbe>(grpc::CreateCustomChannel(probe_target, credentials, args),
                                      o_.token, o_.probe_period, o_.probe_deadline, o_.probe_call);
  probe_->Start();
  std::thread sampler([this] { SamplerLoop(); });

  absl::Time storm_start;
  Totals base{};
  absl::Duration controller_ready = absl::ZeroDuration();
  if (o_.mode == "restart") {
    shared_->ramp_ms = absl::ToInt64Milliseconds(o_.pre_ramp);
    shared_->go_unix_ms = absl::ToUnixMillis(absl::Now() + absl::Milliseconds(100));
    // The wait runs from the ramp's end: a bound counted from its start killed the controller
    // while agents were still making their first attempts (10,000 agents ramp over 100 s), and
    // the "storm" then timed the rest of the ramp.
    std::optional<absl::Time> before =
        WaitConverged(absl::Now() + o_.pre_ramp + o_.pre_timeout, Totals{});
    const Totals pre = Sum(*shared_, o_.processes);
    streaming_before_restart_ = pre.streaming;
    std::fprintf(stderr, "loadgen: before the restart %lld/%d agents streaming (%s)\n",
                 static_cast<long long>(pre.streaming), o_.agents,
                 before ? "all connected" : "pre-timeout reached");
    absl::SleepFor(absl::Seconds(3));  // a few rounds of steady streaming
    StopController(o_.restart_signal);
    // Streams the kill ended are not the storm's drops: wait for them, then count afresh.
    const absl::Time quiet = absl::Now() + absl::Seconds(5);
    while (Sum(*shared_, o_.processes).streaming > 0 && absl::Now() < quiet) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    shared_->phase.fetch_add(1);
    base = Sum(*shared_, o_.processes);
    all_attempted_.reset();
    storm_start = absl::Now();
    const pid_t pid = SpawnController(o_.controller_cmd);
    SetController(pid, true);
    if (pid == 0 || !WaitListening(o_.target, absl::Now() + absl::Seconds(30))) {
      std::fprintf(stderr, "loadgen: the restarted controller does not listen on %s\n",
                   o_.target.c_str());
    }
    controller_ready = absl::Now() - storm_start;
  } else {
    shared_->ramp_ms = absl::ToInt64Milliseconds(o_.ramp);
    storm_start = absl::Now() + absl::Milliseconds(100);
    base = Sum(*shared_, o_.processes);
    shared_->go_unix_ms = absl::ToUnixMillis(storm_start);
  }

  // The storm: until every agent streams, or the bound.
  const std::optional<absl::Time> converged = WaitConverged(storm_start + o_.timeout, base);
  absl::Time storm_end = converged ? *converged : absl::Now();
  if (!converged) {
    shared_->census.fetch_add(1);  // why not: each process says in its log
  }
  int64_t min_after = o_.agents;
  if (converged) {
    // Held: does anyone get dropped once all are in?
    const absl::Time hold_end = *converged + o_.hold;
    while (absl::Now() < hold_end) {
      min_after = std::min(min_after, Sum(*shared_, o_.processes).streaming);
      absl::SleepFor(absl::Milliseconds(20));
    }
    storm_end = hold_end;
  }
  const Totals after = Sum(*shared_, o_.processes);
  absl::SleepFor(absl::Milliseconds(1100));  // the sampler's last second of the storm
  const std::vector<Sample> storm_samples = SamplesBetween(storm_start, storm_end + absl::Seconds(1));
  double peak_cpu = 0, peak_rss = 0, mean_wait = 0;
  for (const Sample& s : storm_samples) {
    peak_cpu = std::max(peak_cpu, s.controller_cpu_pct);
    peak_rss = std::max(peak_rss, s.controller_rss_mb);
    mean_wait += s.controller_wait_pct / static_cast<double>(storm_samples.size());
  }
  std::vector<double> probe_ms;
  int probe_failed = 0;
  size_t probes = 0;
  for (const ProbeSample& p : probe_->SamplesBetween(storm_start, storm_end)) {
    // Percentiles of the answers; failures (refused, or past the deadline) are counted apart.
    ++probes;
    if (p.ok) {
      probe_ms.push_back(p.latency_ms);
    } else {
      ++probe_failed;
    }
  }
  double sim_cpu = 0, sim_rss = 0;
  for (const Sample& s : storm_samples) {
    sim_cpu += s.sim_cpu_pct;
    sim_rss = std::max(sim_rss, s.sim_rss_mb);
  }
  sim_cpu = storm_samples.empty() ? 0 : sim_cpu / storm_samples.size();
  const std::string label = o_.label.empty() ? "" : absl::StrCat(" label=", o_.label);
  std::printf(
      "storm%s client=%s mode=%s agents=%d processes=%d ramp_ms=%s timeout_s=%.0f converged=%s "
      "converge_s=%s all_attempted_s=%s streaming_end=%lld min_streaming_after_converged=%lld "
      "welcomed_ever=%lld "
      "drops=%llu drop_agents=%llu drops_cancelled=%llu drops_cancelled_own_gap=%llu "
      "drops_unavailable=%llu "
      "drops_other=%llu attempts=%llu reconnects=%lld refused_exhausted=%llu retry_hints=%llu "
      "retry_hint_mean_ms=%.0f welcome_timeouts=%llu failed_unavailable=%llu failed_cancelled=%llu "
      "failed_other=%llu "
      "fresh_channels=%llu batches_sent=%llu batches_unacked=%llu rounds_skipped=%llu "
      "cli_probes=%zu cli_failed=%d cli_p50_ms=%.1f cli_p99_ms=%.1f cli_max_ms=%.1f "
      "ctl_peak_cpu_pct=%.0f ctl_peak_rss_mb=%.1f ctl_runqueue_wait_pct=%.0f sim_cpu_pct=%.0f "
      "sim_peak_rss_mb=%.0f "
      "controller_ready_ms=%s streaming_before_restart=%s\n",
      label.c_str(), UsesH2(o_) ? "h2" : "grpc", o_.mode.c_str(), o_.agents, o_.processes,
      Ms(o_.mode == "restart" ? absl::ZeroDuration() : o_.ramp).c_str(),
      absl::ToDoubleSeconds(o_.timeout), converged ? "yes" : "no",
      converged ? absl::StrFormat("%.2f", absl::ToDoubleSeconds(*converged - storm_start)).c_str()
                : "-",
      all_attempted_
          ? absl::StrFormat("%.2f", absl::ToDoubleSeconds(*all_attempted_ - storm_start)).c_str()
          : "-",
      static_cast<long long>(after.streaming), static_cast<long long>(converged ? min_after : -1),
      static_cast<long long>(after.ever_welcomed),
      static_cast<unsigned long long>(after.drops - base.drops),
      static_cast<unsigned long long>(after.drop_agents - base.drop_agents),
      static_cast<unsigned long long>(after.drops_cancelled - base.drops_cancelled),
      static_cast<unsigned long long>(after.drops_cancelled_own_gap - base.drops_cancelled_own_gap),
      static_cast<unsigned long long>(after.drops_unavailable - base.drops_unavailable),
      static_cast<unsigned long long>(after.drops_other - base.drops_other),
      static_cast<unsigned long long>(after.attempts - base.attempts),
      static_cast<long long>(after.attempts - base.attempts) -
          (o_.mode == "restart" ? 0 : o_.agents),
      static_cast<unsigned long long>(after.refused_exhausted - base.refused_exhausted),
      static_cast<unsigned long long>(after.retry_hints - base.retry_hints),
      after.retry_hints > base.retry_hints
          ? static_cast<double>(after.retry_hint_ms_total - base.retry_hint_ms_total) /
                static_cast<double>(after.retry_hints - base.retry_hints)
          : 0.0,
      static_cast<unsigned long long>(after.welcome_timeouts - base.welcome_timeouts),
      static_cast<unsigned long long>(after.failed_unavailable - base.failed_unavailable),
      static_cast<unsigned long long>(after.failed_cancelled - base.failed_cancelled),
      static_cast<unsigned long long>(after.failed_other - base.failed_other),
      static_cast<unsigned long long>(after.fresh_channels - base.fresh_channels),
      static_cast<unsigned long long>(after.batches_sent - base.batches_sent),
      static_cast<unsigned long long>(after.batches_unacked - base.batches_unacked),
      static_cast<unsigned long long>(after.rounds_skipped - base.rounds_skipped), probes,
      probe_failed, NearestRank(probe_ms, 0.5), NearestRank(probe_ms, 0.99),
      NearestRank(probe_ms, 1.0), peak_cpu, peak_rss, mean_wait, sim_cpu, sim_rss,
      o_.mode == "restart" ? Ms(controller_ready).c_str() : "-",
      o_.mode == "restart" ? absl::StrCat(streaming_before_restart_).c_str() : "-");
  std::fflush(stdout);
  if (!probe_->first_error().empty()) {
    std::fprintf(stderr, "loadgen: first CLI probe failure: %s\n", probe_->first_error().c_str());
  }

  // Steady state: whatever is streaming now, measured over the window.
  if (o_.steady > absl::ZeroDuration()) {
    const absl::Time t0 = absl::Now();
    const Totals a = Sum(*shared_, o_.processes);
    const double sim0 = SimulatorCpuSeconds();
    const pid_t pid = controller();
    absl::StatusOr<ProcCpu> c0 = ReadProcCpu(pid);
    absl::SleepFor(o_.steady);
    const absl::Time t1 = absl::Now();
    const Totals b = Sum(*shared_, o_.processes);
    const double sim1 = SimulatorCpuSeconds();
    absl::StatusOr<ProcCpu> c1 = ReadProcCpu(pid);
    absl::StatusOr<ProcMemory> m1 = ReadProcMemory(pid);
    const double window = absl::ToDoubleSeconds(t1 - t0);
    const double ctl_cores =
        c0.ok() && c1.ok()
            ? static_cast<double>(c1->total() - c0->total()) / TicksPerSecond() / window
            : -1;
    std::vector<double> steady_ms;
    int steady_failed = 0;
    for (const ProbeSample& p : probe_->SamplesBetween(t0, t1)) {
      if (p.ok) {
        steady_ms.push_back(p.latency_ms);
      } else {
        ++steady_failed;
      }
    }
    const long cores = sysconf(_SC_NPROCESSORS_ONLN);
    std::printf(
        "steady%s agents=%d streaming_start=%lld streaming_end=%lld window_s=%.1f "
        "samples_sent_per_s=%.0f samples_acked_per_s=%.0f batches_unacked=%llu "
        "rounds_skipped=%llu drops=%llu ctl_cpu_cores=%.3f ctl_cpu_share_of_machine=%.3f "
        "ctl_rss_mb=%.1f ctl_peak_rss_mb=%.1f sim_cpu_cores=%.3f cli_p99_ms=%.1f cli_failed=%d\n",
        label.c_str(), o_.agents, static_cast<long long>(a.streaming),
        static_cast<long long>(b.streaming), window,
        static_cast<double>(b.samples_sent - a.samples_sent) / window,
        static_cast<double>(b.samples_acked - a.samples_acked) / window,
        static_cast<unsigned long long>(b.batches_unacked - a.batches_unacked),
        static_cast<unsigned long long>(b.rounds_skipped - a.rounds_skipped),
        static_cast<unsigned long long>(b.drops - a.drops), ctl_cores,
        ctl_cores >= 0 ? ctl_cores / static_cast<double>(cores) : -1,
        m1.ok() ? static_cast<double>(m1->rss_kb) / 1024 : -1,
        m1.ok() ? static_cast<double>(m1->peak_kb) / 1024 : -1, (sim1 - sim0) / window,
        NearestRank(steady_ms, 0.99), steady_failed);
    std::fflush(stdout);
  }

  sampling_ = false;
  sampler.join();
  probe_->Stop();
  if (managed) {
    StopController(SIGTERM);
  }
  return 0;
}

}  // namespace

int RunStorm(const StormOptions& o) {
  if (o.agents < 1 || o.processes < 1 || o.processes > kMaxProcesses ||
      o.processes > o.agents || o.series < 1 || o.histograms < 0 || o.histograms >= o.series || o.snapshots < 1 ||
      o.snapshots > 1000) {
    std::fprintf(stderr,
                 "loadgen: need agents >= processes >= 1 (at most %d processes) and "
                 "0 <= histograms < series, 1 <= snapshots <= 1000\n",
                 kMaxProcesses);
    return 2;
  }
  if (o.mode != "start" && o.mode != "restart") {
    std::fprintf(stderr, "loadgen: --mode is start or restart, not '%s'\n", o.mode.c_str());
    return 2;
  }
  if (o.mode == "restart" && o.controller_cmd.empty()) {
    std::fprintf(stderr, "loadgen: --mode=restart needs --controller-cmd (it restarts it)\n");
    return 2;
  }
  if (!o.tls_ca_key.empty() && o.tls_ca.empty()) {
    std::fprintf(stderr, "loadgen: --tls-ca-key needs --tls-ca\n");
    return 2;
  }
  if (!o.client.empty() && o.client != "h2" && o.client != "grpc") {
    std::fprintf(stderr, "loadgen: --client is h2 or grpc, not '%s'\n", o.client.c_str());
    return 2;
  }
  if (o.client == "h2" && !o.tls_ca_key.empty()) {
    std::fprintf(stderr,
                 "loadgen: --client=h2 speaks plain text only; mutual TLS needs "
                 "--client=grpc\n");
    return 2;
  }
  void* memory = mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                      -1, 0);
  if (memory == MAP_FAILED) {
    std::perror("loadgen: mmap");
    return 1;
  }
  Shared* shared = new (memory) Shared();
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    signal(sig, KillManagedControllerAndDie);
  }
  std::fflush(stdout);
  std::fflush(stderr);
  std::vector<pid_t> simulators;
  for (int p = 0; p < o.processes; ++p) {
    const pid_t pid = fork();
    if (pid < 0) {
      std::perror("loadgen: fork");
      shared->stop = 1;
      return 1;
    }
    if (pid == 0) {
      RunSimulator(o, shared, p);
    }
    simulators.push_back(pid);
  }
  int status = 1;
  {
    Coordinator coordinator(o, shared, simulators);
    status = coordinator.Run();
  }
  shared->stop = 1;
  for (pid_t pid : simulators) {
    waitpid(pid, nullptr, 0);
  }
  return status;
}

}  // namespace vigil::loadgen
