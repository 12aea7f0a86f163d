// The incident manager with a simulated clock and a SQLite store in a temporary folder:
// correlation, the window, flapping, probable cause, diagnostics, people's updates, restarts.
#include "controller/incidents/incident_manager.h"

#include <gmock/gmock.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "common/clock.h"
#include "controller/incidents/incident_report.h"
#include "storage/sqlite/sqlite_store.h"
#include "tests/support/fault_store.h"
#include "tests/support/process.h"

namespace vigil::controller {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;
using ::testing::UnorderedElementsAre;

v1::Alert MakeAlert(const std::string& id, const std::string& rule, const std::string& agent,
                    std::map<std::string, std::string> labels, v1::Severity severity = v1::SEV3) {
  v1::Alert a;
  a.set_id(id);
  a.set_rule(rule);
  a.set_agent_id(agent);
  a.mutable_labels()->insert(labels.begin(), labels.end());
  a.set_severity(severity);
  a.set_state(v1::FIRING);
  a.set_source("rules");
  a.set_expr(rule + "_metric > 1");
  a.set_value(2);
  a.set_fired_unix_ms(1'700'000'000'000);
  return a;
}

// The export's JSON as a generic object; fails the test if it does not parse.
google::protobuf::Struct ParseJson(const std::string& json) {
  google::protobuf::Struct document;
  const auto parsed = google::protobuf::util::JsonStringToMessage(json, &document);
  EXPECT_TRUE(parsed.ok()) << parsed << "\n" << json;
  return document;
}

const std::map<std::string, std::string> kApi = {
    {"role", "api"}, {"service", "rag-api"}, {"depends_on", "postgres,redis"}};
const std::map<std::string, std::string> kDb = {{"role", "postgres"}, {"service", "postgres"}};
const std::map<std::string, std::string> kBatch = {{"role", "batch"}};

class IncidentManagerTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }
  void TearDown() override { Close(); }

  void Open() {
    auto store = storage::OpenSqliteStore(dir_.File("vigil.db"));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    faults_ = std::make_unique<testing::FaultInjectingStore>(store_.get());
    writer_ = std::make_unique<TimelineWriter>(faults_.get(), &clock_);
    manager_ = std::make_unique<IncidentManager>(
        writer_.get(), &clock_,
        [this](const std::string& agent, const v1::CollectDiagnostics& request) {
          requests_.push_back({agent, request});
          return agent != "gone-1";
        },
        IncidentManager::Options{.correlation_window = absl::Minutes(10)});
    ASSERT_TRUE(manager_->Start().ok());
    writer_->Start();
  }
  void Close() {
    if (writer_ != nullptr) {
      writer_->Stop();
    }
    manager_.reset();
    writer_.reset();
    faults_.reset();
    store_.reset();
  }

  void Fire(const v1::Alert& alert, std::vector<std::string> diagnostics = {}) {
    Rule rule;
    rule.diagnostics = std::move(diagnostics);
    manager_->OnAlertChange(alert, &rule);
    manager_->Flush();
    // Diagnostics requests go out after the commit; an unreachable agent is noted just after.
    manager_->Flush();
  }
  void Change(v1::Alert alert, v1::AlertState state) {
    alert.set_state(state);
    if (state == v1::RESOLVED) {
      alert.set_resolved_unix_ms(clock_.NowUnixMillis());
    }
    manager_->OnAlertChange(alert, nullptr);
    manager_->Flush();
  }

  std::vector<v1::Incident> Incidents(const std::string& state = "all") {
    return *store_->ListIncidents(state);
  }
  std::vector<std::string> Kinds(const std::string& id) {
    std::vector<std::string> kinds;
    const std::vector<v1::TimelineEvent> events = *store_->ListEvents(id, 0, 1000);
    for (const auto& e : events) {
      kinds.push_back(e.kind());
    }
    return kinds;
  }
  absl::StatusOr<v1::Incident> Update(const std::string& id,
                                      v1::UpdateIncidentRequest::Operation op,
                                      const std::string& actor, const std::string& text = "",
                                      const std::string& item = "") {
    v1::UpdateIncidentRequest request;
    request.set_incident_id(id);
    request.set_operation(op);
    request.set_text(text);
    request.set_checklist_item(item);
    absl::StatusOr<v1::Incident> result = absl::UnknownError("not called");
    manager_->Update(request, actor, [&](absl::StatusOr<v1::Incident> r) { result = r; });
    manager_->Flush();
    return result;
  }

  testing::TempDir dir_;
  SimulatedClock clock_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<testing::FaultInjectingStore> faults_;
  std::unique_ptr<TimelineWriter> writer_;
  std::unique_ptr<IncidentManager> manager_;
  std::vector<std::pair<std::string, v1::CollectDiagnostics>> requests_;
};

TEST_F(IncidentManagerTest, SameAlertOnOtherHostsAndDependenciesJoinOneIncident) {
  Fire(MakeAlert("a1", "HighAPILatency", "api-1", kApi, v1::SEV2), {"nginx_slow_endpoints"});
  clock_.Advance(absl::Seconds(2));
  Fire(MakeAlert("a2", "HighAPILatency", "api-2", kApi, v1::SEV2), {"nginx_slow_endpoints"});
  clock_.Advance(absl::Seconds(2));
  Fire(MakeAlert("d1", "SlowQueries", "db-1", kDb, v1::SEV1), {"pg_lock_waits"});
  ASSERT_THAT(Incidents(), SizeIs(1));
  const v1::Incident incident = Incidents()[0];
  EXPECT_EQ(incident.id(), "INC-0001");
  EXPECT_THAT(incident.agents(), ElementsAre("api-1", "api-2", "db-1"));
  EXPECT_THAT(incident.services(), UnorderedElementsAre("rag-api", "postgres"));
  EXPECT_EQ(incident.severity(), v1::SEV1);  // the worst alert
  // The database came last but both API hosts depend on it.
  EXPECT_EQ(incident.probable_cause(), "db-1/SlowQueries");
  EXPECT_THAT(incident.probable_cause_reason(), HasSubstr("depended on by 2 of the 3 hosts"));
  EXPECT_THAT(Kinds(incident.id()),
              ElementsAre("incident_opened", "alert_fired", "host_joined", "alert_fired",
                          "host_joined", "severity_changed", "probable_cause"));
  // Diagnostics: once per host, with the rule's tables.
  ASSERT_THAT(requests_, SizeIs(3));
  EXPECT_EQ(requests_[2].first, "db-1");
  EXPECT_THAT(requests_[2].second.names(), ElementsAre("pg_lock_waits"));
  EXPECT_EQ(requests_[2].second.incident_id(), "INC-0001");
}

TEST_F(IncidentManagerTest, EveryHostThatJoinedBringsItsOtherAlertsUntilTheIncidentIsResolved) {
  Fire(MakeAlert("a1", "HighAPILatency", "api-1", kApi));
  clock_.Advance(absl::Seconds(2));
  Fire(MakeAlert("a2", "HighAPILatency", "api-2", kApi));  // joins by its rule
  clock_.Advance(absl::Seconds(2));
  Fire(MakeAlert("c2", "HighCPU", "api-2", kBatch));  // joins by its host, which joined above
  ASSERT_THAT(Incidents(), SizeIs(1));
  // After a restart the incident's hosts are known again.
  Close();
  Open();
  clock_.Advance(absl::Seconds(2));
  Fire(MakeAlert("m2", "HighMemory", "api-2", kBatch));
  ASSERT_THAT(Incidents(), SizeIs(1));
  EXPECT_THAT(Incidents()[0].agents(), ElementsAre("api-1", "api-2"));
  // Resolved, it takes nothing more: the same host opens a new incident.
  ASSERT_TRUE(Update("INC-0001", v1::UpdateIncidentRequest::RESOLVE, "alice").ok());
  clock_.Advance(absl::Seconds(2));
  Fire(MakeAlert("d2", "DiskFull", "api-2", kBatch));
  ASSERT_THAT(Incidents(), SizeIs(2));
  EXPECT_EQ(Incidents()[0].id(), "INC-0002");
}

TEST_F(IncidentManagerTest, UnrelatedAlertsOpenTheirOwnIncidents) {
  Fire(MakeAlert("a1", "HighAPILatency", "api-1", kApi));
  Fire(MakeAlert("b1", "HighCPU", "batch-1", kBatch));
  EXPECT_THAT(Incidents(), SizeIs(2));
}

TEST_F(IncidentManagerTest, CorrelationWindowEnds) {
  Fire(MakeAlert("a1", "HighAPILatency", "api-1", kApi));
  clock_.Advance(absl::Minutes(11));
  Fire(MakeAlert("a2", "HighAPILatency", "api-2", kApi));
  EXPECT_THAT(Incidents(), SizeIs(2));
}

TEST_F(IncidentManagerTest, FlappingAlertRejoinsItsIncident) {
  v1::Alert first = MakeAlert("a1", "HighAPILatency", "api-1", kApi);
  Fire(first);
  for (int i = 0; i < 5; ++i) {
    clock_.Advance(absl::Minutes(3));
    Change(first, v1::RESOLVED);
    clock_.Advance(absl::Minutes(3));
    // The engine gives each episode a new id; it is still the same alert.
    first.set_id("a1-" + std::to_string(i));
    Fire(first);
  }
  ASSERT_THAT(Incidents(), SizeIs(1));
  EXPECT_THAT(Kinds("INC-0001"), SizeIs(1 + 5 * 2));
}

TEST_F(IncidentManagerTest, DiagnosticsLandOnTheTimelineOnlyFromTheAskedAgent) {
  Fire(MakeAlert("d1", "SlowQueries", "db-1", kDb), {"pg_active_queries"});
  ASSERT_THAT(requests_, SizeIs(1));
  v1::Diagnostics answer;
  answer.set_request_id(requests_[0].second.request_id());
  v1::DiagnosticTable* table = answer.add_tables();
  table->set_name("pg_active_queries");
  table->add_rows()->add_cells("SELECT pg_sleep(30)");
  manager_->OnDiagnostics("api-9", answer);  // someone else's answer: ignored
  manager_->OnDiagnostics("db-1", answer);
  manager_->OnDiagnostics("db-1", answer);  // a duplicate: ignored
  manager_->Flush();
  auto events = *store_->ListEvents("INC-0001", 0, 100);
  ASSERT_THAT(events, SizeIs(2));
  EXPECT_EQ(events[1].kind(), "diagnostics");
  EXPECT_EQ(events[1].actor(), "db-1");
  EXPECT_THAT(events[1].summary(), HasSubstr("pg_active_queries (1 rows)"));
  EXPECT_THAT(events[1].details_json(), HasSubstr("pg_sleep"));
}

TEST_F(IncidentManagerTest, RequestsNobodyAnsweredAreForgotten) {
  Fire(MakeAlert("d1", "SlowQueries", "db-1", kDb), {"pg_active_queries"});
  ASSERT_THAT(requests_, SizeIs(1));
  clock_.Advance(absl::Minutes(11));
  Fire(MakeAlert("b1", "HighCPU", "batch-1", kBatch), {"top_processes"});  // prunes
  v1::Diagnostics late;
  late.set_request_id(requests_[0].second.request_id());
  manager_->OnDiagnostics("db-1", late);
  manager_->Flush();
  EXPECT_THAT(Kinds("INC-0001"), ElementsAre("incident_opened"));
}

TEST_F(IncidentManagerTest, UnreachableAgentIsNotedNotIgnored) {
  Fire(MakeAlert("g1", "HighCPU", "gone-1", kBatch), {"top_processes"});
  auto events = *store_->ListEvents("INC-0001", 0, 100);
  ASSERT_THAT(events, SizeIs(2));
  EXPECT_THAT(events[1].summary(), HasSubstr("cannot ask gone-1 for diagnostics"));
}

TEST_F(IncidentManagerTest, StaleAndResolvedAlertsAreOnTheTimeline) {
  v1::Alert a = MakeAlert("d1", "SlowQueries", "db-1", kDb);
  Fire(a);
  (*a.mutable_labels())["stale_reason"] = "its agent disconnected";
  Change(a, v1::STALE);
  EXPECT_THAT(manager_->ActiveAlerts(), SizeIs(1));
  a.mutable_labels()->erase("stale_reason");
  Change(a, v1::FIRING);
  Change(a, v1::RESOLVED);
  EXPECT_THAT(manager_->ActiveAlerts(), SizeIs(0));
  EXPECT_THAT(Kinds("INC-0001"),
              ElementsAre("incident_opened", "alert_stale", "alert_fired", "alert_resolved"));
  auto events = *store_->ListEvents("INC-0001", 0, 100);
  EXPECT_THAT(events[1].summary(), HasSubstr("its agent disconnected"));
  EXPECT_THAT(events[2].summary(), HasSubstr("firing again"));
}

TEST_F(IncidentManagerTest, PendingAlertsAreListedButNeverOnATimeline) {
  v1::Alert a = MakeAlert("p1", "HighCPU", "batch-1", kBatch);
  a.set_state(v1::PENDING);
  Fire(a);
  EXPECT_THAT(manager_->ActiveAlerts(), SizeIs(1));
  Change(a, v1::RESOLVED);  // cleared before it fired
  EXPECT_THAT(manager_->ActiveAlerts(), SizeIs(0));
  EXPECT_THAT(Incidents(), SizeIs(0));
}

TEST_F(IncidentManagerTest, PeopleMoveTheIncidentThroughItsLifecycle) {
  using Op = v1::UpdateIncidentRequest;
  Fire(MakeAlert("a1", "HighAPILatency", "api-1", kApi));
  EXPECT_EQ(Update("INC-0404", Op::ACKNOWLEDGE, "alice").status().message(),
            "no incident 'INC-0404'");
  auto acked = Update("INC-0001", Op::ACKNOWLEDGE, "alice");
  ASSERT_TRUE(acked.ok()) << acked.status();
  EXPECT_EQ(acked->state(), v1::ACKNOWLEDGED);
  EXPECT_EQ(acked->acknowledged_by(), "alice");
  EXPECT_THAT(std::string(Update("INC-0001", Op::ACKNOWLEDGE, "bob").status().message()),
              HasSubstr("acknowledged by alice"));
  EXPECT_TRUE(absl::IsInvalidArgument(Update("INC-0001", Op::NOTE, "bob", "  ").status()));
  EXPECT_TRUE(Update("INC-0001", Op::NOTE, "bob", "looking at the upstream").ok());
  EXPECT_TRUE(Update("INC-0001", Op::MITIGATE, "bob", "traffic drained").ok());
  auto resolved = Update("INC-0001", Op::RESOLVE, "alice", "upstream fixed");
  ASSERT_TRUE(resolved.ok());
  EXPECT_EQ(resolved->state(), v1::INCIDENT_RESOLVED);
  EXPECT_TRUE(absl::IsFailedPrecondition(Update("INC-0001", Op::RESOLVE, "alice").status()));
  // The checklist stays open after resolution: it is the post-incident work.
  EXPECT_THAT(std::string(Update("INC-0001", Op::CHECK, "alice", "", "tea").status().message()),
              HasSubstr("root_cause_identified"));
  auto checked = Update("INC-0001", Op::CHECK, "alice", "", "root_cause_identified");
  ASSERT_TRUE(checked.ok());
  EXPECT_TRUE(checked->checklist(0).done());
  EXPECT_EQ(checked->checklist(0).done_by(), "alice");
  EXPECT_THAT(Kinds("INC-0001"), ElementsAre("incident_opened", "acknowledged", "note", "mitigated",
                                             "resolved", "checklist"));
  EXPECT_THAT(Incidents("active"), SizeIs(0));
  // A new alert after resolution opens a new incident.
  Fire(MakeAlert("a2", "HighAPILatency", "api-1", kApi));
  EXPECT_THAT(Incidents("active"), SizeIs(1));
  EXPECT_EQ(Incidents("active")[0].id(), "INC-0002");
  EXPECT_TRUE(store_->VerifyChain()->ok());
}

TEST_F(IncidentManagerTest, RestartKeepsIncidentsAndMarksTheirAlertsStale) {
  Fire(MakeAlert("a1", "HighAPILatency", "api-1", kApi));
  Close();
  Open();
  EXPECT_EQ(manager_->active_incidents(), 1u);
  ASSERT_THAT(manager_->ActiveAlerts(), SizeIs(1));
  EXPECT_EQ(manager_->ActiveAlerts()[0].state(), v1::STALE);
  // After the restart the engine sees the alert again under a new id: same incident, and its
  // answer settles the stale copy.
  v1::Alert again = MakeAlert("a1-new", "HighAPILatency", "api-1", kApi);
  Fire(again);
  Change(again, v1::RESOLVED);
  EXPECT_THAT(Incidents(), SizeIs(1));
  EXPECT_THAT(manager_->ActiveAlerts(), SizeIs(0));
  // Numbering carries on.
  Fire(MakeAlert("b1", "HighCPU", "batch-1", kBatch));
  EXPECT_EQ(Incidents()[0].id(), "INC-0002");
}

TEST_F(IncidentManagerTest, ExportHasEveryEventAndTheAuditResult) {
  Fire(MakeAlert("a1", "HighAPILatency", "api-1", kApi));
  ASSERT_TRUE(Update("INC-0001", v1::UpdateIncidentRequest::NOTE, "alice", "a | pipe").ok());
  const v1::VerifyAuditResponse audit = *store_->VerifyChain();
  auto markdown = ExportIncident(*store_, "INC-0001", "markdown", audit);
  ASSERT_TRUE(markdown.ok()) << markdown.status();
  EXPECT_THAT(*markdown, HasSubstr("# INC-0001"));
  EXPECT_THAT(*markdown, HasSubstr("a \\| pipe"));  // escaped, the table holds
  EXPECT_THAT(*markdown, HasSubstr("- [ ] root\\_cause\\_identified"));
  EXPECT_THAT(*markdown, HasSubstr("The audit chain verifies: 2 events checked"));
  // Still open: nothing to measure yet, and nothing signed covers it.
  EXPECT_THAT(*markdown, HasSubstr("| acknowledge | not yet | not yet | - |"));
  EXPECT_THAT(*markdown, HasSubstr("| resolve | not yet | not yet | - |"));
  EXPECT_THAT(*markdown, HasSubstr("No diagnostics were collected."));
  EXPECT_THAT(*markdown, HasSubstr("No actions were proposed."));
  EXPECT_THAT(*markdown, HasSubstr("| Covers this incident | **no**: no signed checkpoint"));
  auto json = ExportIncident(*store_, "INC-0001", "json", audit);
  ASSERT_TRUE(json.ok());
  EXPECT_THAT(*json, HasSubstr("\"probable_cause\""));
  const google::protobuf::Struct document = ParseJson(*json);
  const auto& times = document.fields().at("response_times").struct_value().fields();
  EXPECT_EQ(times.at("opened_unix_ms").number_value(), 1'700'000'000'000.0);
  EXPECT_TRUE(times.at("time_to_acknowledge_ms").has_null_value());
  EXPECT_TRUE(times.at("time_to_resolve_ms").has_null_value());
  EXPECT_FALSE(document.fields().at("coverage").struct_value().fields().at("covered").bool_value());
  EXPECT_THAT(ExportIncident(*store_, "INC-0001", "pdf", audit).status().message(),
              HasSubstr("'pdf' is not one of: markdown, json"));
  EXPECT_TRUE(absl::IsNotFound(ExportIncident(*store_, "INC-9", "json", audit).status()));
}

// Every line of a markdown table block ("| ... |" lines in a row) has as many cell separators
// (unescaped '|') as its header: no content ended a cell or a row early.
void ExpectTablesHold(const std::string& markdown) {
  size_t expected = 0;
  bool in_table = false;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(markdown, '\n')) {
    ++line_number;
    if (!absl::StartsWith(line, "|")) {
      in_table = false;
      continue;
    }
    size_t pipes = 0;
    for (size_t i = 0; i < line.size(); ++i) {
      if (line[i] == '\\') {
        ++i;  // an escaped character
      } else if (line[i] == '|') {
        ++pipes;
      }
    }
    if (!in_table) {
      expected = pipes;
      in_table = true;
    }
    EXPECT_EQ(pipes, expected) << "line " << line_number << ": " << line;
    EXPECT_TRUE(absl::EndsWith(line, " |") || absl::EndsWith(line, "|")) << line;
  }
}

TEST_F(IncidentManagerTest, ExportIsCompleteForAnAuditorAndHostileTextStaysInert) {
  using Op = v1::UpdateIncidentRequest;
  const std::string kHostile = "a | b\n<script>alert(1)</script> `x` *y* \x1b[2J [l](j:s)";
  Fire(MakeAlert("d1", "SlowQueries", "db-1", kDb), {"pg_active_queries", "pg_lock_waits"});
  ASSERT_THAT(requests_, SizeIs(1));
  // The diagnostics as collected: one table with a hostile query, one the agent could not read.
  v1::Diagnostics answer;
  answer.set_request_id(requests_[0].second.request_id());
  v1::DiagnosticTable* queries = answer.add_tables();
  queries->set_name("pg_active_queries");
  queries->add_columns("pid");
  queries->add_columns("query");
  queries->set_collected_unix_ms(1'700'000'001'000);
  v1::DiagnosticRow* row = queries->add_rows();
  row->add_cells("4242");
  row->add_cells(kHostile);
  row = queries->add_rows();
  row->add_cells("4243");
  row->add_cells("SELECT pg_sleep(30)");
  v1::DiagnosticTable* locks = answer.add_tables();
  locks->set_name("pg_lock_waits");
  locks->set_error("permission denied for pg_locks");
  manager_->OnDiagnostics("db-1", answer);
  manager_->Flush();

  clock_.Advance(absl::Seconds(125));
  ASSERT_TRUE(Update("INC-0001", Op::ACKNOWLEDGE, "alice").ok());
  ASSERT_TRUE(Update("INC-0001", Op::NOTE, "alice", kHostile).ok());

  // An approved action that ran on two hosts: one finished, one never answered. Written as the
  // remediation manager writes it: the proposal, and events whose summaries start with its id.
  const int64_t t0 = 1'700'000'000'000;
  v1::ActionProposal p;
  p.set_id("act-1");
  p.set_incident_id("INC-0001");
  p.set_action("restart_service");
  (*p.mutable_params())["unit"] = "postgresql|main";
  p.add_agents("db-1");
  p.add_agents("db-2");
  p.set_proposed_by("bob");
  p.add_approved_by("alice");
  p.set_state(v1::OUTCOME_UNKNOWN);
  p.set_proposed_unix_ms(t0 + 130'000);
  p.set_expires_unix_ms(t0 + 730'000);
  p.set_approvals_required(1);
  v1::ActionRun* finished = p.add_runs();
  finished->set_agent_id("db-1");
  finished->set_state("finished");
  finished->set_exit_code(0);
  finished->set_duration_ms(1500);
  finished->set_wave(1);
  finished->set_sent_unix_ms(t0 + 150'000);
  std::string output;
  for (int i = 1; i <= 30; ++i) {
    absl::StrAppend(&output, "line ", i, "\n");
  }
  absl::StrAppend(&output, "```\n# not a heading\n\x1b]0;pwned\x07\n");
  finished->set_output_tail(output);
  v1::ActionRun* lost = p.add_runs();
  lost->set_agent_id("db-2");
  lost->set_state("unknown");
  lost->set_wave(1);
  lost->set_sent_unix_ms(t0 + 150'000);
  lost->set_reason("no result from the agent within 5m; whether it ran is unknown");
  ASSERT_TRUE(store_->SaveProposal(p).ok());
  auto event = [](std::string kind, std::string actor, std::string summary, int64_t at) {
    v1::TimelineEvent e;
    e.set_incident_id("INC-0001");
    e.set_kind(std::move(kind));
    e.set_actor(std::move(actor));
    e.set_summary(std::move(summary));
    e.set_time_unix_ms(at);
    return e;
  };
  ASSERT_TRUE(store_
                  ->AppendEvent(event("action_proposed", "bob",
                                      "act-1: restart_service proposed by bob", t0 + 130'000))
                  .ok());
  auto approved =
      store_->AppendEvent(event("action_approved", "alice",
                                "act-1: restart_service approved by alice (1 of 1)", t0 + 140'000));
  ASSERT_TRUE(approved.ok());
  ASSERT_TRUE(
      store_
          ->AppendEvent(event("action_finished", "db-1",
                              "act-1: restart_service on db-1 finished: exit 0", t0 + 152'000))
          .ok());

  clock_.Advance(absl::Seconds(60));  // 185 s after opening
  ASSERT_TRUE(Update("INC-0001", Op::MITIGATE, "bob", "restarted").ok());
  clock_.Advance(absl::Seconds(900));  // 1085 s
  ASSERT_TRUE(Update("INC-0001", Op::RESOLVE, "alice").ok());
  clock_.Advance(absl::Seconds(60));
  ASSERT_TRUE(Update("INC-0001", Op::CHECK, "alice", "", "root_cause_identified").ok());

  // The caller's verification, with a checkpoint signed after the incident's last event.
  v1::VerifyAuditResponse audit = *store_->VerifyChain();
  ASSERT_TRUE(audit.ok());
  const std::vector<v1::TimelineEvent> events = *store_->ListEvents("INC-0001", 0, 1000);
  const uint64_t last = events.back().seq();
  audit.set_head_seq(last);
  audit.set_head_hash(events.back().hash());
  v1::AuditCheckpoint* checkpoint = audit.mutable_latest_checkpoint();
  checkpoint->set_seq(last);
  checkpoint->set_hash(events.back().hash());
  checkpoint->set_time_unix_ms(t0 + 1'200'000);
  checkpoint->set_key_id("0123456789abcdef");

  auto markdown = ExportIncident(*store_, "INC-0001", "markdown", audit);
  ASSERT_TRUE(markdown.ok()) << markdown.status();
  const std::string& md = *markdown;
  ExpectTablesHold(md);
  // Response times, in seconds from opened.
  EXPECT_THAT(md, HasSubstr("| acknowledge | 125 | 2m5s | 2023-11-14 22:15:25 UTC |"));
  EXPECT_THAT(md, HasSubstr("| mitigate | 185 | 3m5s |"));
  EXPECT_THAT(md, HasSubstr("| resolve | 1085 | 18m5s |"));
  // The diagnostics tables as collected, hostile cells inert.
  EXPECT_THAT(md, HasSubstr("### pg\\_active\\_queries from db-1"));
  EXPECT_THAT(md, HasSubstr("collected 2023-11-14 22:13:21 UTC, 2 rows."));
  EXPECT_THAT(md, HasSubstr("| pid | query |\n|---|---|\n"));
  const std::string kHostileShown =
      "a \\| b<br>\\<script\\>alert(1)\\</script\\> \\`x\\` \\*y\\* \\x1b\\[2J "
      "\\[l\\](j:s)";
  EXPECT_THAT(md, HasSubstr("| 4242 | " + kHostileShown + " |\n| 4243 | SELECT pg\\_sleep(30) |"));
  EXPECT_THAT(md, HasSubstr("### pg\\_lock\\_waits from db-1"));
  EXPECT_THAT(md, HasSubstr("### pg\\_lock\\_waits from db-1\n\nEvent #2, received 2023-11-14 "
                            "22:13:20 UTC.\n\nNot collected: permission denied for pg\\_locks\n"));
  // The hostile note on the timeline, escaped the same way.
  EXPECT_THAT(md, HasSubstr("| note | alice | " + kHostileShown + " |"));
  EXPECT_THAT(md, Not(HasSubstr("\x1b")));
  EXPECT_THAT(md, Not(HasSubstr("\x07")));
  EXPECT_THAT(md, Not(HasSubstr("<script>")));
  // The action: parameters, proposer, the approval with its time, and each agent's outcome.
  EXPECT_THAT(md, HasSubstr("### act-1: restart\\_service (outcome-unknown)"));
  EXPECT_THAT(md, HasSubstr("| Parameters | unit=postgresql\\|main |"));
  EXPECT_THAT(md, HasSubstr("| Agents | db-1, db-2 |"));
  EXPECT_THAT(md, HasSubstr("| Proposed | 2023-11-14 22:15:30 UTC by bob |"));
  EXPECT_THAT(md, HasSubstr(absl::StrCat("| approved | alice | 2023-11-14 22:15:40 UTC | #",
                                         approved->seq(), " |")));
  EXPECT_THAT(md, HasSubstr("| db-1 | 1 | finished | exit 0 | 1500 ms | 2023-11-14 22:15:50 UTC | "
                            "2023-11-14 22:15:52 UTC | - |"));
  EXPECT_THAT(md,
              HasSubstr("| db-2 | 1 | unknown | outcome unknown | - | 2023-11-14 22:15:50 UTC | "
                        "- | no result from the agent within 5m; whether it ran is unknown |"));
  // The output's tail: the last 20 lines, in a fence its backticks cannot close, controls shown.
  EXPECT_THAT(md, HasSubstr("Output of db-1 (its end: the last 20 lines, at most 4096 bytes, of "
                            "33 lines):\n\n````text\nline 14\n"));
  EXPECT_THAT(md, HasSubstr("line 30\n```\n# not a heading\n\\x1b]0;pwned\\x07\n````\n"));
  EXPECT_THAT(md, Not(HasSubstr("line 13\n")));
  // The checklist.
  EXPECT_THAT(md, HasSubstr("- [x] root\\_cause\\_identified (alice, 2023-11-14 22:32:25 UTC)"));
  EXPECT_THAT(md, HasSubstr("- [ ] metrics\\_back\\_to\\_normal\n"));
  // The audit: the head and checkpoint the caller passed, and whether the checkpoint covers.
  EXPECT_THAT(md,
              HasSubstr(absl::StrCat("| Chain head | #", last, " ", events.back().hash(), " |")));
  EXPECT_THAT(
      md, HasSubstr(absl::StrCat("| Latest signed checkpoint | #", last, " ", events.back().hash(),
                                 ", signed 2023-11-14 22:33:20 UTC with key "
                                 "0123456789abcdef |")));
  EXPECT_THAT(md,
              HasSubstr(absl::StrCat("| Covers this incident | yes: checkpoint #", last,
                                     " is at or after the incident's last event #", last, " |")));

  auto json = ExportIncident(*store_, "INC-0001", "json", audit);
  ASSERT_TRUE(json.ok()) << json.status();
  const google::protobuf::Struct document = ParseJson(*json);
  const auto& fields = document.fields();
  EXPECT_EQ(fields.at("export_version").number_value(), 2);
  const auto& times = fields.at("response_times").struct_value().fields();
  EXPECT_EQ(times.at("time_to_acknowledge_ms").number_value(), 125'000);
  EXPECT_EQ(times.at("time_to_mitigate_ms").number_value(), 185'000);
  EXPECT_EQ(times.at("time_to_resolve_ms").number_value(), 1'085'000);
  const auto& diagnostics = fields.at("diagnostics").list_value();
  ASSERT_EQ(diagnostics.values_size(), 1);
  const auto& entry = diagnostics.values(0).struct_value().fields();
  EXPECT_EQ(entry.at("agent_id").string_value(), "db-1");
  const auto& table =
      entry.at("diagnostics").struct_value().fields().at("tables").list_value().values(0);
  EXPECT_EQ(table.struct_value().fields().at("name").string_value(), "pg_active_queries");
  EXPECT_EQ(table.struct_value()
                .fields()
                .at("rows")
                .list_value()
                .values(0)
                .struct_value()
                .fields()
                .at("cells")
                .list_value()
                .values(1)
                .string_value(),
            kHostile);  // as collected, byte for byte
  const auto& action = fields.at("actions").list_value().values(0).struct_value().fields();
  EXPECT_EQ(action.at("id").string_value(), "act-1");
  const auto& review = action.at("reviews").list_value().values(0).struct_value().fields();
  EXPECT_EQ(review.at("decision").string_value(), "approved");
  EXPECT_EQ(review.at("by").string_value(), "alice");
  EXPECT_EQ(review.at("time_unix_ms").number_value(), t0 + 140'000);
  const auto& outcomes = action.at("outcomes").list_value();
  ASSERT_EQ(outcomes.values_size(), 2);
  const auto& ran = outcomes.values(0).struct_value().fields();
  EXPECT_EQ(ran.at("outcome").string_value(), "exit 0");
  EXPECT_EQ(ran.at("exit_code").number_value(), 0);
  EXPECT_EQ(ran.at("result_unix_ms").number_value(), t0 + 152'000);
  EXPECT_TRUE(ran.at("output_tail_truncated").bool_value());
  EXPECT_TRUE(absl::StartsWith(ran.at("output_tail").string_value(), "line 14\n"));
  const auto& unknown = outcomes.values(1).struct_value().fields();
  EXPECT_EQ(unknown.at("outcome").string_value(), "outcome unknown");
  EXPECT_TRUE(unknown.at("exit_code").has_null_value());
  const auto& checklist = fields.at("checklist").list_value();
  ASSERT_EQ(checklist.values_size(), 5);
  EXPECT_EQ(checklist.values(0).struct_value().fields().at("done_by").string_value(), "alice");
  // Every field is printed, defaults too: an item not done says so.
  ASSERT_TRUE(checklist.values(1).struct_value().fields().contains("done"));
  EXPECT_FALSE(checklist.values(1).struct_value().fields().at("done").bool_value());
  const auto& signed_checkpoint =
      fields.at("audit").struct_value().fields().at("latest_checkpoint").struct_value().fields();
  EXPECT_EQ(signed_checkpoint.at("key_id").string_value(), "0123456789abcdef");
  const auto& coverage = fields.at("coverage").struct_value().fields();
  EXPECT_EQ(coverage.at("last_event_seq").number_value(), last);
  EXPECT_TRUE(coverage.at("covered").bool_value());

  // A checkpoint signed before the incident's last event does not cover it.
  checkpoint->set_seq(last - 1);
  markdown = ExportIncident(*store_, "INC-0001", "markdown", audit);
  ASSERT_TRUE(markdown.ok());
  EXPECT_THAT(*markdown, HasSubstr(absl::StrCat("| Covers this incident | **no**: the incident's "
                                                "last event #",
                                                last, " is after checkpoint #", last - 1, " |")));
  // A chain that does not verify says so, and its checkpoint is not taken on trust.
  audit.set_ok(false);
  audit.set_first_bad_seq(2);
  audit.set_problem("event 2 was changed | `x`");
  markdown = ExportIncident(*store_, "INC-0001", "markdown", audit);
  ASSERT_TRUE(markdown.ok());
  EXPECT_THAT(*markdown, HasSubstr("**The audit chain does NOT verify**: event #2: event 2 was "
                                   "changed \\| \\`x\\`"));
  EXPECT_THAT(*markdown, HasSubstr("(not verified: the chain does not verify)"));
  json = ExportIncident(*store_, "INC-0001", "json", audit);
  ASSERT_TRUE(json.ok());
  EXPECT_FALSE(
      ParseJson(*json).fields().at("coverage").struct_value().fields().at("covered").bool_value());
}

TEST_F(IncidentManagerTest, ExportedOutputIsCutToFourKibOnACharacter) {
  Fire(MakeAlert("a1", "HighAPILatency", "api-1", kApi));
  v1::ActionProposal p;
  p.set_id("act-9");
  p.set_incident_id("INC-0001");
  p.set_action("reload_nginx");
  p.add_agents("api-1");
  p.set_state(v1::SUCCEEDED);
  v1::ActionRun* run = p.add_runs();
  run->set_agent_id("api-1");
  run->set_state("finished");
  std::string euros;
  for (int i = 0; i < 5000; ++i) {
    euros += "\u20ac";  // three bytes each: 4096 bytes from the end falls inside one
  }
  run->set_output_tail(euros + "\n");
  ASSERT_TRUE(store_->SaveProposal(p).ok());
  const v1::VerifyAuditResponse audit = *store_->VerifyChain();

  auto json = ExportIncident(*store_, "INC-0001", "json", audit);
  ASSERT_TRUE(json.ok()) << json.status();
  const google::protobuf::Struct document = ParseJson(*json);
  const auto& outcome = document.fields()
                            .at("actions")
                            .list_value()
                            .values(0)
                            .struct_value()
                            .fields()
                            .at("outcomes")
                            .list_value()
                            .values(0)
                            .struct_value()
                            .fields();
  const std::string tail = outcome.at("output_tail").string_value();
  EXPECT_EQ(tail.size(), 4095u);
  EXPECT_EQ(tail, euros.substr(euros.size() - 4095));
  EXPECT_TRUE(outcome.at("output_tail_truncated").bool_value());
  EXPECT_EQ(outcome.at("outcome").string_value(), "exit 0");

  auto markdown = ExportIncident(*store_, "INC-0001", "markdown", audit);
  ASSERT_TRUE(markdown.ok());
  EXPECT_THAT(*markdown, HasSubstr("Output of api-1 (its end: the last 20 lines, at most 4096 "
                                   "bytes, of 1 lines):\n\n```text\n" +
                                   tail + "\n```\n"));
  EXPECT_THAT(*markdown, HasSubstr("| Approvals required | 0 |"));
  EXPECT_THAT(*markdown, HasSubstr("Nobody approved or rejected it."));
}

}  // namespace
}  // namespace vigil::controller

namespace vigil::controller {
namespace {

TEST_F(IncidentManagerTest, AFailedWriteChangesNothingAndPeopleAreTold) {
  Fire(MakeAlert("a1", "HighCPU", "batch-1", kBatch));
  faults_->FailWrites();
  auto acked = Update("INC-0001", v1::UpdateIncidentRequest::ACKNOWLEDGE, "alice");
  EXPECT_EQ(acked.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(acked.status().message()), HasSubstr("disk is full"));
  faults_->Heal();
  // Nothing changed in memory: the incident can still be acknowledged, and the stored incident
  // and its timeline agree.
  acked = Update("INC-0001", v1::UpdateIncidentRequest::ACKNOWLEDGE, "alice");
  ASSERT_TRUE(acked.ok()) << acked.status();
  EXPECT_EQ(Incidents()[0].state(), v1::ACKNOWLEDGED);
  EXPECT_THAT(Kinds("INC-0001"), ElementsAre("incident_opened", "acknowledged"));
  EXPECT_TRUE(store_->VerifyChain()->ok());
}

TEST_F(IncidentManagerTest, AlertsWaitInOrderWhileTheDiskIsFullAndIdsAreNeverReused) {
  faults_->FailWrites();
  Fire(MakeAlert("a1", "HighCPU", "batch-1", kBatch));
  Fire(MakeAlert("b1", "DiskFull", "db-1", kDb));
  Change(MakeAlert("a1", "HighCPU", "batch-1", kBatch), v1::RESOLVED);
  EXPECT_THAT(Incidents(), IsEmpty());
  EXPECT_EQ(manager_->active_incidents(), 0u);
  EXPECT_EQ(manager_->alert_backlog(), 3u);
  EXPECT_THAT(manager_->ActiveAlerts(), IsEmpty());  // nothing shown that is not stored
  manager_->Tick();  // still full: they keep waiting
  manager_->Flush();
  manager_->Flush();
  EXPECT_EQ(manager_->alert_backlog(), 3u);

  faults_->Heal();
  manager_->Tick();
  manager_->Flush();
  manager_->Flush();
  EXPECT_EQ(manager_->alert_backlog(), 0u);
  // In order: a1 opened INC-0001, b1 INC-0002, then a1 resolved on INC-0001.
  std::vector<v1::Incident> incidents = Incidents();
  ASSERT_THAT(incidents, SizeIs(2));
  EXPECT_THAT(Kinds("INC-0001"), ElementsAre("incident_opened", "alert_resolved"));
  EXPECT_THAT(Kinds("INC-0002"), ElementsAre("incident_opened"));
  EXPECT_TRUE(store_->VerifyChain()->ok());
}

TEST_F(IncidentManagerTest, ExternalAlertsSayWhetherTheyAreStored) {
  v1::Alert alert = MakeAlert("am-1", "NodeDown", "", kBatch);
  alert.set_source("alertmanager");
  absl::Status stored = absl::UnknownError("not called");
  faults_->FailWrites();
  manager_->OnExternalAlerts({alert}, [&](absl::Status s) { stored = s; });
  manager_->Flush();
  EXPECT_EQ(stored.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(Incidents(), IsEmpty());
  faults_->Heal();
  manager_->OnExternalAlerts({alert}, [&](absl::Status s) { stored = s; });
  manager_->Flush();
  EXPECT_TRUE(stored.ok()) << stored;
  ASSERT_THAT(Incidents(), SizeIs(1));
  EXPECT_EQ(Incidents()[0].id(), "INC-0001");
}

TEST_F(IncidentManagerTest, PendingAlertsAreStoredSoTheirTimersOutliveARestart) {
  v1::Alert pending = MakeAlert("p1", "HighCPU", "batch-1", kBatch);
  pending.set_state(v1::PENDING);
  pending.set_fired_unix_ms(0);
  pending.set_active_since_unix_ms(1'700'000'000'000);
  manager_->OnAlertChange(pending, nullptr);
  manager_->Flush();
  auto stored = *store_->ListAlerts(false);
  ASSERT_THAT(stored, SizeIs(1));
  EXPECT_EQ(stored[0].state(), v1::PENDING);
  Close();
  Open();
  ASSERT_THAT(manager_->ActiveAlerts(), SizeIs(1));
  EXPECT_EQ(manager_->ActiveAlerts()[0].state(), v1::PENDING);
  // It cleared before firing: stored as resolved, never on a timeline.
  Change(pending, v1::RESOLVED);
  EXPECT_THAT(*store_->ListAlerts(false), IsEmpty());
  EXPECT_THAT(Incidents(), IsEmpty());
}

TEST_F(IncidentManagerTest, AnIncidentResolvedEarlierInABatchStaysResolved) {
  v1::Alert a = MakeAlert("a1", "HighCPU", "batch-1", kBatch);
  Fire(a);
  // Hold the writer so the resolution and the alert's end land in one batch.
  absl::Notification release;
  writer_->Submit([&](Transaction&) {
    release.WaitForNotification();
    return absl::OkStatus();
  });
  v1::UpdateIncidentRequest request;
  request.set_incident_id("INC-0001");
  request.set_operation(v1::UpdateIncidentRequest::RESOLVE);
  absl::StatusOr<v1::Incident> resolved = absl::UnknownError("not called");
  manager_->Update(request, "alice", [&](absl::StatusOr<v1::Incident> r) { resolved = r; });
  a.set_state(v1::RESOLVED);
  manager_->OnAlertChange(a, nullptr);
  release.Notify();
  manager_->Flush();
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_EQ(writer_->stats().commits, 2u);  // the opening, then the held batch
  ASSERT_THAT(Incidents(), SizeIs(1));
  EXPECT_EQ(Incidents()[0].state(), v1::INCIDENT_RESOLVED);
  EXPECT_THAT(Kinds("INC-0001"), ElementsAre("incident_opened", "resolved", "alert_resolved"));
  EXPECT_EQ(manager_->active_incidents(), 0u);
}

TEST_F(IncidentManagerTest, JoinsOfAFailedBatchAreTakenBackAndRedoneAlone) {
  Fire(MakeAlert("d1", "SlowQueries", "db-1", kDb, v1::SEV3));
  absl::Notification release;
  writer_->Submit([&](Transaction&) {
    release.WaitForNotification();
    return absl::OkStatus();
  });
  Rule rule;
  for (int i = 1; i <= 3; ++i) {
    manager_->OnAlertChange(MakeAlert(absl::StrCat("a", i), "HighAPILatency",
                                      absl::StrCat("api-", i), kApi,
                                      i == 2 ? v1::SEV1 : v1::SEV2),
                            &rule);
  }
  faults_->FailNext(1);  // the held batch fails as a whole; alone, each unit goes through
  release.Notify();
  manager_->Flush();
  ASSERT_THAT(Incidents(), SizeIs(1));
  const v1::Incident incident = Incidents()[0];
  EXPECT_THAT(incident.agents(), ElementsAre("db-1", "api-1", "api-2", "api-3"));
  EXPECT_EQ(incident.severity(), v1::SEV1);
  EXPECT_EQ(incident.probable_cause(), "db-1/SlowQueries");
  EXPECT_THAT(incident.probable_cause_reason(), HasSubstr("depended on by 3 of the 4 hosts"));
  EXPECT_THAT(Kinds("INC-0001"),
              ElementsAre("incident_opened", "alert_fired", "host_joined", "severity_changed",
                          "alert_fired", "host_joined", "severity_changed", "alert_fired",
                          "host_joined"));
  EXPECT_EQ(faults_->failed_commits(), 1u);
  EXPECT_TRUE(store_->VerifyChain()->ok());
}

}  // namespace
}  // namespace vigil::controller
