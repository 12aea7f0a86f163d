// What one `vigil agents` (ListAgents) costs the controller at 1,000 and 10,000 agents, the two
// ways in the same run: the rows copied into a response message on an arena and serialized as
// gRPC serializes a typed response (how ListAgents was served), against the rows written
// serialized by FleetState::AppendListing (how it is served). Agents say what the scale
// benchmark's simulated agents say in their Hello (three labels, four collectors, four actions)
// and stream CPU, memory and two disks, so every live column is filled.
//   build/bench/agent_listing_bench --benchmark_repetitions=5
//       --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true
//   (one command line)
#include <benchmark/benchmark.h>
#include <google/protobuf/arena.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "controller/ingest/fleet_state.h"
#include "vigil/v1/control_service.pb.h"

namespace vigil::controller {
namespace {

constexpr int64_t kStartMs = 1'700'000'000'000;

v1::Hello SimulatedHello(const std::string& id) {
  v1::Hello hello;
  hello.set_agent_id(id);
  hello.set_hostname(id);
  hello.set_version("0.9.0");
  (*hello.mutable_labels())["role"] = "api";
  (*hello.mutable_labels())["service"] = "rag-api";
  (*hello.mutable_labels())["env"] = "prod";
  for (const char* collector : {"host", "nginx", "postgres", "redis"}) {
    hello.add_collectors(collector);
  }
  for (const char* action : {"restart_service", "reload_nginx", "pg_terminate_backend",
                             "logrotate"}) {
    hello.add_actions()->set_name(action);
  }
  return hello;
}

// One fleet per size, built once.
const FleetState& FleetOf(int agents) {
  static std::map<int, std::unique_ptr<FleetState>>* fleets =
      new std::map<int, std::unique_ptr<FleetState>>;
  std::unique_ptr<FleetState>& fleet = (*fleets)[agents];
  if (fleet != nullptr) {
    return *fleet;
  }
  fleet = std::make_unique<FleetState>();
  const absl::Time now = absl::FromUnixMillis(kStartMs);
  v1::TelemetryBatch batch;
  batch.set_sequence(1);
  const std::vector<std::pair<const char*, const char*>> series = {
      {"host_cpu_usage_ratio", ""},
      {"host_memory_used_ratio", ""},
      {"host_disk_used_ratio", "/"},
      {"host_disk_used_ratio", "/var"}};
  v1::Snapshot* snapshot = batch.add_snapshots();
  snapshot->set_time_unix_ms(kStartMs);
  for (uint32_t i = 0; i < series.size(); ++i) {
    v1::SeriesDefinition* def = batch.add_new_series();
    def->set_id(i);
    def->set_name(series[i].first);
    if (*series[i].second != '\0') {
      (*def->mutable_labels())["mount"] = series[i].second;
    }
    snapshot->add_series_ids(i);
    snapshot->add_values(0.25 + 0.1 * i);
  }
  for (int a = 0; a < agents; ++a) {
    const std::string id = absl::StrCat("api-", a);
    std::vector<SeriesState*> dictionary;
    if (!fleet->Connect(SimulatedHello(id), absl::StrCat("ipv4:10.0.", a / 250, ".", a % 250, ":4711"),
                        static_cast<uint64_t>(a) + 1, now)
             .ok() ||
        !fleet->Apply(id, batch, dictionary, now).ok()) {
      std::fprintf(stderr, "agent_listing_bench: agent %s was refused\n", id.c_str());
      std::exit(1);
    }
  }
  return *fleet;
}

void BM_ListingAsMessages(benchmark::State& state) {
  const FleetState& fleet = FleetOf(static_cast<int>(state.range(0)));
  size_t bytes = 0;
  for (auto _ : state) {
    google::protobuf::Arena arena;
    auto* response = google::protobuf::Arena::CreateMessage<v1::ListAgentsResponse>(&arena);
    fleet.AppendAgents(response->mutable_agents());
    std::string wire = response->SerializeAsString();
    bytes = wire.size();
    benchmark::DoNotOptimize(wire.data());
  }
  state.counters["bytes"] = static_cast<double>(bytes);
  state.SetItemsProcessed(state.iterations() * state.range(0));  // agents listed
}

void BM_ListingSerialized(benchmark::State& state) {
  const FleetState& fleet = FleetOf(static_cast<int>(state.range(0)));
  size_t bytes = 0;
  for (auto _ : state) {
    std::string wire;
    fleet.AppendListing(&wire);
    bytes = wire.size();
    benchmark::DoNotOptimize(wire.data());
  }
  state.counters["bytes"] = static_cast<double>(bytes);
  state.SetItemsProcessed(state.iterations() * state.range(0));  // agents listed
}

// What a listing does to the ingest thread: every batch it applies first finds its agent
// (FleetState::Find, here through LastSequence) while another thread lists the fleet without
// pause, as CLI probes and dashboards do during an incident. Reports the lookups' p99 and
// maximum; a listing that held the fleet's map exclusively made lookups wait for its whole walk.
void BM_FindWhileListing(benchmark::State& state) {
  const FleetState& fleet = FleetOf(static_cast<int>(state.range(0)));
  std::atomic<bool> stop{false};
  std::thread lister([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      std::string wire;
      fleet.AppendListing(&wire);
      benchmark::DoNotOptimize(wire.data());
    }
  });
  std::vector<double> micros;
  micros.reserve(1 << 20);
  uint64_t sum = 0;
  int64_t i = 0;
  for (auto _ : state) {
    const std::string id = absl::StrCat("api-", i++ % state.range(0));
    const auto start = std::chrono::steady_clock::now();
    sum += fleet.LastSequence(id);
    micros.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
            .count());
  }
  stop = true;
  lister.join();
  benchmark::DoNotOptimize(sum);
  std::sort(micros.begin(), micros.end());
  if (!micros.empty()) {
    state.counters["p99_us"] = micros[micros.size() * 99 / 100];
    state.counters["max_us"] = micros.back();
  }
}

BENCHMARK(BM_ListingAsMessages)->Arg(1'000)->Arg(10'000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ListingSerialized)->Arg(1'000)->Arg(10'000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_FindWhileListing)->Arg(10'000)->MinTime(2)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace vigil::controller

BENCHMARK_MAIN();
