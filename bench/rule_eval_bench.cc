// Rule evaluation cost for a fleet of 1,000 agents x 50 series with the default rules, on one
// core: what the controller's RuleEngine spends on one collection round of the whole fleet (one
// TelemetryBatch per agent, every series once), including the HighAPILatency p95 over its 1m
// window (60 one-second histograms merged per agent), and on one Tick() (the fleet-wide
// LowThroughput sum of rate(nginx_requests_per_second[5m]) over 1,000 agents). The round is run
// with five rule sets: the defaults with LowThroughput as the plain sum it was (no rate), the
// defaults, the defaults plus three rate()/irate() rules, the defaults plus a fleet-wide p95 (the
// 1,000 agents' histograms merged per service, 10 services), and the defaults plus a division of
// two fleet-wide sums of rate(); each prints ns per round and the bytes of rate state per series
// that has any. Values stay below every threshold: no alert changes. BM_FleetMerge compares
// adding each member's windowed merge in place with copying it first.
// The series' state is advanced between rounds with the timer paused, so only the engine is timed.
//   build/bench/rule_eval_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>
#include <time.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/histogram.h"
#include "common/metric_schema.h"
#include "controller/ingest/fleet_state.h"
#include "controller/rules/rule.h"
#include "controller/rules/rule_engine.h"

namespace vigil::controller {
namespace {

constexpr int kAgents = 1000;
constexpr int kSeriesPerAgent = 50;
constexpr int kHistogramSeconds = 60;  // FleetState's default histogram window, one per second
constexpr int kObservationsPerHistogram = 100;
constexpr int64_t kStartMs = 1'700'000'000'000;

// CPU time of the calling thread: the share of a core, whatever else the machine is running.
int64_t ThreadCpuNanos() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

class CountingSink : public AlertSink {
 public:
  void OnAlertChange(const v1::Alert& alert, const Rule* rule) override { ++changes; }
  uint64_t changes = 0;
};

// One series of the mix: a gauge around `base` (varied by up to +-5 % per round), or the
// request-duration histogram.
struct SeriesSpec {
  std::string name;
  Labels labels;
  double base = 0;
  bool histogram = false;
};

// Typical values, all below the default rules' thresholds.
std::vector<SeriesSpec> SeriesMix() {
  std::vector<SeriesSpec> mix = {
      {"host_cpu_usage_ratio", {}, 0.35},
      {"host_memory_used_ratio", {}, 0.55},
      {"host_load1", {}, 1.5},
      {"host_up", {}, 1},
      {"host_disk_used_ratio", {{"mount", "/"}}, 0.45},
      {"host_disk_used_ratio", {{"mount", "/boot"}}, 0.3},
      {"host_disk_used_ratio", {{"mount", "/var"}}, 0.6},
      {"host_disk_used_ratio", {{"mount", "/var/lib/postgresql"}}, 0.7},
      {"nginx_requests_per_second", {}, 150},
      {"nginx_error_ratio", {}, 0.01},
      {"nginx_request_duration_seconds", {}, 0, /*histogram=*/true},
      {"nginx_up", {}, 1},
      {"nginx_unparsed_lines", {}, 0},
  };
  const std::map<std::string, double> kTypical = {
      {"pg_active_connections", 20},
      {"pg_connections_used_ratio", 0.2},
      {"pg_longest_query_seconds", 0.3},
      {"pg_blocked_queries", 0},
      {"pg_up", 1},
      {"redis_ops_per_second", 500},
      {"redis_connected_clients", 12},
      {"redis_keyspace_hit_ratio", 0.95},
      {"redis_used_memory_bytes", 2e8},
      {"redis_up", 1},
  };
  for (const MetricInfo& metric : AllMetrics()) {
    const std::string name(metric.name);
    if (metric.kind == MetricKind::kGauge &&
        (absl::StartsWith(name, "pg_") || absl::StartsWith(name, "redis_"))) {
      auto typical = kTypical.find(name);
      mix.push_back({name, {}, typical == kTypical.end() ? 1 : typical->second});
    }
  }
  for (int i = 0; static_cast<int>(mix.size()) < kSeriesPerAgent; ++i) {
    mix.push_back({"host_disk_used_ratio", {{"mount", absl::StrFormat("/m%02d", i)}}, 0.5});
  }
  return mix;
}

// Request latencies, lognormal around 80 ms (p95 about 0.2 s, far below HighAPILatency's 2 s).
std::vector<LogHistogram> HistogramPool(int size) {
  std::mt19937_64 rng(42);
  std::lognormal_distribution<double> latency(std::log(0.08), 0.6);
  std::vector<LogHistogram> pool(size);
  for (LogHistogram& h : pool) {
    for (int i = 0; i < kObservationsPerHistogram; ++i) {
      h.Add(latency(rng));
    }
  }
  return pool;
}

struct SimAgent {
  std::string id;
  std::vector<std::unique_ptr<SeriesState>> series;
  std::vector<SeriesState*> dictionary;  // series id -> state, as the ingest thread keeps it
  v1::TelemetryBatch batch;              // every series once: 49 gauge values, 1 histogram
};

// The fleet's series, kept by hand the way FleetState::Apply keeps them.
class Fleet {
 public:
  Fleet() : mix_(SeriesMix()), pool_(HistogramPool(64)) {
    agents_.resize(kAgents);
    for (int a = 0; a < kAgents; ++a) {
      SimAgent& agent = agents_[a];
      agent.id = absl::StrFormat("api-%04d", a);
      v1::Snapshot* snapshot = agent.batch.add_snapshots();
      for (size_t i = 0; i < mix_.size(); ++i) {
        auto series = std::make_unique<SeriesState>(MakeSeriesKey(mix_[i].name, mix_[i].labels));
        if (mix_[i].histogram) {
          snapshot->add_histograms()->set_series_id(static_cast<uint32_t>(i));
        } else {
          snapshot->add_series_ids(static_cast<uint32_t>(i));
          snapshot->add_values(0);
        }
        agent.dictionary.push_back(series.get());
        agent.series.push_back(std::move(series));
      }
    }
    for (int i = 0; i < kHistogramSeconds; ++i) {
      Advance();  // fills the gauge rings and the histogram windows
    }
  }

  // The next collection round: every series gets a new value, every histogram window moves on
  // by one second, every batch carries the new values.
  void Advance() {
    ++round_;
    const int64_t ms = kStartMs + round_ * 1000;
    for (int a = 0; a < kAgents; ++a) {
      SimAgent& agent = agents_[a];
      v1::Snapshot& snapshot = *agent.batch.mutable_snapshots(0);
      snapshot.set_time_unix_ms(ms);
      agent.batch.set_sequence(static_cast<uint64_t>(round_));
      int value_index = 0;
      for (size_t i = 0; i < mix_.size(); ++i) {
        SeriesState& series = *agent.series[i];
        if (mix_[i].histogram) {
          series.AddHistogram(ms, pool_[(round_ + a) % pool_.size()], kHistogramSeconds * 1000);
          continue;
        }
        const int64_t step = round_ * 7 + a * 13 + static_cast<int64_t>(i) * 3;
        const double jitter = static_cast<double>(step % 11 - 5) / 100;  // -5 % .. +5 %
        const double value = mix_[i].base * (1 + jitter);
        series.AddValue(ms, value);
        snapshot.set_values(value_index++, value);
      }
    }
  }

  std::vector<SimAgent>& agents() { return agents_; }
  int64_t now_ms() const { return kStartMs + round_ * 1000; }

 private:
  const std::vector<SeriesSpec> mix_;
  const std::vector<LogHistogram> pool_;
  std::vector<SimAgent> agents_;
  int64_t round_ = 0;
};

// Built once (about 100 MB of histograms) and shared by every run; it only moves forward.
Fleet& SharedFleet() {
  static Fleet* fleet = new Fleet();
  return *fleet;
}

const Labels kAgentLabels = {{"role", "api"}, {"service", "rag-api"}, {"depends_on", "postgres"}};

// Connects every agent and feeds it one round, as a controller that has been running a while.
// `services` > 1: agent i is in service "svc-<i % services>" (groups for `by (service)`).
void Connect(Fleet& fleet, RuleEngine& engine, SimulatedClock& clock, int services = 1) {
  int i = 0;
  for (SimAgent& agent : fleet.agents()) {
    Labels labels = kAgentLabels;
    if (services > 1) {
      labels["service"] = absl::StrCat("svc-", i++ % services);
    }
    engine.OnConnected(agent.id, labels);
  }
  fleet.Advance();
  clock.Set(absl::FromUnixMillis(fleet.now_ms()));
  for (SimAgent& agent : fleet.agents()) {
    engine.OnTelemetry(agent.id, agent.batch, agent.dictionary);
  }
}

void CheckNoAlerts(benchmark::State& state, const CountingSink& sink) {
  state.counters["alert_changes"] = static_cast<double>(sink.changes);
  if (sink.changes != 0) {
    state.SkipWithError("values crossed a threshold: the fleet is meant to stay quiet");
  }
}

// The rule sets of BM_OneRoundAllAgents, by its argument.
std::vector<Rule> RuleSet(int64_t which) {
  if (which == 1) {
    return DefaultRules();
  }
  std::string yaml = DefaultRulesYaml();
  if (which == 0) {
    const std::string rate = "sum(rate(nginx_requests_per_second[5m])) < 100";
    yaml.replace(yaml.find(rate), rate.size(), "sum(nginx_requests_per_second) < 100");
  } else if (which == 3) {
    // The merged histograms of every agent over HighAPILatency's own 1m window, per service.
    yaml += R"(  - alert: BenchServiceP95
    expr: p95 by (service) (nginx_request_duration_seconds{role="api"}) > 5
    window: 1m
)";
  } else if (which == 4) {
    yaml += R"(  - alert: BenchEvictionsPerOp
    expr: sum by (service) (rate(redis_evicted_keys_per_second[5m])) / sum by (service) (rate(redis_ops_per_second[5m])) > 0.5
)";
  } else {
    yaml += R"(  - alert: BenchBusyAgent
    expr: rate(nginx_requests_per_second[5m]) > 1e6
  - alert: BenchRedisQuiet
    expr: sum by (service) (rate(redis_ops_per_second{role="api"}[1m])) < 1
  - alert: BenchEvictions
    expr: irate(redis_evicted_keys_per_second[30s]) > 1e6
)";
  }
  RuleFile file = ParseRules(yaml, "bench");
  if (!file.errors.empty()) {
    std::abort();
  }
  return std::move(file.rules);
}

// One collection round of the whole fleet: one OnTelemetry per agent, batches spread over the
// second (1 ms apart), so fleet-wide rules are also re-evaluated every 200 ms as in production.
// Argument: 0 no rate() rule, 1 the default rules (LowThroughput is a rate), 2 three more,
// 3 the defaults and a fleet-wide p95 by service, 4 the defaults and a division of rate() sums
// by service (10 services for 3 and 4).
void BM_OneRoundAllAgents(benchmark::State& state) {
  Fleet& fleet = SharedFleet();
  SimulatedClock clock;
  CountingSink sink;
  RuleEngine engine(RuleSet(state.range(0)), &clock, &sink);
  Connect(fleet, engine, clock, state.range(0) >= 3 ? 10 : 1);
  const uint64_t evaluations_before = engine.evaluations();
  int64_t timed_ns = 0;  // CPU time of the rounds alone, for the per-batch and per-core figures
  for (auto _ : state) {
    state.PauseTiming();
    fleet.Advance();
    clock.Set(absl::FromUnixMillis(fleet.now_ms()));
    state.ResumeTiming();
    const int64_t start = ThreadCpuNanos();
    for (SimAgent& agent : fleet.agents()) {
      clock.Advance(absl::Milliseconds(1));
      engine.OnTelemetry(agent.id, agent.batch, agent.dictionary);
    }
    timed_ns += ThreadCpuNanos() - start;
  }
  const double rounds = static_cast<double>(state.iterations());
  const double ns_per_round = static_cast<double>(timed_ns) / rounds;
  state.SetItemsProcessed(state.iterations() * kAgents * kSeriesPerAgent);
  state.counters["ns_per_round"] = ns_per_round;
  state.counters["ns_per_agent_batch"] = ns_per_round / kAgents;
  state.counters["ns_per_sample"] = ns_per_round / (kAgents * kSeriesPerAgent);
  // One round per second (agents at --interval=1s): the share of one core, in percent.
  state.counters["core_pct_at_1_round_per_s"] = ns_per_round / 1e9 * 100;
  state.counters["rule_evals_per_round"] =
      static_cast<double>(engine.evaluations() - evaluations_before) / rounds;
  const RuleEngine::RateUsage rates = engine.rate_usage();
  state.counters["rate_series"] = static_cast<double>(rates.series);
  state.counters["rate_windows"] = static_cast<double>(rates.windows);
  state.counters["rate_bytes_per_series"] =
      rates.series == 0 ? 0 : static_cast<double>(rates.bytes) / static_cast<double>(rates.series);
  CheckNoAlerts(state, sink);
}
BENCHMARK(BM_OneRoundAllAgents)
    ->Arg(0)
    ->Arg(1)
    ->Arg(2)
    ->Arg(3)
    ->Arg(4)
    ->Unit(benchmark::kMillisecond);

// One fleet-wide merge of the 1,000 agents' request-duration histograms over 1m: each member's
// running windowed merge added in place into the group's histogram (argument 0, what the engine
// does), or copied first and the copy added (argument 1).
void BM_FleetMerge(benchmark::State& state) {
  Fleet& fleet = SharedFleet();
  const bool copy = state.range(0) == 1;
  const int64_t cutoff = fleet.now_ms() - 60'000;
  size_t histogram_index = 0;
  while (!fleet.agents()[0].series[histogram_index]->is_histogram()) {
    ++histogram_index;
  }
  LogHistogram group;
  for (auto _ : state) {
    group.Clear();
    for (SimAgent& agent : fleet.agents()) {
      const CompactHistogram& view =
          agent.series[histogram_index]->histograms()->Windowed(60'000, cutoff);
      if (copy) {
        LogHistogram member;
        view.AddTo(&member);
        group.Merge(member);
      } else {
        view.AddTo(&group);
      }
    }
    benchmark::DoNotOptimize(group.Quantile(0.95));
  }
  state.SetItemsProcessed(state.iterations() * kAgents);
}
BENCHMARK(BM_FleetMerge)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

// One Tick: the fleet-wide LowThroughput (sum of rate(nginx_requests_per_second[5m])) over the
// 1,000 agents, each one's average read again from its window (samples age out between
// evaluations), plus the sweep of active alerts (none).
void BM_Tick(benchmark::State& state) {
  Fleet& fleet = SharedFleet();
  SimulatedClock clock;
  CountingSink sink;
  RuleEngine engine(DefaultRules(), &clock, &sink);
  Connect(fleet, engine, clock);
  const uint64_t evaluations_before = engine.evaluations();
  size_t next = 0;
  for (auto _ : state) {
    // The clock stays put, so every member's rate window keeps its samples (advanced by a
    // second a tick, they would all age out after 5 minutes and the tick would judge nothing);
    // one agent's batch, untimed, marks the aggregates for the tick to judge again.
    state.PauseTiming();
    SimAgent& agent = fleet.agents()[next++ % fleet.agents().size()];
    engine.OnTelemetry(agent.id, agent.batch, agent.dictionary);
    state.ResumeTiming();
    engine.Tick();
  }
  state.SetItemsProcessed(state.iterations() * kAgents);  // contributions aggregated
  state.counters["rule_evals_per_tick"] =
      static_cast<double>(engine.evaluations() - evaluations_before) /
      static_cast<double>(state.iterations());
  CheckNoAlerts(state, sink);
}
BENCHMARK(BM_Tick)->Unit(benchmark::kMicrosecond);

// A p95 over a window of 10 s, 60 s or 300 s of one-second histograms: the rule engine's cost per
// evaluation (the running merge takes in the newest interval and lets go of the oldest), against
// merging the whole window again, which is what it cost before and grows with the window.
class QuantileFixture {
 public:
  static constexpr int kSeries = 100;
  explicit QuantileFixture(int window_s)
      : window_s_(window_s),
        pool_(HistogramPool(64)),
        engine_(Rules(window_s), &clock_, &sink_) {
    for (int i = 0; i < kSeries; ++i) {
      series_.push_back(std::make_unique<SeriesState>(
          MakeSeriesKey("nginx_request_duration_seconds", {{"endpoint", absl::StrCat("/e", i)}})));
      dictionary_.push_back(series_.back().get());
    }
    v1::Snapshot* snapshot = batch_.add_snapshots();
    snapshot->add_histograms()->set_series_id(0);
    for (int s = 0; s < window_s + 2; ++s) {
      Advance();
      EvaluateAll();
    }
  }
  void Advance() {
    ++second_;
    clock_.Set(absl::FromUnixMillis(kStartMs + second_ * 1000));
    for (int i = 0; i < kSeries; ++i) {
      series_[i]->AddHistogram(kStartMs + second_ * 1000, pool_[(second_ + i) % pool_.size()],
                               int64_t{window_s_} * 1000);
    }
  }
  void EvaluateAll() {
    for (int i = 0; i < kSeries; ++i) {
      batch_.mutable_snapshots(0)->mutable_histograms(0)->set_series_id(static_cast<uint32_t>(i));
      engine_.OnTelemetry(absl::StrCat("api-", i), batch_, dictionary_);
    }
  }
  double RecomputeAll() {
    double total = 0;
    const int64_t cutoff = kStartMs + second_ * 1000 - int64_t{window_s_} * 1000;
    for (const auto& s : series_) {
      LogHistogram merged;
      s->histograms()->MergeAfter(cutoff, &merged);
      total += merged.Quantile(0.95);
    }
    return total;
  }
  const CountingSink& sink() const { return sink_; }

 private:
  static std::vector<Rule> Rules(int window_s) {
    RuleFile file = ParseRules(absl::StrFormat(R"(rules:
  - alert: HighAPILatency
    expr: p95(nginx_request_duration_seconds) > 2
    window: %ds
)",
                                               window_s),
                               "bench");
    return file.rules;
  }
  const int window_s_;
  const std::vector<LogHistogram> pool_;
  SimulatedClock clock_;
  CountingSink sink_;
  RuleEngine engine_;
  std::vector<std::unique_ptr<SeriesState>> series_;
  std::vector<SeriesState*> dictionary_;
  v1::TelemetryBatch batch_;
  int64_t second_ = 0;
};

void BM_QuantileRunningWindow(benchmark::State& state) {
  QuantileFixture fixture(static_cast<int>(state.range(0)));
  int64_t timed_ns = 0;
  for (auto _ : state) {
    state.PauseTiming();
    fixture.Advance();
    state.ResumeTiming();
    const int64_t start = ThreadCpuNanos();
    fixture.EvaluateAll();
    timed_ns += ThreadCpuNanos() - start;
  }
  state.counters["ns_per_evaluation"] =
      static_cast<double>(timed_ns) / (static_cast<double>(state.iterations()) *
                                       QuantileFixture::kSeries);
  CheckNoAlerts(state, fixture.sink());
}
BENCHMARK(BM_QuantileRunningWindow)->Arg(10)->Arg(60)->Arg(300)->Unit(benchmark::kMicrosecond);

// The whole cost of one interval to the controller: adding it to the series' window (merged into
// the newest slot once a rule's view reads the series) and evaluating the quantile over the rule's
// window. ns per series and second.
void BM_QuantileAddAndEvaluate(benchmark::State& state) {
  QuantileFixture fixture(static_cast<int>(state.range(0)));
  int64_t timed_ns = 0;
  for (auto _ : state) {
    const int64_t start = ThreadCpuNanos();
    fixture.Advance();
    fixture.EvaluateAll();
    timed_ns += ThreadCpuNanos() - start;
  }
  state.counters["ns_per_interval"] =
      static_cast<double>(timed_ns) / (static_cast<double>(state.iterations()) *
                                       QuantileFixture::kSeries);
  CheckNoAlerts(state, fixture.sink());
}
BENCHMARK(BM_QuantileAddAndEvaluate)->Arg(10)->Arg(60)->Arg(300)->Unit(benchmark::kMicrosecond);

void BM_QuantileRecomputedWindow(benchmark::State& state) {
  QuantileFixture fixture(static_cast<int>(state.range(0)));
  int64_t timed_ns = 0;
  for (auto _ : state) {
    state.PauseTiming();
    fixture.Advance();
    state.ResumeTiming();
    const int64_t start = ThreadCpuNanos();
    benchmark::DoNotOptimize(fixture.RecomputeAll());
    timed_ns += ThreadCpuNanos() - start;
  }
  state.counters["ns_per_evaluation"] =
      static_cast<double>(timed_ns) / (static_cast<double>(state.iterations()) *
                                       QuantileFixture::kSeries);
}
BENCHMARK(BM_QuantileRecomputedWindow)->Arg(10)->Arg(60)->Arg(300)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace vigil::controller

BENCHMARK_MAIN();
