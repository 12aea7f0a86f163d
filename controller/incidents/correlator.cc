#include "controller/incidents/correlator.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace vigil::controller {
namespace {

std::vector<std::string> DependsOn(const v1::Alert& alert) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(Label(alert, "depends_on"), ',')) {
    part = absl::StripAsciiWhitespace(part);
    if (!part.empty()) {
      out.emplace_back(part);
    }
  }
  return out;
}

// The names other components' depends_on may use for this one: service, role and host.
std::vector<std::string> ProvidedNames(const v1::Alert& alert) {
  std::vector<std::string> names;
  for (std::string name : {Label(alert, "service"), Label(alert, "role"), alert.agent_id()}) {
    if (!name.empty() && std::find(names.begin(), names.end(), name) == names.end()) {
      names.push_back(std::move(name));
    }
  }
  return names;
}

// A few names of a set, for one line: "a, b, c and 997 more".
std::string NameSome(const std::set<std::string>& names, size_t shown = 5) {
  std::vector<std::string> some;
  for (const std::string& n : names) {
    if (some.size() == shown) {
      break;
    }
    some.push_back(n);
  }
  std::string text = absl::StrJoin(some, ", ");
  if (names.size() > shown) {
    absl::StrAppend(&text, " and ", names.size() - shown, " more");
  }
  return text;
}

std::string FormatValue(double v) {
  if (v != 0 && std::abs(v) < 0.01) {
    return absl::StrFormat("%.4g", v);
  }
  return absl::StrFormat("%.3g", v);
}

std::string TimeOfDay(int64_t ms) {
  return absl::FormatTime("%H:%M:%S", absl::FromUnixMillis(ms), absl::UTCTimeZone());
}

int SeverityRank(v1::Severity s) {
  return s == v1::SEVERITY_UNSPECIFIED ? 99 : static_cast<int>(s);
}

}  // namespace

std::string Label(const v1::Alert& alert, const std::string& name) {
  auto it = alert.labels().find(name);
  return it == alert.labels().end() ? "" : it->second;
}

std::string ComponentOf(const v1::Alert& alert) {
  for (const char* name : {"service", "role"}) {
    if (std::string v = Label(alert, name); !v.empty()) {
      return v;
    }
  }
  return alert.agent_id().empty() ? "fleet" : alert.agent_id();
}

std::string HostOf(const v1::Alert& alert) {
  return alert.agent_id().empty() ? absl::StrCat("fleet/", ComponentOf(alert)) : alert.agent_id();
}

std::string DescribeAlert(const v1::Alert& alert) {
  std::string where = alert.agent_id().empty() ? absl::StrCat("fleet (", ComponentOf(alert), ")")
                                               : alert.agent_id();
  std::string text = absl::StrCat(alert.rule(), " on ", where);
  if (!alert.expr().empty()) {
    absl::StrAppend(&text, ": ", alert.expr(), " (value ", FormatValue(alert.value()), ")");
  } else if (!alert.summary().empty()) {
    absl::StrAppend(&text, ": ", alert.summary());
  }
  return text;
}

std::string AlertKey(const v1::Alert& alert) {
  std::map<std::string, std::string> labels(alert.labels().begin(), alert.labels().end());
  labels.erase("stale_reason");
  labels.erase("resolved_reason");
  std::string key = absl::StrCat(alert.source(), "\x1f", alert.rule(), "\x1f", alert.agent_id());
  for (const auto& [k, v] : labels) {
    absl::StrAppend(&key, "\x1f", k, "=", v);
  }
  return key;
}

void ActiveIncident::Index(const v1::Alert& alert) {
  const std::string host = HostOf(alert);
  hosts.insert(host);
  host_of_rule.emplace(alert.rule(), host);
  for (const std::string& name : ProvidedNames(alert)) {
    provider_host.emplace(name, host);
  }
  for (const std::string& dependency : DependsOn(alert)) {
    dependents[dependency].insert(host);
  }
}

std::string Correlate(const std::map<std::string, ActiveIncident>& active, const v1::Alert& alert,
                      absl::Time now, absl::Duration window, std::string* reason) {
  const std::string host = HostOf(alert);
  const std::vector<std::string> provides = ProvidedNames(alert);
  const std::vector<std::string> depends = DependsOn(alert);
  const ActiveIncident* best = nullptr;
  std::string best_id;
  for (const auto& [id, incident] : active) {
    if (now - incident.last_activity > window) {
      continue;
    }
    std::string why;
    if (incident.hosts.contains(host)) {
      why = absl::StrCat(host, " is already on this incident");
    } else if (auto rule = incident.host_of_rule.find(alert.rule());
               rule != incident.host_of_rule.end()) {
      why = absl::StrCat(alert.rule(), " is already firing on ", rule->second);
    }
    for (size_t i = 0; why.empty() && i < provides.size(); ++i) {
      if (auto it = incident.dependents.find(provides[i]);
          it != incident.dependents.end() && !it->second.empty()) {
        why = absl::StrCat(*it->second.begin(), " depends on ", provides[i]);
      }
    }
    for (size_t i = 0; why.empty() && i < depends.size(); ++i) {
      if (auto it = incident.provider_host.find(depends[i]); it != incident.provider_host.end()) {
        why = absl::StrCat(ComponentOf(alert), " depends on ", depends[i], " (", it->second, ")");
      }
    }
    if (!why.empty() && (best == nullptr || incident.last_activity > best->last_activity)) {
      best = &incident;
      best_id = id;
      *reason = why;
    }
  }
  return best_id;
}

v1::Severity WorstSeverity(const ActiveIncident& active) {
  v1::Severity worst = active.incident.severity();
  for (const auto& [id, ref] : active.alerts) {
    if (SeverityRank(ref.alert.severity()) < SeverityRank(worst)) {
      worst = ref.alert.severity();
    }
  }
  return worst;
}

ProbableCause FindProbableCause(const ActiveIncident& active) {
  const v1::Alert* best = nullptr;
  std::set<std::string> best_dependents;
  for (const auto& [id, ref] : active.alerts) {
    std::set<std::string> dependents;
    for (const std::string& name : ProvidedNames(ref.alert)) {
      if (auto it = active.dependents.find(name); it != active.dependents.end()) {
        dependents.insert(it->second.begin(), it->second.end());
      }
    }
    dependents.erase(HostOf(ref.alert));
    if (best == nullptr || dependents.size() > best_dependents.size() ||
        (dependents.size() == best_dependents.size() &&
         ref.alert.fired_unix_ms() < best->fired_unix_ms())) {
      best = &ref.alert;
      best_dependents = std::move(dependents);
    }
  }
  if (best == nullptr) {
    return {};
  }
  ProbableCause out;
  out.cause = absl::StrCat(HostOf(*best), "/", best->rule());
  if (best_dependents.empty()) {
    out.reason = absl::StrCat("the earliest alert (", TimeOfDay(best->fired_unix_ms()),
                              " UTC); no component here depends on another");
  } else {
    out.reason = absl::StrCat(ComponentOf(*best), " on ", HostOf(*best), " is depended on by ",
                              best_dependents.size(), " of the ", active.incident.agents_size(),
                              " hosts on this incident (", NameSome(best_dependents), "); ",
                              best->rule(), " fired there at ", TimeOfDay(best->fired_unix_ms()),
                              " UTC");
  }
  return out;
}

}  // namespace vigil::controller
