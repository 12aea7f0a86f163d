#include "controller/incidents/correlator.h"

#include <algorithm>
#include <optional>
#include <tuple>

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

// The cause and its reason for alert `best`, on which `dependents` hosts depend (`first` are the
// first few of them by name).
ProbableCause DescribeCause(const v1::Alert& best, const std::vector<std::string>& first,
                            size_t dependents, int agents) {
  ProbableCause out;
  out.cause = absl::StrCat(HostOf(best), "/", best.rule());
  if (dependents == 0) {
    out.reason = absl::StrCat("the earliest alert (", TimeOfDay(best.fired_unix_ms()),
                              " UTC); no component here depends on another");
    return out;
  }
  // A few names, for one line: "a, b, c and 997 more".
  std::string names = absl::StrJoin(first, ", ");
  if (dependents > first.size()) {
    absl::StrAppend(&names, " and ", dependents - first.size(), " more");
  }
  out.reason =
      absl::StrCat(ComponentOf(best), " on ", HostOf(best), " is depended on by ", dependents,
                   " of the ", agents, " hosts on this incident (", names, "); ", best.rule(),
                   " fired there at ", TimeOfDay(best.fired_unix_ms()), " UTC");
  return out;
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

// --- ActiveIncident ---
//
// The probable cause, incrementally. For an alert a on host h, with provided names P(a)
// (service, role, agent id) and D(n) the hosts that depend on name n, the cause scan scores
//   score(a) = |(U D(n) for n in P(a)) \ {h}|
// and picks the highest score, then the earliest fired, then the smallest id. Alerts with the
// same names and host share a score, so they form a group (ordered by fired time and id). A
// group's names split into its own name (the agent id, which is its host) and the others,
// which groups share as a class C with U_C = union of D(n) over C. Then
//   score = |U_C| + extra,  extra = |D(own) \ U_C| - [h in U_C or h in D(own)]
// A class ranks its groups by (-extra, fired, id) and the index ranks classes by
// (-score, fired, id). A new dependent x of name d changes |U_C| of the classes containing d
// and the extra of a few groups (the one on host x, those whose own name x depends on, those
// whose own name is d): O(log n) for each, never a walk over the incident's alerts.

namespace {

using RankKey = std::tuple<int64_t, int64_t, std::string>;  // (-score or -extra, fired, id)
using Dependents = std::map<std::string, std::set<std::string>>;

bool DependsOnName(const Dependents& d, const std::string& name, const std::string& host) {
  auto it = d.find(name);
  return it != d.end() && it->second.contains(host);
}

}  // namespace

struct ActiveIncident::CauseIndex {
  struct Class;
  struct Group {
    Class* cls = nullptr;
    std::string host;
    bool own = false;  // an agent's alert: its agent id (== host) is one of its names
    std::set<std::pair<int64_t, std::string>> alerts;  // (fired, id)
    int64_t outside = 0;                               // |D(host) \ U_C| when own
    int64_t excluded = 0;                              // host in U_C or D(own)
    std::optional<RankKey> placed;
    int64_t extra() const { return outside - excluded; }
  };
  struct Class {
    std::vector<std::string> names;  // sorted, unique
    int64_t union_size = 0;
    std::map<std::pair<std::string, bool>, Group> groups;  // by (host, own)
    std::map<RankKey, Group*> ranked;
    std::optional<RankKey> placed;
  };

  std::map<std::vector<std::string>, Class> classes;
  std::map<std::string, std::vector<Class*>> classes_with;   // name -> classes naming it
  std::map<std::string, std::vector<Group*>> groups_by_own;  // agent id -> its own groups
  std::map<std::string, std::set<std::string>> depends_of;   // host -> names it depends on
  std::map<RankKey, Class*> ranked;
  std::map<std::string, Group*> group_of_alert;
  std::map<int, int64_t> severity_count;                      // severity rank -> alerts
  std::map<std::string, std::set<std::string>> stale_by_key;  // AlertKey -> stale alert ids
  // The last cause described, and what it was described from.
  using Described = std::tuple<const Group*, RankKey, int, std::string>;
  std::optional<std::pair<Described, ProbableCause>> described;

  static bool InUnion(const Class& c, const Dependents& d, const std::string& host) {
    for (const std::string& n : c.names) {
      if (DependsOnName(d, n, host)) {
        return true;
      }
    }
    return false;
  }

  Class& ClassOf(std::vector<std::string> names, const Dependents& d) {
    auto [it, inserted] = classes.try_emplace(names);
    Class& c = it->second;
    if (inserted) {
      c.names = std::move(names);
      std::set<std::string> all;
      for (const std::string& n : c.names) {
        if (auto dep = d.find(n); dep != d.end()) {
          all.insert(dep->second.begin(), dep->second.end());
        }
      }
      c.union_size = static_cast<int64_t>(all.size());
      for (const std::string& n : c.names) {
        classes_with[n].push_back(&c);
      }
    }
    return c;
  }

  void Recount(Group& g, const Dependents& d) {
    g.excluded =
        (InUnion(*g.cls, d, g.host) || (g.own && DependsOnName(d, g.host, g.host))) ? 1 : 0;
  }

  Group& GroupOf(Class& c, const std::string& host, bool own, const Dependents& d) {
    auto [it, inserted] = c.groups.try_emplace({host, own});
    Group& g = it->second;
    if (inserted) {
      g.cls = &c;
      g.host = host;
      g.own = own;
      if (own) {
        if (auto dep = d.find(host); dep != d.end()) {
          for (const std::string& y : dep->second) {
            g.outside += InUnion(c, d, y) ? 0 : 1;
          }
        }
        groups_by_own[host].push_back(&g);
      }
      Recount(g, d);
    }
    return g;
  }

  void Place(Group& g) {
    Class& c = *g.cls;
    if (g.placed.has_value()) {
      c.ranked.erase(*g.placed);
      g.placed.reset();
    }
    if (!g.alerts.empty()) {
      const auto& [fired, id] = *g.alerts.begin();
      g.placed = RankKey{-g.extra(), fired, id};
      c.ranked.emplace(*g.placed, &g);
    }
    Place(c);
  }

  void Place(Class& c) {
    if (c.placed.has_value()) {
      ranked.erase(*c.placed);
      c.placed.reset();
    }
    if (!c.ranked.empty()) {
      const auto& [key, group] = *c.ranked.begin();
      c.placed = RankKey{-(c.union_size + group->extra()), std::get<1>(key), std::get<2>(key)};
      ranked.emplace(*c.placed, &c);
    }
  }

  void Add(const v1::Alert& alert, const Dependents& d) {
    const bool own = !alert.agent_id().empty();
    std::vector<std::string> names = ProvidedNames(alert);
    if (own) {
      std::erase(names, alert.agent_id());
    }
    std::sort(names.begin(), names.end());
    Class& c = ClassOf(std::move(names), d);
    Group& g = GroupOf(c, HostOf(alert), own, d);
    g.alerts.emplace(alert.fired_unix_ms(), alert.id());
    group_of_alert[alert.id()] = &g;
    Place(g);
    ++severity_count[SeverityRank(alert.severity())];
    if (alert.state() == v1::STALE) {
      stale_by_key[AlertKey(alert)].insert(alert.id());
    }
  }

  void Remove(const v1::Alert& alert) {
    if (auto it = group_of_alert.find(alert.id()); it != group_of_alert.end()) {
      Group& g = *it->second;
      g.alerts.erase({alert.fired_unix_ms(), alert.id()});
      group_of_alert.erase(it);
      Place(g);
    }
    if (auto it = severity_count.find(SeverityRank(alert.severity()));
        it != severity_count.end() && --it->second == 0) {
      severity_count.erase(it);
    }
    if (alert.state() == v1::STALE) {
      if (auto it = stale_by_key.find(AlertKey(alert)); it != stale_by_key.end()) {
        it->second.erase(alert.id());
        if (it->second.empty()) {
          stale_by_key.erase(it);
        }
      }
    }
  }

  // `host` has just become a dependent of `name` (it was not before).
  void AddDependent(const std::string& name, const std::string& host, const Dependents& d) {
    depends_of[host].insert(name);
    if (auto it = classes_with.find(name); it != classes_with.end()) {
      for (Class* c : it->second) {
        bool already = false;
        for (const std::string& n : c->names) {
          already = already || (n != name && DependsOnName(d, n, host));
        }
        if (already) {
          continue;
        }
        ++c->union_size;
        // Groups whose own dependents counted `host` as outside U_C no longer do.
        for (const std::string& o : depends_of[host]) {
          if (o == name) {
            continue;
          }
          if (auto g = c->groups.find({o, true}); g != c->groups.end()) {
            --g->second.outside;
            Place(g->second);
          }
        }
        for (bool own : {false, true}) {
          if (auto g = c->groups.find({host, own}); g != c->groups.end()) {
            Recount(g->second, d);
            Place(g->second);
          }
        }
        Place(*c);
      }
    }
    if (auto it = groups_by_own.find(name); it != groups_by_own.end()) {
      for (Group* g : it->second) {
        g->outside += InUnion(*g->cls, d, host) ? 0 : 1;
        Recount(*g, d);
        Place(*g);
      }
    }
  }
};

ActiveIncident::ActiveIncident() = default;
ActiveIncident::~ActiveIncident() = default;
ActiveIncident::ActiveIncident(ActiveIncident&&) noexcept = default;
ActiveIncident& ActiveIncident::operator=(ActiveIncident&&) noexcept = default;

ActiveIncident::CauseIndex& ActiveIncident::Index() const {
  if (index_ == nullptr) {
    // After an undo (or never built): from the alerts and dependents as they are now.
    index_ = std::make_unique<CauseIndex>();
    for (const auto& [name, hosts] : dependents_) {
      for (const std::string& host : hosts) {
        index_->depends_of[host].insert(name);
      }
    }
    for (const auto& [id, ref] : alerts_) {
      index_->Add(ref.alert, dependents_);
    }
  }
  return *index_;
}

v1::Incident& ActiveIncident::EditIncident() {
  Journal([saved = incident_](ActiveIncident& a) { a.LoadIncident(saved); });
  return incident_;
}

void ActiveIncident::LoadIncident(const v1::Incident& incident) {
  incident_ = incident;
  listed_agents_ = {incident_.agents().begin(), incident_.agents().end()};
  listed_services_ = {incident_.services().begin(), incident_.services().end()};
  listed_rules_ = {incident_.alert_rules().begin(), incident_.alert_rules().end()};
}

void ActiveIncident::SetLastActivity(absl::Time t) {
  Journal([before = last_activity_](ActiveIncident& a) { a.last_activity_ = before; });
  last_activity_ = t;
}

bool ActiveIncident::AddMembers(const std::string& host, const std::string& service,
                                const std::string& rule) {
  if (listed_agents_.size() != static_cast<size_t>(incident_.agents_size()) ||
      listed_services_.size() != static_cast<size_t>(incident_.services_size()) ||
      listed_rules_.size() != static_cast<size_t>(incident_.alert_rules_size())) {
    LoadIncident(v1::Incident(incident_));  // edited directly: mirror the lists again
  }
  using List = google::protobuf::RepeatedPtrField<std::string>;
  auto add = [this](std::set<std::string> ActiveIncident::*listed, List* (v1::Incident::*list)(),
                    const std::string& value) {
    if (!(this->*listed).insert(value).second) {
      return false;
    }
    (incident_.*list)()->Add(std::string(value));
    Journal([listed, list, value](ActiveIncident& a) {
      (a.*listed).erase(value);
      (a.incident_.*list)()->RemoveLast();
    });
    return true;
  };
  const bool new_host = add(&ActiveIncident::listed_agents_, &v1::Incident::mutable_agents, host);
  add(&ActiveIncident::listed_services_, &v1::Incident::mutable_services, service);
  add(&ActiveIncident::listed_rules_, &v1::Incident::mutable_alert_rules, rule);
  return new_host;
}

void ActiveIncident::SetSeverity(v1::Severity severity) {
  Journal([before = incident_.severity()](ActiveIncident& a) { a.incident_.set_severity(before); });
  incident_.set_severity(severity);
}

void ActiveIncident::SetProbableCause(std::string cause, std::string reason) {
  Journal([cause = incident_.probable_cause(),
           reason = incident_.probable_cause_reason()](ActiveIncident& a) {
    a.incident_.set_probable_cause(cause);
    a.incident_.set_probable_cause_reason(reason);
  });
  incident_.set_probable_cause(std::move(cause));
  incident_.set_probable_cause_reason(std::move(reason));
}

void ActiveIncident::AddAlert(const v1::Alert& alert, std::vector<std::string> diagnostics) {
  auto it = alerts_.find(alert.id());
  if (it != alerts_.end()) {
    if (index_ != nullptr) {
      index_->Remove(it->second.alert);
    }
    Journal([id = alert.id(), before = std::move(it->second)](ActiveIncident& a) mutable {
      a.alerts_[id] = std::move(before);
    });
    it->second = AlertRef{alert, std::move(diagnostics)};
  } else {
    Journal([id = alert.id()](ActiveIncident& a) { a.alerts_.erase(id); });
    alerts_.emplace(alert.id(), AlertRef{alert, std::move(diagnostics)});
  }
  if (index_ != nullptr) {
    index_->Add(alert, dependents_);
  }
  IndexAlert(alert);
}

void ActiveIncident::UpdateAlert(const v1::Alert& alert) {
  auto it = alerts_.find(alert.id());
  if (it == alerts_.end()) {
    Journal([id = alert.id()](ActiveIncident& a) { a.alerts_.erase(id); });
    it = alerts_.emplace(alert.id(), AlertRef{}).first;
  } else {
    if (index_ != nullptr) {
      index_->Remove(it->second.alert);
    }
    Journal([id = alert.id(), before = it->second.alert](ActiveIncident& a) {
      a.alerts_[id].alert = before;
    });
  }
  it->second.alert = alert;
  if (index_ != nullptr) {
    index_->Add(alert, dependents_);
  }
}

void ActiveIncident::IndexAlert(const v1::Alert& alert) {
  const std::string host = HostOf(alert);
  if (hosts_.insert(host).second) {
    Journal([host](ActiveIncident& a) { a.hosts_.erase(host); });
  }
  if (host_of_rule_.emplace(alert.rule(), host).second) {
    Journal([rule = alert.rule()](ActiveIncident& a) { a.host_of_rule_.erase(rule); });
  }
  for (const std::string& name : ProvidedNames(alert)) {
    if (provider_host_.emplace(name, host).second) {
      Journal([name](ActiveIncident& a) { a.provider_host_.erase(name); });
    }
  }
  for (const std::string& dependency : DependsOn(alert)) {
    AddDependent(dependency, host);
  }
}

void ActiveIncident::AddDependent(const std::string& name, const std::string& host) {
  if (!dependents_[name].insert(host).second) {
    return;
  }
  Journal([name, host](ActiveIncident& a) {
    auto it = a.dependents_.find(name);
    it->second.erase(host);
    if (it->second.empty()) {
      a.dependents_.erase(it);
    }
  });
  if (index_ != nullptr) {
    index_->AddDependent(name, host, dependents_);
  }
}

void ActiveIncident::UndoTo(Mark mark) {
  if (journal_.size() <= mark) {
    return;
  }
  while (journal_.size() > mark) {
    std::function<void(ActiveIncident&)> undo = std::move(journal_.back());
    journal_.pop_back();
    undo(*this);
  }
  index_.reset();  // rebuilt when next needed
}

v1::Severity ActiveIncident::WorstSeverity() const {
  const CauseIndex& index = Index();
  v1::Severity worst = incident_.severity();
  if (!index.severity_count.empty() && index.severity_count.begin()->first < SeverityRank(worst)) {
    const int rank = index.severity_count.begin()->first;
    worst = rank == SeverityRank(v1::SEVERITY_UNSPECIFIED) ? v1::SEVERITY_UNSPECIFIED
                                                           : static_cast<v1::Severity>(rank);
  }
  return worst;
}

std::vector<std::string> ActiveIncident::StaleAlertsWithKey(const std::string& key) const {
  const CauseIndex& index = Index();
  auto it = index.stale_by_key.find(key);
  if (it == index.stale_by_key.end()) {
    return {};
  }
  return {it->second.begin(), it->second.end()};
}

ProbableCause ActiveIncident::FindProbableCause() const {
  CauseIndex& index = Index();
  if (index.ranked.empty()) {
    return {};
  }
  const auto& [class_key, cls] = *index.ranked.begin();
  const CauseIndex::Group& group = *cls->ranked.begin()->second;
  const v1::Alert& best = alerts_.at(std::get<2>(class_key)).alert;
  const int64_t score = -std::get<0>(class_key);
  // The same best alert, in the same group, with the same score and host count: the same
  // sentence (dependents are only ever added, so an equal count is an equal set).
  CauseIndex::Described key{&group, class_key, incident_.agents_size(), best.rule()};
  if (index.described.has_value() && index.described->first == key) {
    return index.described->second;
  }
  // The first few dependents by name: a merge of the sets that make up the score.
  std::vector<const std::set<std::string>*> sets;
  for (const std::string& n : cls->names) {
    if (auto it = dependents_.find(n); it != dependents_.end()) {
      sets.push_back(&it->second);
    }
  }
  if (group.own) {
    if (auto it = dependents_.find(group.host); it != dependents_.end()) {
      sets.push_back(&it->second);
    }
  }
  std::vector<std::set<std::string>::const_iterator> at;
  for (const auto* set : sets) {
    at.push_back(set->begin());
  }
  std::vector<std::string> first;
  constexpr size_t kShown = 5;
  while (first.size() < kShown) {
    const std::string* next = nullptr;
    for (size_t i = 0; i < sets.size(); ++i) {
      if (at[i] != sets[i]->end() && (next == nullptr || *at[i] < *next)) {
        next = &*at[i];
      }
    }
    if (next == nullptr) {
      break;
    }
    const std::string name = *next;
    for (size_t i = 0; i < sets.size(); ++i) {
      if (at[i] != sets[i]->end() && *at[i] == name) {
        ++at[i];
      }
    }
    if (name != group.host) {
      first.push_back(name);
    }
  }
  ProbableCause cause =
      DescribeCause(best, first, static_cast<size_t>(score), incident_.agents_size());
  index.described.emplace(std::move(key), cause);
  return cause;
}
namespace {

// What an alert can correlate by, computed once per alert.
struct AlertTraits {
  explicit AlertTraits(const v1::Alert& alert)
      : host(HostOf(alert)), provides(ProvidedNames(alert)), depends(DependsOn(alert)) {}
  std::string host;
  std::vector<std::string> provides;
  std::vector<std::string> depends;
};

// Why `alert` belongs to `incident`, or "" when it does not (the window aside).
std::string WhyJoin(const ActiveIncident& incident, const v1::Alert& alert,
                    const AlertTraits& traits) {
  if (incident.hosts().contains(traits.host)) {
    return absl::StrCat(traits.host, " is already on this incident");
  }
  if (auto rule = incident.host_of_rule().find(alert.rule());
      rule != incident.host_of_rule().end()) {
    return absl::StrCat(alert.rule(), " is already firing on ", rule->second);
  }
  for (const std::string& name : traits.provides) {
    if (auto it = incident.dependents().find(name);
        it != incident.dependents().end() && !it->second.empty()) {
      return absl::StrCat(*it->second.begin(), " depends on ", name);
    }
  }
  for (const std::string& name : traits.depends) {
    if (auto it = incident.provider_host().find(name); it != incident.provider_host().end()) {
      return absl::StrCat(ComponentOf(alert), " depends on ", name, " (", it->second, ")");
    }
  }
  return "";
}

// Candidates are visited in id order; the most recently active one with a reason wins.
class BestIncident {
 public:
  BestIncident(const v1::Alert& alert, absl::Time now, absl::Duration window)
      : alert_(alert), traits_(alert), now_(now), window_(window) {}
  void Consider(const std::string& id, const ActiveIncident& incident) {
    if (now_ - incident.last_activity() > window_ ||
        (best_ != nullptr && incident.last_activity() <= best_->last_activity())) {
      return;
    }
    if (std::string why = WhyJoin(incident, alert_, traits_); !why.empty()) {
      best_ = &incident;
      id_ = id;
      why_ = std::move(why);
    }
  }
  std::string Take(std::string* reason) {
    if (best_ != nullptr) {
      *reason = std::move(why_);
    }
    return std::move(id_);
  }

 private:
  const v1::Alert& alert_;
  const AlertTraits traits_;
  const absl::Time now_;
  const absl::Duration window_;
  const ActiveIncident* best_ = nullptr;
  std::string id_;
  std::string why_;
};

// Keys: what an incident's alert offers, and what a new alert looks for to match it.
std::string HostKey(absl::string_view host) { return absl::StrCat("host\x1f", host); }
std::string RuleKey(absl::string_view rule) { return absl::StrCat("rule\x1f", rule); }
std::string ProvidesKey(absl::string_view name) { return absl::StrCat("provides\x1f", name); }
std::string DependsKey(absl::string_view name) { return absl::StrCat("depends\x1f", name); }

}  // namespace

void CorrelationCandidates::Link(const std::string& id, const std::string& key) {
  if (keys_of_[id].insert(key).second) {
    ids_by_key_[key].insert(id);
  }
}

void CorrelationCandidates::Add(const std::string& id, const v1::Alert& alert) {
  Link(id, HostKey(HostOf(alert)));
  Link(id, RuleKey(alert.rule()));
  for (const std::string& name : ProvidedNames(alert)) {
    Link(id, ProvidesKey(name));
  }
  for (const std::string& name : DependsOn(alert)) {
    Link(id, DependsKey(name));
  }
}

void CorrelationCandidates::Remove(const std::string& id) {
  auto keys = keys_of_.find(id);
  if (keys == keys_of_.end()) {
    return;
  }
  for (const std::string& key : keys->second) {
    if (auto ids = ids_by_key_.find(key); ids != ids_by_key_.end()) {
      ids->second.erase(id);
      if (ids->second.empty()) {
        ids_by_key_.erase(ids);
      }
    }
  }
  keys_of_.erase(keys);
}

std::set<std::string> CorrelationCandidates::For(const v1::Alert& alert) const {
  std::set<std::string> out;
  const auto collect = [&](const std::string& key) {
    if (auto ids = ids_by_key_.find(key); ids != ids_by_key_.end()) {
      out.insert(ids->second.begin(), ids->second.end());
    }
  };
  // The same matches WhyJoin looks for: the host, the rule, an incident depending on what this
  // alert provides, an incident providing what it depends on.
  collect(HostKey(HostOf(alert)));
  collect(RuleKey(alert.rule()));
  for (const std::string& name : ProvidedNames(alert)) {
    collect(DependsKey(name));
  }
  for (const std::string& name : DependsOn(alert)) {
    collect(ProvidesKey(name));
  }
  return out;
}

std::string Correlate(const std::map<std::string, ActiveIncident>& active, const v1::Alert& alert,
                      absl::Time now, absl::Duration window, std::string* reason) {
  BestIncident best(alert, now, window);
  for (const auto& [id, incident] : active) {
    best.Consider(id, incident);
  }
  return best.Take(reason);
}

std::string Correlate(const std::map<std::string, ActiveIncident>& active,
                      const CorrelationCandidates& candidates, const v1::Alert& alert,
                      absl::Time now, absl::Duration window, std::string* reason) {
  BestIncident best(alert, now, window);
  for (const std::string& id : candidates.For(alert)) {
    if (auto it = active.find(id); it != active.end()) {
      best.Consider(id, it->second);
    }
  }
  return best.Take(reason);
}

v1::Severity WorstSeverityByScan(const ActiveIncident& active) {
  v1::Severity worst = active.incident().severity();
  for (const auto& [id, ref] : active.alerts()) {
    if (SeverityRank(ref.alert.severity()) < SeverityRank(worst)) {
      worst = ref.alert.severity();
    }
  }
  return worst;
}

ProbableCause FindProbableCauseByScan(const ActiveIncident& active) {
  const v1::Alert* best = nullptr;
  std::set<std::string> best_dependents;
  for (const auto& [id, ref] : active.alerts()) {
    std::set<std::string> dependents;
    for (const std::string& name : ProvidedNames(ref.alert)) {
      if (auto it = active.dependents().find(name); it != active.dependents().end()) {
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
  std::vector<std::string> first;
  for (const std::string& n : best_dependents) {
    if (first.size() == 5) {
      break;
    }
    first.push_back(n);
  }
  return DescribeCause(*best, first, best_dependents.size(), active.incident().agents_size());
}

}  // namespace vigil::controller
