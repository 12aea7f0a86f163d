#include "controller/rules/rule_engine.h"

#include <algorithm>
#include <limits>
#include <tuple>
#include <unordered_set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/histogram.h"
#include "common/ids.h"

namespace vigil::controller {
namespace {

std::string InstanceKey(const Rule& rule, const std::string& agent_id, const Labels& labels) {
  std::string key = absl::StrCat(rule.name, "\x1f", agent_id);
  for (const auto& [k, v] : labels) {
    absl::StrAppend(&key, "\x1f", k, "=", v);
  }
  return key;
}

// The series' value for `rule` at `now`: the latest point, or the quantile of the histograms in
// the rule's window. Points older than the window never count, so a replay of old telemetry after
// an outage fills the charts without firing alerts about the past.
bool SeriesValue(const Rule& rule, const SeriesState& series, absl::Time now, double* value) {
  const int64_t cutoff = absl::ToUnixMillis(now) - absl::ToInt64Milliseconds(rule.window);
  if (rule.expr.quantile == 0) {
    if (series.count == 0 || series.latest_ms() <= cutoff) {
      return false;
    }
    *value = series.latest();
    return true;
  }
  if (series.histograms.empty()) {
    return false;
  }
  LogHistogram merged;
  for (auto it = series.histograms.rbegin(); it != series.histograms.rend() && it->first > cutoff;
       ++it) {
    merged.Merge(it->second);
  }
  if (merged.empty()) {
    return false;
  }
  *value = merged.Quantile(rule.expr.quantile);
  return true;
}

// Same definition: what evaluation and the alerts it makes depend on (not where it was written).
bool SameDefinition(const Rule& a, const Rule& b) {
  if (a.tiers.size() != b.tiers.size()) {
    return false;
  }
  for (size_t i = 0; i < a.tiers.size(); ++i) {
    if (a.tiers[i].threshold != b.tiers[i].threshold ||
        a.tiers[i].severity != b.tiers[i].severity) {
      return false;
    }
  }
  return a.expr.text == b.expr.text && a.window == b.window && a.for_duration == b.for_duration &&
         a.severity == b.severity && a.summary == b.summary && a.runbook == b.runbook &&
         a.diagnostics == b.diagnostics;
}

bool FleetWide(const Rule& rule) { return rule.expr.aggregation != Aggregation::kNone; }

// When the series' value was measured: its newest point or histogram, never after `now`.
absl::Time SeriesTime(const Rule& rule, const SeriesState& series, absl::Time now) {
  int64_t ms = 0;
  if (rule.expr.quantile == 0) {
    ms = series.latest_ms();
  } else if (!series.histograms.empty()) {
    ms = series.histograms.back().first;
  }
  return std::min(absl::FromUnixMillis(ms), now);
}

// Labels the engine adds to an alert after its birth; never part of what identifies it.
bool EngineLabel(const std::string& name) {
  return name == "stale_reason" || name == "resolved_reason";
}

// Which of two stored copies of one alert is the newer (the later run made it).
bool Newer(const v1::Alert& a, const v1::Alert& b) {
  auto rank = [](const v1::Alert& x) {
    return std::make_tuple(x.active_since_unix_ms(), x.fired_unix_ms(), x.evaluated_unix_ms(),
                           x.id());
  };
  return rank(a) > rank(b);
}

}  // namespace

RuleEngine::RuleEngine(std::vector<Rule> rules, const Clock* clock, AlertSink* sink,
                       Options options)
    : clock_(clock), sink_(sink), options_(options) {
  absl::MutexLock lock(&mu_);
  rules_ = std::move(rules);
  contributions_.resize(rules_.size());
  refilling_until_.assign(rules_.size(), absl::InfinitePast());
  IndexRules();
}

void RuleEngine::IndexRules() {
  per_agent_rules_.clear();
  aggregate_rules_.clear();
  for (size_t i = 0; i < rules_.size(); ++i) {
    const Rule& rule = rules_[i];
    if (!FleetWide(rule)) {
      per_agent_rules_[rule.expr.metric].push_back(&rule);
    } else {
      aggregate_rules_[rule.expr.metric].push_back(i);
    }
  }
}

RuleEngine::Replacement RuleEngine::ReplaceRules(std::vector<Rule> rules) {
  const absl::Time now = clock_->Now();
  Replacement result;
  absl::MutexLock lock(&mu_);
  std::unordered_map<std::string, size_t> old_index;
  for (size_t i = 0; i < rules_.size(); ++i) {
    old_index[rules_[i].name] = i;
  }
  std::unordered_map<std::string, size_t> new_index;
  for (size_t i = 0; i < rules.size(); ++i) {
    new_index[rules[i].name] = i;
    auto old = old_index.find(rules[i].name);
    if (old == old_index.end()) {
      result.added.push_back(rules[i].name);
    } else if (!SameDefinition(rules_[old->second], rules[i])) {
      result.changed.push_back(rules[i].name);
    }
  }
  for (const Rule& rule : rules_) {
    if (!new_index.contains(rule.name)) {
      result.removed.push_back(rule.name);
    }
  }

  // Alerts of rules that go away resolve while their old rule is still alive for the sink.
  for (auto it = instances_.begin(); it != instances_.end();) {
    auto current = it++;
    const Rule& old_rule = *current->second.rule;
    auto found = new_index.find(old_rule.name);
    std::string reason;
    if (found == new_index.end()) {
      reason = absl::StrCat("rule ", old_rule.name, " removed by a configuration reload");
    } else if (FleetWide(rules[found->second]) != FleetWide(old_rule)) {
      reason =
          absl::StrCat("rule ", old_rule.name, " changed from ",
                       FleetWide(old_rule) ? "fleet-wide to per-agent" : "per-agent to fleet-wide",
                       " by a configuration reload");
    } else {
      continue;
    }
    (*current->second.alert.mutable_labels())["resolved_reason"] = reason;
    Resolve(current, now);
    ++result.alerts_resolved;
  }

  // Contributions follow their rule to its new index when its inputs did not change.
  std::vector<std::unordered_map<const SeriesState*, Contribution>> contributions(rules.size());
  std::vector<absl::Time> refilling_until(rules.size(), absl::InfinitePast());
  for (size_t i = 0; i < rules.size(); ++i) {
    auto old = old_index.find(rules[i].name);
    if (old == old_index.end() || !FleetWide(rules[i])) {
      continue;
    }
    const Rule& old_rule = rules_[old->second];
    if (old_rule.expr.text == rules[i].expr.text && old_rule.window == rules[i].window) {
      contributions[i] = std::move(contributions_[old->second]);
      refilling_until[i] = refilling_until_[old->second];
    } else {
      refilling_until[i] = now + options_.no_data_stale_after;
    }
  }

  // The old rules stay alive until every alert points at its new rule.
  const std::vector<Rule> old_rules = std::exchange(rules_, std::move(rules));
  contributions_ = std::move(contributions);
  refilling_until_ = std::move(refilling_until);
  IndexRules();
  for (auto& [key, instance] : instances_) {
    const Rule& rule = rules_[new_index.at(instance.rule->name)];
    instance.rule = &rule;
    // What the alert shows follows the rule; the sink hears it with the alert's next change.
    instance.alert.set_expr(rule.expr.text);
    instance.alert.set_summary(rule.summary);
    instance.alert.set_runbook(rule.runbook);
    ++result.alerts_kept;
  }
  aggregates_dirty_ = true;  // new thresholds apply on the next tick, not the next batch
  return result;
}

std::vector<Rule> RuleEngine::rules() const {
  absl::MutexLock lock(&mu_);
  return rules_;
}

size_t RuleEngine::rule_count() const {
  absl::MutexLock lock(&mu_);
  return rules_.size();
}

const std::string* RuleEngine::Label(absl::string_view name, const Labels& series_labels,
                                     const Labels& agent_labels) {
  // Series labels first (mount, upstream), then the agent's own (role, service, env).
  if (auto it = series_labels.find(std::string(name)); it != series_labels.end()) {
    return &it->second;
  }
  if (auto it = agent_labels.find(std::string(name)); it != agent_labels.end()) {
    return &it->second;
  }
  return nullptr;
}

bool RuleEngine::Matches(const Rule& rule, const SeriesState& series,
                         const Labels& agent_labels) const {
  static const std::string kEmpty;
  for (const LabelMatcher& m : rule.expr.matchers) {
    const std::string* actual = Label(m.label, series.labels, agent_labels);
    if (!m.Matches(actual == nullptr ? kEmpty : *actual)) {
      return false;
    }
  }
  return true;
}

void RuleEngine::OnConnected(const std::string& agent_id, const Labels& agent_labels) {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  agent_labels_[agent_id] = agent_labels;
  RekeyProvisionalLocked(agent_id, agent_labels, now);
}

RuleEngine::Restoration RuleEngine::Restore(std::vector<v1::Alert> alerts, absl::Time now) {
  Restoration result;
  absl::MutexLock lock(&mu_);
  std::unordered_map<std::string, size_t> rule_index;
  for (size_t i = 0; i < rules_.size(); ++i) {
    rule_index[rules_[i].name] = i;
  }
  for (v1::Alert& alert : alerts) {
    const v1::AlertState state = alert.state();
    if (alert.source() != "rules" ||
        (state != v1::PENDING && state != v1::FIRING && state != v1::STALE)) {
      continue;
    }
    auto found = rule_index.find(alert.rule());
    const Rule* rule = found == rule_index.end() ? nullptr : &rules_[found->second];
    std::string gone;
    if (rule == nullptr) {
      gone = absl::StrCat("rule ", alert.rule(),
                          " is no longer loaded (the controller restarted "
                          "without it)");
    } else if (FleetWide(*rule) != alert.agent_id().empty()) {
      gone = absl::StrCat(
          "rule ", alert.rule(), " changed ",
          FleetWide(*rule) ? "from per-agent to fleet-wide" : "from fleet-wide to per-agent",
          " while the controller was down");
    }
    if (!gone.empty()) {
      (*alert.mutable_labels())["resolved_reason"] = gone;
      alert.set_state(v1::RESOLVED);
      alert.set_resolved_unix_ms(absl::ToUnixMillis(now));
      sink_->OnAlertChange(alert, rule);
      ++result.orphaned;
      continue;
    }

    Instance instance;
    instance.rule = rule;
    instance.active_since = absl::FromUnixMillis(alert.active_since_unix_ms());
    instance.last_data = now;  // no data since the restart: the stale clocks start here
    std::string key;
    auto label = [&alert](const std::string& name) {
      auto it = alert.labels().find(name);
      return it == alert.labels().end() ? std::string() : it->second;
    };
    if (alert.evaluated_unix_ms() > 0 || FleetWide(*rule)) {
      // A record of this version names its key labels; a fleet-wide alert's are its groups'.
      Labels key_labels;
      if (alert.evaluated_unix_ms() > 0) {
        for (const std::string& name : alert.key_labels()) {
          key_labels[name] = label(name);
        }
      } else {
        for (const std::string& name : rule->expr.by) {
          key_labels[name] = label(name);
          alert.add_key_labels(name);
        }
      }
      key = InstanceKey(*rule, alert.agent_id(), key_labels);
    } else {
      // An older record: its labels mix the series' and the agent's, told apart on connect.
      Labels all;
      for (const auto& [k, v] : alert.labels()) {
        if (!EngineLabel(k)) {
          all[k] = v;
        }
      }
      instance.provisional = true;
      key = absl::StrCat("\x1e", InstanceKey(*rule, alert.agent_id(), all));
    }

    if (state == v1::PENDING) {
      const int64_t judged_ms =
          alert.evaluated_unix_ms() > 0 ? alert.evaluated_unix_ms() : alert.active_since_unix_ms();
      if (now - absl::FromUnixMillis(judged_ms) > rule->for_duration + options_.for_outage_grace) {
        instance.restart_timer = true;
      }
    } else if (state == v1::FIRING) {
      // Nobody has judged it since the last run stopped: stale until data says otherwise.
      alert.set_state(v1::STALE);
      (*alert.mutable_labels())["stale_reason"] = "the controller restarted";
    }
    if (FleetWide(*rule)) {
      // Its groups' members come back one by one: give them time before judging empty groups.
      refilling_until_[found->second] =
          std::max(refilling_until_[found->second], now + options_.no_data_stale_after);
    }
    instance.alert = std::move(alert);
    const size_t before = instances_.size();
    AdoptLocked(std::move(key), std::move(instance), now);
    result.superseded += before + 1 - instances_.size();
  }
  for (const auto& [key, instance] : instances_) {
    if (instance.alert.state() != v1::PENDING) {
      ++result.firing;
    } else if (instance.restart_timer) {
      ++result.pending_restarted;
    } else {
      ++result.pending_kept;
    }
  }
  return result;
}

void RuleEngine::AdoptLocked(std::string key, Instance instance, absl::Time now) {
  auto existing = instances_.find(key);
  if (existing == instances_.end()) {
    instances_.emplace(std::move(key), std::move(instance));
    return;
  }
  if (Newer(existing->second.alert, instance.alert)) {
    Supersede(instance, existing->second.alert.id(), now);
    return;
  }
  Supersede(existing->second, instance.alert.id(), now);
  existing->second = std::move(instance);
}

void RuleEngine::Supersede(Instance& loser, const std::string& kept_id, absl::Time now) {
  v1::Alert& a = loser.alert;
  (*a.mutable_labels())["resolved_reason"] = absl::StrCat("superseded by ", kept_id);
  a.set_state(v1::RESOLVED);
  a.set_resolved_unix_ms(absl::ToUnixMillis(now));
  sink_->OnAlertChange(a, loser.rule);
}

void RuleEngine::RekeyProvisionalLocked(const std::string& agent_id, const Labels& agent_labels,
                                        absl::Time now) {
  std::vector<std::string> keys;
  for (const auto& [key, instance] : instances_) {
    if (instance.provisional && instance.alert.agent_id() == agent_id) {
      keys.push_back(key);
    }
  }
  for (const std::string& old_key : keys) {
    Instance instance = std::move(instances_.extract(old_key).mapped());
    // The series' labels are those the agent does not carry itself (series labels win on a
    // clash when an alert is born, so one with the agent's very value cannot be told apart).
    Labels series_labels;
    for (const auto& [k, v] : instance.alert.labels()) {
      auto agent = agent_labels.find(k);
      if (EngineLabel(k) || (agent != agent_labels.end() && agent->second == v)) {
        continue;
      }
      series_labels[k] = v;
    }
    instance.provisional = false;
    instance.alert.clear_key_labels();
    for (const auto& [k, v] : series_labels) {
      instance.alert.add_key_labels(k);
    }
    AdoptLocked(InstanceKey(*instance.rule, agent_id, series_labels), std::move(instance), now);
  }
}

void RuleEngine::OnDisconnected(const std::string& agent_id) {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  for (auto it = instances_.begin(); it != instances_.end();) {
    auto current = it++;
    Instance& instance = current->second;
    if (instance.alert.agent_id() != agent_id) {
      continue;
    }
    if (instance.alert.state() == v1::PENDING) {
      Resolve(current, now);  // never fired: dropped, not stale
    } else if (instance.alert.state() == v1::FIRING) {
      MarkStale(instance, "its agent disconnected", now);
    }
  }
  ForgetContributionsLocked(agent_id);
}

void RuleEngine::ForgetAgent(const std::string& agent_id) {
  absl::MutexLock lock(&mu_);
  ForgetContributionsLocked(agent_id);
}

void RuleEngine::ForgetContributionsLocked(const std::string& agent_id) {
  for (auto& per_rule : contributions_) {
    for (auto it = per_rule.begin(); it != per_rule.end();) {
      if (it->second.agent_id == agent_id) {
        it = per_rule.erase(it);
        aggregates_dirty_ = true;
      } else {
        ++it;
      }
    }
  }
}

void RuleEngine::OnTelemetry(const std::string& agent_id, const v1::TelemetryBatch& batch,
                             const std::vector<SeriesState*>& dictionary) {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  static const Labels kNoLabels;
  auto labels_it = agent_labels_.find(agent_id);
  const Labels& agent_labels = labels_it == agent_labels_.end() ? kNoLabels : labels_it->second;

  // Each series once per batch, however many snapshots carried it.
  std::unordered_set<const SeriesState*> touched;
  auto touch = [&](uint32_t id) {
    if (id < dictionary.size() && dictionary[id] != nullptr) {
      touched.insert(dictionary[id]);
    }
  };
  for (const v1::Snapshot& snapshot : batch.snapshots()) {
    for (uint32_t id : snapshot.series_ids()) {
      touch(id);
    }
    for (const v1::HistogramPoint& point : snapshot.histograms()) {
      touch(point.series_id());
    }
  }
  for (const SeriesState* series : touched) {
    if (auto it = per_agent_rules_.find(series->name); it != per_agent_rules_.end()) {
      for (const Rule* rule : it->second) {
        if (Matches(*rule, *series, agent_labels)) {
          Evaluate(*rule, agent_id, *series, now);
        }
      }
    }
    if (auto it = aggregate_rules_.find(series->name); it != aggregate_rules_.end()) {
      for (size_t index : it->second) {
        const Rule& rule = rules_[index];
        double value = 0;
        if (!Matches(rule, *series, agent_labels) || !SeriesValue(rule, *series, now, &value)) {
          continue;
        }
        Contribution& c = contributions_[index][series];
        c.agent_id = agent_id;
        c.value = value;
        if (c.group_key.empty()) {
          c.group_key = "\x1f";
          for (const std::string& by : rule.expr.by) {
            const std::string* v = Label(by, series->labels, agent_labels);
            c.group_labels[by] = v == nullptr ? "" : *v;
            absl::StrAppend(&c.group_key, by, "=", c.group_labels[by], "\x1f");
          }
        }
        aggregates_dirty_ = true;
      }
    }
  }
  if (aggregates_dirty_ && now - last_aggregate_ >= options_.aggregate_every) {
    EvaluateAggregates(now);
  }
}

void RuleEngine::Evaluate(const Rule& rule, const std::string& agent_id, const SeriesState& series,
                          absl::Time now) {
  double value = 0;
  if (!SeriesValue(rule, series, now, &value)) {
    return;
  }
  ++evaluations_;
  static const Labels kNoLabels;
  auto labels_it = agent_labels_.find(agent_id);
  const Labels& agent_labels = labels_it == agent_labels_.end() ? kNoLabels : labels_it->second;
  const std::string key = InstanceKey(rule, agent_id, series.labels);
  Update(rule, key, agent_id, series.labels, agent_labels, value,
         Compare(value, rule.expr.op, rule.expr.threshold), SeriesTime(rule, series, now), now);
}

void RuleEngine::EvaluateAggregates(absl::Time now) {
  aggregates_dirty_ = false;
  last_aggregate_ = now;
  for (size_t index = 0; index < rules_.size(); ++index) {
    const Rule& rule = rules_[index];
    if (rule.expr.aggregation == Aggregation::kNone) {
      continue;
    }
    struct Group {
      Labels labels;
      double sum = 0, min = std::numeric_limits<double>::infinity(),
             max = -std::numeric_limits<double>::infinity();
      size_t count = 0;
    };
    std::map<std::string, Group> groups;
    for (const auto& [series, c] : contributions_[index]) {
      Group& g = groups[c.group_key];
      if (g.count == 0) {
        g.labels = c.group_labels;
      }
      g.sum += c.value;
      g.min = std::min(g.min, c.value);
      g.max = std::max(g.max, c.value);
      ++g.count;
    }
    std::unordered_set<std::string> live_keys;
    for (const auto& [group_key, g] : groups) {
      double value = 0;
      switch (rule.expr.aggregation) {
        case Aggregation::kSum:
          value = g.sum;
          break;
        case Aggregation::kAvg:
          value = g.sum / static_cast<double>(g.count);
          break;
        case Aggregation::kMin:
          value = g.min;
          break;
        case Aggregation::kMax:
          value = g.max;
          break;
        case Aggregation::kCount:
          value = static_cast<double>(g.count);
          break;
        case Aggregation::kNone:
          break;
      }
      ++evaluations_;
      const std::string key = InstanceKey(rule, "", g.labels);
      live_keys.insert(key);
      static const Labels kNoLabels;
      Update(rule, key, "", g.labels, kNoLabels, value,
             Compare(value, rule.expr.op, rule.expr.threshold), now, now);
    }
    // A group with no member left is judged on nothing: its alert resolves (unless the rule was
    // just changed by a reload and its contributions are still coming back).
    if (now < refilling_until_[index]) {
      continue;
    }
    for (auto it = instances_.begin(); it != instances_.end();) {
      auto current = it++;
      if (current->second.rule == &rule && !live_keys.contains(current->first)) {
        Resolve(current, now);
      }
    }
  }
}

void RuleEngine::Update(const Rule& rule, const std::string& key, const std::string& agent_id,
                        const Labels& labels, const Labels& more_labels, double value, bool met,
                        absl::Time at, absl::Time now) {
  auto it = instances_.find(key);
  const int64_t at_ms = absl::ToUnixMillis(at);
  if (!met) {
    if (it != instances_.end()) {
      it->second.alert.set_value(value);
      it->second.alert.set_evaluated_unix_ms(at_ms);
      Resolve(it, at);
    }
    return;
  }
  const v1::Severity severity = rule.SeverityFor(value);
  if (it == instances_.end()) {
    Instance instance;
    instance.rule = &rule;
    instance.active_since = at;
    v1::Alert& a = instance.alert;
    a.set_id(RandomId("alert-"));
    a.set_rule(rule.name);
    a.set_agent_id(agent_id);
    // Labels are copied once, when the alert is born; `labels` win over `more_labels`.
    a.mutable_labels()->insert(labels.begin(), labels.end());
    a.mutable_labels()->insert(more_labels.begin(), more_labels.end());
    for (const auto& [name, v] : labels) {
      a.add_key_labels(name);  // so a restarted controller keys it the same way
    }
    a.set_expr(rule.expr.text);
    a.set_summary(rule.summary);
    a.set_runbook(rule.runbook);
    a.set_source("rules");
    a.set_active_since_unix_ms(at_ms);
    it = instances_.emplace(key, std::move(instance)).first;
  }
  Instance& instance = it->second;
  instance.last_data = now;
  v1::Alert& a = instance.alert;
  a.set_value(value);
  a.set_evaluated_unix_ms(at_ms);
  const v1::AlertState before = a.state();
  const v1::Severity severity_before = a.severity();
  a.set_severity(severity);
  if (before == v1::PENDING && instance.restart_timer) {
    // Restored after an outage longer than `for` allows: the wait starts again now.
    instance.restart_timer = false;
    instance.active_since = at;
    a.set_active_since_unix_ms(at_ms);
    instance.last_reported = absl::InfinitePast();
  }
  if (before == v1::PENDING || before == v1::ALERT_STATE_UNSPECIFIED) {
    if (at - instance.active_since >= rule.for_duration) {
      a.set_state(v1::FIRING);
      a.set_fired_unix_ms(at_ms);
      instance.last_reported = at;
      sink_->OnAlertChange(a, &rule);
    } else if (before == v1::ALERT_STATE_UNSPECIFIED ||
               at - instance.last_reported >= options_.pending_checkpoint_every) {
      a.set_state(v1::PENDING);
      instance.last_reported = at;
      sink_->OnAlertChange(a, &rule);
    }
    return;
  }
  if (before == v1::STALE) {
    a.mutable_labels()->erase("stale_reason");
    a.set_state(v1::FIRING);
    sink_->OnAlertChange(a, &rule);
    return;
  }
  if (severity != severity_before) {
    sink_->OnAlertChange(a, &rule);
  }
}

void RuleEngine::MarkStale(Instance& instance, absl::string_view reason, absl::Time now) {
  v1::Alert& a = instance.alert;
  a.set_state(v1::STALE);
  (*a.mutable_labels())["stale_reason"] = std::string(reason);
  instance.last_data = now;  // stale since now: stale_resolve_after counts from here
  sink_->OnAlertChange(a, instance.rule);
}

void RuleEngine::Resolve(std::unordered_map<std::string, Instance>::iterator it, absl::Time now) {
  v1::Alert& a = it->second.alert;
  a.set_state(v1::RESOLVED);
  a.set_resolved_unix_ms(absl::ToUnixMillis(now));
  sink_->OnAlertChange(a, it->second.rule);
  instances_.erase(it);
}

void RuleEngine::Tick() {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  if (aggregates_dirty_ || now - last_aggregate_ >= absl::Seconds(1)) {
    EvaluateAggregates(now);
  }
  for (auto it = instances_.begin(); it != instances_.end();) {
    auto current = it++;
    Instance& instance = current->second;
    const v1::AlertState state = instance.alert.state();
    if (state == v1::FIRING && now - instance.last_data >= options_.no_data_stale_after) {
      MarkStale(instance,
                absl::StrCat("no data for ", absl::FormatDuration(options_.no_data_stale_after)),
                now);
    } else if (state == v1::PENDING && now - instance.last_data >= options_.no_data_stale_after) {
      Resolve(current, now);
    } else if (state == v1::STALE && now - instance.last_data >= options_.stale_resolve_after) {
      (*instance.alert.mutable_labels())["resolved_reason"] = absl::StrCat(
          "stale for ", absl::FormatDuration(options_.stale_resolve_after), " without data");
      Resolve(current, now);
    }
  }
}

std::vector<v1::Alert> RuleEngine::ActiveAlerts() const {
  absl::MutexLock lock(&mu_);
  std::vector<v1::Alert> alerts;
  alerts.reserve(instances_.size());
  for (const auto& [key, instance] : instances_) {
    alerts.push_back(instance.alert);
  }
  std::sort(alerts.begin(), alerts.end(), [](const v1::Alert& a, const v1::Alert& b) {
    return a.active_since_unix_ms() < b.active_since_unix_ms();
  });
  return alerts;
}

uint64_t RuleEngine::evaluations() const {
  absl::MutexLock lock(&mu_);
  return evaluations_;
}

size_t RuleEngine::firing_count() const {
  absl::MutexLock lock(&mu_);
  size_t n = 0;
  for (const auto& [key, instance] : instances_) {
    n += instance.alert.state() == v1::FIRING ? 1 : 0;
  }
  return n;
}

}  // namespace vigil::controller
