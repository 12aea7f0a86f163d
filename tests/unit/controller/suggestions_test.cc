// Suggested fixes: `suggest:` in rule files (every mistake named with file and line), and the
// filling of parameters from an incident's diagnostics.
#include "controller/remediation/suggestions.h"

#include <gmock/gmock.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include "vigil/v1/agent_service.pb.h"

namespace vigil::controller {
namespace {

using ::testing::HasSubstr;

RuleFile Parse(const std::string& rule_body) {
  return ParseRules(absl::StrCat("rules:\n  - alert: Blocked\n    expr: pg_blocked_queries > 0\n",
                                 rule_body),
                    "r.yaml");
}

TEST(SuggestRules, ParsesTemplatesWithCellReferences) {
  RuleFile file = Parse(R"(    diagnostics: [pg_lock_waits, top_processes]
    suggest:
      - {action: pg_terminate_backend, params: {pid: "{pg_lock_waits.blocking_pid}"}}
      - {action: restart_service, params: {unit: "{top_processes_memory.unit}"}}
      - {action: logrotate}
)");
  ASSERT_TRUE(file.errors.empty()) << file.errors[0];
  ASSERT_EQ(file.rules[0].suggest.size(), 3u);
  EXPECT_EQ(file.rules[0].suggest[0].action, "pg_terminate_backend");
  EXPECT_EQ(file.rules[0].suggest[0].params[0].second, "{pg_lock_waits.blocking_pid}");
  EXPECT_EQ(file.rules[0].suggest[0].source, "r.yaml:6");
  EXPECT_TRUE(file.rules[0].suggest[2].params.empty());
}

TEST(SuggestRules, MistakesAreNamedWithFileLineAndWhy) {
  for (const auto& [body, want] : std::vector<std::pair<std::string, std::string>>{
           {"    suggest: {action: logrotate}\n", "r.yaml:4: rule Blocked: suggest: must be a list"},
           {"    suggest:\n      - {action: drop_database}\n", "unknown action 'drop_database'"},
           {"    suggest:\n      - {action: pg_terminate_backend, params: {pid: \"{pg_lock_waits.blocking_pid}\"}}\n",
            "params.pid reads table 'pg_lock_waits', which the rule does not collect"},
           {"    diagnostics: [pg_lock_waits]\n    suggest:\n      - {action: pg_terminate_backend, params: {pod: 1}}\n",
            "unknown parameter 'pod'"},
           {"    suggest:\n      - {action: pg_terminate_backend, params: {pid: many}}\n",
            "'pid' = 'many' is not a non-negative integer"},
           {"    suggest:\n      - {action: pg_terminate_backend}\n", "pid"},
           {"    suggest:\n      - {action: logrotate, when: now}\n", "unknown key 'when'"},
           {"    suggest:\n      - {action: restart_service, params: {unit: [a, b]}}\n",
            "params.unit must be a single value"},
       }) {
    RuleFile file = Parse(body);
    ASSERT_FALSE(file.errors.empty()) << body;
    EXPECT_THAT(file.errors[0], HasSubstr(want)) << body;
    EXPECT_THAT(file.errors[0], HasSubstr("r.yaml:")) << body;
  }
  std::string many = "    suggest:\n";
  for (size_t i = 0; i <= kMaxSuggestionsPerRule; ++i) {
    many += "      - {action: logrotate}\n";
  }
  RuleFile file = Parse(many);
  ASSERT_FALSE(file.errors.empty());
  EXPECT_THAT(file.errors[0], HasSubstr("at most 8 suggestions"));
}

TEST(SuggestRules, BuiltInRulesCarryTheRunbooksFixes) {
  const SuggestionRules rules = SuggestionsOf(DefaultRules());
  ASSERT_TRUE(rules.contains("BlockedQueries"));
  EXPECT_EQ(rules.at("BlockedQueries")[0].action, "pg_terminate_backend");
  EXPECT_EQ(rules.at("SlowQueries")[0].params[0].second, "{pg_lock_waits.blocking_pid}");
  EXPECT_EQ(rules.at("HighMemoryUsage")[0].params[0].second, "{top_processes_memory.unit}");
  ASSERT_EQ(rules.at("DiskSpaceWarning").size(), 3u);
  EXPECT_EQ(rules.at("DiskSpaceWarning")[0].action, "logrotate");
  EXPECT_EQ(rules.at("DiskSpaceWarning")[1].action, "clean_old_logs");
  EXPECT_EQ(rules.at("HighAPILatency")[0].params[0].second, "{top_processes_cpu.unit}");
  ASSERT_EQ(rules.at("LowCacheHitRatio").size(), 2u);
  EXPECT_EQ(rules.at("LowCacheHitRatio")[0].action, "redis_config_set");
  EXPECT_EQ(rules.at("LowCacheHitRatio")[1].action, "redis_flushdb");
}

v1::Alert AlertOn(const std::string& id, const std::string& rule, const std::string& agent,
                  int64_t fired_ms) {
  v1::Alert alert;
  alert.set_id(id);
  alert.set_rule(rule);
  alert.set_agent_id(agent);
  alert.set_fired_unix_ms(fired_ms);
  return alert;
}

// A diagnostics event from `agent` holding one table.
v1::TimelineEvent Diagnostics(uint64_t seq, const std::string& agent, const std::string& table,
                              std::vector<std::string> columns,
                              std::vector<std::vector<std::string>> rows) {
  v1::Diagnostics d;
  v1::DiagnosticTable* t = d.add_tables();
  t->set_name(table);
  for (const std::string& c : columns) t->add_columns(c);
  for (const auto& row : rows) {
    v1::DiagnosticRow* r = t->add_rows();
    for (const std::string& cell : row) r->add_cells(cell);
  }
  v1::TimelineEvent event;
  event.set_seq(seq);
  event.set_kind("diagnostics");
  event.set_actor(agent);
  event.set_time_unix_ms(1'800'000'000'000);
  (void)google::protobuf::util::MessageToJsonString(d, event.mutable_details_json());
  return event;
}

const auto kOffersAll = [](const std::string&, const std::string&) { return true; };

TEST(FillSuggestions, BlockingPidComesFromTheNewestLockWaitsTable) {
  const SuggestionRules rules = SuggestionsOf(DefaultRules());
  const std::vector<std::string> columns = {"blocked_pid", "blocking_pid", "waiting_seconds",
                                            "blocked_query", "blocking_query"};
  std::vector<v1::TimelineEvent> events = {
      Diagnostics(10, "db-1", "pg_lock_waits", columns, {{"300", "200", "1.0", "q", "q"}}),
      Diagnostics(12, "db-1", "pg_lock_waits", columns,
                  {{"501", "", "3.5", "UPDATE t", ""}, {"502", "4242", "2.0", "UPDATE t", "LOCK t"}}),
      Diagnostics(11, "db-2", "pg_lock_waits", columns, {{"7", "8", "1", "q", "q"}}),
  };
  auto out = FillSuggestions({AlertOn("a1", "BlockedQueries", "db-1", 5)}, rules, events, kOffersAll);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].number(), 1);
  EXPECT_EQ(out[0].action(), "pg_terminate_backend");
  EXPECT_EQ(out[0].params().at("pid"), "4242") << "newest table, first row with the column set";
  EXPECT_TRUE(out[0].missing().empty()) << out[0].missing();
  EXPECT_EQ(out[0].evidence_seq(), 12u);
  EXPECT_THAT(out[0].evidence(), HasSubstr("pid = 4242 from pg_lock_waits row 2"));
  EXPECT_THAT(out[0].evidence(), HasSubstr("blocked_pid=502"));
  EXPECT_THAT(out[0].evidence(), HasSubstr("event #12"));
  EXPECT_EQ(out[0].fingerprint().size(), 8u);
}

TEST(FillSuggestions, SaysWhatIsMissingInsteadOfGuessing) {
  const SuggestionRules rules = SuggestionsOf(DefaultRules());
  // No diagnostics yet.
  auto none = FillSuggestions({AlertOn("a1", "BlockedQueries", "db-1", 5)}, rules, {}, kOffersAll);
  ASSERT_EQ(none.size(), 1u);
  EXPECT_EQ(none[0].missing(), "no pg_lock_waits table from db-1 yet");
  EXPECT_FALSE(none[0].params().contains("pid"));
  // A cell that is not a valid parameter.
  auto bad = FillSuggestions(
      {AlertOn("a1", "BlockedQueries", "db-1", 5)}, rules,
      {Diagnostics(3, "db-1", "pg_lock_waits", {"blocking_pid"}, {{"12; DROP TABLE x"}})},
      kOffersAll);
  EXPECT_THAT(bad[0].missing(), HasSubstr("is not a non-negative integer"));
  // The agent does not offer the action.
  auto refused = FillSuggestions(
      {AlertOn("a1", "BlockedQueries", "db-1", 5)}, rules,
      {Diagnostics(3, "db-1", "pg_lock_waits", {"blocking_pid"}, {{"12"}})},
      [](const std::string&, const std::string&) { return false; });
  EXPECT_EQ(refused[0].missing(), "db-1 does not offer pg_terminate_backend");
  // An empty unit (a process no unit owns) is not a unit.
  auto no_unit = FillSuggestions(
      {AlertOn("a1", "HighMemoryUsage", "web-1", 5)}, rules,
      {Diagnostics(3, "web-1", "top_processes_memory", {"pid", "unit"}, {{"10", ""}})}, kOffersAll);
  EXPECT_THAT(no_unit[0].missing(), HasSubstr("has no row with unit set"));
}

TEST(FillSuggestions, NumberingFollowsAlertsOldestFirstWithoutDuplicates) {
  const SuggestionRules rules = SuggestionsOf(DefaultRules());
  std::vector<v1::Alert> alerts = {
      AlertOn("b", "DiskSpaceWarning", "web-1", 20),
      AlertOn("a", "HighMemoryUsage", "web-1", 10),
      AlertOn("c", "HighMemoryUsage", "web-1", 30),  // same rule and agent: no second copy
      AlertOn("d", "HighMemoryUsage", "", 5),        // fleet-wide: no agent to act on
      AlertOn("e", "HighCPU", "web-1", 1),           // no suggestions
  };
  std::vector<v1::TimelineEvent> events = {Diagnostics(
      4, "web-1", "top_processes_memory", {"pid", "comm", "unit"}, {{"77", "python", "app.service"}})};
  auto out = FillSuggestions(alerts, rules, events, kOffersAll);
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[0].rule(), "HighMemoryUsage");
  EXPECT_EQ(out[0].params().at("unit"), "app.service");
  EXPECT_EQ(out[1].action(), "logrotate");
  EXPECT_THAT(out[1].evidence(), HasSubstr("no diagnostic needed"));
  EXPECT_EQ(out[2].params().at("dir"), "/var/log");
  EXPECT_EQ(out[3].params().at("pattern"), "*.sql.gz");
  // find descends into subfolders; so do the runbook's cleanups.
  EXPECT_EQ(out[2].params().at("recursive"), "yes");
  EXPECT_EQ(out[3].params().at("recursive"), "yes");
  for (int i = 0; i < 4; ++i) EXPECT_EQ(out[i].number(), i + 1);
  // Same input, same list; a changed cell changes the fingerprint.
  auto again = FillSuggestions(alerts, rules, events, kOffersAll);
  EXPECT_EQ(again[0].fingerprint(), out[0].fingerprint());
  events.push_back(Diagnostics(9, "web-1", "top_processes_memory", {"unit"}, {{"db.service"}}));
  auto changed = FillSuggestions(alerts, rules, events, kOffersAll);
  EXPECT_EQ(changed[0].params().at("unit"), "db.service");
  EXPECT_NE(changed[0].fingerprint(), out[0].fingerprint());
}

TEST(FillSuggestions, HostileDiagnosticsAreIgnoredNotTrusted) {
  const SuggestionRules rules = SuggestionsOf(DefaultRules());
  v1::TimelineEvent garbage;
  garbage.set_seq(5);
  garbage.set_actor("db-1");
  garbage.set_details_json("{not json");
  v1::TimelineEvent failed = Diagnostics(6, "db-1", "pg_lock_waits", {"blocking_pid"}, {{"9"}});
  {
    v1::Diagnostics d;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(failed.details_json(), &d).ok());
    d.mutable_tables(0)->set_error("permission denied");
    failed.clear_details_json();
    (void)google::protobuf::util::MessageToJsonString(d, failed.mutable_details_json());
  }
  // Another agent's table never fills this agent's suggestion.
  v1::TimelineEvent other = Diagnostics(7, "db-9", "pg_lock_waits", {"blocking_pid"}, {{"1"}});
  auto out = FillSuggestions({AlertOn("a1", "BlockedQueries", "db-1", 5)}, rules,
                             {garbage, failed, other}, kOffersAll);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].missing(), "no pg_lock_waits table from db-1 yet");
}

}  // namespace
}  // namespace vigil::controller
