#include "controller/remediation/suggestions.h"

#include <google/protobuf/util/json_util.h>

#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/action_schema.h"
#include "common/crc32.h"
#include "vigil/v1/agent_service.pb.h"

namespace vigil::controller {
namespace {

constexpr size_t kMaxEvidenceCell = 120;  // bytes of one cell quoted as evidence

std::string Clip(absl::string_view text, size_t max) {
  if (text.size() <= max) {
    return std::string(text);
  }
  return absl::StrCat(text.substr(0, max), "…");
}

// The newest table of each (agent, name) among diagnostics events, with the event it came in.
struct SeenTable {
  v1::DiagnosticTable table;
  uint64_t seq = 0;
  int64_t time_unix_ms = 0;
};
using TablesByAgent = std::map<std::string, std::map<std::string, SeenTable>>;

TablesByAgent IndexTables(const std::vector<v1::TimelineEvent>& events) {
  TablesByAgent out;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  for (const v1::TimelineEvent& event : events) {
    v1::Diagnostics diagnostics;
    if (event.details_json().empty() ||
        !google::protobuf::util::JsonStringToMessage(event.details_json(), &diagnostics, options)
             .ok()) {
      continue;  // a refusal note ("cannot ask ... for diagnostics") carries no tables
    }
    for (const v1::DiagnosticTable& table : diagnostics.tables()) {
      if (!table.error().empty()) {
        continue;
      }
      SeenTable& seen = out[event.actor()][table.name()];
      if (event.seq() > seen.seq) {
        seen = SeenTable{table, event.seq(), event.time_unix_ms()};
      }
    }
  }
  return out;
}

// A stable fingerprint of what would run: agent, action and parameters.
std::string Fingerprint(const v1::SuggestedAction& s) {
  std::string text = absl::StrCat(s.agent_id(), "\n", s.action());
  std::map<std::string, std::string> sorted(s.params().begin(), s.params().end());
  for (const auto& [key, value] : sorted) {
    absl::StrAppend(&text, "\n", key, "=", value);
  }
  return absl::StrCat(absl::Hex(Crc32(text), absl::kZeroPad8));
}

// Fills one cell reference from the agent's newest table: the first row where the column is set.
// On failure, `missing` says what is not there.
bool FillCell(const CellReference& cell, const std::map<std::string, SeenTable>* tables,
              const std::string& agent, std::string* value, std::string* evidence,
              uint64_t* seq, std::string* missing) {
  const SeenTable* seen = nullptr;
  if (tables != nullptr) {
    if (auto it = tables->find(cell.table); it != tables->end()) {
      seen = &it->second;
    }
  }
  if (seen == nullptr) {
    *missing = absl::StrCat("no ", cell.table, " table from ", agent, " yet");
    return false;
  }
  int column = -1;
  for (int i = 0; i < seen->table.columns_size(); ++i) {
    if (seen->table.columns(i) == cell.column) {
      column = i;
    }
  }
  if (column < 0) {
    *missing = absl::StrCat(cell.table, " from ", agent, " has no column ", cell.column);
    return false;
  }
  for (int r = 0; r < seen->table.rows_size(); ++r) {
    const v1::DiagnosticRow& row = seen->table.rows(r);
    if (column >= row.cells_size() || row.cells(column).empty()) {
      continue;
    }
    *value = row.cells(column);
    std::vector<std::string> cells;
    for (int c = 0; c < row.cells_size() && c < seen->table.columns_size(); ++c) {
      cells.push_back(absl::StrCat(seen->table.columns(c), "=", Clip(row.cells(c), kMaxEvidenceCell)));
    }
    *evidence = absl::StrCat(cell.table, " row ", r + 1, " (", absl::StrJoin(cells, ", "),
                             ") from ", agent, " at ",
                             absl::FormatTime("%Y-%m-%dT%H:%M:%SZ",
                                              absl::FromUnixMillis(seen->time_unix_ms),
                                              absl::UTCTimeZone()),
                             ", event #", seen->seq);
    *seq = std::max(*seq, seen->seq);
    return true;
  }
  *missing = absl::StrCat(cell.table, " from ", agent, " (event #", seen->seq, ") has no row with ",
                          cell.column, " set");
  return false;
}

}  // namespace

SuggestionRules SuggestionsOf(const std::vector<Rule>& rules) {
  SuggestionRules out;
  for (const Rule& rule : rules) {
    if (!rule.suggest.empty()) {
      out[rule.name] = rule.suggest;
    }
  }
  return out;
}

void SuggestionBook::Set(const std::vector<Rule>& rules) {
  auto next = std::make_shared<const SuggestionRules>(SuggestionsOf(rules));
  absl::MutexLock lock(&mu_);
  rules_ = std::move(next);
}

std::shared_ptr<const SuggestionRules> SuggestionBook::Get() const {
  absl::MutexLock lock(&mu_);
  return rules_;
}

std::vector<v1::SuggestedAction> FillSuggestions(
    const std::vector<v1::Alert>& alerts, const SuggestionRules& rules,
    const std::vector<v1::TimelineEvent>& diagnostics,
    const std::function<bool(const std::string& agent, const std::string& action)>& offers) {
  const TablesByAgent tables = IndexTables(diagnostics);
  // Oldest alert first: the numbering stays put when later alerts join.
  std::vector<const v1::Alert*> ordered;
  ordered.reserve(alerts.size());
  for (const v1::Alert& alert : alerts) {
    ordered.push_back(&alert);
  }
  std::stable_sort(ordered.begin(), ordered.end(), [](const v1::Alert* a, const v1::Alert* b) {
    return std::make_pair(a->fired_unix_ms(), a->id()) < std::make_pair(b->fired_unix_ms(), b->id());
  });
  std::vector<v1::SuggestedAction> out;
  std::set<std::string> seen;  // one suggestion per (rule, agent, template), whatever the alerts
  for (const v1::Alert* alert : ordered) {
    auto rule = rules.find(alert->rule());
    if (rule == rules.end() || alert->agent_id().empty()) {
      continue;
    }
    const std::string& agent = alert->agent_id();
    auto agent_tables = tables.find(agent);
    for (size_t t = 0; t < rule->second.size(); ++t) {
      if (!seen.insert(absl::StrCat(rule->first, "\n", agent, "\n", t)).second) {
        continue;
      }
      const SuggestTemplate& suggestion = rule->second[t];
      v1::SuggestedAction s;
      s.set_rule(rule->first);
      s.set_agent_id(agent);
      s.set_action(suggestion.action);
      std::vector<std::string> evidence;
      std::string missing;
      uint64_t seq = 0;
      for (const auto& [key, value] : suggestion.params) {
        std::optional<CellReference> cell = ParseCellReference(value);
        if (!cell.has_value()) {
          (*s.mutable_params())[key] = value;
          continue;
        }
        std::string filled;
        std::string why;
        std::string cell_missing;
        if (FillCell(*cell, agent_tables == tables.end() ? nullptr : &agent_tables->second, agent,
                     &filled, &why, &seq, &cell_missing)) {
          (*s.mutable_params())[key] = filled;
          evidence.push_back(absl::StrCat(key, " = ", filled, " from ", why));
        } else if (missing.empty()) {
          missing = std::move(cell_missing);
        }
      }
      if (missing.empty()) {
        // A filled value must still be a valid parameter (a cell may hold anything).
        std::map<std::string, std::string> params(s.params().begin(), s.params().end());
        if (absl::Status check = CheckActionParams(s.action(), params); !check.ok()) {
          missing = std::string(check.message());
        }
      }
      if (missing.empty() && offers && !offers(agent, s.action())) {
        missing = absl::StrCat(agent, " does not offer ", s.action());
      }
      s.set_evidence(evidence.empty() ? absl::StrCat("rule ", rule->first, " (", suggestion.source,
                                                     "); no diagnostic needed")
                                      : absl::StrJoin(evidence, "; "));
      s.set_evidence_seq(seq);
      s.set_missing(missing);
      s.set_number(static_cast<int32_t>(out.size() + 1));
      s.set_fingerprint(Fingerprint(s));
      out.push_back(std::move(s));
    }
  }
  return out;
}

absl::StatusOr<std::vector<v1::SuggestedAction>> LoadSuggestions(
    storage::Store& store, const std::string& incident_id, const SuggestionRules& rules,
    const std::function<bool(const std::string& agent, const std::string& action)>& offers) {
  if (rules.empty()) {
    return std::vector<v1::SuggestedAction>();
  }
  absl::StatusOr<std::vector<v1::Alert>> alerts = store.ListIncidentAlerts(incident_id);
  if (!alerts.ok()) {
    return alerts.status();
  }
  bool any = false;
  for (const v1::Alert& alert : *alerts) {
    any = any || rules.contains(alert.rule());
  }
  if (!any) {
    return std::vector<v1::SuggestedAction>();
  }
  absl::StatusOr<std::vector<v1::TimelineEvent>> events =
      store.ListIncidentEventsOfKind(incident_id, "diagnostics", kMaxDiagnosticsEventsRead);
  if (!events.ok()) {
    return events.status();
  }
  return FillSuggestions(*alerts, rules, *events, offers);
}

}  // namespace vigil::controller
