// Suggested fixes: the `suggest:` entries of the rules an incident's alerts come from, their
// parameters filled from the diagnostics the incident collected (the blocking pid out of
// pg_lock_waits, the unit of the top process by memory). Computed on read, never stored, so the
// list always reflects the incident's timeline; the same timeline gives the same list in the
// same order, which is what lets `propose --suggestion N` name one by its number.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "controller/rules/rule.h"
#include "storage/store.h"
#include "vigil/v1/incident.pb.h"

namespace vigil::controller {

// Rule name -> its suggestions, for the rules in force.
using SuggestionRules = std::map<std::string, std::vector<SuggestTemplate>>;
SuggestionRules SuggestionsOf(const std::vector<Rule>& rules);

// The rules' suggestions in force, swapped whole on a reload. Thread-safe.
class SuggestionBook {
 public:
  void Set(const std::vector<Rule>& rules);
  std::shared_ptr<const SuggestionRules> Get() const;

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<const SuggestionRules> rules_ ABSL_GUARDED_BY(mu_) =
      std::make_shared<SuggestionRules>();
};

// How many diagnostics events of one incident are read, newest first (a bound on the work of a
// read; diagnostics come once per alert that joins, so this reaches far back).
inline constexpr int kMaxDiagnosticsEventsRead = 200;

// Pure: the suggestions for `alerts` (rule alerts of one incident; fleet-wide ones, without an
// agent, get none), filled from `diagnostics` (the incident's "diagnostics" events, any order).
// Numbered from 1. A suggestion whose cell is not there yet, or whose agent does not offer the
// action, says so in `missing`.
std::vector<v1::SuggestedAction> FillSuggestions(
    const std::vector<v1::Alert>& alerts, const SuggestionRules& rules,
    const std::vector<v1::TimelineEvent>& diagnostics,
    const std::function<bool(const std::string& agent, const std::string& action)>& offers);

// Reads the incident's alerts and diagnostics from `store` and fills its suggestions.
absl::StatusOr<std::vector<v1::SuggestedAction>> LoadSuggestions(
    storage::Store& store, const std::string& incident_id, const SuggestionRules& rules,
    const std::function<bool(const std::string& agent, const std::string& action)>& offers);

}  // namespace vigil::controller
