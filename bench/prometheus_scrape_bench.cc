// The agent-side cost of the prometheus collector: one scrape + parse + convert of a target
// exposing 1,000 series (400 counters, 380 gauges, 20 histograms of 8 bounds + +Inf, _sum and
// _count), all in the allow-list, served on loopback by the project's HTTP server; and the
// parser alone on the same text. CPU is the measuring thread's own (CLOCK_THREAD_CPUTIME_ID):
// the server's threads are not counted. Prints medians over ROUNDS (default 200).
//   build/bench/prometheus_scrape_bench [ROUNDS]
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/collectors/prometheus_collector.h"
#include "agent/collectors/prometheus_text.h"
#include "common/http/http_server.h"

namespace vigil::agent {
namespace {

constexpr int kCounters = 400;
constexpr int kGauges = 380;
constexpr int kHistograms = 20;
constexpr double kBounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1};

// The exposition at scrape `n`: counters and buckets grow with n.
std::string Exposition(int n) {
  std::string text;
  text.reserve(96 * 1024);
  absl::StrAppend(&text, "# HELP app_requests_total Requests handled.\n",
                  "# TYPE app_requests_total counter\n");
  for (int i = 0; i < kCounters; ++i) {
    absl::StrAppend(&text, "app_requests_total{handler=\"/api/v1/items/", i % 100,
                    "\",code=\"", i < 200 ? 200 : 500, "\",instance=\"", i, "\"} ",
                    1000 * n + i, "\n");
  }
  absl::StrAppend(&text, "# HELP app_queue_depth Items waiting.\n# TYPE app_queue_depth gauge\n");
  for (int i = 0; i < kGauges; ++i) {
    absl::StrAppend(&text, "app_queue_depth{queue=\"q", i, "\"} ", (n * 7 + i) % 100, "\n");
  }
  absl::StrAppend(&text, "# HELP app_latency_seconds Request latency.\n",
                  "# TYPE app_latency_seconds histogram\n");
  for (int h = 0; h < kHistograms; ++h) {
    double cumulative = 0;
    for (size_t b = 0; b < std::size(kBounds); ++b) {
      cumulative += n * (b + 1);
      absl::StrAppend(&text, "app_latency_seconds_bucket{handler=\"/h", h, "\",le=\"",
                      kBounds[b], "\"} ", cumulative, "\n");
    }
    cumulative += n;
    absl::StrAppend(&text, "app_latency_seconds_bucket{handler=\"/h", h, "\",le=\"+Inf\"} ",
                    cumulative, "\n", "app_latency_seconds_sum{handler=\"/h", h, "\"} ",
                    cumulative * 0.1, "\n", "app_latency_seconds_count{handler=\"/h", h, "\"} ",
                    cumulative, "\n");
  }
  return text;
}

double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

double Percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[std::min(v.size() - 1, static_cast<size_t>(q * v.size()))];
}

class NullVisitor final : public PromTextVisitor {
 public:
  void OnSample(const PromSample& s) override { sum += s.value + s.labels->size(); }
  double sum = 0;
};

int Run(int rounds) {
  std::atomic<int> scrapes{0};
  http::HttpServer server;
  server.Handle("GET", "/metrics", [&scrapes](const http::HttpRequest&) {
    http::HttpResponse r;
    r.content_type = "text/plain; version=0.0.4";
    r.body = Exposition(++scrapes);
    return r;
  });
  if (absl::Status s = server.Start("127.0.0.1:0"); !s.ok()) {
    std::fprintf(stderr, "cannot start the HTTP server: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  auto collector = NewPrometheusCollector(
      YAML::Load(absl::StrCat("targets:\n  - name: app\n    url: http://127.0.0.1:",
                              server.port(),
                              "/metrics\n    max_series: 10000\n    series:\n"
                              "      app_requests_total: counter\n"
                              "      app_queue_depth: gauge\n"
                              "      app_latency_seconds: histogram\n")),
      "bench");
  if (!collector.ok()) {
    std::fprintf(stderr, "%s\n", std::string(collector.status().message()).c_str());
    return 1;
  }
  // Warm-up: the first round has no rates yet.
  Collection warm;
  (*collector)->Collect(absl::Now(), warm);

  std::vector<double> cpu, wall;
  size_t gauges = 0, histograms = 0;
  absl::Time now = absl::Now();
  for (int i = 0; i < rounds; ++i) {
    now += absl::Seconds(1);
    Collection out;
    const double c0 = ThreadCpuSeconds();
    const absl::Time w0 = absl::Now();
    (*collector)->Collect(now, out);
    wall.push_back(absl::ToDoubleSeconds(absl::Now() - w0));
    cpu.push_back(ThreadCpuSeconds() - c0);
    gauges = out.gauges.size();
    histograms = out.histograms.size();
  }

  const std::string text = Exposition(1000);
  std::vector<double> parse_cpu;
  size_t samples = 0;
  for (int i = 0; i < rounds; ++i) {
    NullVisitor visitor;
    const double c0 = ThreadCpuSeconds();
    samples = ParsePrometheusText(text, visitor).samples;
    parse_cpu.push_back(ThreadCpuSeconds() - c0);
  }

  const double scrape_cpu = Median(cpu);
  std::printf("prometheus scrape of %zu samples (%zu bytes), %d rounds: %zu gauges + %zu "
              "histograms sent a round\n",
              samples, text.size(), rounds, gauges, histograms);
  std::printf("  scrape+parse+convert: median CPU %.3f ms (p90 %.3f ms), median wall %.3f ms\n",
              scrape_cpu * 1e3, Percentile(cpu, 0.9) * 1e3, Median(wall) * 1e3);
  std::printf("  at a 1 s interval: %.3f %% of one core\n", scrape_cpu * 100);
  std::printf("  parser alone: median CPU %.3f ms (p90 %.3f ms) = %.3f %% of a core at 1 s, "
              "%.1f M samples/s\n",
              Median(parse_cpu) * 1e3, Percentile(parse_cpu, 0.9) * 1e3, Median(parse_cpu) * 100,
              samples / Median(parse_cpu) * 1e-6);
  server.Stop();
  return 0;
}

}  // namespace
}  // namespace vigil::agent

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::max(1, std::atoi(argv[1])) : 200;
  return vigil::agent::Run(rounds);
}
