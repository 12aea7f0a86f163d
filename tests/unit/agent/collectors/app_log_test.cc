// The app_log collector: its patterns and module groups, per-module rates with a bounded label
// set, the redacted last lines, the top modules over a window, its config checks, and the
// tailer's per-round byte bound.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/collectors/app_log_collector.h"
#include "agent/collectors/utf8.h"

namespace vigil::agent {
namespace {

AppLogMatcher Matcher(std::vector<AppLogPattern> patterns) {
  auto m = AppLogMatcher::Compile(patterns);
  EXPECT_TRUE(m.ok()) << m.status();
  return *std::move(m);
}

TEST(AppLogMatcher, RunbookGrepWithoutModule) {
  AppLogMatcher m = Matcher({{"ERROR|Exception|Traceback", 0, ""}});
  EXPECT_EQ(m.Match("2026-11-30 10:00:00 ERROR [billing] boom"), std::optional<std::string>(""));
  EXPECT_EQ(m.Match("Traceback (most recent call last):"), std::optional<std::string>(""));
  EXPECT_EQ(m.Match("2026-11-30 10:00:00 INFO [billing] fine"), std::nullopt);
}

TEST(AppLogMatcher, ModuleFromNamedNumberedOrImplicitGroup) {
  // The runbook's awk -F'[][]' '{print $2}': the module is between the first brackets.
  AppLogMatcher implicit = Matcher({{R"(ERROR \[(?P<module>[^\]]+)\])", 0, ""}});
  EXPECT_EQ(implicit.Match("t ERROR [api.billing] card declined"),
            std::optional<std::string>("api.billing"));
  AppLogMatcher numbered = Matcher({{R"((\w+) (ERROR|CRITICAL) \[([^\]]+)\])", 3, ""}});
  EXPECT_EQ(numbered.Match("10:00 CRITICAL [auth] x"), std::optional<std::string>("auth"));
  AppLogMatcher named = Matcher({{R"(level=error .*mod=(?P<m>\S+))", 0, "m"}});
  EXPECT_EQ(named.Match("level=error msg=x mod=search"), std::optional<std::string>("search"));
  // An optional group that did not take part: a match without module.
  AppLogMatcher optional = Matcher({{R"(ERROR(?: \[(\w+)\])?)", 1, ""}});
  EXPECT_EQ(optional.Match("ERROR plain"), std::optional<std::string>(""));
  // First matching pattern wins; a line counts once.
  AppLogMatcher two = Matcher({{R"(ERROR \[(\w+)\])", 1, ""}, {"Exception", 0, ""}});
  EXPECT_EQ(two.Match("ERROR [db] Exception raised"), std::optional<std::string>("db"));
  EXPECT_EQ(two.Match("ValueError Exception"), std::optional<std::string>(""));
}

TEST(AppLogMatcher, RefusesBadPatternsByIndex) {
  auto bad = AppLogMatcher::Compile({{"ok", 0, ""}, {"ERROR [", 0, ""}});
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "patterns[1]")) << bad.status();
  auto group = AppLogMatcher::Compile({{R"(ERROR (\w+))", 2, ""}});
  ASSERT_FALSE(group.ok());
  EXPECT_TRUE(absl::StrContains(group.status().message(), "1 capture group")) << group.status();
  auto name = AppLogMatcher::Compile({{R"(ERROR (\w+))", 0, "module"}});
  EXPECT_FALSE(name.ok());
  EXPECT_FALSE(AppLogMatcher::Compile({{"", 0, ""}}).ok());
  EXPECT_FALSE(AppLogMatcher::Compile({{std::string(5000, 'a'), 0, ""}}).ok());
  // Backreferences need backtracking: RE2 refuses them rather than risk exponential time.
  EXPECT_FALSE(AppLogMatcher::Compile({{R"((a)\1)", 0, ""}}).ok());
}

TEST(AppLogMatcher, ModuleLabelIsPrintableAndBounded) {
  EXPECT_EQ(AppLogModuleLabel(""), "unknown");
  EXPECT_EQ(AppLogModuleLabel("a\nb\x01"), "a_b_");
  EXPECT_EQ(AppLogModuleLabel(std::string(500, 'm')).size(), kAppLogMaxModuleChars);
}

TEST(AppLogCollector, CellsAreValidUtf8) {
  EXPECT_EQ(ValidUtf8("plain ascii"), "plain ascii");
  EXPECT_EQ(ValidUtf8("caf\xc3\xa9 \xe2\x82\xac"), "caf\xc3\xa9 \xe2\x82\xac");
  EXPECT_EQ(ValidUtf8("cut \xe2\x82"), "cut ??");
  EXPECT_EQ(ValidUtf8("\xff\xc0\x80 \xed\xa0\x80"), "??? ???") << "overlong and surrogates";
  AppLogCollectorOptions o;
  o.files = {"/nonexistent"};
  o.patterns = {{"ERROR", 0, ""}};
  AppLogCollector c(o, *AppLogMatcher::Compile(o.patterns));
  c.Observe(absl::FromUnixSeconds(1), "/nonexistent", "ERROR \xff\xfe bytes");
  auto t = c.Diagnose(absl::FromUnixSeconds(1), {"app_log_last_errors"});
  ASSERT_EQ(t.at(0).rows_size(), 1);
  EXPECT_EQ(t[0].rows(0).cells(3), "ERROR ?? bytes");
}

std::map<std::string, double> Rates(const Collection& c) {
  std::map<std::string, double> out;
  for (const auto& g : c.gauges) {
    if (g.name == "app_log_errors_per_second") {
      out[g.labels.at("module")] = g.value;
    }
  }
  return out;
}

AppLogCollectorOptions Options() {
  AppLogCollectorOptions o;
  o.files = {"/nonexistent/app.log"};
  o.patterns = {{R"(ERROR \[(?P<module>[^\]]+)\])", 0, ""}, {"Exception|Traceback", 0, ""}};
  return o;
}

TEST(AppLogCollector, RatesPerModuleWithZerosAndOverflow) {
  AppLogCollectorOptions o = Options();
  o.max_modules = 2;
  AppLogCollector c(o, Matcher(o.patterns));
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  Collection first;
  c.Collect(t0, first);
  EXPECT_EQ(first.gauges.size(), 1u) << "only app_log_up before a baseline";
  EXPECT_EQ(first.gauges[0].name, "app_log_up");
  EXPECT_EQ(first.gauges[0].value, 0) << "the file does not exist";
  for (int i = 0; i < 20; ++i) c.Observe(t0, "f", "x ERROR [billing] declined");
  for (int i = 0; i < 10; ++i) c.Observe(t0, "f", "x ERROR [search] timeout");
  for (int i = 0; i < 4; ++i) c.Observe(t0, "f", "x ERROR [mail] smtp");     // a third module
  for (int i = 0; i < 6; ++i) c.Observe(t0, "f", "ValueError Exception x");  // no module
  for (int i = 0; i < 50; ++i) c.Observe(t0, "f", "x INFO [billing] ok");
  Collection second;
  c.Collect(t0 + absl::Seconds(2), second);
  std::map<std::string, double> r = Rates(second);
  EXPECT_DOUBLE_EQ(r["billing"], 10);
  EXPECT_DOUBLE_EQ(r["search"], 5);
  EXPECT_DOUBLE_EQ(r["other"], 5) << "mail and the module-less lines: beyond max_modules";
  EXPECT_EQ(r.size(), 3u);
  Collection third;
  c.Collect(t0 + absl::Seconds(4), third);
  r = Rates(third);
  EXPECT_EQ(r.size(), 3u) << "known modules report 0, so an alert on them resolves";
  EXPECT_DOUBLE_EQ(r["billing"], 0);
}

TEST(AppLogCollector, LastErrorsAreRedactedNewestFirstAndBounded) {
  AppLogCollectorOptions o = Options();
  o.last_errors = 3;
  o.max_line_chars = 40;
  AppLogCollector c(o, Matcher(o.patterns));
  const absl::Time t = absl::FromUnixSeconds(2000);
  c.Observe(t, "f", "ERROR [a] first");
  c.Observe(t, "f", "ERROR [b] second");
  c.Observe(t, "f", "ERROR [db] connect failed password=hunter2 host=db");
  c.Observe(t, "f", "INFO [c] not an error");
  c.Observe(t, "f", "ERROR [c] " + std::string(300, 'x'));
  auto tables = c.Diagnose(t, {"app_log_last_errors"});
  ASSERT_EQ(tables.size(), 1u);
  const auto& table = tables[0];
  ASSERT_EQ(table.rows_size(), 3) << table.DebugString();
  EXPECT_EQ(table.rows(0).cells(2), "c");
  EXPECT_EQ(table.rows(0).cells(3).size(), 43u) << "40 characters and '...'";
  EXPECT_EQ(table.rows(1).cells(2), "db");
  EXPECT_FALSE(absl::StrContains(table.rows(1).cells(3), "hunter2")) << table.rows(1).cells(3);
  EXPECT_TRUE(absl::StrContains(table.rows(1).cells(3), "connect failed"));
  EXPECT_EQ(table.rows(2).cells(2), "b") << "the oldest, 'a', is gone";
}

TEST(AppLogCollector, TopModulesOverTheWindow) {
  AppLogCollectorOptions o = Options();
  o.top_window = absl::Minutes(5);
  AppLogCollector c(o, Matcher(o.patterns));
  const absl::Time t0 = absl::FromUnixSeconds(6000);  // a minute boundary
  for (int i = 0; i < 7; ++i) c.Observe(t0, "f", "ERROR [old] x");
  const absl::Time t1 = t0 + absl::Minutes(3);
  for (int i = 0; i < 3; ++i) c.Observe(t1, "f", "ERROR [new] x");
  for (int i = 0; i < 5; ++i) c.Observe(t1, "f", "ERROR [old] x");
  auto tables = c.Diagnose(t1, {"app_log_top_modules"});
  ASSERT_EQ(tables.size(), 1u);
  ASSERT_EQ(tables[0].rows_size(), 2);
  EXPECT_EQ(tables[0].rows(0).cells(0), "old");
  EXPECT_EQ(tables[0].rows(0).cells(1), "12");
  EXPECT_EQ(tables[0].rows(1).cells(1), "3");
  // Six minutes later the first minute has left the 5-minute window.
  tables = c.Diagnose(t0 + absl::Minutes(6) + absl::Seconds(1), {"app_log_top_modules"});
  ASSERT_EQ(tables[0].rows_size(), 2);
  EXPECT_EQ(tables[0].rows(0).cells(0), "old");
  EXPECT_EQ(tables[0].rows(0).cells(1), "5");
  tables = c.Diagnose(t1 + absl::Minutes(7), {"app_log_top_modules"});
  EXPECT_EQ(tables[0].rows_size(), 0);
}

TEST(AppLogCollector, IsABuiltinCollector) {
  CollectorRegistry registry;
  RegisterBuiltinCollectors(registry);
  const CollectorFactory* factory = registry.Find("app_log");
  ASSERT_NE(factory, nullptr);
  auto made = (*factory)(YAML::Load("{files: [/var/log/app.log]}"), "agent.yaml");
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_EQ((*made)->name(), "app_log");
  EXPECT_EQ((*made)->DiagnosticNames(),
            (std::vector<std::string>{"app_log_last_errors", "app_log_top_modules"}));
}

TEST(AppLogCollector, ConfigErrorsNameTheKeyAndLine) {
  auto make = [](const std::string& yaml) {
    return NewAppLogCollector(YAML::Load(yaml), "agent.yaml");
  };
  EXPECT_TRUE(make("{files: [/var/log/app.log]}").ok()) << "default: the runbook's grep";
  EXPECT_TRUE(make("{files: [/a.log, /b.log], patterns: ['ERROR \\[(?P<module>\\w+)\\]', "
                   "{regex: 'CRITICAL (\\w+)', module: 1}], top_window: 30m}")
                  .ok());
  auto missing = make("{patterns: [x]}");
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(absl::StrContains(missing.status().message(), "collectors.app_log.files"));
  auto relative = make("{files: [app.log]}");
  ASSERT_FALSE(relative.ok());
  EXPECT_TRUE(absl::StrContains(relative.status().message(), "absolute"));
  auto bad = make("{files: [/a.log],\n patterns: [ok, '(unclosed']}");
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "agent.yaml:2")) << bad.status();
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "patterns[1]")) << bad.status();
  EXPECT_FALSE(make("{files: [/a.log], patterns: [{regex: 'E (\\w+)', module: 3}]}").ok());
  EXPECT_FALSE(make("{files: [/a.log], patterns: [{regex: x, modul: 1}]}").ok());
  EXPECT_FALSE(make("{files: [/a.log], max_modules: 0}").ok());
  EXPECT_FALSE(make("{files: [/a.log], top_window: 10s}").ok());
  EXPECT_FALSE(make("{files: [/a.log], patterns: []}").ok());
}

class AppLogFileTest : public ::testing::Test {
 protected:
  AppLogFileTest() {
    char dir[] = "/tmp/vigil-applog-XXXXXX";
    dir_ = mkdtemp(dir);
    log_ = dir_ + "/app.log";
    std::ofstream(log_) << "";
  }
  ~AppLogFileTest() override { std::filesystem::remove_all(dir_); }
  void Append(const std::string& text) { std::ofstream(log_, std::ios::app) << text; }
  std::string dir_, log_;
};

TEST_F(AppLogFileTest, BytesPerRoundAreBoundedAndTheRestComesNext) {
  LogTailer t(log_);
  std::vector<std::string> lines;
  auto add = [&](absl::string_view l) { lines.emplace_back(l); };
  ASSERT_TRUE(t.Poll(add, 10).ok());
  for (int i = 0; i < 10; ++i) Append(absl::StrCat("line", i, "\n"));  // 6 bytes each
  ASSERT_TRUE(t.Poll(add, 20).ok());
  EXPECT_EQ(lines.size(), 3u) << "20 bytes: three whole lines, the fourth waits";
  EXPECT_EQ(t.BacklogBytes(), 40u);
  ASSERT_TRUE(t.Poll(add, 1000).ok());
  ASSERT_EQ(lines.size(), 10u);
  EXPECT_EQ(lines[3], "line3") << "the cut line was completed, not lost";
  EXPECT_EQ(t.BacklogBytes(), 0u);
}

TEST_F(AppLogFileTest, RenamedFileIsFinishedBeforeTheNewOneEvenOverSeveralRounds) {
  LogTailer t(log_);
  std::vector<std::string> lines;
  auto add = [&](absl::string_view l) { lines.emplace_back(l); };
  ASSERT_TRUE(t.Poll(add).ok());
  for (int i = 0; i < 5; ++i) Append(absl::StrCat("old", i, "\n"));  // 5 bytes each
  std::filesystem::rename(log_, log_ + ".1");
  Append("new0\n");
  ASSERT_TRUE(t.Poll(add, 12).ok());
  EXPECT_EQ(lines, (std::vector<std::string>{"old0", "old1"}));
  ASSERT_TRUE(t.Poll(add, 12).ok());
  ASSERT_TRUE(t.Poll(add, 12).ok());
  EXPECT_EQ(lines, (std::vector<std::string>{"old0", "old1", "old2", "old3", "old4", "new0"}));
}

TEST_F(AppLogFileTest, CollectorReadsTheFileEndToEnd) {
  auto made = NewAppLogCollector(
      YAML::Load(
          absl::StrCat("{files: ['", log_, "'], patterns: ['ERROR \\[(?P<module>\\w+)\\]']}")),
      "agent.yaml");
  ASSERT_TRUE(made.ok()) << made.status();
  Collector& c = **made;
  Collection first;
  c.Collect(absl::FromUnixSeconds(100), first);
  Append("2026-11-30 ERROR [billing] a\n2026-11-30 INFO [billing] b\n2026-11-30 ERROR [auth] c\n");
  Collection second;
  c.Collect(absl::FromUnixSeconds(101), second);
  std::map<std::string, double> r = Rates(second);
  EXPECT_DOUBLE_EQ(r["billing"], 1);
  EXPECT_DOUBLE_EQ(r["auth"], 1);
  double up = -1;
  for (const auto& g : second.gauges) {
    if (g.name == "app_log_up") up = g.value;
  }
  EXPECT_EQ(up, 1);
}

}  // namespace
}  // namespace vigil::agent
