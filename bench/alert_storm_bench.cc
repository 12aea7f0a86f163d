// An alert storm: 50,000 series fire at once (1,000 agents x 50 series: 900 API hosts that
// depend on postgres and redis, 50 of each of those) through the real IncidentManager,
// TimelineWriter and SQLite store (a database file in a temporary folder, synchronous=FULL), in
// one process. Timed from the first alert handed over until every one is on the timeline,
// correlated (the writer has committed it and its incident). Prints the seconds, events/s,
// commits and the incident's probable cause, then checks the stored result.
//   build/bench/alert_storm_bench [--agents=N] [--series=N]
#include <stdlib.h>
#include <sys/resource.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "controller/incidents/incident_manager.h"
#include "controller/timeline/timeline_writer.h"
#include "storage/sqlite/sqlite_store.h"

namespace vigil::controller {
namespace {

double CpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

bool Flag(absl::string_view arg, absl::string_view name, int* value) {
  return absl::ConsumePrefix(&arg, name) && absl::ConsumePrefix(&arg, "=") &&
         absl::SimpleAtoi(arg, value) && *value > 0;
}

int Main(int argc, char** argv) {
  int agents = 1000;
  int series = 50;
  for (int i = 1; i < argc; ++i) {
    if (!Flag(argv[i], "--agents", &agents) && !Flag(argv[i], "--series", &series)) {
      std::fprintf(stderr, "usage: %s [--agents=N] [--series=N]\n", argv[0]);
      return 2;
    }
  }
  std::string folder = (std::filesystem::temp_directory_path() / "vigil-storm-XXXXXX");
  if (mkdtemp(folder.data()) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  auto store = storage::OpenSqliteStore(folder + "/vigil.db");
  if (!store.ok()) {
    std::fprintf(stderr, "%s\n", std::string(store.status().message()).c_str());
    return 1;
  }
  RealClock clock;
  TimelineWriter writer(store->get(), &clock);
  std::atomic<int> diagnostics_asked{0};
  IncidentManager manager(
      &writer, &clock,
      [&](const std::string&, const v1::CollectDiagnostics&) {
        ++diagnostics_asked;
        return true;
      },
      IncidentManager::Options{});
  if (absl::Status s = manager.Start(); !s.ok()) {
    std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
    return 1;
  }
  writer.Start();

  // The alerts as the rule engine hands them over, built before the clock starts.
  Rule rule;
  rule.name = "DiskSpaceWarning";
  rule.diagnostics = {"top_processes"};
  std::vector<v1::Alert> alerts;
  alerts.reserve(static_cast<size_t>(agents) * series);
  const int64_t fired_ms = clock.NowUnixMillis();
  for (int a = 0; a < agents; ++a) {
    const int kind = a % 20;  // 18 API hosts for each postgres and redis host
    const std::string role = kind == 0 ? "postgres" : kind == 1 ? "redis" : "api";
    const std::string agent = absl::StrCat(role, "-", a);
    for (int s = 0; s < series; ++s) {
      v1::Alert alert;
      alert.set_id(absl::StrCat("al-", a, "-", s));
      alert.set_rule(rule.name);
      alert.set_severity(role == "postgres" && s == 0 ? v1::SEV2 : v1::SEV3);
      alert.set_state(v1::FIRING);
      alert.set_agent_id(agent);
      auto& labels = *alert.mutable_labels();
      labels["role"] = role;
      labels["service"] = role == "api" ? "rag-api" : role;
      if (role == "api") {
        labels["depends_on"] = "postgres,redis";
      }
      labels["mount"] = absl::StrCat("/mnt/disk", s);
      alert.add_key_labels("mount");
      alert.set_value(0.93);
      alert.set_expr("host_disk_used_ratio > 0.8");
      alert.set_summary("Disk space warning");
      alert.set_source("rules");
      alert.set_active_since_unix_ms(fired_ms);
      alert.set_fired_unix_ms(fired_ms + a);  // the storm spreads over a second
      alerts.push_back(std::move(alert));
    }
  }

  const TimelineWriter::Stats before = writer.stats();
  const double cpu_start = CpuSeconds();
  const absl::Time start = absl::Now();
  for (const v1::Alert& alert : alerts) {
    manager.OnAlertChange(alert, &rule);
  }
  manager.Flush();  // every alert handled and committed
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  const double cpu = CpuSeconds() - cpu_start;
  const TimelineWriter::Stats after = writer.stats();
  manager.Flush();  // diagnostics requests go out after their commit
  writer.Stop();

  // What is stored: every alert on an incident, and one event per alert at least.
  auto incidents = (*store)->ListIncidents("all");
  auto stored_alerts = (*store)->ListAlerts(false);
  auto events = (*store)->ListEvents("", 0, 0);
  auto verified = (*store)->VerifyChain();
  if (!incidents.ok() || !stored_alerts.ok() || !events.ok() || !verified.ok()) {
    std::fprintf(stderr, "cannot read the result back\n");
    return 1;
  }
  size_t correlated = 0;
  for (const v1::Alert& alert : *stored_alerts) {
    correlated += alert.incident_id().empty() ? 0 : 1;
  }
  size_t alert_events = 0;
  for (const v1::TimelineEvent& event : *events) {
    alert_events += event.kind() == "alert_fired" || event.kind() == "incident_opened" ? 1 : 0;
  }
  const uint64_t written = after.events - before.events;
  std::printf("alert storm: %zu series firing at once (%d agents x %d series)\n", alerts.size(),
              agents, series);
  std::printf("  on the timeline, correlated: %.2f s  (%.0f events/s, %.0f alerts/s)\n", seconds,
              written / seconds, alerts.size() / seconds);
  std::printf("  %llu events in %llu commits; CPU %.2f s (%.0f%% of one core)\n",
              static_cast<unsigned long long>(written),
              static_cast<unsigned long long>(after.commits - before.commits), cpu,
              100 * cpu / seconds);
  for (const v1::Incident& incident : *incidents) {
    std::printf("  %s: %s, %d hosts, probable cause %s\n", incident.id().c_str(),
                v1::Severity_Name(incident.severity()).c_str(), incident.agents_size(),
                incident.probable_cause().c_str());
  }
  std::printf("  check: %zu of %zu alerts stored on an incident, %zu alert events, chain %s (%llu "
              "events), %d diagnostics requests\n",
              correlated, alerts.size(), alert_events, verified->ok() ? "verifies" : "BROKEN",
              static_cast<unsigned long long>(verified->events_checked()),
              diagnostics_asked.load());
  std::filesystem::remove_all(folder);
  const bool ok = correlated == alerts.size() && alert_events == alerts.size() && verified->ok();
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace vigil::controller

int main(int argc, char** argv) { return vigil::controller::Main(argc, argv); }
