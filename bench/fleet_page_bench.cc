// The fleet endpoint's page at scale, in-process (FleetState and the renderer, no HTTP): agents
// of 50 series (45 gauges + 5 request-duration histograms, the benchmark conditions of
// DESIGN.md) with three agent labels; for 1,000 and 10,000 agents, the snapshot time, the
// formatting time and the page's bytes (medians of 5 pages), and what a page costs ingest: the
// time to apply one agent's batch while pages are being built on another thread, beside the
// same without pages (median, p99, max). The machine's 2 cores are shared by both threads.
//
//   build/bench/fleet_page_bench [--agents=1000,10000] [--pages=5]
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/histogram.h"
#include "common/http/gzip.h"
#include "controller/http/fleet_exposition.h"
#include "controller/ingest/fleet_state.h"

namespace vigil::controller {
namespace {

constexpr int kGauges = 45;
constexpr int kHistograms = 5;

v1::TelemetryBatch Definitions() {
  v1::TelemetryBatch batch;
  std::vector<std::pair<std::string, Labels>> gauges = {
      {"host_cpu_usage_ratio", {}},
      {"host_memory_used_ratio", {}},
      {"host_load1", {}},
      {"nginx_requests_per_second", {}},
      {"nginx_error_ratio", {}},
      {"pg_active_connections", {}},
      {"pg_connections_used_ratio", {}},
      {"pg_longest_query_seconds", {}},
      {"pg_blocked_queries", {}},
      {"redis_ops_per_second", {}},
      {"redis_connected_clients", {}},
      {"redis_keyspace_hit_ratio", {}},
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

// One round of an agent: every gauge and 100 lognormal request latencies per histogram.
v1::TelemetryBatch Round(uint64_t sequence, int64_t ms, std::mt19937_64& rng) {
  static std::lognormal_distribution<double> latency(std::log(0.08), 0.6);
  v1::TelemetryBatch batch;
  batch.set_sequence(sequence);
  v1::Snapshot* s = batch.add_snapshots();
  s->set_time_unix_ms(ms);
  for (int g = 0; g < kGauges; ++g) {
    s->add_series_ids(static_cast<uint32_t>(g));
    s->add_values(static_cast<double>(rng() % 1000) / 1000);
  }
  for (int h = 0; h < kHistograms; ++h) {
    LogHistogram histogram;
    for (int i = 0; i < 100; ++i) {
      histogram.Add(latency(rng));
    }
    v1::HistogramPoint* p = s->add_histograms();
    p->set_series_id(static_cast<uint32_t>(kGauges + h));
    histogram.ToProto(p->mutable_histogram());
  }
  return batch;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

double Quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[std::min(v.size() - 1, static_cast<size_t>(q * v.size()))];
}

struct Agent {
  std::string id;
  std::vector<SeriesState*> dictionary;
  uint64_t sequence = 0;
};

void Run(int n, int pages) {
  FleetState fleet;
  std::vector<Agent> agents(static_cast<size_t>(n));
  std::mt19937_64 rng(42);
  absl::Time now = absl::Now();
  const v1::TelemetryBatch definitions = Definitions();
  for (int i = 0; i < n; ++i) {
    Agent& agent = agents[static_cast<size_t>(i)];
    agent.id = absl::StrCat("api-", i);
    v1::Hello hello;
    hello.set_agent_id(agent.id);
    hello.set_hostname(agent.id);
    (*hello.mutable_labels())["role"] = "api";
    (*hello.mutable_labels())["service"] = "rag-api";
    (*hello.mutable_labels())["env"] = "prod";
    if (!fleet.Connect(hello, "bench", static_cast<uint64_t>(i) + 1, now).ok() ||
        !fleet.Apply(agent.id, definitions, agent.dictionary, now).ok() ||
        !fleet
             .Apply(agent.id, Round(++agent.sequence, absl::ToUnixMillis(now), rng),
                    agent.dictionary, now)
             .ok()) {
      std::abort();
    }
  }
  // Batches prepared in advance: the ingest side measures Apply alone.
  std::vector<v1::TelemetryBatch> prepared;
  for (int i = 0; i < 64; ++i) {
    prepared.push_back(Round(0, 0, rng));
  }
  size_t next_agent = 0;
  auto apply_one = [&] {
    Agent& agent = agents[next_agent++ % agents.size()];
    v1::TelemetryBatch& batch = prepared[agent.sequence % prepared.size()];
    batch.set_sequence(++agent.sequence);
    now += absl::Milliseconds(1);
    batch.mutable_snapshots(0)->set_time_unix_ms(absl::ToUnixMillis(now));
    const absl::Time start = absl::Now();
    if (!fleet.Apply(agent.id, batch, agent.dictionary, now).ok()) {
      std::abort();
    }
    return absl::ToDoubleMicroseconds(absl::Now() - start);
  };

  // Ingest alone, for as many batches as the loaded run below will take about.
  std::vector<double> idle;
  for (int i = 0; i < 20'000; ++i) {
    idle.push_back(apply_one());
  }

  std::vector<double> snapshot_ms, render_ms, bytes, gzip_ms, gzip_bytes;
  std::atomic<bool> rendering{true};
  std::thread page_thread([&] {
    for (int p = 0; p < pages; ++p) {
      const absl::Time start = absl::Now();
      std::vector<FleetState::ExposedAgent> exposed = fleet.ExposeConnected();
      const absl::Time copied = absl::Now();
      std::string page;
      page.reserve(bytes.empty() ? 0 : static_cast<size_t>(bytes.back() * 1.1));
      if (!RenderFleetExposition(exposed, nullptr, size_t{4} << 30, &page).ok()) {
        std::abort();
      }
      const absl::Time formatted = absl::Now();
      // What a Prometheus scrape (Accept-Encoding: gzip) costs on top, at the level served.
      absl::StatusOr<std::string> gzipped = http::GzipCompress(page);
      if (!gzipped.ok()) {
        std::abort();
      }
      snapshot_ms.push_back(absl::ToDoubleMilliseconds(copied - start));
      render_ms.push_back(absl::ToDoubleMilliseconds(formatted - copied));
      gzip_ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - formatted));
      bytes.push_back(static_cast<double>(page.size()));
      gzip_bytes.push_back(static_cast<double>(gzipped->size()));
    }
    rendering = false;
  });
  std::vector<double> loaded;
  while (rendering) {
    loaded.push_back(apply_one());
  }
  page_thread.join();

  std::printf(
      "%6d agents x %d series: snapshot %.0f ms, format %.0f ms, page %.1f MB "
      "(%.0f bytes/agent), medians of %d pages\n",
      n, kGauges + kHistograms, Median(snapshot_ms), Median(render_ms), Median(bytes) / 1e6,
      Median(bytes) / n, pages);
  std::printf("       gzip (level 1) %.0f ms, %.1f MB on the wire (%.1fx smaller)\n",
              Median(gzip_ms), Median(gzip_bytes) / 1e6, Median(bytes) / Median(gzip_bytes));
  std::printf(
      "       one agent's batch applied, us: median %.1f, p99 %.1f, max %.0f while pages are "
      "built (%zu batches); median %.1f, p99 %.1f, max %.0f without (%zu batches)\n",
      Median(loaded), Quantile(loaded, 0.99), Quantile(loaded, 1.0), loaded.size(), Median(idle),
      Quantile(idle, 0.99), Quantile(idle, 1.0), idle.size());
}

}  // namespace
}  // namespace vigil::controller

int main(int argc, char** argv) {
  std::vector<int> sizes = {1000, 10000};
  int pages = 5;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (absl::ConsumePrefix(&arg, "--agents=")) {
      sizes.clear();
      for (absl::string_view part : absl::StrSplit(arg, ',')) {
        int n = 0;
        if (!absl::SimpleAtoi(part, &n) || n <= 0) {
          std::fprintf(stderr, "--agents: '%s' is not a positive number\n", argv[i]);
          return 2;
        }
        sizes.push_back(n);
      }
    } else if (absl::ConsumePrefix(&arg, "--pages=")) {
      if (!absl::SimpleAtoi(arg, &pages) || pages <= 0) {
        std::fprintf(stderr, "--pages: '%s' is not a positive number\n", argv[i]);
        return 2;
      }
    } else {
      std::fprintf(stderr, "usage: fleet_page_bench [--agents=1000,10000] [--pages=5]\n");
      return 2;
    }
  }
  std::printf("fleet page (/fleet/metrics), %u hardware threads\n",
              std::thread::hardware_concurrency());
  for (int n : sizes) {
    vigil::controller::Run(n, pages);
  }
  return 0;
}
