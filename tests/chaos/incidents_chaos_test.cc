// Incidents under kills: Alertmanager notifications (a 2xx answer acknowledges them) and people's
// updates (`vigil incident ack|note`, exit 0 acknowledges them) while the controller is SIGKILLed
// and restarted at points drawn from the seed. Afterwards every acknowledged alert and update is
// on a timeline, no incident id was ever given to two incidents, and `vigil audit verify` passes.
#include <gtest/gtest.h>

#include <iterator>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/http/http_client.h"
#include "google/protobuf/util/json_util.h"
#include "tests/chaos/chaos_fixture.h"

namespace vigil::chaos {
namespace {

using testing::CommandResult;

TEST_F(ChaosTest, IncidentsUnderKillsKeepEveryAcknowledgedEvent) {
  const std::string admin = AddUser("chaos", "admin");
  const std::string webhook = AddUser("alertmanager", "responder");
  ControllerOptions options = LoopbackController();
  const uint16_t http_port = testing::FreeLoopbackPort();
  options.http_listen = absl::StrCat("127.0.0.1:", http_port);
  ChaosController controller(options);
  ASSERT_TRUE(controller.Start(admin)) << controller.Output();

  http::HttpClientOptions post;
  post.connect_timeout = absl::Seconds(1);
  post.timeout = absl::Seconds(3);
  post.headers = {{"Authorization", "Bearer " + webhook}};
  const std::string url = absl::StrCat("http://127.0.0.1:", http_port, "/api/v1/alertmanager");

  // What the controller acknowledged, and every identity it ever showed for an incident id.
  std::set<std::string> acked_alerts;                      // chaos_id labels
  std::vector<std::pair<std::string, std::string>> acked_notes;  // incident, text
  std::set<std::string> acked_acks;                        // incidents
  std::map<std::string, std::string> identity;             // id -> "rule@opened"
  std::map<std::string, std::string> incident_of_rule;
  std::vector<std::string> violations;

  auto learn = [&] {
    CommandResult r = controller.Cli(admin, {"incidents", "--state=all", "-o", "json"});
    v1::ListIncidentsResponse list;
    if (r.exit_code != 0 ||
        !google::protobuf::util::JsonStringToMessage(r.stdout_text, &list).ok()) {
      return;
    }
    for (const v1::Incident& i : list.incidents()) {
      if (i.alert_rules().empty()) {
        continue;
      }
      const std::string who = absl::StrCat(i.alert_rules(0), "@", i.opened_unix_ms());
      auto [it, fresh] = identity.emplace(i.id(), who);
      if (!fresh && it->second != who) {
        violations.push_back(absl::StrCat("incident id ", i.id(), " was given to two incidents: ",
                                          it->second, ", then ", who));
        it->second = who;
      }
      incident_of_rule.emplace(i.alert_rules(0), i.id());
    }
  };

  const std::vector<Fault> faults = DrawFaults(rng_, 3, 6, 0, absl::Seconds(4), false);
  int alerts = 0;
  ControllerFaultThread chaos(controller, admin, faults);
  {
    while (!chaos.done()) {
      const int op = rng_.Int(0, 9);
      if (op < 5 || identity.empty()) {
        ++alerts;
        const std::string chaos_id = absl::StrCat("a", alerts, "-", ChaosSeed());
        const std::string body = absl::StrCat(
            R"({"version":"4","status":"firing","alerts":[{"status":"firing","labels":{)",
            R"("alertname":"ChaosAlert)", alerts, R"(","severity":"critical",)",
            R"("instance":"host-)", alerts, R"(:9100","chaos_id":")", chaos_id, R"("},)",
            R"("annotations":{"summary":"chaos alert )", alerts, R"("},"startsAt":")",
            absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::Now(), absl::UTCTimeZone()), R"("}]})");
        auto answer = http::HttpPost(url, body, "application/json", post);
        if (answer.ok() && answer->status / 100 == 2) {
          acked_alerts.insert(chaos_id);
        }
      } else {
        auto it = identity.begin();
        std::advance(it, rng_.Int(0, static_cast<int>(identity.size()) - 1));
        const std::string id = it->first;
        if (op < 8) {
          const std::string text = absl::StrCat("chaos-note-", alerts, "-", rng_.Int(0, 1 << 30));
          if (controller.Cli(admin, {"incident", "note", id, text}).exit_code == 0) {
            acked_notes.emplace_back(id, text);
          }
        } else if (acked_acks.count(id) == 0) {
          if (controller.Cli(admin, {"incident", "ack", id}).exit_code == 0) {
            acked_acks.insert(id);
          }
        }
      }
      learn();
      absl::SleepFor(rng_.Between(absl::Milliseconds(50), absl::Milliseconds(250)));
    }
    ASSERT_FALSE(chaos.failed()) << "the controller did not come back: " << controller.Output();
    Report("kills", chaos.kills());
  }

  // Calm: the controller answers; read every incident once.
  ASSERT_TRUE(testing::WaitUntil(
      [&] { return controller.Cli(admin, {"agents"}).exit_code == 0; }, absl::Seconds(20)));
  learn();
  std::map<std::string, v1::GetIncidentResponse> shown;
  for (const auto& [id, who] : identity) {
    CommandResult r = controller.Cli(admin, {"incident", "show", id, "-o", "json"});
    v1::GetIncidentResponse response;
    if (r.exit_code != 0 ||
        !google::protobuf::util::JsonStringToMessage(r.stdout_text, &response).ok()) {
      violations.push_back(absl::StrCat("incident ", id, " (", who, "), seen during the run, is "
                                        "gone: `incident show` says: ", r.output));
      continue;
    }
    shown[id] = response;
  }
  // Alerts: an event carrying the alert's chaos_id label.
  int alerts_found = 0;
  for (const std::string& chaos_id : acked_alerts) {
    bool found = false;
    for (const auto& [id, incident] : shown) {
      for (const v1::TimelineEvent& e : incident.timeline()) {
        // The alert that opens an incident is recorded as incident_opened, later ones as
        // alert_fired; both carry the alert (with its labels) in details_json.
        found = found || ((e.kind() == "alert_fired" || e.kind() == "incident_opened") &&
                          absl::StrContains(e.details_json(), chaos_id));
      }
    }
    if (!found) {
      violations.push_back(absl::StrCat("alert ", chaos_id,
                                        " was acknowledged (2xx) but is on no incident's timeline"));
    }
    alerts_found += found;
  }
  int updates_found = 0;
  for (const auto& [id, text] : acked_notes) {
    bool found = false;
    for (const v1::TimelineEvent& e : shown[id].timeline()) {
      found = found || (e.kind() == "note" && e.summary() == text);
    }
    if (!found) {
      violations.push_back(absl::StrCat("note '", text, "' on ", id,
                                        " was acknowledged (exit 0) but is not on its timeline"));
    }
    updates_found += found;
  }
  for (const std::string& id : acked_acks) {
    bool found = false;
    for (const v1::TimelineEvent& e : shown[id].timeline()) {
      found = found || e.kind() == "acknowledged";
    }
    if (!found || shown[id].incident().state() == v1::OPEN) {
      violations.push_back(absl::StrCat("the ack of ", id, " was acknowledged (exit 0) but ",
                                        found ? "the incident is OPEN again"
                                              : "no 'acknowledged' event is on its timeline"));
    }
    updates_found += found;
  }
  printf("chaos: %zu alerts and %zu updates acknowledged; %d and %d found; %zu incidents\n",
         acked_alerts.size(), acked_notes.size() + acked_acks.size(), alerts_found, updates_found,
         shown.size());
  Report("events_acknowledged", acked_alerts.size() + acked_notes.size() + acked_acks.size());
  Report("events_lost", acked_alerts.size() + acked_notes.size() + acked_acks.size() -
                            alerts_found - updates_found);
  EXPECT_FALSE(acked_alerts.empty()) << "no notification was ever acknowledged";
  CommandResult verify = controller.Cli(admin, {"audit", "verify"});
  if (verify.exit_code != 0) {
    violations.push_back("`vigil audit verify` failed: " + verify.output);
  }
  Report("incidents.violations", violations.size());
  for (const std::string& v : violations) {
    ADD_FAILURE() << v;
  }
}

}  // namespace
}  // namespace vigil::chaos
