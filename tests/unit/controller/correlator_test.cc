// The incremental probable cause, worst severity and stale-alert index of ActiveIncident against
// their definitions (the full scans), over random sequences of joins, state changes, severity
// changes and undos; and the journal: an undo leaves the incident exactly as it was.
#include "controller/incidents/correlator.h"

#include <gmock/gmock.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace vigil::controller {
namespace {

using ::testing::HasSubstr;

// Map fields in a fixed order, so equal messages give equal bytes.
std::string Bytes(const google::protobuf::Message& m) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    m.SerializeToCodedStream(&coded);
  }
  return out;
}

// Everything an undo must restore, as text.
std::string Snapshot(const ActiveIncident& a) {
  std::string out = Bytes(a.incident());
  absl::StrAppend(&out, "|", absl::ToUnixNanos(a.last_activity()));
  for (const auto& [id, ref] : a.alerts()) {
    absl::StrAppend(&out, "|", id, "=", Bytes(ref.alert), "/", absl::StrJoin(ref.diagnostics, ","));
  }
  absl::StrAppend(&out, "|hosts:", absl::StrJoin(a.hosts(), ","));
  for (const auto& [rule, host] : a.host_of_rule()) {
    absl::StrAppend(&out, "|rule:", rule, "=", host);
  }
  for (const auto& [name, host] : a.provider_host()) {
    absl::StrAppend(&out, "|provider:", name, "=", host);
  }
  for (const auto& [name, hosts] : a.dependents()) {
    absl::StrAppend(&out, "|dep:", name, "=", absl::StrJoin(hosts, ","));
  }
  return out;
}

std::vector<std::string> StaleByScan(const ActiveIncident& a, const std::string& key) {
  std::vector<std::string> ids;
  for (const auto& [id, ref] : a.alerts()) {
    if (ref.alert.state() == v1::STALE && AlertKey(ref.alert) == key) {
      ids.push_back(id);
    }
  }
  return ids;
}

// Alerts drawn from a small world, so names collide on purpose: an agent id that is also a
// service, a role equal to its service, fleet-wide alerts, hosts that depend on themselves.
class World {
 public:
  explicit World(uint32_t seed) : rng_(seed) {}

  v1::Alert NewAlert() {
    static const std::vector<std::string> kAgents = {"web-1", "web-2",    "db-1", "db-2",
                                                     "cache", "postgres", "",     ""};
    static const std::vector<std::string> kNames = {"",      "api",  "postgres", "redis",
                                                    "cache", "db-1", "web"};
    static const std::vector<std::string> kRules = {"HighCPU", "SlowQueries", "DiskFull"};
    v1::Alert a;
    a.set_id(absl::StrCat("a", next_id_++));
    a.set_rule(Pick(kRules));
    a.set_agent_id(Pick(kAgents));
    a.set_source(Pick<std::string>({"rules", "alertmanager"}));
    a.set_severity(static_cast<v1::Severity>(Uniform(0, 4)));
    a.set_state(v1::FIRING);
    a.set_fired_unix_ms(1'700'000'000'000 + Uniform(0, 6) * 1000);  // ties on purpose
    auto& labels = *a.mutable_labels();
    if (std::string s = Pick(kNames); !s.empty()) {
      labels["service"] = s;
    }
    if (std::string r = Pick(kNames); !r.empty()) {
      labels["role"] = r;
    }
    std::vector<std::string> deps;
    for (int i = Uniform(0, 3); i > 0; --i) {
      deps.push_back(Pick<std::string>({"api", "postgres", "redis", "cache", "db-1", "web-2",
                                        "web-1", " postgres ", "nothing"}));
    }
    if (!deps.empty()) {
      labels["depends_on"] = absl::StrJoin(deps, ",");
    }
    if (Uniform(0, 3) == 0) {
      labels["mount"] = absl::StrCat("/m", Uniform(0, 2));
    }
    return a;
  }

  // A later state of `a`: resolved, stale, firing again, another severity, another fired time.
  v1::Alert Change(v1::Alert a) {
    switch (Uniform(0, 4)) {
      case 0:
        a.set_state(v1::RESOLVED);
        break;
      case 1:
        a.set_state(v1::STALE);
        (*a.mutable_labels())["stale_reason"] = "its agent went away";
        break;
      case 2:
        a.set_state(v1::FIRING);
        a.mutable_labels()->erase("stale_reason");
        break;
      case 3:
        a.set_severity(static_cast<v1::Severity>(Uniform(0, 4)));
        break;
      default:
        a.set_fired_unix_ms(a.fired_unix_ms() + Uniform(-3, 3) * 1000);
        break;
    }
    return a;
  }

  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  template <typename T>
  T Pick(const std::vector<T>& from) {
    return from[static_cast<size_t>(Uniform(0, static_cast<int>(from.size()) - 1))];
  }

 private:
  std::mt19937 rng_;
  int next_id_ = 0;
};

void ExpectMatchesScan(const ActiveIncident& a, const std::string& where) {
  const ProbableCause incremental = a.FindProbableCause();
  const ProbableCause scanned = FindProbableCauseByScan(a);
  ASSERT_EQ(incremental.cause, scanned.cause) << where;
  ASSERT_EQ(incremental.reason, scanned.reason) << where;
  ASSERT_EQ(a.WorstSeverity(), WorstSeverityByScan(a)) << where;
  std::set<std::string> keys;
  for (const auto& [id, ref] : a.alerts()) {
    keys.insert(AlertKey(ref.alert));
  }
  for (const std::string& key : keys) {
    ASSERT_EQ(a.StaleAlertsWithKey(key), StaleByScan(a, key)) << where << " key " << key;
  }
}

TEST(CorrelatorTest, IncrementalCauseAndSeverityEqualTheScanOverRandomSequences) {
  for (uint32_t seed = 1; seed <= 40; ++seed) {
    World world(seed);
    ActiveIncident active;
    v1::Incident incident;
    incident.set_id("INC-0001");
    incident.set_severity(static_cast<v1::Severity>(world.Uniform(0, 4)));
    active.LoadIncident(incident);
    std::vector<v1::Alert> known;
    for (int step = 0; step < 150; ++step) {
      const std::string where = absl::StrCat("seed ", seed, " step ", step);
      const int op = world.Uniform(0, 9);
      if (op <= 4 || known.empty()) {  // a join
        v1::Alert a = world.NewAlert();
        active.AddMembers(HostOf(a), ComponentOf(a), a.rule());
        active.AddAlert(a, {"top_processes"});
        known.push_back(a);
      } else if (op <= 7) {  // a known alert changes
        v1::Alert& a =
            known[static_cast<size_t>(world.Uniform(0, static_cast<int>(known.size()) - 1))];
        a = world.Change(a);
        active.UpdateAlert(a);
      } else if (op == 8) {  // the same alert joins again (flapping): replaced and re-indexed
        v1::Alert a =
            known[static_cast<size_t>(world.Uniform(0, static_cast<int>(known.size()) - 1))];
        a.set_state(v1::FIRING);
        active.AddAlert(a, {});
      } else {  // people set the severity
        active.EditIncident().set_severity(static_cast<v1::Severity>(world.Uniform(1, 4)));
      }
      if (world.Uniform(0, 3) == 0) {
        active.SetSeverity(active.WorstSeverity());
      }
      ExpectMatchesScan(active, where);
      if (::testing::Test::HasFatalFailure()) {
        return;
      }
      if (world.Uniform(0, 10) == 0) {
        active.ForgetJournal();
      }
    }
  }
}

TEST(CorrelatorTest, UndoRestoresExactlyAndTheIndexFollows) {
  for (uint32_t seed = 100; seed < 140; ++seed) {
    World world(seed);
    ActiveIncident active;
    v1::Incident incident;
    incident.set_id("INC-0002");
    active.LoadIncident(incident);
    std::vector<v1::Alert> known;
    for (int round = 0; round < 12; ++round) {
      const std::string where = absl::StrCat("seed ", seed, " round ", round);
      // A unit of work: a few changes, then either kept or taken back.
      const std::string before = Snapshot(active);
      const ProbableCause cause_before = FindProbableCauseByScan(active);
      const ActiveIncident::Mark mark = active.JournalMark();
      // The index is consulted mid-unit, as Reassess does after each join.
      for (int i = world.Uniform(1, 6); i > 0; --i) {
        if (known.empty() || world.Uniform(0, 2) != 0) {
          v1::Alert a = world.NewAlert();
          active.SetLastActivity(absl::FromUnixSeconds(world.Uniform(0, 1000)));
          active.AddMembers(HostOf(a), ComponentOf(a), a.rule());
          active.AddAlert(a, {});
          known.push_back(a);
        } else {
          v1::Alert& a =
              known[static_cast<size_t>(world.Uniform(0, static_cast<int>(known.size()) - 1))];
          v1::Alert changed = world.Change(a);
          active.UpdateAlert(changed);
        }
        const ProbableCause cause = active.FindProbableCause();
        active.SetProbableCause(cause.cause, cause.reason);
        ExpectMatchesScan(active, where);
      }
      if (world.Uniform(0, 1) == 0) {
        active.UndoTo(mark);
        ASSERT_EQ(Snapshot(active), before) << where;
        ASSERT_EQ(active.FindProbableCause().reason, cause_before.reason) << where;
        // The alerts of the unit are gone from memory too.
        std::vector<v1::Alert> still;
        for (const v1::Alert& a : known) {
          if (auto it = active.alerts().find(a.id()); it != active.alerts().end()) {
            still.push_back(it->second.alert);
          }
        }
        known = std::move(still);
      } else {
        active.ForgetJournal();
      }
      ExpectMatchesScan(active, where);
      if (::testing::Test::HasFatalFailure()) {
        return;
      }
    }
  }
}

// The candidate index gives Correlate's answer and reason exactly, over random fleets of active
// incidents: joins, incidents opened, units taken back (their keys stay listed: a superset),
// incidents resolved (their keys go), and last activities far apart and equal (ties).
TEST(CorrelatorTest, CandidatesGiveTheScansAnswerOverRandomIncidents) {
  for (uint32_t seed = 200; seed < 260; ++seed) {
    World world(seed);
    std::map<std::string, ActiveIncident> active;
    CorrelationCandidates candidates;
    int next = 1;
    const absl::Duration window = absl::Seconds(30);
    size_t joined = 0;
    for (int step = 0; step < 200; ++step) {
      const std::string where = absl::StrCat("seed ", seed, " step ", step);
      const absl::Time now = absl::FromUnixSeconds(1000 + step);
      v1::Alert alert = world.NewAlert();
      std::string by_scan_reason;
      std::string by_index_reason;
      const std::string by_scan = Correlate(active, alert, now, window, &by_scan_reason);
      const std::string by_index =
          Correlate(active, candidates, alert, now, window, &by_index_reason);
      ASSERT_EQ(by_index, by_scan) << where;
      ASSERT_EQ(by_index_reason, by_scan_reason) << where;
      std::string id = by_scan;
      if (id.empty()) {
        id = absl::StrFormat("INC-%04d", next++);
        v1::Incident incident;
        incident.set_id(id);
        active[id].LoadIncident(incident);
      } else {
        ++joined;
      }
      ActiveIncident& incident = active.at(id);
      const ActiveIncident::Mark mark = incident.JournalMark();
      // Seconds apart or the same second: ties between incidents on purpose.
      incident.SetLastActivity(now - absl::Seconds(world.Uniform(0, 1) * world.Uniform(0, 40)));
      incident.AddMembers(HostOf(alert), ComponentOf(alert), alert.rule());
      incident.AddAlert(alert, {});
      candidates.Add(id, alert);
      const int fate = world.Uniform(0, 9);
      if (fate == 0) {
        incident.UndoTo(mark);  // the unit failed: its keys may stay listed
        if (incident.alerts().empty()) {
          active.erase(id);
        }
      } else if (fate == 1) {
        active.erase(id);  // resolved
        candidates.Remove(id);
      } else {
        incident.ForgetJournal();
      }
    }
    // Both answers were exercised: alerts joined incidents, and others opened new ones.
    EXPECT_GT(joined, 0u) << "seed " << seed;
    EXPECT_GT(next, 2) << "seed " << seed;
  }
}

// Unrelated incidents cost nothing: an alert from a new host with a new rule visits none of
// ten thousand incidents, and one sharing a host visits that incident alone.
TEST(CorrelatorTest, AnAlertVisitsOnlyTheIncidentsThatShareSomethingWithIt) {
  std::map<std::string, ActiveIncident> active;
  CorrelationCandidates candidates;
  for (int i = 0; i < 10'000; ++i) {
    v1::Alert alert;
    alert.set_id(absl::StrCat("a", i));
    alert.set_agent_id(absl::StrCat("host-", i));
    alert.set_rule(absl::StrCat("Rule", i));
    const std::string id = absl::StrFormat("INC-%05d", i);
    active[id].AddAlert(alert, {});
    active[id].SetLastActivity(absl::FromUnixSeconds(100));
    candidates.Add(id, alert);
  }
  v1::Alert stranger;
  stranger.set_agent_id("host-new");
  stranger.set_rule("RuleNew");
  EXPECT_TRUE(candidates.For(stranger).empty());
  std::string reason;
  EXPECT_EQ(Correlate(active, candidates, stranger, absl::FromUnixSeconds(101), absl::Minutes(1),
                      &reason),
            "");
  v1::Alert neighbour;
  neighbour.set_agent_id("host-4242");
  neighbour.set_rule("RuleNew");
  EXPECT_EQ(candidates.For(neighbour), std::set<std::string>({"INC-04242"}));
  EXPECT_EQ(Correlate(active, candidates, neighbour, absl::FromUnixSeconds(101), absl::Minutes(1),
                      &reason),
            "INC-04242");
  EXPECT_EQ(reason, "host-4242 is already on this incident");
  candidates.Remove("INC-04242");
  EXPECT_TRUE(candidates.For(neighbour).empty());
  EXPECT_EQ(candidates.incidents(), 9'999u);
}

TEST(CorrelatorTest, TheComponentMostDependedOnIsTheCause) {
  ActiveIncident active;
  v1::Incident incident;
  incident.set_id("INC-0003");
  active.LoadIncident(incident);
  auto alert = [](const std::string& id, const std::string& agent, const std::string& service,
                  const std::string& depends, int64_t fired) {
    v1::Alert a;
    a.set_id(id);
    a.set_rule("HighLatency");
    a.set_agent_id(agent);
    (*a.mutable_labels())["service"] = service;
    if (!depends.empty()) {
      (*a.mutable_labels())["depends_on"] = depends;
    }
    a.set_fired_unix_ms(fired);
    return a;
  };
  for (int i = 0; i < 200; ++i) {
    const v1::Alert a = alert(absl::StrCat("api-", i), absl::StrCat("api-", i), "rag-api",
                              "postgres", 1'700'000'000'000 + i);
    active.AddMembers(HostOf(a), ComponentOf(a), a.rule());
    active.AddAlert(a, {});
  }
  EXPECT_EQ(active.FindProbableCause().cause, "api-0/HighLatency");  // the earliest
  const v1::Alert db = alert("db", "db-1", "postgres", "", 1'700'000'009'000);
  active.AddMembers(HostOf(db), ComponentOf(db), db.rule());
  active.AddAlert(db, {});
  const ProbableCause cause = active.FindProbableCause();
  EXPECT_EQ(cause.cause, "db-1/HighLatency");
  EXPECT_THAT(cause.reason, HasSubstr("is depended on by 200 of the 201 hosts"));
  EXPECT_THAT(cause.reason, HasSubstr("api-0, api-1, api-10, api-100, api-101 and 195 more"));
  EXPECT_EQ(cause.reason, FindProbableCauseByScan(active).reason);
}

}  // namespace
}  // namespace vigil::controller
