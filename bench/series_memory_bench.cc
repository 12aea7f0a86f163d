// Controller memory per agent and per series, in-process (FleetState + RuleEngine with the
// default rules, no gRPC): agents of 50 series (45 gauges + 5 latency histograms, the benchmark
// conditions of DESIGN.md) are applied and evaluated until every 60 s histogram window is full,
// first 1,000 agents, then 9,000 more; the RSS slope between the two is the cost of one agent.
// Also prints the budget per series by part, and the rules' CPU per sample in the last rounds.
//
//   build/bench/series_memory_bench [--agents-small=1000] [--agents-large=10000]
//                                   [--observations=100]
#include <malloc.h>
#include <time.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/histogram.h"
#include "controller/ingest/fleet_state.h"
#include "controller/rules/rule.h"
#include "controller/rules/rule_engine.h"

namespace vigil::controller {
namespace {

constexpr int kGauges = 45;
constexpr int kHistograms = 5;
constexpr int kRounds = 62;  // the 60 s windows full, at one round a second

size_t RssBytes() {
  std::ifstream statm("/proc/self/statm");
  size_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

int64_t ThreadCpuNanos() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

class NullSink : public AlertSink {
 public:
  void OnAlertChange(const v1::Alert&, const Rule*) override { ++changes; }
  uint64_t changes = 0;
};

// The series every agent declares: the host, nginx, postgres and redis gauges, disks, and five
// request-duration histograms (one per endpoint).
v1::TelemetryBatch Definitions() {
  v1::TelemetryBatch batch;
  std::vector<std::pair<std::string, Labels>> gauges = {
      {"host_cpu_usage_ratio", {}},        {"host_memory_used_ratio", {}},
      {"host_load1", {}},                  {"nginx_requests_per_second", {}},
      {"nginx_error_ratio", {}},           {"pg_active_connections", {}},
      {"pg_connections_used_ratio", {}},   {"pg_longest_query_seconds", {}},
      {"pg_blocked_queries", {}},          {"redis_ops_per_second", {}},
      {"redis_connected_clients", {}},     {"redis_keyspace_hit_ratio", {}},
      {"redis_used_memory_bytes", {}},
  };
  for (int i = 0; static_cast<int>(gauges.size()) < kGauges; ++i) {
    gauges.push_back({"host_disk_used_ratio", {{"mount", absl::StrCat("/srv/disk", i)}}});
  }
  uint32_t id = 0;
  for (const auto& [name, labels] : gauges) {
    v1::SeriesDefinition* def = batch.add_new_series();
    def->set_id(id++);
    def->set_name(name);
    def->mutable_labels()->insert(labels.begin(), labels.end());
  }
  for (int h = 0; h < kHistograms; ++h) {
    v1::SeriesDefinition* def = batch.add_new_series();
    def->set_id(id++);
    def->set_name("nginx_request_duration_seconds");
    (*def->mutable_labels())["endpoint"] = absl::StrCat("/api/v1/endpoint", h);
  }
  return batch;
}

// Request latencies of one interval: lognormal around 80 ms, `observations` requests.
std::vector<v1::Histogram> HistogramPool(int observations) {
  std::mt19937_64 rng(42);
  std::lognormal_distribution<double> latency(std::log(0.08), 0.6);
  std::vector<v1::Histogram> pool(97);
  for (v1::Histogram& wire : pool) {
    LogHistogram h;
    for (int i = 0; i < observations; ++i) {
      h.Add(latency(rng));
    }
    h.ToProto(&wire);
  }
  return pool;
}

struct Agent {
  std::string id;
  std::vector<SeriesState*> dictionary;
};

class Bench {
 public:
  explicit Bench(int observations)
      : engine_(DefaultRules(), &clock_, &sink_), pool_(HistogramPool(observations)) {}

  // Connects `n` more agents and runs kRounds rounds over them.
  void AddAgents(int n) {
    const size_t first = agents_.size();
    const v1::TelemetryBatch definitions = Definitions();
    for (int i = 0; i < n; ++i) {
      Agent& agent = agents_.emplace_back();
      agent.id = absl::StrCat("api-", first + i);
      v1::Hello hello;
      hello.set_agent_id(agent.id);
      hello.set_hostname(agent.id);
      (*hello.mutable_labels())["role"] = "api";
      (*hello.mutable_labels())["service"] = "rag-api";
      (*hello.mutable_labels())["env"] = "prod";
      if (!fleet_.Connect(hello, "bench", first + i + 1, clock_.Now()).ok()) {
        std::abort();
      }
      engine_.OnConnected(agent.id, Labels(hello.labels().begin(), hello.labels().end()));
      if (!fleet_.Apply(agent.id, definitions, agent.dictionary, clock_.Now()).ok()) {
        std::abort();
      }
    }
    rule_ns_ = 0;
    rule_samples_ = 0;
    for (int round = 0; round < kRounds; ++round) {
      clock_.Advance(absl::Seconds(1));
      ++sequence_;
      for (size_t a = first; a < agents_.size(); ++a) {
        v1::TelemetryBatch batch = Round(a);
        if (!fleet_.Apply(agents_[a].id, batch, agents_[a].dictionary, clock_.Now()).ok()) {
          std::abort();
        }
        const int64_t start = ThreadCpuNanos();
        engine_.OnTelemetry(agents_[a].id, batch, agents_[a].dictionary);
        if (round >= kRounds - 5) {
          rule_ns_ += ThreadCpuNanos() - start;
          rule_samples_ += kGauges + kHistograms;
        }
      }
      engine_.Tick();
    }
  }

  // What the series of the agents hold, by part, per series (gauges, histograms).
  void PrintBudget() const {
    double gauge_state = 0, histogram_state = 0, window = 0;
    HistogramWindow::Usage usage;
    size_t gauges = 0, histograms = 0;
    for (const Agent& agent : agents_) {
      for (const SeriesState* s : agent.dictionary) {
        if (s->is_histogram()) {
          histogram_state += sizeof(SeriesState);
          window += static_cast<double>(s->histograms()->bytes());
          const HistogramWindow::Usage u = s->histograms()->usage();
          usage.encoded += u.encoded;
          usage.index += u.index;
          usage.views += u.views;
          usage.slack += u.slack;
          ++histograms;
        } else {
          gauge_state += static_cast<double>(s->bytes());
          ++gauges;
        }
      }
    }
    double budget = 0;
    for (const Agent& agent : agents_) {
      budget += static_cast<double>(fleet_.AgentBytesForTest(agent.id));
    }
    const double dictionary = sizeof(SeriesState*);  // the stream's id -> series table
    const double index = 24;                          // the agent's key -> series slot
    std::printf("\nbudget per series (bytes, by part; keys are shared by all agents):\n");
    std::printf("  gauge:     state %.0f + agent index %.0f + stream dictionary %.0f + rule slot %zu"
                " = %.0f\n",
                gauge_state / gauges, index, dictionary, RuleEngine::kSlotBytes,
                gauge_state / gauges + index + dictionary + RuleEngine::kSlotBytes);
    std::printf("  histogram: state %.0f + window %.0f (a minute in 5 s slots + running merge) + agent "
                "index %.0f + stream dictionary %.0f + rule slot %zu = %.0f\n",
                histogram_state / histograms, window / histograms, index, dictionary,
                RuleEngine::kSlotBytes,
                histogram_state / histograms + window / histograms + index + dictionary +
                    RuleEngine::kSlotBytes);
    const double n = static_cast<double>(histograms);
    std::printf("  histogram window by part: encoded slots %.0f + their index %.0f + running "
                "merge %.0f + slack %.0f + object %zu\n",
                usage.encoded / n, usage.index / n, usage.views / n, usage.slack / n,
                sizeof(HistogramWindow));
    std::printf("  AgentBytesForTest (the budget Apply checks): %.0f bytes per agent on average\n",
                budget / static_cast<double>(agents_.size()));
    std::printf("  rule slots in use: %zu; alert changes: %llu\n", engine_.slots_in_use(),
                static_cast<unsigned long long>(sink_.changes));
  }

  double rule_ns_per_sample() const {
    return rule_samples_ == 0 ? 0 : static_cast<double>(rule_ns_) / rule_samples_;
  }
  size_t agents() const { return agents_.size(); }

 private:
  v1::TelemetryBatch Round(size_t a) const {
    v1::TelemetryBatch batch;
    batch.set_sequence(sequence_);
    v1::Snapshot* snapshot = batch.add_snapshots();
    snapshot->set_time_unix_ms(absl::ToUnixMillis(clock_.Now()) - 20);
    for (uint32_t i = 0; i < kGauges; ++i) {
      snapshot->add_series_ids(i);
      // Below every default threshold, so the fleet stays quiet (the sum stays above 100 req/s).
      snapshot->add_values(i == 3    ? 150    // nginx_requests_per_second
                           : i == 4  ? 0.01   // nginx_error_ratio
                           : i == 8  ? 0      // pg_blocked_queries
                           : i == 11 ? 0.95   // redis_keyspace_hit_ratio
                                     : 0.3 + 0.001 * static_cast<double>((a + i) % 50));
    }
    for (uint32_t h = 0; h < kHistograms; ++h) {
      v1::HistogramPoint* point = snapshot->add_histograms();
      point->set_series_id(kGauges + h);
      *point->mutable_histogram() = pool_[(a * 7 + h * 13 + sequence_) % pool_.size()];
    }
    return batch;
  }

  SimulatedClock clock_;
  NullSink sink_;
  FleetState fleet_;
  RuleEngine engine_;
  const std::vector<v1::Histogram> pool_;
  std::vector<Agent> agents_;
  uint64_t sequence_ = 0;
  int64_t rule_ns_ = 0;
  int64_t rule_samples_ = 0;
};

int Flag(int argc, char** argv, absl::string_view name, int fallback) {
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    int value = 0;
    if (absl::ConsumePrefix(&arg, name) && absl::ConsumePrefix(&arg, "=") &&
        absl::SimpleAtoi(arg, &value) && value > 0) {
      return value;
    }
  }
  return fallback;
}

int Main(int argc, char** argv) {
  const int small = Flag(argc, argv, "--agents-small", 1000);
  const int large = Flag(argc, argv, "--agents-large", 10000);
  const int observations = Flag(argc, argv, "--observations", 100);
  if (large <= small) {
    std::fprintf(stderr, "--agents-large must exceed --agents-small\n");
    return 2;
  }
  std::printf("FleetState + RuleEngine (default rules), %d gauges + %d histograms per agent, "
              "%d observations per histogram interval, %d rounds of 1 s\n",
              kGauges, kHistograms, observations, kRounds);
  const size_t base = RssBytes();
  Bench bench(observations);
  bench.AddAgents(small);
  malloc_trim(0);
  const size_t rss_small = RssBytes();
  const double ns_small = bench.rule_ns_per_sample();
  bench.AddAgents(large - small);
  malloc_trim(0);
  const size_t rss_large = RssBytes();
  const double ns_large = bench.rule_ns_per_sample();
  std::printf("\n%8s %12s %22s\n", "agents", "RSS MiB", "rules ns/sample (CPU)");
  std::printf("%8d %12.1f %22.0f\n", 0, base / 1048576.0, 0.0);
  std::printf("%8d %12.1f %22.0f\n", small, rss_small / 1048576.0, ns_small);
  std::printf("%8d %12.1f %22.0f\n", large, rss_large / 1048576.0, ns_large);
  const double per_agent =
      static_cast<double>(rss_large - rss_small) / static_cast<double>(large - small);
  std::printf("\nRSS slope %d..%d agents: %.1f KiB per agent, %.0f bytes per series (%d series)\n",
              small, large, per_agent / 1024, per_agent / (kGauges + kHistograms),
              kGauges + kHistograms);
  bench.PrintBudget();
  return 0;
}

}  // namespace
}  // namespace vigil::controller

int main(int argc, char** argv) { return vigil::controller::Main(argc, argv); }
