// Lines per second through the app_log collector's per-line work (RE2 patterns, module label,
// counts, the kept lines) on one core: a log of 1 error line in 20, with the runbook's patterns,
// and the bounded walk of disk_usage_top over a folder of 10,000 files.
//   build/bench/app_log_bench
#include <benchmark/benchmark.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "agent/collectors/app_log_collector.h"
#include "agent/collectors/disk_usage.h"

namespace vigil::agent {
namespace {

std::vector<std::string> Lines() {
  std::vector<std::string> lines;
  static const char* kModules[] = {"billing", "search", "auth", "mail", "api.v1.items"};
  for (int i = 0; i < 1024; ++i) {
    const bool error = i % 20 == 0;
    lines.push_back(absl::StrCat("2026-11-30 10:00:", i % 60, ",", 100 + i % 900, " ",
                                 error ? "ERROR" : "INFO", " [", kModules[i % 5], "] request ", i,
                                 " took ", i % 300, " ms user_id=", 1000 + i,
                                 error ? " Exception: timeout talking to upstream" : ""));
  }
  return lines;
}

void BM_AppLogObserve(benchmark::State& state) {
  AppLogCollectorOptions options;
  options.files = {"/nonexistent/app.log"};
  options.patterns = {{R"(ERROR \[(?P<module>[^\]]+)\])", 0, ""}, {"Exception|Traceback", 0, ""}};
  AppLogCollector collector(options, *AppLogMatcher::Compile(options.patterns));
  const std::vector<std::string> lines = Lines();
  const absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  size_t i = 0;
  for (auto _ : state) {
    collector.Observe(now, options.files[0], lines[i++ % lines.size()]);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_AppLogObserve);

void BM_DiskUsageWalk(benchmark::State& state) {
  char dir_template[] = "/tmp/vigil-du-bench-XXXXXX";
  const std::string dir = mkdtemp(dir_template);
  for (int d = 0; d < 100; ++d) {
    std::filesystem::create_directory(absl::StrCat(dir, "/d", d));
    for (int f = 0; f < 100; ++f) {
      std::ofstream(absl::StrCat(dir, "/d", d, "/f", f)) << "x";
    }
  }
  for (auto _ : state) {
    auto usage = MeasureDiskUsage(dir, DiskUsageLimits{});
    benchmark::DoNotOptimize(usage);
  }
  state.SetItemsProcessed(state.iterations() * 10100);
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_DiskUsageWalk)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace vigil::agent

BENCHMARK_MAIN();
