// What edge validation costs the ingest thread: one collection round of 1,000 agents x 50 series
// (45 gauges + 5 latency histograms, the benchmark conditions of DESIGN.md), applied to the
// FleetState with and without ValidateBatch in front, in the same run. The ratio of the two is
// the validation's share of ingest CPU.
//   build/bench/ingest_bench --benchmark_repetitions=5 --benchmark_enable_random_interleaving=true
//       --benchmark_report_aggregates_only=true   (one command line)
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/histogram.h"
#include "controller/ingest/fleet_state.h"
#include "controller/ingest/telemetry_validator.h"

namespace vigil::controller {
namespace {

constexpr int kAgents = 1000;
constexpr int kGauges = 45;
constexpr int kHistograms = 5;
constexpr int64_t kStartMs = 1'700'000'000'000;

struct Fleet {
  FleetState state;
  std::vector<std::string> ids;
  std::vector<std::vector<SeriesState*>> dictionaries;
  v1::TelemetryBatch definitions;  // the first batch of every stream: all 50 definitions
  v1::Snapshot round;              // one snapshot of the 50 series, shared by every agent
  uint64_t sequence = 0;
  int64_t now_ms = kStartMs;
};

Fleet& TheFleet() {
  static Fleet* fleet = [] {
    auto* f = new Fleet;
    std::mt19937 rng(7);
    std::uniform_real_distribution<double> ratio(0.1, 0.6);
    for (int g = 0; g < kGauges; ++g) {
      v1::SeriesDefinition* def = f->definitions.add_new_series();
      def->set_id(static_cast<uint32_t>(g));
      def->set_name(g < 3 ? "host_cpu_usage_ratio" : "host_disk_used_ratio");
      (*def->mutable_labels())["mount"] = absl::StrCat("/mnt/disk", g);
      f->round.add_series_ids(static_cast<uint32_t>(g));
      f->round.add_values(ratio(rng));
    }
    std::lognormal_distribution<double> latency(-3.0, 0.8);
    for (int h = 0; h < kHistograms; ++h) {
      const uint32_t id = kGauges + h;
      v1::SeriesDefinition* def = f->definitions.add_new_series();
      def->set_id(id);
      def->set_name("nginx_request_duration_seconds");
      (*def->mutable_labels())["endpoint"] = absl::StrCat("/api/v1/endpoint", h);
      LogHistogram histogram;
      for (int i = 0; i < 100; ++i) {
        histogram.Add(latency(rng));
      }
      v1::HistogramPoint* point = f->round.add_histograms();
      point->set_series_id(id);
      histogram.ToProto(point->mutable_histogram());
    }
    f->dictionaries.resize(kAgents);
    const absl::Time now = absl::FromUnixMillis(f->now_ms);
    for (int a = 0; a < kAgents; ++a) {
      f->ids.push_back(absl::StrCat("api-", a));
      v1::Hello hello;
      hello.set_agent_id(f->ids.back());
      if (!f->state.Connect(hello, "bench", static_cast<uint64_t>(a + 1), now).ok()) {
        std::fprintf(stderr, "ingest_bench: %s was refused\n", f->ids.back().c_str());
        std::exit(1);
      }
      if (!f->state.Apply(f->ids.back(), f->definitions, f->dictionaries[a], now).ok()) {
        std::fprintf(stderr, "ingest_bench: the definitions of %s were refused\n",
                     f->ids.back().c_str());
        std::exit(1);
      }
    }
    return f;
  }();
  return *fleet;
}

// One round: a batch per agent, one second after the last.
void ApplyRound(Fleet& fleet, v1::TelemetryBatch& batch, bool validate, uint64_t* refused) {
  const IngestLimits limits;
  fleet.now_ms += 1000;
  ++fleet.sequence;
  const absl::Time now = absl::FromUnixMillis(fleet.now_ms);
  batch.set_sequence(fleet.sequence);
  batch.mutable_snapshots(0)->set_time_unix_ms(fleet.now_ms);
  for (int a = 0; a < kAgents; ++a) {
    if (validate) {
      const StreamView view{.dictionary_size = fleet.dictionaries[a].size(),
                            .last_sequence = fleet.state.LastSequence(fleet.ids[a])};
      if (!ValidateBatch(batch, view, limits, now).ok()) {
        ++*refused;
        continue;
      }
    }
    benchmark::DoNotOptimize(fleet.state.Apply(fleet.ids[a], batch, fleet.dictionaries[a], now));
  }
}

void Round(benchmark::State& state, bool validate) {
  Fleet& fleet = TheFleet();
  v1::TelemetryBatch batch;
  *batch.add_snapshots() = fleet.round;
  uint64_t refused = 0;
  // Steady state first: every series' 60 s histogram window full, as on a running controller.
  if (fleet.sequence == 0) {
    for (int i = 0; i < 61; ++i) {
      ApplyRound(fleet, batch, false, &refused);
    }
  }
  for (auto _ : state) {
    ApplyRound(fleet, batch, validate, &refused);
  }
  if (refused > 0) {
    state.SkipWithError("a valid batch was refused");
  }
  state.counters["samples/s"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * kAgents * (kGauges + kHistograms),
      benchmark::Counter::kIsRate);
}

void BM_ApplyOnly(benchmark::State& state) { Round(state, false); }
void BM_ValidateAndApply(benchmark::State& state) { Round(state, true); }
// Alternated, so drift of a shared machine hits both alike.
BENCHMARK(BM_ApplyOnly)->Unit(benchmark::kMillisecond)->MinTime(2);
BENCHMARK(BM_ValidateAndApply)->Unit(benchmark::kMillisecond)->MinTime(2);

}  // namespace
}  // namespace vigil::controller

BENCHMARK_MAIN();
