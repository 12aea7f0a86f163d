// Lines per second through the nginx log_format parser and the collector's per-line work, on one
// core, for the timed combined format and for a JSON (escape=json) format.
//   build/bench/log_parse_bench
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "agent/collectors/log_format.h"
#include "agent/collectors/nginx_collector.h"

namespace vigil::agent {
namespace {

constexpr char kJsonFormat[] =
    "{\"time\":\"$time_iso8601\",\"remote_addr\":\"$remote_addr\",\"request\":\"$request\","
    "\"status\":$status,\"bytes\":$body_bytes_sent,\"request_time\":$request_time,"
    "\"upstream_response_time\":\"$upstream_response_time\",\"user_agent\":\"$http_user_agent\"}";

std::vector<std::string> CombinedLines() {
  std::vector<std::string> lines;
  for (int i = 0; i < 1024; ++i) {
    lines.push_back(absl::StrCat(
        "10.0.", i % 256, ".7 - - [22/Nov/2026:10:00:", i % 60, " +0000] \"GET /api/v1/items/",
        i % 50, "?page=", i, " HTTP/1.1\" ", i % 20 == 0 ? 503 : 200, " ", 512 + i,
        " \"https://example.com/\" \"Mozilla/5.0 (X11; Linux x86_64)\" 0.", 100 + i % 900));
  }
  return lines;
}

std::vector<std::string> JsonLines() {
  std::vector<std::string> lines;
  for (int i = 0; i < 1024; ++i) {
    lines.push_back(
        absl::StrCat("{\"time\":\"2026-11-22T10:00:00+00:00\",\"remote_addr\":\"10.0.0.", i % 256,
                     "\",\"request\":\"GET /api/v1/items/", i % 50, "?page=", i,
                     " HTTP/1.1\",\"status\":", i % 20 == 0 ? 503 : 200, ",\"bytes\":", 512 + i,
                     ",\"request_time\":0.", 100 + i % 900, ",\"upstream_response_time\":\"0.",
                     100 + i % 900, "\",\"user_agent\":\"Mozilla/5.0 (X11; Linux x86_64)\"}"));
  }
  return lines;
}

void Parse(benchmark::State& state, const std::string& format_text,
           const std::vector<std::string>& lines) {
  LogFormat format = *LogFormat::Compile(format_text);
  AccessLogEntry entry;
  size_t i = 0, bytes = 0;
  for (auto _ : state) {
    const std::string& line = lines[i++ & 1023];
    benchmark::DoNotOptimize(format.Parse(line, &entry));
    bytes += line.size();
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(bytes);
}

void Collect(benchmark::State& state, const std::string& format_text,
             const std::vector<std::string>& lines) {
  NginxCollectorOptions options;
  options.access_log = "/nonexistent";
  NginxCollector collector(options, *LogFormat::Compile(format_text));
  size_t i = 0;
  for (auto _ : state) collector.Observe(lines[i++ & 1023]);
  state.SetItemsProcessed(state.iterations());
}

void BM_ParseTimedCombined(benchmark::State& s) {
  Parse(s, std::string(LogFormat::kTimedCombined), CombinedLines());
}
void BM_ParseJson(benchmark::State& s) { Parse(s, kJsonFormat, JsonLines()); }
// Parse + 5xx count + histogram + per-endpoint stats: what the collector does per line.
void BM_ObserveTimedCombined(benchmark::State& s) {
  Collect(s, std::string(LogFormat::kTimedCombined), CombinedLines());
}
void BM_ObserveJson(benchmark::State& s) { Collect(s, kJsonFormat, JsonLines()); }

BENCHMARK(BM_ParseTimedCombined);
BENCHMARK(BM_ParseJson);
BENCHMARK(BM_ObserveTimedCombined);
BENCHMARK(BM_ObserveJson);

}  // namespace
}  // namespace vigil::agent

BENCHMARK_MAIN();
