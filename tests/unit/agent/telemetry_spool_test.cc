#include "agent/telemetry_spool.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "agent/series_dictionary.h"
#include "tests/support/process.h"

namespace vigil::agent {
namespace {

using ::vigil::testing::ReadFileOrEmpty;
using ::vigil::testing::TempDir;
using ::vigil::testing::WriteFile;

const absl::Time kT0 = absl::Now();

// One round whose first gauge carries `value`, with `extra` more gauges to make it bigger.
std::vector<Collection> Round(double value, int extra = 0, absl::Time time = kT0) {
  Collection c;
  c.time = time;
  c.Gauge("host_load1", value);
  for (int i = 0; i < extra; ++i) {
    c.Gauge("host_disk_used_ratio", 0.5, {{"mount", absl::StrCat("/mnt/disk", i)}});
  }
  return {c};
}

// The host_load1 value an entry carries, read back through a stream dictionary.
double ValueOf(const TelemetrySpool::Entry& entry) {
  v1::TelemetryBatch contained;
  EXPECT_TRUE(contained.ParseFromString(entry.batch));
  SeriesDictionary dictionary;
  v1::TelemetryBatch wire;
  dictionary.Translate(contained, &wire);
  EXPECT_EQ(wire.new_series(0).name(), "host_load1");
  return wire.snapshots(0).values(0);
}

std::unique_ptr<TelemetrySpool> OpenSpool(const std::string& dir, uint64_t max_bytes = 1 << 20) {
  auto spool = TelemetrySpool::Open(TelemetrySpoolOptions{.dir = dir, .max_bytes = max_bytes});
  EXPECT_TRUE(spool.ok()) << spool.status();
  return spool.ok() ? std::move(*spool) : nullptr;
}

TEST(TelemetrySpool, TheBoundInBytesDropsTheOldestAndReportsThem) {
  TelemetrySpool probe(1 << 20);
  const uint64_t one = probe.Add(Round(0)).bytes();
  TelemetrySpool spool(one * 3);
  spool.StartStream(100);  // numbered from 101
  for (int i = 0; i < 5; ++i) {
    spool.Add(Round(i));
  }
  ASSERT_EQ(spool.entries().size(), 3u);
  EXPECT_EQ(spool.entries().front().sequence, 103u);
  EXPECT_EQ(ValueOf(spool.entries().front()), 2);
  EXPECT_LE(spool.bytes(), one * 3);
  EXPECT_EQ(spool.dropped(), 2u);
  EXPECT_EQ(spool.totals().dropped_full, 2u);
  const std::vector<v1::DroppedRange> reports = spool.PendingReportsForTest();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].first_sequence(), 101u);
  EXPECT_EQ(reports[0].last_sequence(), 102u);
  EXPECT_EQ(reports[0].batches(), 2u);
  EXPECT_EQ(reports[0].reason(), "spool_full");
  EXPECT_EQ(reports[0].first_time_unix_ms(), absl::ToUnixMillis(kT0));
}

TEST(TelemetrySpool, UnnumberedDropsAreReportedWithoutSequences) {
  TelemetrySpool probe(1 << 20);
  const uint64_t one = probe.Add(Round(0)).bytes();
  TelemetrySpool spool(one * 2);
  for (int i = 0; i < 6; ++i) {
    spool.Add(Round(i));
  }
  const std::vector<v1::DroppedRange> reports = spool.PendingReportsForTest();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].first_sequence(), 0u);
  EXPECT_EQ(reports[0].batches(), 4u);
  spool.StartStream(7);
  EXPECT_EQ(spool.entries().front().sequence, 8u);
  EXPECT_EQ(ValueOf(spool.entries().front()), 4);
}

TEST(TelemetrySpool, AReportTravelsOnTheFirstBatchSentAndLeavesWithItsAck) {
  TelemetrySpool probe(1 << 20);
  const uint64_t one = probe.Add(Round(0)).bytes();
  TelemetrySpool spool(one * 2);
  spool.StartStream(0);
  for (int i = 0; i < 4; ++i) {
    spool.Add(Round(i));  // 1, 2 dropped
  }
  v1::TelemetryBatch first;
  spool.AttachReports(spool.entries().front(), &first);
  EXPECT_EQ(first.sequence(), 3u);
  ASSERT_EQ(first.dropped_size(), 1);
  v1::TelemetryBatch second;
  spool.AttachReports(spool.entries().back(), &second);
  EXPECT_EQ(second.dropped_size(), 0);  // once per stream
  // A new stream before the Ack: the report goes again.
  spool.StartStream(2);
  v1::TelemetryBatch again;
  spool.AttachReports(spool.entries().front(), &again);
  EXPECT_EQ(again.dropped_size(), 1);
  spool.AckThrough(3);
  EXPECT_TRUE(spool.PendingReportsForTest().empty());
}

TEST(TelemetrySpool, ARestartReplaysInOrderWithTheSameSequences) {
  TempDir dir;
  {
    auto spool = OpenSpool(dir.path());
    spool->StartStream(10);
    for (int i = 0; i < 3; ++i) {
      spool->Add(Round(i));
    }
    spool->AckThrough(11);
  }  // no clean shutdown needed: every Add is on disk when it returns
  auto spool = OpenSpool(dir.path());
  EXPECT_EQ(spool->totals().replayed, 3u);  // the acknowledged one is still on disk...
  spool->Add(Round(7));                     // collected before the Welcome: not numbered
  EXPECT_EQ(spool->entries().back().sequence, 0u);
  spool->StartStream(11);  // ...and leaves with the Welcome
  ASSERT_EQ(spool->entries().size(), 3u);
  EXPECT_EQ(spool->entries()[0].sequence, 12u);
  EXPECT_EQ(ValueOf(spool->entries()[0]), 1);
  EXPECT_EQ(spool->entries()[1].sequence, 13u);
  EXPECT_EQ(ValueOf(spool->entries()[1]), 2);
  EXPECT_EQ(spool->entries()[2].sequence, 14u);
  EXPECT_EQ(ValueOf(spool->entries()[2]), 7);
}

TEST(TelemetrySpool, RoundsNumberedAtTheFirstWelcomeKeepTheirNumbersAcrossARestart) {
  TempDir dir;
  {
    auto spool = OpenSpool(dir.path());
    spool->Add(Round(1));
    spool->Add(Round(2));
  }
  {
    auto spool = OpenSpool(dir.path());
    ASSERT_EQ(spool->entries().size(), 2u);
    EXPECT_EQ(spool->entries()[0].sequence, 0u);
    spool->StartStream(40);
    EXPECT_EQ(spool->entries()[0].sequence, 41u);
    EXPECT_EQ(spool->entries()[1].sequence, 42u);
  }  // killed before any Ack
  auto spool = OpenSpool(dir.path());
  ASSERT_EQ(spool->entries().size(), 2u);
  EXPECT_EQ(spool->entries()[0].sequence, 41u);
  EXPECT_EQ(spool->entries()[1].sequence, 42u);
  spool->StartStream(40);
  spool->Add(Round(3));
  EXPECT_EQ(spool->entries().back().sequence, 43u);
}

TEST(TelemetrySpool, AcknowledgedRoundsLeaveTheDisk) {
  TempDir dir;
  auto spool = OpenSpool(dir.path(), 256 << 10);
  spool->StartStream(0);
  for (int i = 0; i < 40; ++i) {
    spool->Add(Round(i, 100));  // a few KiB each
  }
  const uint64_t full = spool->file_bytes();
  EXPECT_GT(full, 40u * 2000);
  spool->AckThrough(40);
  EXPECT_TRUE(spool->entries().empty());
  EXPECT_LT(spool->file_bytes(), 1024u);  // compacted: header and state only
  spool.reset();
  auto again = OpenSpool(dir.path(), 256 << 10);
  EXPECT_TRUE(again->entries().empty());
  EXPECT_EQ(again->totals().replayed, 0u);
}

TEST(TelemetrySpool, DiskUseStaysWithinTheBoundPlusSlack) {
  TempDir dir;
  const uint64_t max_bytes = 128 << 10;
  auto spool = OpenSpool(dir.path(), max_bytes);
  for (int i = 0; i < 300; ++i) {
    spool->Add(Round(i, 30));
    ASSERT_LE(spool->file_bytes(), max_bytes + (64 << 10) + 8192) << "after round " << i;
  }
  EXPECT_GT(spool->dropped(), 0u);
  EXPECT_LE(spool->bytes(), max_bytes);
  // What survives a restart is what was kept, and the drops are still to be reported.
  const size_t kept = spool->entries().size();
  const double newest = ValueOf(spool->entries().back());
  spool.reset();
  auto again = OpenSpool(dir.path(), max_bytes);
  ASSERT_EQ(again->entries().size(), kept);
  EXPECT_EQ(ValueOf(again->entries().back()), newest);
  const std::vector<v1::DroppedRange> reports = again->PendingReportsForTest();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].batches(), 300u - kept);
}

TEST(TelemetrySpool, AnAcknowledgedReportIsNotReportedAgainAfterARestart) {
  TempDir dir;
  TelemetrySpool probe(1 << 20);
  const uint64_t one = probe.Add(Round(0)).bytes();
  {
    auto spool = OpenSpool(dir.path(), one * 2);
    spool->StartStream(0);
    for (int i = 0; i < 4; ++i) {
      spool->Add(Round(i));
    }
  }
  {
    auto spool = OpenSpool(dir.path(), one * 2);
    ASSERT_EQ(spool->PendingReportsForTest().size(), 1u);  // survived the restart
    EXPECT_EQ(spool->entries().size(), 2u);                // the dropped ones did not come back
    spool->StartStream(0);
    v1::TelemetryBatch batch;
    spool->AttachReports(spool->entries().front(), &batch);
    ASSERT_EQ(batch.dropped_size(), 1);
    EXPECT_EQ(batch.dropped(0).first_sequence(), 1u);
    EXPECT_EQ(batch.dropped(0).last_sequence(), 2u);
    spool->AckThrough(batch.sequence());
  }
  auto spool = OpenSpool(dir.path(), one * 2);
  EXPECT_TRUE(spool->PendingReportsForTest().empty());
}

TEST(TelemetrySpool, ACorruptRoundIsSkippedReportedAndDoesNotBlockTheRest) {
  TempDir dir;
  {
    auto spool = OpenSpool(dir.path());
    spool->StartStream(0);
    for (int i = 0; i < 3; ++i) {
      spool->Add(Round(i, 5));
    }
  }
  const std::string path = dir.File("telemetry.spool");
  std::string data = ReadFileOrEmpty(path);
  // Damage the middle round: a byte in the second half of the file's second third.
  const size_t header = data.find('\n') + 1;
  const size_t record = (data.size() - header) / 3;
  data[header + record + record / 2] ^= 0x5a;
  WriteFile(path, data);
  auto spool = OpenSpool(dir.path());
  ASSERT_EQ(spool->entries().size(), 2u);
  EXPECT_EQ(spool->entries()[0].sequence, 1u);
  EXPECT_EQ(spool->entries()[1].sequence, 3u);
  EXPECT_EQ(ValueOf(spool->entries()[1]), 2);
  EXPECT_EQ(spool->totals().dropped_corrupt, 1u);
  const std::vector<v1::DroppedRange> reports = spool->PendingReportsForTest();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].reason(), "corrupt");
  EXPECT_EQ(reports[0].first_sequence(), 2u);
  EXPECT_EQ(reports[0].last_sequence(), 2u);
  EXPECT_EQ(reports[0].batches(), 1u);
}

TEST(TelemetrySpool, AnUnreadableFileIsMovedAsideAndTheSpoolStartsEmpty) {
  TempDir dir;
  WriteFile(dir.File("telemetry.spool"), "not a spool at all\n");
  auto spool = OpenSpool(dir.path());
  ASSERT_NE(spool, nullptr);
  EXPECT_TRUE(spool->entries().empty());
  bool aside = false;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    aside = aside || entry.path().filename().string().rfind("telemetry.spool.bad-", 0) == 0;
  }
  EXPECT_TRUE(aside);
}

TEST(TelemetrySpool, OneSpoolFolderServesOneAgent) {
  TempDir dir;
  auto first = OpenSpool(dir.path());
  auto second = TelemetrySpool::Open(TelemetrySpoolOptions{.dir = dir.path()});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(second.status().message().find(absl::StrCat("in use by another agent (pid ", getpid())),
            std::string::npos)
      << second.status();
  first.reset();
  EXPECT_TRUE(TelemetrySpool::Open(TelemetrySpoolOptions{.dir = dir.path()}).ok());
}

TEST(TelemetrySpool, RoundsTooOldForTheControllerAreDroppedBeforeAStream) {
  TelemetrySpool spool(1 << 20);
  spool.Add(Round(1, 0, kT0 - absl::Hours(30)));
  spool.Add(Round(2, 0, kT0));
  spool.StartStream(0, kT0);
  ASSERT_EQ(spool.entries().size(), 1u);
  EXPECT_EQ(spool.entries()[0].sequence, 1u);
  EXPECT_EQ(spool.totals().dropped_expired, 1u);
  ASSERT_EQ(spool.PendingReportsForTest().size(), 1u);
  EXPECT_EQ(spool.PendingReportsForTest()[0].reason(), "expired");
}

TEST(TelemetrySpool, ARefusedRoundIsDroppedAndCounted) {
  TelemetrySpool spool(1 << 20);
  spool.StartStream(0);
  spool.Add(Round(1));
  spool.Add(Round(2));
  EXPECT_TRUE(spool.Refuse(1));
  EXPECT_FALSE(spool.Refuse(1));
  EXPECT_FALSE(spool.Refuse(0));
  EXPECT_EQ(spool.refused(), 1u);
  ASSERT_EQ(spool.entries().size(), 1u);
  EXPECT_EQ(spool.entries()[0].sequence, 2u);
}

}  // namespace
}  // namespace vigil::agent
