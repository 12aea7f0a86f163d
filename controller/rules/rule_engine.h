// Evaluates alert rules as telemetry arrives, so detection costs one collection interval.
//
// Per-agent rules are evaluated on the batch that carried their series. Fleet-wide rules
// (sum/avg/min/max/count) keep each agent's latest contribution and are re-evaluated at most
// every `aggregate_every`, and on Tick(). Alerts move pending -> firing -> resolved; an alert
// whose agent disconnects, or whose series stops arriving, turns stale (never silently resolved)
// and is resolved only when fresh data says so or after `stale_resolve_after`.
//
// `for` is measured in telemetry time: from the sample that first met the condition to the sample
// being judged (never later than the controller's clock), so a delayed or replayed batch fires on
// the schedule its samples say, and a restart does not move the clock.
//
// Restore() takes back, at start, the alerts a previous run left in the store (see there).
//
// ReplaceRules() swaps the whole rule set at once (a configuration reload): an evaluation sees
// either the old rules or the new ones, never a mix. Alerts carry over by rule name; see there.
//
// Per-series state is found through SeriesState::rule_slot, a dense index into the engine's
// slots: a sample costs no string hashing, and a series whose value meets no rule and holds no
// alert costs a comparison per rule. Quantiles over a window come from the series' running
// windowed merge (HistogramWindow::Windowed), so their cost does not grow with the window.
// One engine per FleetState: slots are the engine's own.
//
// rate(x[r]) keeps, per series it reads and per distinct range, a RateWindow (a fixed ring of 30
// buckets, see rate_window.h) fed with every sample of the batches, late ones included; rules
// of the same range on one series share it, and a series no rate() rule matches has none.
// irate(x[r]) reads the series' newest point and keeps nothing. Fleet-wide rate()/irate() rules
// judge each member again at every aggregation, so a series that stops reporting leaves the
// aggregate once its samples are older than the range.
//
// Fleet-wide quantiles (pNN by (...) (x)) merge, per group, the running windowed merge of every
// member series (HistogramWindow::Windowed) into one histogram the group keeps and reuses: each
// member's view is added in place, never copied. Reading a series' histograms is for the ingest
// thread only, so the merges are made when OnTelemetry aggregates; Tick() judges the groups again
// on the last merges, and when members left since then (a disconnect) it leaves the rule for
// the next merge, unless no member is left at all (its groups then resolve). A division `A / B`
// is judged group by group on the two sides' values: a group missing on either side, or whose
// B is 0, has no value (its alert resolves, as a group without members does).
//
// A rule's `labels` are copied onto its alerts after the alert's own labels, never replacing
// them, and are not part of what identifies an alert.
//
// Every change is reported to the AlertSink while the engine's lock is held: sinks must only
// queue the change. Thread-safe; meant to be fed from the ingest thread and ticked by a timer.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/histogram.h"
#include "controller/ingest/fleet_state.h"
#include "controller/rules/rate_window.h"
#include "controller/rules/rule.h"
#include "vigil/v1/incident.pb.h"

namespace vigil::controller {

class AlertSink {
 public:
  virtual ~AlertSink() = default;
  // `alert.state` is the new state. RESOLVED with fired_unix_ms == 0 is a pending alert that
  // never fired (dropped); STALE carries the reason in alert.labels["stale_reason"]. A PENDING
  // alert is also reported again, unchanged but for value and evaluated_unix_ms, at most every
  // Options::pending_checkpoint_every: stored, that tells a restarted controller how long its
  // `for` timer went unwatched.
  virtual void OnAlertChange(const v1::Alert& alert, const Rule* rule) = 0;
};

class RuleEngine {
 public:
  struct Options {
    absl::Duration aggregate_every = absl::Milliseconds(200);
    // Fleet-wide rules walk every member: after a walk over `aggregate_hold_from_members` or
    // more, the next waits until `aggregate_cost_share` times its cost has passed (a 2 % share
    // of the ingest thread; 10,000 agents' walk takes milliseconds). Counted in members, not
    // time, so a small fleet's walk is never held whatever a cold start or a preemption costs it.
    size_t aggregate_hold_from_members = 1000;
    int aggregate_cost_share = 50;
    absl::Duration no_data_stale_after = absl::Seconds(30);
    absl::Duration stale_resolve_after = absl::Hours(1);
    absl::Duration pending_checkpoint_every = absl::Seconds(10);
    // A restored pending alert keeps its `for` start across an outage up to its rule's `for`
    // plus this (Prometheus' for-outage tolerance).
    absl::Duration for_outage_grace = absl::Minutes(1);
  };
  RuleEngine(std::vector<Rule> rules, const Clock* clock, AlertSink* sink, Options options);
  RuleEngine(std::vector<Rule> rules, const Clock* clock, AlertSink* sink)
      : RuleEngine(std::move(rules), clock, sink, Options{}) {}

  // `rate_metrics`: the scraped metrics the agent declares as per-second rates (Hello); a
  // rate()/irate() rule on a scraped metric reads only agents that declare it so.
  void OnConnected(const std::string& agent_id, const Labels& agent_labels,
                   std::vector<std::string> rate_metrics = {});
  void OnDisconnected(const std::string& agent_id);
  // The agent's series are about to be freed: forget every pointer to them.
  void ForgetAgent(const std::string& agent_id);
  // `dictionary` maps the batch's series ids to the FleetState's series, already updated. The
  // engine keeps its slot number in each series (SeriesState::rule_slot) and may advance the
  // series' windowed histogram merges: call on the ingest thread, which alone changes series.
  void OnTelemetry(const std::string& agent_id, const v1::TelemetryBatch& batch,
                   const std::vector<SeriesState*>& dictionary);
  // Fleet-wide rules, and alerts that went without data.
  void Tick();

  // What Restore() did, for the log.
  struct Restoration {
    size_t pending_kept = 0;       // `for` timer kept (outage within for + for_outage_grace)
    size_t pending_restarted = 0;  // timer starts again with the next sample that meets it
    size_t firing = 0;             // firing or stale: stale until data judges them again
    size_t superseded = 0;         // older copies of the same alert, resolved
    size_t orphaned = 0;           // of rules gone (or changed kind), resolved
  };
  // Takes back the alerts a previous run stored (source "rules"; PENDING, FIRING or STALE; any
  // others are ignored) as the engine's own, with the same ids, keyed like the alerts it makes.
  // Call once at start, before any telemetry; `now` is when this run started.
  // - PENDING keeps its `for` start when `now` - evaluated_unix_ms is within the rule's `for` plus
  //   for_outage_grace; otherwise its timer restarts with the next sample that meets the
  //   condition. Either way a sample that does not meet it ends the alert quietly (RESOLVED,
  //   never fired), and no data for no_data_stale_after ends it too.
  // - FIRING turns stale ("the controller restarted") without a report (the incident manager
  //   says so itself); the next sample that meets the condition reports FIRING for the same id,
  //   one that does not reports RESOLVED. Without data they follow the stale rules from `now`.
  // - Several copies of one alert (left by earlier versions' restarts): the newest stays, the
  //   others are reported RESOLVED with labels["resolved_reason"] = "superseded by <id>".
  // - Alerts of a rule no longer loaded, or that changed between per-agent and fleet-wide,
  //   are reported RESOLVED with the reason.
  // Records from before key_labels existed are matched to their series when their agent
  // connects (its labels are then told apart from the series' own).
  Restoration Restore(std::vector<v1::Alert> alerts, absl::Time now);

  // What ReplaceRules() did, by rule name, for the log.
  struct Replacement {
    std::vector<std::string> added, removed, changed;  // `changed`: same name, new definition
    size_t alerts_kept = 0;      // of rules still present: same id, same state
    size_t alerts_resolved = 0;  // of removed rules (or rules that changed kind)
  };
  // Swaps in a new rule set, already validated, atomically with respect to evaluation.
  // - A rule whose name is still present keeps its alerts (pending, firing or stale) with their
  //   ids, states and `for` clocks; the next evaluation judges them by the new definition. An
  //   alert the new definition no longer evaluates (a matcher now excludes its series) turns
  //   stale after `no_data_stale_after` and resolves later, like any alert without data.
  // - A fleet-wide rule whose expression and window are unchanged keeps its agents'
  //   contributions; a changed one starts afresh from the next batches, and for
  //   `no_data_stale_after` its groups without members are not resolved (they are refilling).
  // - Alerts of a removed rule, or of a rule that changed between per-agent and fleet-wide,
  //   resolve now, with labels["resolved_reason"] saying so.
  Replacement ReplaceRules(std::vector<Rule> rules);

  // A copy: a reload may replace the rules at any time.
  std::vector<Rule> rules() const;
  size_t rule_count() const;
  std::vector<v1::Alert> ActiveAlerts() const;  // pending, firing and stale
  uint64_t evaluations() const;
  // Evaluations of the fleet-wide rules put off because the last one's cost held them to its
  // share of the ingest thread, and what that last one cost.
  uint64_t aggregates_deferred() const;
  absl::Duration aggregate_cost() const;
  size_t firing_count() const;
  // Series slots in use, and the bytes the engine holds per series (for budgets and benchmarks).
  size_t slots_in_use() const;
  static constexpr size_t kSlotBytes = 56;  // a SeriesSlot and its entry in the agent's list
  // What rate() rules hold: the series with rate windows, and the bytes of those windows (their
  // rings and the block that lists them), beyond kSlotBytes.
  struct RateUsage {
    size_t series = 0;
    size_t windows = 0;
    size_t bytes = 0;
  };
  RateUsage rate_usage() const;

 private:
  struct Instance {
    v1::Alert alert;
    const Rule* rule = nullptr;
    absl::Time active_since;  // telemetry time for per-agent rules
    absl::Time last_data;     // controller time: staleness is judged on the controller's clock
    absl::Time last_reported = absl::InfinitePast();  // telemetry time of the last report
    bool restart_timer = false;  // restored after too long an outage: `for` starts afresh
    // Restored from a record without key_labels: keyed provisionally until its agent connects.
    bool provisional = false;
  };
  // A fleet-wide rule's group: its labels, shared by its members' contributions.
  struct Group {
    Labels labels;
    std::string key;
  };
  struct Contribution {  // one series' latest value for a fleet-wide rule
    std::shared_ptr<const Group> group;
    double value = 0;
  };
  // The rules of one metric, per-agent ones first in `bits` order, then fleet-wide ones.
  struct MetricRules {
    std::vector<const Rule*> per_agent;
    std::vector<size_t> aggregate;  // fleet-wide operands (OperandId)
  };
  // A group's merged histograms for a fleet-wide quantile, kept across rounds so the buckets are
  // reused: cleared and filled again at each merge.
  struct QuantileGroup {
    std::shared_ptr<const Group> group;
    LogHistogram merged;
    double value = 0;
    bool has_value = false;     // some member had intervals in the window
    bool members_left = false;  // a member left since: `value` counts it, wait for the next merge
    uint64_t round = 0;         // the merge that last saw a member of it
  };
  struct Merges {
    absl::flat_hash_map<const Group*, QuantileGroup> groups;
    uint64_t round = 0;
  };
  // One group's value of a fleet-wide operand, or of a whole division.
  struct GroupValue {
    const Group* group = nullptr;
    double value = 0;
    bool known = true;  // false: not judged now (its alert neither moves nor resolves)
  };
  // The engine's state of one series, at index SeriesState::rule_slot.
  struct SeriesSlot {
    // The owner: another series never reads this slot. Fleet-wide quantiles advance its windowed
    // merges (on the ingest thread only).
    SeriesState* series = nullptr;
    const MetricRules* rules = nullptr;   // null: no rule reads this metric
    // Bit i: rule i of `rules` (per_agent, then aggregate) matches the series and its agent.
    // Rules past the 64th are matched on every evaluation.
    uint64_t matched = 0;
    // Bit i: per-agent rule i may hold an alert for the series (clear: it surely holds none, so
    // a value that does not meet it needs no lookup).
    uint64_t may_alert = 0;
    uint32_t agent = 0;       // index into agents_
    uint32_t generation = 0;  // rules_generation_ when `rules` and `matched` were computed; 0: stale
    uint32_t stamp = 0;       // the last batch that evaluated it (once per batch)
    uint32_t rates = 0;       // index into rate_blocks_; 0: no rate() rule reads the series
  };
  // A series' rate windows, one per distinct range of the rate() rules that match it.
  struct RateBlock {
    std::vector<RateWindow> windows;
  };
  struct AgentEntry {
    std::string id;
    Labels labels;
    std::vector<std::string> rate_metrics;  // sorted
    std::vector<uint32_t> slots;
  };

  // The slot of `series` for agent `agent`, made or refreshed as needed.
  SeriesSlot& SlotFor(SeriesState& series, uint32_t agent) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint32_t AgentIndex(const std::string& agent_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Frees the agent's slots (its series are about to go) with their contributions.
  void FreeSlotsLocked(AgentEntry& agent) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Fleet-wide operands are numbered rule index * 2 + side (0: the operand or the numerator,
  // 1: the denominator); contributions_, groups_ and merges_ are indexed so.
  static size_t OperandId(size_t rule_index, size_t side) { return rule_index * 2 + side; }
  const Operand& OperandOf(size_t id) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const Rule& rule = rules_[id / 2];
    return id % 2 == 0 ? rule.expr.numerator() : *rule.expr.denominator;
  }
  std::shared_ptr<const Group> GroupFor(size_t operand_id, const SeriesState& series,
                                        const Labels& agent_labels)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // True when `operand` reads `series` of `agent`: its matchers hold, and a rate()/irate() on a
  // scraped metric reads it only where the agent declares the metric a per-second rate.
  static bool Applies(const Operand& operand, const SeriesState& series, const AgentEntry& agent);
  // The windows the slot needs for the rate() rules it matched: kept for ranges still read,
  // made for new ones, the block freed when none is left.
  void RefreshRateBlockLocked(SeriesSlot& slot, uint32_t agent) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FreeRateBlockLocked(SeriesSlot& slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The series' value for `operand` of a rule with `window` at `now` (see SeriesValue), rate()
  // from the slot's window.
  bool ValueLocked(const Operand& operand, absl::Duration window, const SeriesSlot& slot,
                   SeriesState& series, absl::Time now, double* value)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The same for rate() and irate() operands only (false for others).
  bool RangeValueLocked(const Operand& operand, const SeriesSlot& slot, const SeriesState& series,
                        absl::Time now, double* value) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Evaluates per-agent rule `i` of the slot's metric on its series.
  void Evaluate(SeriesSlot& slot, size_t i, const AgentEntry& agent, SeriesState& series,
                absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Judges every fleet-wide rule. `read_series`: on the ingest thread, so quantiles are merged
  // afresh (see the header comment).
  void EvaluateAggregates(absl::Time now, bool read_series) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // False (and counted) while the last evaluation's cost says to wait (Options::
  // aggregate_cost_share). Walks over fewer than aggregate_hold_from_members are never held, so
  // small fleets (and tests on a fake clock) evaluate exactly as `aggregate_every` says.
  bool AggregateBudgetAllowsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Appends the values of fleet-wide operand `id` by group (groups without a value left out;
  // merged quantiles whose members left since the last merge, off the ingest thread, unknown).
  void GroupValuesLocked(size_t id, absl::Time now, bool read_series, std::vector<GroupValue>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Merges the histograms of quantile operand `id`'s members over its rule's window, by group.
  void MergeQuantilesLocked(size_t id, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves one alert instance on with a fresh value; `key` identifies it across evaluations.
  // A new alert carries `labels` (the series' or group's) and then `more_labels` (the agent's).
  // `at` is when the value was measured (telemetry time; `now` for fleet-wide rules). True when
  // an alert instance remains under `key`.
  bool Update(const Rule& rule, const std::string& key, const std::string& agent_id,
              const Labels& labels, const Labels& more_labels, double value, bool met,
              absl::Time at, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Gives restored alerts of `agent_id` without key_labels their real keys, now that the
  // agent's labels tell which of their labels are the series'.
  void RekeyProvisionalLocked(const std::string& agent_id, const Labels& agent_labels,
                              absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reports `loser` resolved as an older copy of the alert `kept_id`; the caller drops it.
  void Supersede(Instance& loser, const std::string& kept_id, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Puts `instance` under `key`; when another copy is already there the older one is superseded.
  void AdoptLocked(std::string key, Instance instance, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ForgetContributionsLocked(const AgentEntry& agent) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Every slot (or the agent's) may hold alerts again: after alerts were adopted by key.
  void MayAlertAgainLocked(const AgentEntry* agent) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MarkStale(Instance& instance, absl::string_view reason, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Resolve(std::unordered_map<std::string, Instance>::iterator it, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // instances_ changes only through these three, which keep instance_keys_by_agent_ in step.
  std::unordered_map<std::string, Instance>::iterator EmplaceInstanceLocked(std::string key,
                                                                           Instance instance)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EraseInstanceLocked(std::unordered_map<std::string, Instance>::iterator it)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Instance ExtractInstanceLocked(const std::string& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The keys of `agent_id`'s alert instances, copied (the caller may change instances_).
  std::vector<std::string> InstanceKeysOfLocked(const std::string& agent_id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Rebuilds the by-metric indexes from rules_.
  void IndexRules() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static bool Matches(const Operand& operand, const SeriesState& series,
                      const Labels& agent_labels);
  static const std::string* Label(absl::string_view name, const Labels& series_labels,
                                  const Labels& agent_labels);

  const Clock* clock_;
  AlertSink* sink_;
  const Options options_;

  mutable absl::Mutex mu_;
  std::vector<Rule> rules_ ABSL_GUARDED_BY(mu_);
  // Rules by metric name, split by kind, so a series touches only the rules of its metric. Rebuilt
  // by IndexRules only: slots point into it.
  std::unordered_map<std::string, MetricRules> metric_rules_ ABSL_GUARDED_BY(mu_);
  uint32_t rules_generation_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_map<std::string, uint32_t> agent_index_ ABSL_GUARDED_BY(mu_);
  std::vector<AgentEntry> agents_ ABSL_GUARDED_BY(mu_);
  std::vector<SeriesSlot> slots_ ABSL_GUARDED_BY(mu_);  // [0] unused: rule_slot 0 is "none"
  std::vector<uint32_t> free_slots_ ABSL_GUARDED_BY(mu_);
  std::vector<RateBlock> rate_blocks_ ABSL_GUARDED_BY(mu_);  // [0] unused: rates 0 is "none"
  std::vector<uint32_t> free_rate_blocks_ ABSL_GUARDED_BY(mu_);
  bool has_rate_rules_ ABSL_GUARDED_BY(mu_) = false;  // some rule is a rate(): feed windows
  uint32_t batch_stamp_ ABSL_GUARDED_BY(mu_) = 0;
  std::unordered_map<std::string, Instance> instances_ ABSL_GUARDED_BY(mu_);
  // instances_' keys by the agent of the alert: a disconnect or a reconnect visits that agent's
  // alerts only. Scanning every alert instead cost O(alerts) each, O(agents x alerts) in a storm
  // of 10,000 reconnects under an alert storm.
  absl::flat_hash_map<std::string, absl::flat_hash_set<std::string>> instance_keys_by_agent_
      ABSL_GUARDED_BY(mu_);
  // Per fleet-wide operand (by OperandId): contributions keyed by series slot (a quantile's hold
  // no value: its members' histograms are merged), its groups, and a quantile's merges.
  std::vector<absl::flat_hash_map<uint32_t, Contribution>> contributions_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::flat_hash_map<std::string, std::weak_ptr<const Group>>> groups_
      ABSL_GUARDED_BY(mu_);
  std::vector<Merges> merges_ ABSL_GUARDED_BY(mu_);
  // Per rule (by index): until when a fleet-wide rule changed by a reload is refilling its
  // contributions, so its groups without members are not resolved yet.
  std::vector<absl::Time> refilling_until_ ABSL_GUARDED_BY(mu_);
  bool aggregates_dirty_ ABSL_GUARDED_BY(mu_) = false;
  // A Tick() left a rule for the next merge: the next batch evaluates, whatever aggregate_every.
  bool merge_pending_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_aggregate_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // What the last evaluation of the fleet-wide rules cost (wall time) and when it ended. They
  // walk every member, so their pace is held to a small share of the ingest thread
  // (AggregateBudgetAllowsLocked): at 10,000 agents one walk takes milliseconds, and six a
  // second took about 5 % of the controller's CPU.
  absl::Duration aggregate_cost_ ABSL_GUARDED_BY(mu_);
  absl::Duration previous_aggregate_cost_ ABSL_GUARDED_BY(mu_);
  size_t aggregate_members_ ABSL_GUARDED_BY(mu_) = 0;  // walked by the last evaluation
  absl::Time aggregate_ended_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  uint64_t evaluations_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t aggregates_deferred_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace vigil::controller
