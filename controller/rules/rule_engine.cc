#include "controller/rules/rule_engine.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>
#include <unordered_set>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_set.h"
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
// The quantile comes from the series' running merge for the rule's window: the intervals that
// entered or left since the last evaluation are added or taken back, whatever the window's length.
bool SeriesValue(const Operand& operand, absl::Duration rule_window, SeriesState& series,
                 absl::Time now, double* value) {
  const int64_t window_ms = absl::ToInt64Milliseconds(rule_window);
  const int64_t cutoff = absl::ToUnixMillis(now) - window_ms;
  if (operand.quantile == 0) {
    if (series.count() == 0 || series.latest_ms() <= cutoff) {
      return false;
    }
    *value = series.latest();
    return true;
  }
  HistogramWindow* window = series.histograms();
  if (window == nullptr || window->empty()) {
    return false;
  }
  const CompactHistogram& merged = window->Windowed(window_ms, cutoff);
  if (merged.empty()) {
    return false;
  }
  *value = merged.Quantile(operand.quantile);
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
         a.labels == b.labels && a.diagnostics == b.diagnostics;
}

bool FleetWide(const Rule& rule) { return rule.expr.aggregation != Aggregation::kNone; }

// When the series' value was measured: its newest point or histogram, never after `now`.
absl::Time SeriesTime(const Rule& rule, const SeriesState& series, absl::Time now) {
  // Per-agent rules only: their operand is the expression itself.
  int64_t ms = 0;
  if (rule.expr.quantile == 0) {
    ms = series.latest_ms();
  } else if (const HistogramWindow* window = series.histograms(); window != nullptr) {
    ms = window->back_ms();
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
  contributions_.resize(2 * rules_.size());
  groups_.resize(2 * rules_.size());
  merges_.resize(2 * rules_.size());
  refilling_until_.assign(rules_.size(), absl::InfinitePast());
  slots_.resize(1);
  rate_blocks_.resize(1);
  IndexRules();
}

void RuleEngine::IndexRules() {
  metric_rules_.clear();
  has_rate_rules_ = false;
  for (size_t i = 0; i < rules_.size(); ++i) {
    const Rule& rule = rules_[i];
    if (!FleetWide(rule)) {
      has_rate_rules_ |= rule.expr.range_function == RangeFunction::kRate;
      metric_rules_[rule.expr.metric].per_agent.push_back(&rule);
      continue;
    }
    for (size_t side = 0; side < rule.expr.operands().size(); ++side) {
      const Operand& operand = *rule.expr.operands()[side];
      has_rate_rules_ |= operand.range_function == RangeFunction::kRate;
      metric_rules_[operand.metric].aggregate.push_back(OperandId(i, side));
    }
  }
  ++rules_generation_;  // every slot re-reads its rules
  if (rules_generation_ == 0) {
    rules_generation_ = 1;  // 0 marks a stale slot
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
  const size_t operands = 2 * rules.size();  // see OperandId
  std::vector<absl::flat_hash_map<uint32_t, Contribution>> contributions(operands);
  std::vector<absl::flat_hash_map<std::string, std::weak_ptr<const Group>>> groups(operands);
  std::vector<Merges> merges(operands);
  std::vector<absl::Time> refilling_until(rules.size(), absl::InfinitePast());
  for (size_t i = 0; i < rules.size(); ++i) {
    auto old = old_index.find(rules[i].name);
    if (old == old_index.end() || !FleetWide(rules[i])) {
      continue;
    }
    const Rule& old_rule = rules_[old->second];
    if (old_rule.expr.text == rules[i].expr.text && old_rule.window == rules[i].window) {
      for (size_t side = 0; side < 2; ++side) {
        const size_t from = OperandId(old->second, side), to = OperandId(i, side);
        contributions[to] = std::move(contributions_[from]);
        groups[to] = std::move(groups_[from]);
        merges[to] = std::move(merges_[from]);
      }
      refilling_until[i] = refilling_until_[old->second];
    } else {
      refilling_until[i] = now + options_.no_data_stale_after;
    }
  }

  // The old rules stay alive until every alert points at its new rule.
  const std::vector<Rule> old_rules = std::exchange(rules_, std::move(rules));
  contributions_ = std::move(contributions);
  groups_ = std::move(groups);
  merges_ = std::move(merges);
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

bool RuleEngine::Matches(const Operand& operand, const SeriesState& series,
                         const Labels& agent_labels) {
  static const std::string kEmpty;
  for (const LabelMatcher& m : operand.matchers) {
    const std::string* actual = Label(m.label, series.labels(), agent_labels);
    if (!m.Matches(actual == nullptr ? kEmpty : *actual)) {
      return false;
    }
  }
  return true;
}

bool RuleEngine::Applies(const Operand& operand, const SeriesState& series,
                         const AgentEntry& agent) {
  if (operand.scraped && operand.range_function != RangeFunction::kNone &&
      !std::binary_search(agent.rate_metrics.begin(), agent.rate_metrics.end(), operand.metric)) {
    return false;  // the agent does not say it sends this metric as a per-second rate
  }
  return Matches(operand, series, agent.labels);
}

void RuleEngine::OnConnected(const std::string& agent_id, const Labels& agent_labels,
                             std::vector<std::string> rate_metrics) {
  const absl::Time now = clock_->Now();
  std::sort(rate_metrics.begin(), rate_metrics.end());
  absl::MutexLock lock(&mu_);
  AgentEntry& agent = agents_[AgentIndex(agent_id)];
  if (agent.labels != agent_labels || agent.rate_metrics != rate_metrics) {
    agent.labels = agent_labels;
    agent.rate_metrics = std::move(rate_metrics);
    for (uint32_t id : agent.slots) {
      slots_[id].generation = 0;  // matchers may read the agent's labels and declarations
    }
  }
  RekeyProvisionalLocked(agent_id, agent_labels, now);
}

uint32_t RuleEngine::AgentIndex(const std::string& agent_id) {
  auto [it, added] = agent_index_.try_emplace(agent_id, static_cast<uint32_t>(agents_.size()));
  if (added) {
    agents_.emplace_back().id = agent_id;
  }
  return it->second;
}

RuleEngine::SeriesSlot& RuleEngine::SlotFor(SeriesState& series, uint32_t agent) {
  uint32_t id = series.rule_slot;
  if (id == 0 || id >= slots_.size() || slots_[id].series != &series) {
    if (free_slots_.empty()) {
      id = static_cast<uint32_t>(slots_.size());
      slots_.emplace_back();
    } else {
      id = free_slots_.back();
      free_slots_.pop_back();
    }
    slots_[id] = SeriesSlot{.series = &series, .agent = agent};
    series.rule_slot = id;
    agents_[agent].slots.push_back(id);
  }
  SeriesSlot& slot = slots_[id];
  if (slot.generation != rules_generation_) {
    // Once per series and rule set: which rules read it, and which of them match it.
    auto it = metric_rules_.find(series.name());
    slot.rules = it == metric_rules_.end() ? nullptr : &it->second;
    slot.matched = 0;
    slot.may_alert = ~uint64_t{0};  // alerts kept across a reload: look once
    if (slot.rules != nullptr) {
      const AgentEntry& entry = agents_[slot.agent];
      const size_t n = slot.rules->per_agent.size();
      for (size_t i = 0; i < n && i < 64; ++i) {
        if (Applies(slot.rules->per_agent[i]->expr, series, entry)) {
          slot.matched |= uint64_t{1} << i;
        }
      }
      for (size_t j = 0; j < slot.rules->aggregate.size() && n + j < 64; ++j) {
        if (Applies(OperandOf(slot.rules->aggregate[j]), series, entry)) {
          slot.matched |= uint64_t{1} << (n + j);
        }
      }
    }
    RefreshRateBlockLocked(slot, slot.agent);
    slot.generation = rules_generation_;
  }
  return slot;
}

void RuleEngine::RefreshRateBlockLocked(SeriesSlot& slot, uint32_t agent) {
  std::vector<int64_t> ranges;
  if (slot.rules != nullptr) {
    const AgentEntry& entry = agents_[agent];
    const size_t n = slot.rules->per_agent.size();
    const size_t total = n + slot.rules->aggregate.size();
    for (size_t k = 0; k < total; ++k) {
      const Operand& operand =
          k < n ? slot.rules->per_agent[k]->expr : OperandOf(slot.rules->aggregate[k - n]);
      if (operand.range_function != RangeFunction::kRate) {
        continue;
      }
      const bool matched =
          k < 64 ? (slot.matched >> k & 1) != 0 : Applies(operand, *slot.series, entry);
      if (matched) {
        ranges.push_back(absl::ToInt64Milliseconds(operand.range));
      }
    }
  }
  std::sort(ranges.begin(), ranges.end());
  ranges.erase(std::unique(ranges.begin(), ranges.end()), ranges.end());
  if (ranges.empty()) {
    FreeRateBlockLocked(slot);
    return;
  }
  if (slot.rates == 0) {
    if (free_rate_blocks_.empty()) {
      slot.rates = static_cast<uint32_t>(rate_blocks_.size());
      rate_blocks_.emplace_back();
    } else {
      slot.rates = free_rate_blocks_.back();
      free_rate_blocks_.pop_back();
    }
  }
  // Windows of ranges still read keep their samples (a reload that keeps a range loses nothing).
  std::vector<RateWindow>& old = rate_blocks_[slot.rates].windows;
  std::vector<RateWindow> windows;
  windows.reserve(ranges.size());
  for (int64_t range_ms : ranges) {
    auto kept = std::find_if(old.begin(), old.end(),
                             [&](const RateWindow& w) { return w.range_ms() == range_ms; });
    windows.push_back(kept != old.end() ? *kept : RateWindow(range_ms));
  }
  old = std::move(windows);
}

void RuleEngine::FreeRateBlockLocked(SeriesSlot& slot) {
  if (slot.rates == 0) {
    return;
  }
  rate_blocks_[slot.rates].windows = {};
  free_rate_blocks_.push_back(slot.rates);
  slot.rates = 0;
}

RuleEngine::RateUsage RuleEngine::rate_usage() const {
  absl::MutexLock lock(&mu_);
  RateUsage usage;
  for (size_t i = 1; i < rate_blocks_.size(); ++i) {
    const RateBlock& block = rate_blocks_[i];
    usage.bytes += sizeof(RateBlock) + block.windows.capacity() * sizeof(RateWindow);
    if (!block.windows.empty()) {
      ++usage.series;
      usage.windows += block.windows.size();
    }
  }
  usage.bytes += free_rate_blocks_.capacity() * sizeof(uint32_t);
  return usage;
}

bool RuleEngine::ValueLocked(const Operand& operand, absl::Duration window, const SeriesSlot& slot,
                             SeriesState& series, absl::Time now, double* value) {
  if (operand.range_function == RangeFunction::kNone) {
    return SeriesValue(operand, window, series, now, value);
  }
  return RangeValueLocked(operand, slot, series, now, value);
}

bool RuleEngine::RangeValueLocked(const Operand& operand, const SeriesSlot& slot,
                                  const SeriesState& series, absl::Time now, double* value) const {
  const int64_t now_ms = absl::ToUnixMillis(now);
  switch (operand.range_function) {
    case RangeFunction::kNone:
      return false;
    case RangeFunction::kIrate:
      // The newest sample is already a rate over its interval: irate is that sample.
      if (series.is_histogram() || series.count() == 0 ||
          series.latest_ms() <= now_ms - absl::ToInt64Milliseconds(operand.range)) {
        return false;
      }
      *value = series.latest();
      return true;
    case RangeFunction::kRate:
      break;
  }
  if (series.is_histogram() || slot.rates == 0) {
    return false;
  }
  const int64_t range_ms = absl::ToInt64Milliseconds(operand.range);
  for (const RateWindow& w : rate_blocks_[slot.rates].windows) {
    if (w.range_ms() == range_ms) {
      return w.Average(now_ms, value);
    }
  }
  return false;
}

void RuleEngine::MayAlertAgainLocked(const AgentEntry* agent) {
  if (agent == nullptr) {
    for (SeriesSlot& slot : slots_) {
      slot.may_alert = ~uint64_t{0};
    }
    return;
  }
  for (uint32_t id : agent->slots) {
    slots_[id].may_alert = ~uint64_t{0};
  }
}

size_t RuleEngine::slots_in_use() const {
  static_assert(sizeof(SeriesSlot) + sizeof(uint32_t) <= kSlotBytes);
  absl::MutexLock lock(&mu_);
  return slots_.size() - 1 - free_slots_.size();
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
  MayAlertAgainLocked(nullptr);  // adopted alerts are found by key, not by a slot's bit
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
    EmplaceInstanceLocked(std::move(key), std::move(instance));
    return;
  }
  if (Newer(existing->second.alert, instance.alert)) {
    Supersede(instance, existing->second.alert.id(), now);
    return;
  }
  Supersede(existing->second, instance.alert.id(), now);
  EraseInstanceLocked(existing);  // the same key, but the index goes by the alert's agent
  EmplaceInstanceLocked(std::move(key), std::move(instance));
}

std::unordered_map<std::string, RuleEngine::Instance>::iterator RuleEngine::EmplaceInstanceLocked(
    std::string key, Instance instance) {
  instance_keys_by_agent_[instance.alert.agent_id()].insert(key);
  return instances_.emplace(std::move(key), std::move(instance)).first;
}

void RuleEngine::EraseInstanceLocked(std::unordered_map<std::string, Instance>::iterator it) {
  if (auto keys = instance_keys_by_agent_.find(it->second.alert.agent_id());
      keys != instance_keys_by_agent_.end()) {
    keys->second.erase(it->first);
    if (keys->second.empty()) {
      instance_keys_by_agent_.erase(keys);
    }
  }
  instances_.erase(it);
}

RuleEngine::Instance RuleEngine::ExtractInstanceLocked(const std::string& key) {
  auto it = instances_.find(key);
  Instance instance = std::move(it->second);
  EraseInstanceLocked(it);
  return instance;
}

std::vector<std::string> RuleEngine::InstanceKeysOfLocked(const std::string& agent_id) const {
  auto keys = instance_keys_by_agent_.find(agent_id);
  if (keys == instance_keys_by_agent_.end()) {
    return {};
  }
  return std::vector<std::string>(keys->second.begin(), keys->second.end());
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
  for (std::string& key : InstanceKeysOfLocked(agent_id)) {
    if (instances_.at(key).provisional) {
      keys.push_back(std::move(key));
    }
  }
  for (const std::string& old_key : keys) {
    Instance instance = ExtractInstanceLocked(old_key);
    // The series' labels are those the agent does not carry itself (series labels win on a
    // clash when an alert is born, so one with the agent's very value cannot be told apart).
    Labels series_labels;
    for (const auto& [k, v] : instance.alert.labels()) {
      auto agent = agent_labels.find(k);
      auto own = instance.rule->labels.find(k);
      if (EngineLabel(k) || (agent != agent_labels.end() && agent->second == v) ||
          (own != instance.rule->labels.end() && own->second == v)) {
        continue;
      }
      series_labels[k] = v;
    }
    instance.provisional = false;
    instance.alert.clear_key_labels();
    for (const auto& [k, v] : series_labels) {
      instance.alert.add_key_labels(k);
    }
    // The key first: the arguments' order of evaluation is unspecified, and `instance` is moved.
    std::string key = InstanceKey(*instance.rule, agent_id, series_labels);
    AdoptLocked(std::move(key), std::move(instance), now);
  }
  if (!keys.empty()) {
    MayAlertAgainLocked(&agents_[AgentIndex(agent_id)]);
  }
}

void RuleEngine::OnDisconnected(const std::string& agent_id) {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  for (const std::string& key : InstanceKeysOfLocked(agent_id)) {
    auto current = instances_.find(key);
    Instance& instance = current->second;
    if (instance.alert.state() == v1::PENDING) {
      Resolve(current, now);  // never fired: dropped, not stale
    } else if (instance.alert.state() == v1::FIRING) {
      MarkStale(instance, "its agent disconnected", now);
    }
  }
  if (auto it = agent_index_.find(agent_id); it != agent_index_.end()) {
    ForgetContributionsLocked(agents_[it->second]);
  }
}

void RuleEngine::ForgetAgent(const std::string& agent_id) {
  absl::MutexLock lock(&mu_);
  if (auto it = agent_index_.find(agent_id); it != agent_index_.end()) {
    FreeSlotsLocked(agents_[it->second]);
  }
}

void RuleEngine::FreeSlotsLocked(AgentEntry& agent) {
  ForgetContributionsLocked(agent);
  for (uint32_t id : agent.slots) {
    if (slots_[id].series != nullptr) {
      FreeRateBlockLocked(slots_[id]);
      slots_[id] = SeriesSlot{};
      free_slots_.push_back(id);
    }
  }
  agent.slots.clear();
  agent.slots.shrink_to_fit();
}

void RuleEngine::ForgetContributionsLocked(const AgentEntry& agent) {
  for (size_t operand = 0; operand < contributions_.size(); ++operand) {
    auto& per_operand = contributions_[operand];
    if (per_operand.empty()) {
      continue;
    }
    for (uint32_t id : agent.slots) {
      auto it = per_operand.find(id);
      if (it == per_operand.end()) {
        continue;
      }
      if (auto q = merges_[operand].groups.find(it->second.group.get());
          q != merges_[operand].groups.end()) {
        q->second.members_left = true;
      }
      per_operand.erase(it);
      aggregates_dirty_ = true;
    }
  }
}

std::shared_ptr<const RuleEngine::Group> RuleEngine::GroupFor(size_t operand_id,
                                                              const SeriesState& series,
                                                              const Labels& agent_labels) {
  auto group = std::make_shared<Group>();
  for (const std::string& by : OperandOf(operand_id).by) {
    const std::string* v = Label(by, series.labels(), agent_labels);
    group->labels[by] = v == nullptr ? "" : *v;
  }
  // From the sorted labels: the two sides of a division find each other's groups by key.
  group->key = "\x1f";
  for (const auto& [name, value] : group->labels) {
    absl::StrAppend(&group->key, name, "=", value, "\x1f");
  }
  auto& groups = groups_[operand_id];
  std::weak_ptr<const Group>& slot = groups[group->key];
  if (std::shared_ptr<const Group> existing = slot.lock()) {
    return existing;
  }
  slot = group;
  if (groups.size() > 64 && groups.size() > 2 * contributions_[operand_id].size()) {
    absl::erase_if(groups, [](const auto& entry) { return entry.second.expired(); });
  }
  return group;
}

void RuleEngine::OnTelemetry(const std::string& agent_id, const v1::TelemetryBatch& batch,
                             const std::vector<SeriesState*>& dictionary) {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  const uint32_t agent_index = AgentIndex(agent_id);
  if (++batch_stamp_ == 0) {
    // Wrapped: no slot may keep a stamp that reads as this batch's.
    for (SeriesSlot& slot : slots_) {
      slot.stamp = 0;
    }
    batch_stamp_ = 1;
  }
  if (has_rate_rules_) {
    // Every sample into the rate windows of its series first (a batch may carry several
    // rounds: a replay), then each series is judged once on all of them.
    for (const v1::Snapshot& snapshot : batch.snapshots()) {
      const int n = std::min(snapshot.series_ids_size(), snapshot.values_size());
      for (int i = 0; i < n; ++i) {
        const uint32_t id = snapshot.series_ids(i);
        const double value = snapshot.values(i);
        if (id >= dictionary.size() || dictionary[id] == nullptr || !std::isfinite(value) ||
            dictionary[id]->is_histogram()) {
          continue;
        }
        const SeriesSlot& slot = SlotFor(*dictionary[id], agent_index);
        if (slot.rates == 0) {
          continue;
        }
        for (RateWindow& w : rate_blocks_[slot.rates].windows) {
          w.Add(snapshot.time_unix_ms(), value);
        }
      }
    }
  }
  // Each series once per batch, however many snapshots carried it, in the batch's order.
  auto visit = [&](uint32_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (id >= dictionary.size() || dictionary[id] == nullptr) {
      return;
    }
    SeriesState& series = *dictionary[id];
    SeriesSlot& slot = SlotFor(series, agent_index);
    if (slot.stamp == batch_stamp_ || slot.rules == nullptr) {
      return;
    }
    slot.stamp = batch_stamp_;
    const AgentEntry& agent = agents_[agent_index];
    const size_t n = slot.rules->per_agent.size();
    for (size_t i = 0; i < n; ++i) {
      if (i < 64 ? (slot.matched >> i & 1) != 0
                 : Applies(slot.rules->per_agent[i]->expr, series, agent)) {
        Evaluate(slot, i, agent, series, now);
      }
    }
    for (size_t j = 0; j < slot.rules->aggregate.size(); ++j) {
      const size_t id = slot.rules->aggregate[j];
      const Operand& operand = OperandOf(id);
      if (!(n + j < 64 ? (slot.matched >> (n + j) & 1) != 0 : Applies(operand, series, agent))) {
        continue;
      }
      double value = 0;
      if (operand.aggregation == Aggregation::kQuantile) {
        if (!series.is_histogram()) {
          continue;  // a scraped name some agent sends as a gauge
        }
      } else if (!ValueLocked(operand, rules_[id / 2].window, slot, series, now, &value)) {
        continue;
      }
      Contribution& c = contributions_[id][series.rule_slot];
      if (c.group == nullptr) {
        c.group = GroupFor(id, series, agent.labels);
      }
      c.value = value;
      aggregates_dirty_ = true;
    }
  };
  for (const v1::Snapshot& snapshot : batch.snapshots()) {
    for (uint32_t id : snapshot.series_ids()) {
      visit(id);
    }
    for (const v1::HistogramPoint& point : snapshot.histograms()) {
      visit(point.series_id());
    }
  }
  if (aggregates_dirty_ && (now - last_aggregate_ >= options_.aggregate_every || merge_pending_) &&
      AggregateBudgetAllowsLocked()) {
    EvaluateAggregates(now, /*read_series=*/true);
  }
}

bool RuleEngine::AggregateBudgetAllowsLocked() {
  // The smaller of the last two walks: one the scheduler preempted does not hold the next.
  const absl::Duration cost = std::min(aggregate_cost_, previous_aggregate_cost_);
  if (aggregate_members_ < options_.aggregate_hold_from_members ||
      absl::Now() - aggregate_ended_ >= cost * options_.aggregate_cost_share) {
    return true;
  }
  ++aggregates_deferred_;
  return false;
}

void RuleEngine::Evaluate(SeriesSlot& slot, size_t i, const AgentEntry& agent,
                          SeriesState& series, absl::Time now) {
  const Rule& rule = *slot.rules->per_agent[i];
  double value = 0;
  if (!ValueLocked(rule.expr, rule.window, slot, series, now, &value)) {
    return;
  }
  ++evaluations_;
  const bool met = Compare(value, rule.expr.op, rule.expr.threshold);
  const uint64_t bit = i < 64 ? uint64_t{1} << i : 0;
  if (!met && bit != 0 && (slot.may_alert & bit) == 0) {
    return;  // not met, and no alert to resolve: nothing to look up
  }
  const std::string key = InstanceKey(rule, agent.id, series.labels());
  const bool alerting = Update(rule, key, agent.id, series.labels(), agent.labels, value, met,
                               SeriesTime(rule, series, now), now);
  slot.may_alert = alerting ? slot.may_alert | bit : slot.may_alert & ~bit;
}

void RuleEngine::MergeQuantilesLocked(size_t id, absl::Time now) {
  const Rule& rule = rules_[id / 2];
  const Operand& operand = OperandOf(id);
  const int64_t window_ms = absl::ToInt64Milliseconds(rule.window);
  const int64_t cutoff = absl::ToUnixMillis(now) - window_ms;
  Merges& merges = merges_[id];
  const uint64_t round = ++merges.round;
  for (auto& [group, q] : merges.groups) {
    q.merged.Clear();  // keeps its buckets' memory for this merge
  }
  for (const auto& [slot_id, c] : contributions_[id]) {
    QuantileGroup& q = merges.groups[c.group.get()];
    if (q.group == nullptr) {
      q.group = c.group;
    }
    q.round = round;
    SeriesState* series = slots_[slot_id].series;
    HistogramWindow* window = series == nullptr ? nullptr : series->histograms();
    if (window == nullptr || window->empty()) {
      continue;
    }
    // The member's running merge over the window, added in place: no copy per member.
    window->Windowed(window_ms, cutoff).AddTo(&q.merged);
  }
  absl::erase_if(merges.groups, [round](const auto& entry) { return entry.second.round != round; });
  for (auto& [group, q] : merges.groups) {
    q.has_value = !q.merged.empty();
    q.value = q.has_value ? q.merged.Quantile(operand.quantile) : 0;
    q.members_left = false;
  }
}

void RuleEngine::GroupValuesLocked(size_t id, absl::Time now, bool read_series,
                                   std::vector<GroupValue>* out) {
  const Operand& operand = OperandOf(id);
  auto& contributions = contributions_[id];
  if (operand.aggregation == Aggregation::kQuantile) {
    Merges& merges = merges_[id];
    if (read_series) {
      MergeQuantilesLocked(id, now);
    } else {
      // The last merge's values, but a group whose members left is judged again only by the next
      // merge, and one with no member left has no value.
      absl::flat_hash_set<const Group*> present;
      for (const auto& [slot, c] : contributions) {
        present.insert(c.group.get());
      }
      for (const auto& [group, q] : merges.groups) {
        if (q.has_value && present.contains(group)) {
          out->push_back({group, q.value, /*known=*/!q.members_left});
        }
      }
      return;
    }
    for (const auto& [group, q] : merges.groups) {
      if (q.has_value) {
        out->push_back({group, q.value});
      }
    }
    return;
  }
  if (operand.range_function != RangeFunction::kNone) {
    // Judged again at `now`: samples age out of the range, and a member without any left
    // (its series stopped reporting) leaves the aggregate.
    absl::erase_if(contributions, [&](auto& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      const SeriesSlot& slot = slots_[entry.first];
      return slot.series == nullptr ||
             !RangeValueLocked(operand, slot, *slot.series, now, &entry.second.value);
    });
  }
  struct Accumulated {
    double sum = 0, min = std::numeric_limits<double>::infinity(),
           max = -std::numeric_limits<double>::infinity();
    size_t count = 0;
  };
  absl::flat_hash_map<const Group*, Accumulated> by_group;
  for (const auto& [slot, c] : contributions) {
    Accumulated& g = by_group[c.group.get()];
    g.sum += c.value;
    g.min = std::min(g.min, c.value);
    g.max = std::max(g.max, c.value);
    ++g.count;
  }
  out->reserve(out->size() + by_group.size());
  for (const auto& [group, g] : by_group) {
    double value = 0;
    switch (operand.aggregation) {
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
      case Aggregation::kQuantile:
      case Aggregation::kNone:
        break;
    }
    out->push_back({group, value});
  }
}

void RuleEngine::EvaluateAggregates(absl::Time now, bool read_series) {
  const absl::Time began = absl::Now();
  size_t members = 0;
  absl::Cleanup cost = [this, began, &members]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    aggregate_ended_ = absl::Now();
    previous_aggregate_cost_ = aggregate_cost_;
    aggregate_cost_ = aggregate_ended_ - began;
    aggregate_members_ = members;
  };
  aggregates_dirty_ = false;
  merge_pending_ = false;
  last_aggregate_ = now;
  std::vector<GroupValue> values, denominators;
  for (size_t index = 0; index < rules_.size(); ++index) {
    const Rule& rule = rules_[index];
    if (!FleetWide(rule)) {
      continue;
    }
    values.clear();
    denominators.clear();
    members += contributions_[OperandId(index, 0)].size();
    GroupValuesLocked(OperandId(index, 0), now, read_series, &values);
    if (rule.expr.denominator.has_value()) {
      members += contributions_[OperandId(index, 1)].size();
      GroupValuesLocked(OperandId(index, 1), now, read_series, &denominators);
      // One to one, by the groups' labels; no partner or a zero denominator: no value (PromQL:
      // no sample, or NaN, which compares false).
      absl::flat_hash_map<absl::string_view, const GroupValue*> below;
      for (const GroupValue& d : denominators) {
        below.emplace(d.group->key, &d);
      }
      size_t kept = 0;
      for (const GroupValue& v : values) {
        auto it = below.find(v.group->key);
        if (it == below.end() || (it->second->known && it->second->value == 0)) {
          continue;
        }
        const GroupValue& d = *it->second;
        const double ratio = v.value / d.value;
        if (v.known && d.known && !std::isfinite(ratio)) {
          continue;
        }
        values[kept++] = {v.group, ratio, v.known && d.known};
      }
      values.resize(kept);
    }
    // In the order of their keys, so alerts are reported in the same order every time.
    std::sort(values.begin(), values.end(),
              [](const GroupValue& a, const GroupValue& b) { return a.group->key < b.group->key; });
    std::unordered_set<std::string> live_keys;
    for (const GroupValue& g : values) {
      const std::string key = InstanceKey(rule, "", g.group->labels);
      live_keys.insert(key);
      if (!g.known) {
        aggregates_dirty_ = merge_pending_ = true;  // judged at the next batch's merge
        continue;
      }
      ++evaluations_;
      static const Labels kNoLabels;
      Update(rule, key, "", g.group->labels, kNoLabels, g.value,
             Compare(g.value, rule.expr.op, rule.expr.threshold), now, now);
    }
    // A group with no member left (or, divided, no value) is judged on nothing: its alert
    // resolves (unless the rule was just changed by a reload and its contributions are still
    // coming back).
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

bool RuleEngine::Update(const Rule& rule, const std::string& key, const std::string& agent_id,
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
    return false;
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
    a.mutable_labels()->insert(rule.labels.begin(), rule.labels.end());  // never replaces
    for (const auto& [name, v] : labels) {
      a.add_key_labels(name);  // so a restarted controller keys it the same way
    }
    a.set_expr(rule.expr.text);
    a.set_summary(rule.summary);
    a.set_runbook(rule.runbook);
    a.set_source("rules");
    a.set_active_since_unix_ms(at_ms);
    it = EmplaceInstanceLocked(key, std::move(instance));
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
    return true;
  }
  if (before == v1::STALE) {
    a.mutable_labels()->erase("stale_reason");
    a.set_state(v1::FIRING);
    sink_->OnAlertChange(a, &rule);
    return true;
  }
  if (severity != severity_before) {
    sink_->OnAlertChange(a, &rule);
  }
  return true;
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
  EraseInstanceLocked(it);
}

void RuleEngine::Tick() {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  if ((aggregates_dirty_ || now - last_aggregate_ >= absl::Seconds(1)) &&
      AggregateBudgetAllowsLocked()) {
    EvaluateAggregates(now, /*read_series=*/false);
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

uint64_t RuleEngine::aggregates_deferred() const {
  absl::MutexLock lock(&mu_);
  return aggregates_deferred_;
}

absl::Duration RuleEngine::aggregate_cost() const {
  absl::MutexLock lock(&mu_);
  return aggregate_cost_;
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
