#include "agent/series_dictionary.h"

#include <gtest/gtest.h>

#include "agent/telemetry_spool.h"

namespace vigil::agent {
namespace {

// The rounds below are from 1970: the spool's age limit is taken at the same time.
const absl::Time kEpoch = absl::FromUnixMillis(0);

Collection Round(int64_t ms, double cpu, double disk_root, double disk_data) {
  Collection c;
  c.time = absl::FromUnixMillis(ms);
  c.Gauge("host_cpu_usage_ratio", cpu);
  c.Gauge("host_disk_used_ratio", disk_root, {{"mount", "/"}});
  c.Gauge("host_disk_used_ratio", disk_data, {{"mount", "/data"}});
  return c;
}

TEST(SeriesDictionary, DeclaresEachSeriesOncePerStream) {
  SeriesDictionary dictionary;
  v1::TelemetryBatch first;
  dictionary.Encode(Round(1000, 0.5, 0.1, 0.2), &first);
  ASSERT_EQ(first.new_series_size(), 3);
  EXPECT_EQ(first.new_series(1).name(), "host_disk_used_ratio");
  EXPECT_EQ(first.new_series(1).labels().at("mount"), "/");
  EXPECT_EQ(first.new_series(2).labels().at("mount"), "/data");
  ASSERT_EQ(first.snapshots(0).series_ids_size(), 3);
  EXPECT_EQ(first.snapshots(0).values(2), 0.2);

  v1::TelemetryBatch second;
  dictionary.Encode(Round(2000, 0.6, 0.1, 0.3), &second);
  EXPECT_EQ(second.new_series_size(), 0) << "already declared on this stream";
  EXPECT_EQ(second.snapshots(0).series_ids(2), first.snapshots(0).series_ids(2));
  EXPECT_EQ(second.snapshots(0).time_unix_ms(), 2000);

  dictionary.Reset();  // a new stream
  v1::TelemetryBatch third;
  dictionary.Encode(Round(3000, 0.7, 0.1, 0.3), &third);
  EXPECT_EQ(third.new_series_size(), 3);
}

TEST(SeriesDictionary, LabelOrderAndValuesDoNotCollide) {
  SeriesDictionary dictionary;
  v1::TelemetryBatch batch;
  Collection c;
  c.Gauge("m", 1, {{"a", "b"}, {"c", "d"}});
  c.Gauge("m", 2, {{"a", "bc"}, {"", "d"}});
  c.Gauge("m", 3, {});
  dictionary.Encode(c, &batch);
  EXPECT_EQ(batch.new_series_size(), 3);
}

TEST(SeriesDictionary, HistogramsTravelAsBuckets) {
  SeriesDictionary dictionary;
  Collection c;
  LogHistogram h;
  for (int i = 1; i <= 100; ++i) h.Add(i / 100.0);
  c.Histogram("nginx_request_duration_seconds", h);
  v1::TelemetryBatch batch;
  dictionary.Encode(c, &batch);
  ASSERT_EQ(batch.snapshots(0).histograms_size(), 1);
  LogHistogram back;
  back.FromProto(batch.snapshots(0).histograms(0).histogram());
  EXPECT_EQ(back.count(), 100u);
  EXPECT_NEAR(back.Quantile(0.95), 0.95, 0.95 * 0.01);
}

TEST(SeriesDictionary, TranslatesSelfContainedBatchesIntoTheStreamsIds) {
  SeriesDictionary stream;
  v1::TelemetryBatch first;
  Collection only_disk;
  only_disk.Gauge("host_disk_used_ratio", 0.4, {{"mount", "/data"}});
  stream.Encode(only_disk, &first);  // id 1 on the stream

  v1::TelemetryBatch contained;  // as the spool stores it: its own ids from 1
  SeriesDictionary own;
  own.Encode(Round(5000, 0.5, 0.1, 0.2), &contained);
  v1::TelemetryBatch wire;
  stream.Translate(contained, &wire);
  ASSERT_EQ(wire.new_series_size(), 2) << "/data was declared on this stream already";
  EXPECT_EQ(wire.new_series(0).name(), "host_cpu_usage_ratio");
  ASSERT_EQ(wire.snapshots_size(), 1);
  EXPECT_EQ(wire.snapshots(0).time_unix_ms(), 5000);
  ASSERT_EQ(wire.snapshots(0).series_ids_size(), 3);
  EXPECT_EQ(wire.snapshots(0).series_ids(2), 1u);  // /data keeps the stream's id
  EXPECT_EQ(wire.snapshots(0).values(2), 0.2);
  EXPECT_EQ(wire.snapshots(0).series_ids(0), 2u);
}

TEST(TelemetrySpool, FirstWelcomeNumbersWhatWasQueuedBeforeIt) {
  TelemetrySpool spool(1 << 20);
  spool.Add({Round(1000, 0.1, 0, 0)});
  spool.Add({Round(2000, 0.2, 0, 0)});
  EXPECT_EQ(spool.entries().front().sequence, 0u);
  spool.StartStream(41, kEpoch);  // an earlier run of this agent left 41 at the controller
  EXPECT_EQ(spool.entries()[0].sequence, 42u);
  EXPECT_EQ(spool.entries()[1].sequence, 43u);
  EXPECT_EQ(spool.Add({Round(3000, 0.3, 0, 0)}).sequence, 44u);
}

TEST(TelemetrySpool, ReconnectResendsOnlyWhatWasNotStored) {
  TelemetrySpool spool(1 << 20);
  spool.StartStream(0, kEpoch);
  for (int i = 1; i <= 5; ++i) spool.Add({Round(i * 1000, 0.1, 0, 0)});
  spool.AckThrough(2);
  EXPECT_EQ(spool.entries().size(), 3u);
  // The controller stored 4 before the stream broke, but its Ack never arrived.
  spool.StartStream(4, kEpoch);
  ASSERT_EQ(spool.entries().size(), 1u);
  EXPECT_EQ(spool.entries().front().sequence, 5u);
  EXPECT_EQ(spool.Add({Round(6000, 0.1, 0, 0)}).sequence, 6u);
}

TEST(TelemetrySpool, BoundDropsOldestAndCounts) {
  TelemetrySpool probe(1 << 20);
  TelemetrySpool spool(probe.Add({Round(1000, 0.1, 0, 0)}).bytes() * 3);
  spool.StartStream(0, kEpoch);
  for (int i = 1; i <= 5; ++i) spool.Add({Round(i * 1000, 0.1, 0, 0)});
  EXPECT_EQ(spool.entries().size(), 3u);
  EXPECT_EQ(spool.entries().front().sequence, 3u);
  EXPECT_EQ(spool.dropped(), 2u);
}

}  // namespace
}  // namespace vigil::agent
