// The fleet page for Prometheus: exact text for a small fleet (escaping, label names, families),
// the coarse buckets against Vigil's log buckets, cumulative counters that outlive the window,
// the size bound, and the bearer token.
#include "controller/http/fleet_exposition.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "common/histogram.h"
#include "controller/http/fleet_endpoint.h"
#include "controller/ingest/cumulative_histogram.h"
#include "controller/ingest/fleet_state.h"
#include "tests/support/process.h"
#include "tests/unit/controller/telemetry_for_test.h"

namespace vigil::controller {
namespace {

using ::testing::HasSubstr;

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);
const int64_t kNowMs = absl::ToUnixMillis(kNow);

v1::Hello MakeHello(const std::string& id, std::map<std::string, std::string> labels) {
  v1::Hello hello;
  hello.set_agent_id(id);
  hello.set_hostname(id);
  for (const auto& [k, v] : labels) {
    (*hello.mutable_labels())[k] = v;
  }
  return hello;
}

void AddGauge(v1::Snapshot* s, uint32_t id, double value) {
  s->add_series_ids(id);
  s->add_values(value);
}

void AddHistogram(v1::Snapshot* s, uint32_t id, const LogHistogram& h) {
  v1::HistogramPoint* p = s->add_histograms();
  p->set_series_id(id);
  h.ToProto(p->mutable_histogram());
}

// One agent connected with its own stream dictionary.
struct Stream {
  std::string id;
  std::vector<SeriesState*> dictionary;
  uint64_t sequence = 0;
};

std::string Render(const std::vector<FleetState::ExposedAgent>& agents, const FamilyHelp& help,
                   ExpositionStats* stats = nullptr) {
  std::string page;
  absl::StatusOr<ExpositionStats> s = RenderFleetExposition(agents, help, 1 << 30, &page);
  EXPECT_TRUE(s.ok()) << s.status();
  if (stats != nullptr && s.ok()) {
    *stats = *s;
  }
  return page;
}

constexpr const char* kLe[] = {"0.001", "0.0016", "0.0025", "0.004", "0.0063", "0.01", "0.016",
                               "0.025", "0.04",   "0.063",  "0.1",   "0.16",   "0.25", "0.4",
                               "0.63",  "1",      "1.6",    "2.5",   "4",      "6.3",  "10",
                               "16",    "25",     "40",     "63",    "100",    "+Inf"};

TEST(CumulativeHistogramTest, EveryFineBucketGoesToTheFirstBoundAtOrAboveItsValue) {
  const auto& bounds = CumulativeHistogram::Bounds();
  ASSERT_EQ(std::size(kLe), bounds.size() + 1);
  for (size_t j = 1; j < bounds.size(); ++j) {
    ASSERT_LT(bounds[j - 1], bounds[j]);
    EXPECT_LE(bounds[j] / bounds[j - 1], 1.6 + 1e-9) << "the error bound the README states";
  }
  for (int i = LogHistogram::kMinIndex; i <= LogHistogram::kMaxIndex; ++i) {
    const double value = LogHistogram::BucketValue(i);
    const size_t j = CumulativeHistogram::CoarseBucket(i);
    ASSERT_LE(j, bounds.size());
    if (j < bounds.size()) {
      EXPECT_LE(value, bounds[j]) << i;
    }
    if (j > 0) {
      EXPECT_GT(value, bounds[j - 1]) << i;
    }
  }
  // An observation more than 1 % from a bound is on its own side of it.
  for (size_t j = 0; j < bounds.size(); ++j) {
    EXPECT_LE(CumulativeHistogram::CoarseBucket(LogHistogram::BucketIndex(bounds[j] / 1.0102)), j)
        << bounds[j];
    EXPECT_GT(CumulativeHistogram::CoarseBucket(LogHistogram::BucketIndex(bounds[j] * 1.0102)), j)
        << bounds[j];
  }
}

TEST(CumulativeHistogramTest, CountsEveryObservationOnceWithTheSum) {
  LogHistogram h;
  h.Add(0, 2);      // zero bucket: under the first bound
  h.Add(0.002, 3);  // (0.0016, 0.0025]
  h.Add(1e6, 1);    // above 100 s
  CumulativeHistogram c;
  c.Add(h);
  c.Add(h);
  EXPECT_EQ(c.count(), 12u);
  EXPECT_EQ(c.counts()[0], 4u);
  EXPECT_EQ(c.counts()[2], 6u);
  EXPECT_EQ(c.counts()[CumulativeHistogram::kBounds], 2u);
  EXPECT_DOUBLE_EQ(c.sum(), 2 * (0.006 + 1e6));
}

class FleetPageTest : public ::testing::Test {
 protected:
  Stream& Connect(const std::string& id, std::map<std::string, std::string> labels) {
    streams_.push_back(std::make_unique<Stream>());
    streams_.back()->id = id;
    EXPECT_TRUE(
        fleet_.Connect(MakeHello(id, std::move(labels)), "peer", streams_.size(), kNow).ok());
    return *streams_.back();
  }
  void Apply(Stream& stream, v1::TelemetryBatch& batch) {
    batch.set_sequence(++stream.sequence);
    absl::StatusOr<bool> applied = fleet_.Apply(stream.id, batch, stream.dictionary, kNow);
    ASSERT_TRUE(applied.ok() && *applied) << applied.status();
  }

  FleetState fleet_;
  std::vector<std::unique_ptr<Stream>> streams_;
};

TEST_F(FleetPageTest, ExactTextForASmallFleet) {
  Stream& web = Connect("web-1", {{"role", "api"}, {"team-name", "a\\b\"c\nd"}});
  Stream& db = Connect("db-1", {{"role", "db"}, {"9lives", "x"}, {"__meta", "m"}});
  v1::TelemetryBatch b1;
  Define(b1, 0, "host_cpu_usage_ratio");
  AddGauge(b1.add_snapshots(), 0, 0.25);
  b1.mutable_snapshots(0)->set_time_unix_ms(kNowMs);
  Apply(web, b1);

  v1::TelemetryBatch b2;
  Define(b2, 0, "host_cpu_usage_ratio");
  Define(b2, 1, "nginx_request_duration_seconds", {{"agent", "x"}});
  v1::Snapshot* s = b2.add_snapshots();
  s->set_time_unix_ms(kNowMs);
  AddGauge(s, 0, 0.5);
  LogHistogram h;
  h.Add(0.046875, 9);  // (0.04, 0.063]
  h.Add(0.5, 1);       // (0.4, 0.63]
  AddHistogram(s, 1, h);
  Apply(db, b2);

  const FamilyHelp help = [](absl::string_view name) -> std::string {
    return name == "host_cpu_usage_ratio" ? "CPU \\ in use\nnow" : "";
  };
  ExpositionStats stats;
  const std::string page = Render(fleet_.ExposeConnected(), help, &stats);

  std::string want =
      "# HELP host_cpu_usage_ratio CPU \\\\ in use\\nnow\n"
      "# TYPE host_cpu_usage_ratio gauge\n"
      "host_cpu_usage_ratio{agent=\"db-1\",label_9lives=\"x\",label___meta=\"m\",role=\"db\"} "
      "0.5\n"
      "host_cpu_usage_ratio{agent=\"web-1\",role=\"api\",team_name=\"a\\\\b\\\"c\\nd\"} 0.25\n"
      "# HELP nginx_request_duration_seconds \n"
      "# TYPE nginx_request_duration_seconds histogram\n";
  const std::string labels =
      "agent=\"db-1\",label_9lives=\"x\",label___meta=\"m\",role=\"db\",exported_agent=\"x\"";
  const int cumulative[] = {0,  0,  0,  0,  0,  0,  0,  0,  0,  9,  9,  9,  9, 9,
                            10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10};
  for (size_t i = 0; i < std::size(kLe); ++i) {
    absl::StrAppend(&want, "nginx_request_duration_seconds_bucket{", labels, ",le=\"", kLe[i],
                    "\"} ", cumulative[i], "\n");
  }
  absl::StrAppend(&want, "nginx_request_duration_seconds_sum{", labels, "} 0.921875\n",
                  "nginx_request_duration_seconds_count{", labels, "} 10\n");
  EXPECT_EQ(page, want);
  EXPECT_EQ(stats.agents, 2u);
  EXPECT_EQ(stats.families, 2u);
  EXPECT_EQ(stats.series, 3u);
  EXPECT_EQ(stats.conflicts, 0u);
}

TEST_F(FleetPageTest, OnlyConnectedAgentsAndAHistogramFamilyKeepsItsType) {
  Stream& web = Connect("web-1", {});
  Stream& db = Connect("db-1", {});
  Stream& gone = Connect("gone-1", {});
  v1::TelemetryBatch histogram;
  Define(histogram, 0, "x_seconds");
  v1::Snapshot* s = histogram.add_snapshots();
  s->set_time_unix_ms(kNowMs);
  LogHistogram h;
  h.Add(0.01);
  AddHistogram(s, 0, h);
  Apply(web, histogram);
  v1::TelemetryBatch gauge;
  Define(gauge, 0, "x_seconds");
  AddGauge(gauge.add_snapshots(), 0, 3);
  gauge.mutable_snapshots(0)->set_time_unix_ms(kNowMs);
  Apply(db, gauge);
  v1::TelemetryBatch other;
  Define(other, 0, "host_load1");
  AddGauge(other.add_snapshots(), 0, 3);
  other.mutable_snapshots(0)->set_time_unix_ms(kNowMs);
  Apply(gone, other);
  fleet_.Disconnect("gone-1", 3, kNow);

  ExpositionStats stats;
  const std::string page = Render(fleet_.ExposeConnected(), nullptr, &stats);
  EXPECT_EQ(stats.agents, 2u);
  EXPECT_EQ(stats.conflicts, 1u) << page;
  EXPECT_THAT(page, HasSubstr("# TYPE x_seconds histogram\n"));
  EXPECT_THAT(page, ::testing::Not(HasSubstr("db-1")));
  EXPECT_THAT(page, ::testing::Not(HasSubstr("host_load1")));
  EXPECT_EQ(std::count(page.begin(), page.end(), '#'), 2) << "HELP and TYPE once:\n" << page;
}

// A series the agent stopped sending leaves the page once it is five minutes older than the
// agent's newest point (Prometheus' lookback), in telemetry time; until then it stays.
TEST_F(FleetPageTest, ASeriesTheAgentStoppedSendingLeavesThePageAfterFiveMinutes) {
  Stream& web = Connect("web-1", {});
  v1::TelemetryBatch first;
  Define(first, 0, "host_cpu_usage_ratio");
  Define(first, 1, "host_disk_used_ratio", {{"mount", "/mnt/gone"}});
  v1::Snapshot* s = first.add_snapshots();
  s->set_time_unix_ms(kNowMs);
  AddGauge(s, 0, 0.5);
  AddGauge(s, 1, 0.9);
  Apply(web, first);
  auto send_cpu_at = [&](int64_t ms) {
    v1::TelemetryBatch batch;
    v1::Snapshot* snapshot = batch.add_snapshots();
    snapshot->set_time_unix_ms(ms);
    AddGauge(snapshot, 0, 0.5);
    Apply(web, batch);
  };
  send_cpu_at(kNowMs + 299'000);
  EXPECT_THAT(Render(fleet_.ExposeConnected(), nullptr), HasSubstr("/mnt/gone"));
  send_cpu_at(kNowMs + 301'000);
  const std::string page = Render(fleet_.ExposeConnected(), nullptr);
  EXPECT_THAT(page, ::testing::Not(HasSubstr("/mnt/gone")));
  EXPECT_THAT(page, HasSubstr("host_cpu_usage_ratio{agent=\"web-1\"} 0.5"));
}

// Buckets are counters since the controller started: intervals that left the rule window still
// count, every bucket is cumulative, and the +Inf bucket is _count.
TEST_F(FleetPageTest, BucketsAreCumulativeCountersThatOutliveTheWindow) {
  Stream& web = Connect("web-1", {{"role", "api"}});
  std::mt19937 rng(7);
  std::lognormal_distribution<double> latency(-3, 1.5);
  uint64_t total = 0;
  std::vector<uint64_t> previous(std::size(kLe), 0);
  for (int round = 0; round < 20; ++round) {
    v1::TelemetryBatch batch;
    if (round == 0) {
      Define(batch, 0, "nginx_request_duration_seconds");
    }
    v1::Snapshot* s = batch.add_snapshots();
    // Ten minutes apart: far beyond the 60 s window.
    s->set_time_unix_ms(kNowMs + round * 600'000);
    LogHistogram h;
    for (int i = 0; i < 50; ++i) {
      h.Add(latency(rng));
    }
    total += h.count();
    AddHistogram(s, 0, h);
    Apply(web, batch);

    const std::string page = Render(fleet_.ExposeConnected(), nullptr);
    std::vector<uint64_t> buckets;
    uint64_t count = 0;
    for (absl::string_view line : absl::StrSplit(page, '\n', absl::SkipEmpty())) {
      if (line[0] == '#') {
        continue;
      }
      std::vector<absl::string_view> parts = absl::StrSplit(line, absl::MaxSplits(' ', 1));
      ASSERT_EQ(parts.size(), 2u) << line;
      uint64_t value = 0;
      if (absl::StrContains(parts[0], "_bucket{")) {
        ASSERT_TRUE(absl::SimpleAtoi(parts[1], &value)) << line;
        buckets.push_back(value);
      } else if (absl::StrContains(parts[0], "_count{")) {
        ASSERT_TRUE(absl::SimpleAtoi(parts[1], &value)) << line;
        count = value;
      }
    }
    ASSERT_EQ(buckets.size(), std::size(kLe));
    for (size_t i = 0; i < buckets.size(); ++i) {
      if (i > 0) {
        EXPECT_LE(buckets[i - 1], buckets[i]) << "le " << kLe[i];
      }
      EXPECT_GE(buckets[i], previous[i]) << "a counter never goes down, le " << kLe[i];
    }
    EXPECT_EQ(buckets.back(), count);
    EXPECT_EQ(count, total);
    previous = buckets;
  }
}

TEST_F(FleetPageTest, APagePastItsLimitIsRefusedNotCut) {
  Stream& web = Connect("web-1", {});
  v1::TelemetryBatch batch;
  v1::Snapshot* s = batch.add_snapshots();
  s->set_time_unix_ms(kNowMs);
  for (uint32_t i = 0; i < 50; ++i) {
    Define(batch, i, "host_disk_used_ratio", {{"mount", absl::StrCat("/m", i)}});
    AddGauge(s, i, 0.5);
  }
  Apply(web, batch);
  std::string page;
  absl::StatusOr<ExpositionStats> stats =
      RenderFleetExposition(fleet_.ExposeConnected(), nullptr, 1000, &page);
  EXPECT_TRUE(absl::IsResourceExhausted(stats.status())) << stats.status();
  EXPECT_THAT(stats.status().message(), HasSubstr("1000 bytes"));
  EXPECT_THAT(stats.status().message(), HasSubstr("web-1"));

  FleetMetricsEndpoint endpoint(
      {.token = "0123456789abcdef", .max_page_bytes = 1000},
      [this] { return fleet_.ExposeConnected(); }, [] { return FamilyHelp(); });
  http::HttpRequest request;
  request.headers["authorization"] = "Bearer 0123456789abcdef";
  const http::HttpResponse response = endpoint.Handle(request);
  EXPECT_EQ(response.status, 503);
  EXPECT_EQ(endpoint.counters().too_large, 1u);
}

// The second server of an HA pair scraping while a page is built waits for that page and gets
// it (one build, no 503 and no gap in its series); beyond kMaxWaiting waiters, 503.
TEST(FleetPageSharingTest, ScrapesDuringABuildAreServedThatPage) {
  absl::Notification building;
  absl::Notification release;
  std::atomic<int> builds{0};
  FleetMetricsEndpoint endpoint(
      {.token = "0123456789abcdef"},
      [&] {
        if (builds.fetch_add(1) == 0) {
          building.Notify();
          release.WaitForNotification();
        }
        return std::vector<FleetState::ExposedAgent>{};
      },
      [] { return FamilyHelp(); });
  http::HttpRequest request;
  request.headers["authorization"] = "Bearer 0123456789abcdef";
  http::HttpResponse first;
  std::thread builder([&] { first = endpoint.Handle(request); });
  building.WaitForNotification();
  std::vector<http::HttpResponse> waited(FleetMetricsEndpoint::kMaxWaiting);
  std::vector<std::thread> waiters;
  for (int i = 0; i < FleetMetricsEndpoint::kMaxWaiting; ++i) {
    waiters.emplace_back([&, i] { waited[i] = endpoint.Handle(request); });
  }
  ASSERT_TRUE(testing::WaitUntil(
      [&] { return endpoint.counters().waiting == FleetMetricsEndpoint::kMaxWaiting; },
      absl::Seconds(10)));
  // One more than may wait: refused at once, while the others still wait.
  EXPECT_EQ(endpoint.Handle(request).status, 503);
  EXPECT_EQ(endpoint.counters().busy, 1u);
  release.Notify();
  builder.join();
  for (std::thread& t : waiters) t.join();
  EXPECT_EQ(first.status, 200);
  for (const http::HttpResponse& r : waited) {
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, first.body);
    EXPECT_EQ(r.content_type, first.content_type);
  }
  EXPECT_EQ(builds.load(), 1) << "one build served every scrape that waited";
  EXPECT_EQ(endpoint.counters().pages, 1u);
  EXPECT_EQ(endpoint.counters().busy, 1u);
  EXPECT_EQ(endpoint.counters().waiting, 0);
  // Later scrapes build afresh.
  EXPECT_EQ(endpoint.Handle(request).status, 200);
  EXPECT_EQ(builds.load(), 2);
}

TEST(FleetNamesTest, SanitisesNamesAndEscapesValues) {
  EXPECT_EQ(SanitizeLabelName("role"), "role");
  EXPECT_EQ(SanitizeLabelName("team-name.x"), "team_name_x");
  EXPECT_EQ(SanitizeLabelName("9lives"), "label_9lives");
  EXPECT_EQ(SanitizeLabelName("__name__"), "label___name__");
  EXPECT_EQ(SanitizeLabelName(""), "label_");
  EXPECT_EQ(SanitizeLabelName("é"), "label___") << "two bytes, two underscores";
  EXPECT_EQ(SanitizeMetricName("http:requests-total"), "http:requests_total");
  EXPECT_EQ(SanitizeMetricName("1x"), "_1x");
  std::string value;
  AppendLabelValue("a\\b\"c\nd é", &value);
  EXPECT_EQ(value, "a\\\\b\\\"c\\nd é");
  std::string sample;
  AppendSampleValue(0.1, &sample);
  sample.push_back(' ');
  AppendSampleValue(1e21, &sample);
  sample.push_back(' ');
  AppendSampleValue(12345678, &sample);
  EXPECT_EQ(sample, "0.1 1e+21 12345678");
}

TEST(FleetTokenTest, OnlyTheExactBearerTokenPasses) {
  const std::string token = "0123456789abcdef0123";
  EXPECT_TRUE(BearerTokenMatches("Bearer " + token, token));
  EXPECT_TRUE(BearerTokenMatches("bearer " + token, token));
  EXPECT_FALSE(BearerTokenMatches("Bearer " + token + "x", token));
  EXPECT_FALSE(BearerTokenMatches("Bearer " + token.substr(1), token));
  EXPECT_FALSE(BearerTokenMatches("Basic " + token, token));
  EXPECT_FALSE(BearerTokenMatches(token, token));
  EXPECT_FALSE(BearerTokenMatches("", token));
  EXPECT_FALSE(BearerTokenMatches("Bearer ", ""));

  FleetState fleet;
  FleetMetricsEndpoint endpoint(
      {.token = token}, [&fleet] { return fleet.ExposeConnected(); }, [] { return FamilyHelp(); });
  http::HttpRequest request;
  request.headers["authorization"] = "Bearer wrong-token-of-some-length";
  http::HttpResponse response = endpoint.Handle(request);
  EXPECT_EQ(response.status, 401);
  EXPECT_EQ(response.body, "unauthorized\n") << "no detail";
  ASSERT_EQ(response.headers.size(), 1u);
  EXPECT_EQ(response.headers[0].first, "WWW-Authenticate");
  request.headers.clear();
  EXPECT_EQ(endpoint.Handle(request).status, 401);
  EXPECT_EQ(endpoint.counters().unauthorized, 2u);
  request.headers["authorization"] = "Bearer " + token;
  response = endpoint.Handle(request);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.content_type, "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(endpoint.counters().pages, 1u);
}

TEST(FleetTokenTest, TheTokenFileIsCheckedAndTrimmed) {
  testing::TempDir dir;
  testing::WriteFile(dir.File("good"), "  0123456789abcdef\n");
  absl::StatusOr<std::string> token = ReadBearerTokenFile(dir.File("good"));
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(*token, "0123456789abcdef");
  testing::WriteFile(dir.File("short"), "abc\n");
  EXPECT_THAT(ReadBearerTokenFile(dir.File("short")).status().message(),
              HasSubstr("fewer than 16"));
  testing::WriteFile(dir.File("space"), "0123456789 abcdef\n");
  EXPECT_THAT(ReadBearerTokenFile(dir.File("space")).status().message(), HasSubstr("whitespace"));
  EXPECT_FALSE(ReadBearerTokenFile(dir.File("missing")).ok());
}

}  // namespace
}  // namespace vigil::controller
