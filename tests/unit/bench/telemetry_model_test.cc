#include "bench/loadgen/telemetry_model.h"

#include <gtest/gtest.h>

#include <set>

#include "absl/time/clock.h"
#include "common/metric_schema.h"
#include "controller/ingest/telemetry_validator.h"

namespace vigil::loadgen {
namespace {

TEST(TelemetryModelTest, FiftySeriesAreFortyFiveGaugesAndFiveHistograms) {
  TelemetryModel model(45, 5);
  EXPECT_EQ(model.samples_per_batch(), 50);
  v1::TelemetryBatch batch;
  model.FillBatch(3, 1, 1'700'000'000'000, /*declare=*/true, &batch);
  ASSERT_EQ(batch.new_series_size(), 50);
  ASSERT_EQ(batch.snapshots_size(), 1);
  EXPECT_EQ(batch.snapshots(0).series_ids_size(), 45);
  EXPECT_EQ(batch.snapshots(0).values_size(), 45);
  EXPECT_EQ(batch.snapshots(0).histograms_size(), 5);
  // Dense ids from 1, as the agent's SeriesDictionary numbers them, and no series twice.
  std::set<std::pair<std::string, std::string>> seen;
  for (int i = 0; i < batch.new_series_size(); ++i) {
    const v1::SeriesDefinition& def = batch.new_series(i);
    EXPECT_EQ(def.id(), static_cast<uint32_t>(i + 1));
    ASSERT_NE(FindMetric(def.name()), nullptr) << def.name() << " is not in the metric schema";
    std::string labels;
    for (const auto& [k, v] : def.labels()) {
      labels += k + "=" + v + ",";
    }
    EXPECT_TRUE(seen.insert({def.name(), labels}).second) << def.name() << "{" << labels << "}";
  }
  EXPECT_EQ(FindMetric(batch.new_series(49).name())->kind, MetricKind::kHistogram);
}

TEST(TelemetryModelTest, OnlyTheFirstBatchOfAStreamDeclares) {
  TelemetryModel model(45, 5);
  v1::TelemetryBatch later;
  model.FillBatch(3, 2, 1'700'000'001'000, /*declare=*/false, &later);
  EXPECT_EQ(later.new_series_size(), 0);
  EXPECT_EQ(later.sequence(), 2u);
  EXPECT_EQ(later.snapshots(0).time_unix_ms(), 1'700'000'001'000);
}

TEST(TelemetryModelTest, TheControllerAcceptsTheStream) {
  TelemetryModel model(45, 5);
  const controller::IngestLimits limits;
  const absl::Time now = absl::Now();
  EXPECT_TRUE(controller::ValidateHello(model.MakeHello("sim-17", 1000, "abc"), limits).ok());
  v1::TelemetryBatch first;
  model.FillBatch(17, 1, absl::ToUnixMillis(now), true, &first);
  absl::Status status =
      controller::ValidateBatch(first, controller::StreamView{0, 0}, limits, now);
  EXPECT_TRUE(status.ok()) << status;
  v1::TelemetryBatch second;
  model.FillBatch(17, 2, absl::ToUnixMillis(now), false, &second);
  status = controller::ValidateBatch(second, controller::StreamView{51, 1}, limits, now);
  EXPECT_TRUE(status.ok()) << status;
}

TEST(TelemetryModelTest, ValuesStayUnderTheDefaultRulesThresholds) {
  // The storm measures connections, not an alert storm: no gauge crosses a default rule.
  TelemetryModel model(45, 5);
  for (uint64_t agent = 0; agent < 50; ++agent) {
    for (uint64_t seq = 1; seq < 20; ++seq) {
      v1::TelemetryBatch batch;
      model.FillBatch(agent, seq, 1'700'000'000'000, true, &batch);
      const v1::Snapshot& s = batch.snapshots(0);
      for (int i = 0; i < s.series_ids_size(); ++i) {
        const std::string& name = batch.new_series(static_cast<int>(s.series_ids(i)) - 1).name();
        if (name.ends_with("_ratio") && name != "redis_keyspace_hit_ratio") {
          EXPECT_LT(s.values(i), 0.8) << name;
        }
        EXPECT_GE(s.values(i), 0) << name;
      }
      for (const v1::HistogramPoint& h : s.histograms()) {
        EXPECT_GT(h.histogram().count(), 0u);
        EXPECT_LT(h.histogram().sum() / h.histogram().count(), 0.5);
      }
    }
  }
}

TEST(TelemetryModelTest, LargerBatchesCarrySeveralSnapshotsEndingAtTheRound) {
  TelemetryModel model(45, 5);
  const absl::Time now = absl::Now();
  v1::TelemetryBatch batch;
  model.FillBatch(4, 1, absl::ToUnixMillis(now), true, &batch, /*snapshots=*/3);
  ASSERT_EQ(batch.snapshots_size(), 3);
  EXPECT_EQ(batch.snapshots(2).time_unix_ms(), absl::ToUnixMillis(now));
  EXPECT_EQ(batch.snapshots(0).time_unix_ms(), absl::ToUnixMillis(now) - 20);
  EXPECT_NE(batch.snapshots(0).values(0), batch.snapshots(1).values(0));
  const absl::Status status = controller::ValidateBatch(batch, controller::StreamView{0, 0},
                                                        controller::IngestLimits{}, now);
  EXPECT_TRUE(status.ok()) << status;
}

TEST(TelemetryModelTest, ValuesVaryByAgentAndRound) {
  TelemetryModel model(45, 5);
  v1::TelemetryBatch a, b, c;
  model.FillBatch(1, 1, 0, false, &a);
  model.FillBatch(2, 1, 0, false, &b);
  model.FillBatch(1, 2, 0, false, &c);
  EXPECT_NE(a.snapshots(0).values(0), b.snapshots(0).values(0));
  EXPECT_NE(a.snapshots(0).values(0), c.snapshots(0).values(0));
}

}  // namespace
}  // namespace vigil::loadgen
