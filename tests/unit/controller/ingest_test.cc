// Edge validation of agent messages and the fleet state's defences: every field an agent
// controls is bounded before it sizes, indexes or changes anything.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <tuple>

#include <google/protobuf/util/message_differencer.h>

#include "common/histogram.h"
#include "controller/ingest/fleet_state.h"
#include "controller/ingest/telemetry_validator.h"
#include "tests/unit/controller/telemetry_for_test.h"

namespace vigil::controller {
namespace {

using ::testing::HasSubstr;

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);
const int64_t kNowMs = absl::ToUnixMillis(kNow);

v1::Hello MakeHello(const std::string& id) {
  v1::Hello hello;
  hello.set_agent_id(id);
  hello.set_hostname(id);
  hello.set_version("test");
  (*hello.mutable_labels())["role"] = "api";
  return hello;
}

v1::TelemetryBatch Batch(uint64_t sequence) {
  v1::TelemetryBatch batch;
  batch.set_sequence(sequence);
  return batch;
}

v1::Snapshot* Snap(v1::TelemetryBatch& batch, int64_t ms = kNowMs) {
  v1::Snapshot* s = batch.add_snapshots();
  s->set_time_unix_ms(ms);
  return s;
}

void Gauge(v1::Snapshot* s, uint32_t id, double value) {
  s->add_series_ids(id);
  s->add_values(value);
}

absl::Status Check(const v1::TelemetryBatch& batch, size_t dictionary = 0, uint64_t last = 0) {
  return ValidateBatch(batch, StreamView{.dictionary_size = dictionary, .last_sequence = last},
                       IngestLimits{}, kNow);
}

TEST(ValidateBatchTest, AcceptsAnOrdinaryBatch) {
  v1::TelemetryBatch batch = Batch(1);
  Define(batch, 0, "host_cpu_usage_ratio");
  Define(batch, 1, "host_disk_used_ratio", {{"mount", "/"}});
  Gauge(Snap(batch), 0, 0.5);
  EXPECT_TRUE(Check(batch).ok()) << Check(batch);
}

TEST(ValidateBatchTest, RefusesDictionaryIdsThatWrapOrSkip) {
  v1::TelemetryBatch wrap = Batch(1);
  Define(wrap, 0xFFFFFFFFu, "host_load1");
  absl::Status s = Check(wrap);
  EXPECT_TRUE(absl::IsInvalidArgument(s));
  EXPECT_THAT(s.message(), HasSubstr("new_series[0].id: 4294967295"));
  EXPECT_THAT(s.message(), HasSubstr("cap"));

  v1::TelemetryBatch skip = Batch(1);
  Define(skip, 5'000, "host_load1");
  EXPECT_THAT(Check(skip, 3).message(), HasSubstr("ids must be dense, the next one is 3"));

  // Redefining an id already known on the stream is fine; so is the next one.
  v1::TelemetryBatch again = Batch(1);
  Define(again, 2, "host_load1");
  Define(again, 3, "host_cpu_usage_ratio");
  EXPECT_TRUE(Check(again, 3).ok());
}

TEST(ValidateBatchTest, RefusesUndefinedIdsAndMismatchedColumns) {
  v1::TelemetryBatch batch = Batch(1);
  Gauge(Snap(batch), 7, 1);
  EXPECT_THAT(Check(batch, 2).message(), HasSubstr("series_ids[0]: 7 was never defined"));

  v1::TelemetryBatch ragged = Batch(1);
  Snap(ragged)->add_series_ids(0);
  EXPECT_THAT(Check(ragged, 1).message(), HasSubstr("1 series ids but 0 values"));
}

TEST(ValidateBatchTest, BoundsNamesAndLabels) {
  v1::TelemetryBatch big = Batch(1);
  Define(big, 0, "host_load1", {{"mount", std::string(256 * 1024, 'x')}});
  EXPECT_THAT(Check(big).message(), HasSubstr("262144 bytes, more than the 512 allowed"));

  v1::TelemetryBatch bad_name = Batch(1);
  Define(bad_name, 0, "host load\n1");
  EXPECT_THAT(Check(bad_name).message(), HasSubstr("outside [a-zA-Z0-9_:]"));

  v1::TelemetryBatch bad_key = Batch(1);
  Define(bad_key, 0, "host_load1", {{"a\x1b[2J", "v"}});
  EXPECT_THAT(Check(bad_key).message(), HasSubstr("label key"));
}

TEST(ValidateBatchTest, TelemetryTimeHasASkewAndAnAge) {
  v1::TelemetryBatch future = Batch(1);
  Define(future, 0, "host_load1");
  Gauge(Snap(future, kNowMs + absl::ToInt64Milliseconds(absl::Hours(24))), 0, 1);
  EXPECT_THAT(Check(future).message(), HasSubstr("ahead of the controller's clock"));

  v1::TelemetryBatch slightly_ahead = Batch(1);
  Define(slightly_ahead, 0, "host_load1");
  Gauge(Snap(slightly_ahead, kNowMs + 5'000), 0, 1);
  EXPECT_TRUE(Check(slightly_ahead).ok());

  // A replay after an outage is normal; a week-old one is not.
  v1::TelemetryBatch replay = Batch(1);
  Define(replay, 0, "host_load1");
  Gauge(Snap(replay, kNowMs - absl::ToInt64Milliseconds(absl::Hours(2))), 0, 1);
  EXPECT_TRUE(Check(replay).ok());
  v1::TelemetryBatch ancient = Batch(1);
  Define(ancient, 0, "host_load1");
  Gauge(Snap(ancient, kNowMs - absl::ToInt64Milliseconds(absl::Hours(24 * 7))), 0, 1);
  EXPECT_THAT(Check(ancient).message(), HasSubstr("older than"));
}

TEST(ValidateBatchTest, SequenceJumpsAreBounded) {
  EXPECT_THAT(Check(Batch(std::numeric_limits<uint64_t>::max())).message(),
              HasSubstr("telemetry.sequence"));
  EXPECT_THAT(Check(Batch(std::numeric_limits<uint64_t>::max()), 0, 41).message(),
              HasSubstr("past the last stored sequence 41"));
  EXPECT_TRUE(Check(Batch(42), 0, 41).ok());
  EXPECT_TRUE(Check(Batch(30), 0, 41).ok());  // a duplicate: skipped later, not refused
  EXPECT_TRUE(Check(Batch(0), 0, 41).ok());   // a heartbeat
}

v1::DroppedRange* Drop(v1::TelemetryBatch& batch, uint64_t first, uint64_t last, uint64_t n,
                       const std::string& reason = "spool_full") {
  v1::DroppedRange* r = batch.add_dropped();
  r->set_first_sequence(first);
  r->set_last_sequence(last);
  r->set_batches(n);
  r->set_reason(reason);
  return r;
}

TEST(ValidateBatchTest, DroppedRangesAreBounded) {
  v1::TelemetryBatch ok = Batch(50);
  Drop(ok, 10, 49, 40);
  Drop(ok, 0, 0, 7, "expired");
  Drop(ok, 3, 3, 1, "corrupt");
  EXPECT_TRUE(Check(ok, 0, 9).ok()) << Check(ok, 0, 9);

  v1::TelemetryBatch after = Batch(50);
  Drop(after, 10, 50, 41);  // reaches the batch itself
  EXPECT_THAT(Check(after).message(), HasSubstr("telemetry.dropped[0].last_sequence"));
  v1::TelemetryBatch reversed = Batch(50);
  Drop(reversed, 20, 10, 1);
  EXPECT_THAT(Check(reversed).message(), HasSubstr("telemetry.dropped[0].last_sequence"));
  v1::TelemetryBatch too_many = Batch(50);
  Drop(too_many, 10, 12, 4);
  EXPECT_THAT(Check(too_many).message(), HasSubstr("telemetry.dropped[0].batches"));
  v1::TelemetryBatch none = Batch(50);
  Drop(none, 0, 0, 0);
  EXPECT_THAT(Check(none).message(), HasSubstr("telemetry.dropped[0].batches"));
  v1::TelemetryBatch huge = Batch(50);
  Drop(huge, 0, 0, std::numeric_limits<uint64_t>::max());
  EXPECT_THAT(Check(huge).message(), HasSubstr("telemetry.dropped[0].batches"));
  v1::TelemetryBatch half = Batch(50);
  Drop(half, 0, 5, 1);
  EXPECT_THAT(Check(half).message(), HasSubstr("must be 0 when first_sequence is 0"));
  for (const std::string& reason : std::vector<std::string>{"", "Spool_Full", "spool full", std::string(33, 'a'),
                                   std::string("a\0b", 3)}) {
    v1::TelemetryBatch bad = Batch(50);
    Drop(bad, 1, 1, 1, reason);
    EXPECT_THAT(Check(bad).message(), HasSubstr("telemetry.dropped[0].reason")) << reason;
  }
  v1::TelemetryBatch beat = Batch(0);
  Drop(beat, 0, 0, 1);
  EXPECT_THAT(Check(beat).message(), HasSubstr("heartbeat"));
  v1::TelemetryBatch crowd = Batch(1000);
  for (int i = 0; i < 65; ++i) {
    Drop(crowd, i + 1, i + 1, 1);
  }
  EXPECT_THAT(Check(crowd).message(), HasSubstr("65 ranges"));
  v1::TelemetryBatch negative = Batch(50);
  Drop(negative, 1, 1, 1)->set_first_time_unix_ms(-5);
  EXPECT_THAT(Check(negative).message(), HasSubstr("telemetry.dropped[0]"));
}

TEST(CountLostBatchesTest, ReportedRangesAndSelfDetectedGaps) {
  // An ordinary next batch: nothing lost.
  FleetState::LostCounts lost = CountLostBatches(Batch(11), 10);
  EXPECT_EQ(lost.agent_dropped + lost.corrupt + lost.sequence_gap, 0u);
  // A jump with no report: the controller notices by itself.
  lost = CountLostBatches(Batch(15), 10);
  EXPECT_EQ(lost.sequence_gap, 4u);
  EXPECT_EQ(lost.agent_dropped, 0u);
  // A jump fully covered by reports counts once, under the reported reasons.
  v1::TelemetryBatch covered = Batch(21);
  Drop(covered, 11, 17, 7);
  Drop(covered, 18, 20, 3, "corrupt");
  lost = CountLostBatches(covered, 10);
  EXPECT_EQ(lost.agent_dropped, 7u);
  EXPECT_EQ(lost.corrupt, 3u);
  EXPECT_EQ(lost.sequence_gap, 0u);
  // Reported batches the controller already has are not lost; overlaps count once; the rest of
  // the jump is a gap.
  v1::TelemetryBatch partial = Batch(30);
  Drop(partial, 5, 22, 18);
  Drop(partial, 20, 24, 5);
  lost = CountLostBatches(partial, 20);  // 21..29 missing; 21..24 reported
  EXPECT_EQ(lost.agent_dropped, 4u);
  EXPECT_EQ(lost.sequence_gap, 5u);
  // Rounds dropped before they were numbered count as reported.
  v1::TelemetryBatch unnumbered = Batch(11);
  Drop(unnumbered, 0, 0, 9, "spool_full");
  lost = CountLostBatches(unnumbered, 10);
  EXPECT_EQ(lost.agent_dropped, 9u);
  EXPECT_EQ(lost.sequence_gap, 0u);
  // A first batch from an agent the controller never stored: no gap to speak of.
  lost = CountLostBatches(Batch(500), 0);
  EXPECT_EQ(lost.sequence_gap, 0u);
}

TEST(ValidateBatchTest, HistogramsStayInsideTheSchema) {
  for (int offset : {std::numeric_limits<int>::max() - 1, std::numeric_limits<int>::min(), 5'000}) {
    v1::TelemetryBatch batch = Batch(1);
    Define(batch, 0, "nginx_request_duration_seconds");
    v1::HistogramPoint* point = Snap(batch)->add_histograms();
    point->set_series_id(0);
    point->mutable_histogram()->set_offset(offset);
    point->mutable_histogram()->add_counts(1);
    point->mutable_histogram()->add_counts(1);
    EXPECT_THAT(Check(batch).message(), HasSubstr("outside the schema's range")) << offset;
  }
  v1::TelemetryBatch overflow = Batch(1);
  Define(overflow, 0, "nginx_request_duration_seconds");
  v1::HistogramPoint* point = Snap(overflow)->add_histograms();
  point->mutable_histogram()->add_counts(std::numeric_limits<uint64_t>::max());
  point->mutable_histogram()->add_counts(std::numeric_limits<uint64_t>::max());
  EXPECT_THAT(Check(overflow).message(), HasSubstr("observations"));

  v1::TelemetryBatch nan_sum = Batch(1);
  Define(nan_sum, 0, "nginx_request_duration_seconds");
  Snap(nan_sum)->add_histograms()->mutable_histogram()->set_sum(std::nan(""));
  EXPECT_THAT(Check(nan_sum).message(), HasSubstr(".sum"));
}

TEST(ValidateHelloTest, BoundsIdentityAndLabels) {
  EXPECT_TRUE(ValidateHello(MakeHello("web-1"), IngestLimits{}).ok());
  EXPECT_THAT(ValidateHello(MakeHello(""), IngestLimits{}).message(), HasSubstr("agent_id"));
  EXPECT_THAT(ValidateHello(MakeHello("web-1\x1b[31m"), IngestLimits{}).message(),
              HasSubstr("outside [a-zA-Z0-9._-]"));
  v1::Hello labels = MakeHello("web-1");
  for (int i = 0; i < 100; ++i) {
    (*labels.mutable_labels())[absl::StrCat("l", i)] = "v";
  }
  EXPECT_THAT(ValidateHello(labels, IngestLimits{}).message(), HasSubstr("101 labels"));
}

v1::Hello HelloDeclaring(std::vector<std::string> names) {
  v1::Hello hello = MakeHello("web-1");
  hello.add_collectors("prometheus");
  for (const std::string& name : names) {
    v1::MetricDeclaration* m = hello.add_metrics();
    m->set_name(name);
    m->set_collector("prometheus");
  }
  return hello;
}

TEST(ValidateHelloTest, DeclaredMetricsAreBoundedAndOutsideTheSchema) {
  EXPECT_TRUE(ValidateHello(HelloDeclaring({"app_requests_total", "app:latency"}), IngestLimits{})
                  .ok());
  std::vector<std::string> many;
  for (int i = 0; i < 2'001; ++i) {
    many.push_back(absl::StrCat("app_m", i));
  }
  EXPECT_THAT(ValidateHello(HelloDeclaring(many), IngestLimits{}).message(),
              HasSubstr("hello.metrics (agent 'web-1'): 2001 declared metrics, more than the "
                        "2000 allowed"));
  EXPECT_THAT(ValidateHello(HelloDeclaring({"app_ok", "host_load1"}), IngestLimits{}).message(),
              HasSubstr("hello.metrics[1].name (agent 'web-1'): 'host_load1' is a name of the "
                        "built-in schema"));
  EXPECT_THAT(ValidateHello(HelloDeclaring({"9lives"}), IngestLimits{}).message(),
              HasSubstr("hello.metrics[0].name (agent 'web-1'): metric name has a character"));
  EXPECT_THAT(ValidateHello(HelloDeclaring({"app_x", "app_x"}), IngestLimits{}).message(),
              HasSubstr("hello.metrics[1].name (agent 'web-1'): 'app_x' declared twice"));
  v1::Hello unit = HelloDeclaring({"app_x"});
  unit.mutable_metrics(0)->set_unit(std::string(33, 's'));
  EXPECT_THAT(ValidateHello(unit, IngestLimits{}).message(), HasSubstr("hello.metrics[0].unit"));
  v1::Hello help = HelloDeclaring({"app_x"});
  help.mutable_metrics(0)->set_help(std::string(513, 'h'));
  EXPECT_THAT(ValidateHello(help, IngestLimits{}).message(), HasSubstr("hello.metrics[0].help"));
  v1::Hello kind = HelloDeclaring({"app_x"});
  kind.mutable_metrics(0)->set_kind(static_cast<v1::MetricDeclaration::Kind>(7));
  EXPECT_THAT(ValidateHello(kind, IngestLimits{}).message(), HasSubstr("hello.metrics[0].kind"));
  v1::Hello collector = HelloDeclaring({"app_x"});
  collector.mutable_metrics(0)->set_collector("http_json");
  EXPECT_THAT(ValidateHello(collector, IngestLimits{}).message(),
              HasSubstr("hello.metrics[0].collector (agent 'web-1'): 'http_json' is not one of "
                        "the collectors the Hello lists"));
}

TEST(FleetDeclarationsTest, KeptPerAgentAndCountedWhileConnected) {
  FleetState fleet;
  v1::Hello web1 = HelloDeclaring({"app_requests_total", "app_latency_seconds"});
  web1.mutable_metrics(1)->set_kind(v1::MetricDeclaration::HISTOGRAM);
  v1::Hello web2 = HelloDeclaring({"app_requests_total"});
  web2.set_agent_id("web-2");
  ASSERT_TRUE(fleet.Connect(web1, "peer1", 1, kNow).ok());
  ASSERT_TRUE(fleet.Connect(web2, "peer2", 2, kNow).ok());
  std::vector<FleetState::Declared> all = fleet.ConnectedDeclarations();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].declaration.name(), "app_latency_seconds");
  EXPECT_EQ(all[0].agents, 1u);
  EXPECT_EQ(all[1].declaration.name(), "app_requests_total");
  EXPECT_EQ(all[1].agents, 2u);
  absl::StatusOr<v1::GetMetricsResponse> metrics = fleet.GetMetrics("web-1", "app_lat");
  ASSERT_TRUE(metrics.ok());
  ASSERT_EQ(metrics->declared_size(), 1);
  EXPECT_EQ(metrics->declared(0).kind(), v1::MetricDeclaration::HISTOGRAM);
  fleet.Disconnect("web-1", 1, kNow);
  all = fleet.ConnectedDeclarations();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].agents, 1u);
}

// What rate() rules may read: the gauges an agent declares as per-second rates, and only those.
TEST(FleetDeclarationsTest, DeclaredRatesAreTheAgentsRateGauges) {
  FleetState fleet;
  v1::Hello hello =
      HelloDeclaring({"app_requests_total", "app_queue_length", "app_latency_seconds"});
  hello.mutable_metrics(0)->set_per_second_rate(true);
  hello.mutable_metrics(2)->set_kind(v1::MetricDeclaration::HISTOGRAM);
  hello.mutable_metrics(2)->set_per_second_rate(true);  // a histogram is never a rate
  ASSERT_TRUE(fleet.Connect(hello, "peer1", 1, kNow).ok());
  EXPECT_THAT(fleet.DeclaredRates("web-1"), ::testing::ElementsAre("app_requests_total"));
  EXPECT_THAT(fleet.DeclaredRates("nobody"), ::testing::IsEmpty());
}

TEST(ValidateDiagnosticsTest, BoundsTablesRowsAndCells) {
  v1::Diagnostics d;
  v1::DiagnosticTable* t = d.add_tables();
  t->set_name("top_processes");
  for (int i = 0; i < 2'000; ++i) {
    t->add_rows()->add_cells("x");
  }
  EXPECT_THAT(ValidateDiagnostics(d, IngestLimits{}).message(), HasSubstr("2000 rows"));
  v1::CommandResult r;
  r.set_output_tail(std::string(1 << 20, 'x'));
  EXPECT_THAT(ValidateCommandResult(r, IngestLimits{}).message(), HasSubstr("output_tail"));
}

// The serialized listing (what ListAgents sends) parses to the rows ListAgents gives.
void ExpectListingMatches(const FleetState& fleet) {
  std::string bytes;
  fleet.AppendListing(&bytes);
  v1::ListAgentsResponse parsed;
  ASSERT_TRUE(parsed.ParseFromString(bytes));
  v1::ListAgentsResponse expected;
  for (v1::AgentInfo& info : fleet.ListAgents()) {
    *expected.add_agents() = std::move(info);
  }
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(parsed, expected))
      << "listed:\n" << parsed.DebugString() << "expected:\n" << expected.DebugString();
}

class FleetStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fleet_.Connect(MakeHello("web-1"), "ipv4:127.0.0.1:1", 1, kNow).ok());
  }
  absl::StatusOr<bool> Apply(const v1::TelemetryBatch& batch) {
    return fleet_.Apply("web-1", batch, dictionary_, kNow);
  }
  FleetState fleet_;
  std::vector<SeriesState*> dictionary_;
};

TEST_F(FleetStateTest, LabelsThatConcatenateAlikeAreTwoSeries) {
  v1::TelemetryBatch batch = Batch(1);
  Define(batch, 0, "host_disk_used_ratio", {{"ab", "c"}});
  Define(batch, 1, "host_disk_used_ratio", {{"a", "bc"}});
  v1::Snapshot* s = Snap(batch);
  Gauge(s, 0, 0.1);
  Gauge(s, 1, 0.9);
  ASSERT_TRUE(Apply(batch).ok());
  ASSERT_EQ(dictionary_.size(), 2u);
  EXPECT_NE(dictionary_[0], dictionary_[1]);
  absl::StatusOr<v1::GetMetricsResponse> metrics = fleet_.GetMetrics("web-1", "");
  ASSERT_TRUE(metrics.ok());
  EXPECT_EQ(metrics->metrics_size(), 2);
}

TEST_F(FleetStateTest, NonFiniteAndOutOfOrderValuesAreDroppedAndCounted) {
  v1::TelemetryBatch batch = Batch(1);
  Define(batch, 0, "host_load1");
  v1::Snapshot* s = Snap(batch);
  Gauge(s, 0, 2.0);
  Gauge(Snap(batch), 0, std::nan(""));
  Gauge(Snap(batch), 0, std::numeric_limits<double>::infinity());
  Gauge(Snap(batch, kNowMs - 10'000), 0, 7.0);  // older than the newest point
  ASSERT_TRUE(Apply(batch).ok());
  EXPECT_EQ(fleet_.dropped().non_finite, 2u);
  EXPECT_EQ(fleet_.dropped().out_of_order, 1u);
  EXPECT_EQ(dictionary_[0]->latest(), 2.0);
  EXPECT_EQ(dictionary_[0]->count(), 1u);
}

TEST_F(FleetStateTest, LostBatchesAccumulateOnTheAgentAndTheCounters) {
  ASSERT_TRUE(Apply(Batch(1)).ok());
  ASSERT_TRUE(Apply(Batch(4)).ok());  // 2 and 3 never came
  v1::TelemetryBatch reported = Batch(10);
  Drop(reported, 5, 8, 4);            // 9 neither
  ASSERT_TRUE(Apply(reported).ok());
  EXPECT_EQ(Apply(reported).value(), false);  // a resend of the same batch counts nothing
  EXPECT_EQ(fleet_.lost().sequence_gap, 3u);
  EXPECT_EQ(fleet_.lost().agent_dropped, 4u);
  EXPECT_EQ(fleet_.lost().corrupt, 0u);
  const std::vector<v1::AgentInfo> agents = fleet_.ListAgents();
  ASSERT_EQ(agents.size(), 1u);
  EXPECT_EQ(agents[0].lost_batches(), 7u);
  EXPECT_EQ(agents[0].last_sequence(), 10u);
  // The registry row carries it to the store and back after a restart.
  std::vector<v1::AgentInfo> dirty = fleet_.TakeDirty();
  ASSERT_FALSE(dirty.empty());
  EXPECT_EQ(dirty.back().lost_batches(), 7u);
  FleetState restarted;
  restarted.Restore(dirty);
  EXPECT_EQ(restarted.ListAgents()[0].lost_batches(), 7u);
}

TEST(RegistryFlushSpreadTest, GrowsWithTheFleetAndIsBounded) {
  EXPECT_EQ(RegistryFlushSpread(0), 1u);
  EXPECT_EQ(RegistryFlushSpread(2'000), 1u);
  EXPECT_EQ(RegistryFlushSpread(2'001), 2u);
  EXPECT_EQ(RegistryFlushSpread(10'000), 5u);
  EXPECT_EQ(RegistryFlushSpread(1'000'000), 5u);
}

// With a spread of 3, each flush stores a third of the agents whose only change is telemetry
// progress, each agent once in three flushes; a connection or disconnection is stored at the next
// flush whatever the turn, and a failed store is retried at the next one too.
TEST(FleetStateSpreadTest, ProgressWaitsForItsTurnRowChangesDoNot) {
  FleetState fleet;
  std::vector<std::vector<SeriesState*>> dictionaries(6);
  auto ids = [](const std::vector<v1::AgentInfo>& rows) {
    std::vector<std::string> out;
    for (const v1::AgentInfo& row : rows) out.push_back(row.agent_id());
    std::sort(out.begin(), out.end());
    return out;
  };
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(fleet.Connect(MakeHello(absl::StrCat("a", i)), "peer", i + 1, kNow).ok());
  }
  EXPECT_EQ(fleet.TakeDirty(0, 3).size(), 6u) << "connections are stored at once";
  uint64_t flush = 1;
  for (uint64_t sequence = 1; sequence <= 3; ++sequence) {
    for (int i = 0; i < 6; ++i) {
      ASSERT_TRUE(fleet.Apply(absl::StrCat("a", i), Batch(sequence), dictionaries[i], kNow).ok());
    }
    // Every flush is one turn: three of them store each agent once, two a flush.
    std::vector<std::string> stored;
    for (int turn = 0; turn < 3; ++turn, ++flush) {
      const std::vector<v1::AgentInfo> rows = fleet.TakeDirty(flush, 3);
      EXPECT_EQ(rows.size(), 2u) << "flush " << flush;
      for (const v1::AgentInfo& row : rows) {
        EXPECT_EQ(row.last_sequence(), sequence);
        stored.push_back(row.agent_id());
      }
    }
    std::sort(stored.begin(), stored.end());
    EXPECT_EQ(stored, (std::vector<std::string>{"a0", "a1", "a2", "a3", "a4", "a5"}));
  }
  // Progress of all six, then a0 disconnects: the next flush stores a0 whatever its turn, and
  // only the agents whose turn it is besides.
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(fleet.Apply(absl::StrCat("a", i), Batch(4), dictionaries[i], kNow).ok());
  }
  fleet.Disconnect("a0", 1, kNow);
  std::vector<v1::AgentInfo> rows = fleet.TakeDirty(flush + 1, 3);  // a0's turn is flush % 3 == 0
  std::vector<std::string> taken = ids(rows);
  EXPECT_EQ(taken.size(), 3u);
  EXPECT_TRUE(std::binary_search(taken.begin(), taken.end(), "a0"));
  // The store failed: the three are taken by the very next flush, not at their next turn (a3's
  // turn is that flush's too).
  fleet.MarkDirty(rows);
  EXPECT_EQ(ids(fleet.TakeDirty(flush + 2, 3)),
            (std::vector<std::string>{"a0", "a2", "a3", "a5"}));
  // Everything (spread 1, the way out) takes what is left.
  EXPECT_EQ(ids(fleet.TakeDirty(flush + 3, 1)), (std::vector<std::string>{"a1", "a4"}));
  EXPECT_TRUE(fleet.TakeDirty(flush + 4, 1).empty());
}

TEST_F(FleetStateTest, MemoryBudgetRefusesAndChangesNothing) {
  FleetState small(FleetState::Options{.limits = IngestLimits{.max_agent_bytes = 64 << 10}});
  ASSERT_TRUE(small.Connect(MakeHello("web-1"), "peer", 1, kNow).ok());
  std::vector<SeriesState*> dictionary;
  uint32_t id = 0;
  absl::Status refused;
  for (int round = 1; round < 100 && refused.ok(); ++round) {
    v1::TelemetryBatch batch = Batch(round);
    for (int i = 0; i < 10; ++i, ++id) {
      Define(batch, id, "host_disk_used_ratio",
             {{"mount", std::string(400, 'a' + i) + absl::StrCat(id)}});
    }
    absl::StatusOr<bool> applied = small.Apply("web-1", batch, dictionary, kNow);
    if (!applied.ok()) {
      refused = applied.status();
      id -= 10;
    }
  }
  EXPECT_TRUE(absl::IsResourceExhausted(refused)) << refused;
  EXPECT_THAT(refused.message(), HasSubstr("budget"));
  EXPECT_LE(small.AgentBytesForTest("web-1"), size_t{64 << 10});
  EXPECT_EQ(dictionary.size(), id) << "a refused batch added definitions";
}

// Histogram windows are counted as they are held: wide intervals fill the budget, the batch that
// would pass it is refused, and the count never exceeds it.
TEST_F(FleetStateTest, HistogramWindowsCountInTheMemoryBudget) {
  FleetState small(FleetState::Options{.limits = IngestLimits{.max_agent_bytes = 96 << 10}});
  ASSERT_TRUE(small.Connect(MakeHello("web-1"), "peer", 1, kNow).ok());
  std::vector<SeriesState*> dictionary;
  v1::TelemetryBatch definitions = Batch(0);
  for (uint32_t id = 0; id < 4; ++id) {
    Define(definitions, id, "nginx_request_duration_seconds", {{"endpoint", absl::StrCat(id)}});
  }
  ASSERT_TRUE(small.Apply("web-1", definitions, dictionary, kNow).ok());
  absl::Status refused;
  size_t last_bytes = 0;
  int round = 1;
  for (; round < 60 && refused.ok(); ++round) {
    v1::TelemetryBatch batch = Batch(round);
    v1::Snapshot* snapshot = Snap(batch, kNowMs - 60'000 + round * 1'000);
    for (uint32_t id = 0; id < 4; ++id) {
      v1::HistogramPoint* point = snapshot->add_histograms();
      point->set_series_id(id);
      point->mutable_histogram()->set_offset(-200);
      for (int b = 0; b < 400; ++b) {
        point->mutable_histogram()->add_counts(1000 + b);  // two bytes a bucket
      }
    }
    absl::StatusOr<bool> applied = small.Apply("web-1", batch, dictionary, kNow);
    if (!applied.ok()) {
      refused = applied.status();
      break;
    }
    EXPECT_GE(small.AgentBytesForTest("web-1"), last_bytes) << "round " << round;  // capacity
    last_bytes = small.AgentBytesForTest("web-1");
  }
  EXPECT_TRUE(absl::IsResourceExhausted(refused)) << refused;
  EXPECT_GT(round, 10) << "refused long before the budget was used";
  EXPECT_GT(last_bytes, size_t{48 << 10}) << "the windows were not counted";
  EXPECT_LE(small.AgentBytesForTest("web-1"), size_t{96 << 10});
  EXPECT_EQ(small.AgentBytesForTest("web-1"), last_bytes) << "a refused batch changed the count";
  EXPECT_EQ(dictionary[0]->histograms()->size(), static_cast<size_t>(round - 1));
}

// Rules with a 5-minute quantile window make histograms keep 5 minutes of intervals; `vigil
// metrics` still reads the last minute of them.
TEST_F(FleetStateTest, HistogramsKeepWhatTheLongestRuleWindowReads) {
  EXPECT_EQ(fleet_.histogram_window(), absl::Seconds(60));
  fleet_.KeepHistogramsFor(absl::Minutes(5));
  std::vector<SeriesState*> dictionary;
  v1::TelemetryBatch definitions = Batch(0);
  Define(definitions, 0, "nginx_request_duration_seconds");
  ASSERT_TRUE(fleet_.Apply("web-1", definitions, dictionary, kNow).ok());
  for (int round = 1; round <= 300; ++round) {  // one a second for 5 minutes, up to kNow
    v1::TelemetryBatch batch = Batch(round);
    LogHistogram h;
    h.Add(round <= 240 ? 10.0 : 0.01);  // slow for four minutes, fast in the last one
    v1::HistogramPoint* point = Snap(batch, kNowMs - 300'000 + round * 1'000)->add_histograms();
    point->set_series_id(0);
    h.ToProto(point->mutable_histogram());
    ASSERT_TRUE(fleet_.Apply("web-1", batch, dictionary, kNow).ok());
  }
  EXPECT_GE(dictionary[0]->histograms()->size(), 299u) << "five minutes of intervals kept";
  absl::StatusOr<v1::GetMetricsResponse> metrics = fleet_.GetMetrics("web-1", "nginx_");
  ASSERT_TRUE(metrics.ok() && metrics->metrics_size() == 1);
  EXPECT_EQ(metrics->metrics(0).window_count(), 60u) << "the view is the last minute";
  EXPECT_LT(metrics->metrics(0).p99(), 1.0);

  fleet_.KeepHistogramsFor(absl::Seconds(60));  // a reload to shorter windows lets go
  v1::TelemetryBatch batch = Batch(301);
  LogHistogram h;
  h.Add(0.01);
  v1::HistogramPoint* point = Snap(batch, kNowMs + 1'000)->add_histograms();
  point->set_series_id(0);
  h.ToProto(point->mutable_histogram());
  ASSERT_TRUE(fleet_.Apply("web-1", batch, dictionary, kNow + absl::Seconds(1)).ok());
  EXPECT_LE(dictionary[0]->histograms()->size(), 61u);
}

TEST_F(FleetStateTest, GoneAgentsAreEvictedAndLiveOnesKept) {
  v1::TelemetryBatch batch = Batch(1);
  Define(batch, 0, "host_load1");
  Gauge(Snap(batch), 0, 1);
  ASSERT_TRUE(Apply(batch).ok());
  EXPECT_GT(fleet_.AgentBytesForTest("web-1"), 0u);
  EXPECT_TRUE(fleet_.GoneSince(kNow + absl::Hours(2)).empty()) << "still connected";
  fleet_.Disconnect("web-1", 1, kNow);
  EXPECT_TRUE(fleet_.GoneSince(kNow - absl::Minutes(1)).empty()) << "not gone long enough";
  ASSERT_THAT(fleet_.GoneSince(kNow + absl::Hours(2)), ::testing::ElementsAre("web-1"));
  EXPECT_TRUE(fleet_.Evict("web-1", kNow + absl::Hours(2)));
  EXPECT_EQ(fleet_.AgentBytesForTest("web-1"), 0u);
  EXPECT_EQ(fleet_.GetMetrics("web-1", "")->metrics_size(), 0);
  EXPECT_EQ(fleet_.ListAgents().size(), 1u) << "the registry row stays";
}

TEST_F(FleetStateTest, AgentInfoShowsTheLatestCpuMemoryAndFullestDisk) {
  auto live = [this] {
    std::optional<v1::AgentInfo> info = fleet_.Info("web-1");
    EXPECT_TRUE(info.has_value());
    const std::vector<v1::AgentInfo> listed = fleet_.ListAgents();
    EXPECT_EQ(listed.size(), 1u);
    EXPECT_EQ(listed[0].disk_used_ratio(), info->disk_used_ratio());
    ExpectListingMatches(fleet_);
    return std::tuple(info->cpu_usage_ratio(), info->memory_used_ratio(),
                      info->disk_used_ratio());
  };
  EXPECT_EQ(live(), std::tuple(-1.0, -1.0, -1.0)) << "nothing known yet";
  v1::TelemetryBatch batch = Batch(1);
  Define(batch, 0, "host_load1");
  Define(batch, 1, "host_disk_used_ratio", {{"mount", "/"}});
  Define(batch, 2, "host_cpu_usage_ratio");
  Define(batch, 3, "host_disk_used_ratio", {{"mount", "/var"}});
  Define(batch, 4, "host_memory_used_ratio");
  v1::Snapshot* s = Snap(batch);
  Gauge(s, 0, 9.0);
  Gauge(s, 1, 0.4);
  Gauge(s, 2, 0.25);
  Gauge(s, 3, 0.85);
  ASSERT_TRUE(Apply(batch).ok());
  EXPECT_EQ(live(), std::tuple(0.25, -1.0, 0.85)) << "memory defined but never sampled";
  v1::TelemetryBatch next = Batch(2);
  v1::Snapshot* later = Snap(next, kNowMs + 1'000);
  Gauge(later, 2, 0.5);
  Gauge(later, 3, 0.1);
  Gauge(later, 4, 0.75);
  ASSERT_TRUE(Apply(next).ok());
  EXPECT_EQ(live(), std::tuple(0.5, 0.75, 0.4)) << "the fullest disk now";
  fleet_.Disconnect("web-1", 1, kNow);
  ASSERT_TRUE(fleet_.Evict("web-1", kNow + absl::Hours(2)));
  EXPECT_EQ(live(), std::tuple(-1.0, -1.0, -1.0)) << "its series are gone";
}

// Every column of every kind of row: connected with labels, collectors and actions; telemetry
// stored or not (the stored sequence when acknowledging so); lost batches; disconnected; restored
// from the store and never connected since; reconnected with other labels and another peer.
TEST(FleetListingTest, SerializedRowsAreTheRowsListAgentsGives) {
  FleetState fleet(FleetState::Options{.histogram_window = absl::Seconds(60),
                                       .max_series_per_agent = 10'000,
                                       .limits = IngestLimits{},
                                       .acknowledge_when_stored = true});
  ExpectListingMatches(fleet);  // empty
  v1::AgentInfo stored;
  stored.set_agent_id("db-1");
  stored.set_hostname("db-1.example");
  stored.set_first_seen_unix_ms(kNowMs - 86'400'000);
  stored.set_last_seen_unix_ms(kNowMs - 3'600'000);
  stored.set_last_sequence(41);
  stored.set_lost_batches(2);
  (*stored.mutable_labels())["role"] = "db";
  fleet.Restore({stored});
  ExpectListingMatches(fleet);

  v1::Hello hello = MakeHello("web-1");
  hello.add_collectors("host");
  hello.add_collectors("nginx");
  hello.add_actions()->set_name("reload_nginx");
  ASSERT_TRUE(fleet.Connect(hello, "ipv4:127.0.0.1:1", 1, kNow).ok());
  std::vector<SeriesState*> dictionary;
  v1::TelemetryBatch batch = Batch(1);
  Define(batch, 0, "host_cpu_usage_ratio");
  Gauge(Snap(batch), 0, 0.5);
  ASSERT_TRUE(fleet.Apply("web-1", batch, dictionary, kNow).ok());
  ASSERT_TRUE(fleet.Apply("web-1", Batch(5), dictionary, kNow).ok());  // 2..4 lost
  ExpectListingMatches(fleet);
  fleet.MarkStored(fleet.TakeDirty());
  ExpectListingMatches(fleet);

  fleet.Disconnect("web-1", 1, kNow + absl::Seconds(1));
  ExpectListingMatches(fleet);
  v1::Hello again = MakeHello("web-1");
  (*again.mutable_labels())["role"] = "canary";
  ASSERT_TRUE(fleet.Connect(again, "ipv4:127.0.0.1:2", 2, kNow + absl::Seconds(2)).ok());
  ExpectListingMatches(fleet);
  std::string bytes;
  fleet.AppendListing(&bytes);
  v1::ListAgentsResponse parsed;
  ASSERT_TRUE(parsed.ParseFromString(bytes));
  ASSERT_EQ(parsed.agents_size(), 2);
  EXPECT_EQ(parsed.agents(1).labels().at("role"), "canary");
  EXPECT_EQ(parsed.agents(1).peer(), "ipv4:127.0.0.1:2");
  EXPECT_EQ(parsed.agents(1).collectors_size(), 0) << "the new Hello named none";
  EXPECT_EQ(parsed.agents(1).cpu_usage_ratio(), 0.5);
  EXPECT_EQ(parsed.agents(0).last_sequence(), 41u);
}

TEST(HistogramBoundsTest, AddClampsAndFromProtoRefusesOutOfRange) {
  LogHistogram h;
  h.Add(1e300);
  h.Add(1e-300);
  h.Add(std::numeric_limits<double>::infinity());
  v1::Histogram proto;
  h.ToProto(&proto);
  EXPECT_TRUE(LogHistogram::CheckProto(proto).ok()) << LogHistogram::CheckProto(proto);
  EXPECT_EQ(h.count(), 2u);
  v1::Histogram hostile;
  hostile.set_offset(std::numeric_limits<int>::max());
  hostile.add_counts(1);
  LogHistogram back;
  EXPECT_FALSE(back.FromProto(hostile));
  EXPECT_TRUE(back.empty());
}

}  // namespace
}  // namespace vigil::controller
