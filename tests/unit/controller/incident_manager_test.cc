// The incident manager with a simulated clock and a SQLite store in a temporary folder:
// correlation, the window, flapping, probable cause, diagnostics, people's updates, restarts.
#include "controller/incidents/incident_manager.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

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
using ::testing::SizeIs;
using ::testing::IsEmpty;
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
  auto markdown = ExportIncident(*store_, "INC-0001", "markdown");
  ASSERT_TRUE(markdown.ok()) << markdown.status();
  EXPECT_THAT(*markdown, HasSubstr("# INC-0001"));
  EXPECT_THAT(*markdown, HasSubstr("a \\| pipe"));  // escaped, the table holds
  EXPECT_THAT(*markdown, HasSubstr("- [ ] root_cause_identified"));
  EXPECT_THAT(*markdown, HasSubstr("The audit chain verifies: 2 events checked"));
  auto json = ExportIncident(*store_, "INC-0001", "json");
  ASSERT_TRUE(json.ok());
  EXPECT_THAT(*json, HasSubstr("\"probable_cause\""));
  EXPECT_THAT(ExportIncident(*store_, "INC-0001", "pdf").status().message(),
              HasSubstr("'pdf' is not one of: markdown, json"));
  EXPECT_TRUE(absl::IsNotFound(ExportIncident(*store_, "INC-9", "json").status()));
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
