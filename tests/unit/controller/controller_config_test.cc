#include "controller/config/config_check.h"
#include "controller/config/controller_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <set>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "tests/support/hostile_yaml.h"
#include "tests/support/process.h"

namespace vigil::controller {
namespace {

using ::testing::HasSubstr;

using testing::TempDir;
using testing::WriteFile;

// No flag given on the command line.
bool NoFlags(absl::string_view) { return false; }

absl::Status Apply(const std::string& text, ControllerSettings& settings,
                   const GivenOnCommandLine& given = NoFlags) {
  return ApplyControllerConfig(text, "controller.yaml", given, settings);
}

bool Exists(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0;
}

TEST(ControllerConfigTest, EveryKeyIsAFlagInSnakeCase) {
  const std::vector<std::string>& keys = ControllerConfigKeys();
  for (const char* key : {"listen", "db", "http_listen", "rules", "policy", "signing_key",
                          "tls_ca", "tls_cert", "tls_key", "insecure", "admission_queue",
                          "telemetry_max_skew", "log_level", "webhook_max_alerts_per_minute"}) {
    EXPECT_NE(std::find(keys.begin(), keys.end(), key), keys.end()) << key;
  }
  EXPECT_EQ(FlagForKey("telemetry_max_skew"), "--telemetry-max-skew");
  EXPECT_EQ(FlagForKey("db"), "--db");
}

TEST(ControllerConfigTest, NotificationsSectionIsReadAndEachProblemIsALine) {
  ControllerSettings s;
  // The section has no flag: whether a flag was given is never asked for it.
  auto no_such_flag = [](absl::string_view flag) {
    EXPECT_NE(flag, "--notifications");
    return false;
  };
  ASSERT_TRUE(Apply("notifications:\n"
                    "  external_url: https://vigil.example\n"
                    "  receivers:\n"
                    "    - {name: am, type: alertmanager, url: 'http://127.0.0.1:9093'}\n",
                    s, no_such_flag)
                  .ok());
  ASSERT_EQ(s.options.notifications.receivers.size(), 1u);
  EXPECT_EQ(s.options.notifications.receivers[0].name, "am");
  EXPECT_EQ(s.options.notifications.external_url, "https://vigil.example");

  absl::Status bad = Apply("notifications:\n"
                           "  receivers:\n"
                           "    - {name: a, type: pager, url: 'http://x:1'}\n"
                           "    - {name: b, type: webhook, url: 'http://x:1'}\n",
                           s);
  ASSERT_FALSE(bad.ok());
  const std::vector<std::string> lines = absl::StrSplit(bad.message(), '\n');
  ASSERT_EQ(lines.size(), 2u) << bad.message();
  EXPECT_THAT(lines[0], HasSubstr("controller.yaml:3"));
  EXPECT_THAT(lines[0], HasSubstr("notifications.receivers[0].type"));
  EXPECT_THAT(lines[1], HasSubstr("controller.yaml:4"));
  EXPECT_THAT(lines[1], HasSubstr("notifications.receivers[1].secret_file"));
}

TEST(ControllerConfigTest, WebhookSelfAlertsReplaceTheDefaultsAndEachProblemNamesLineAndKey) {
  ControllerSettings s;
  ASSERT_EQ(s.options.webhook_self_alerts.size(), DefaultSelfAlertRules().size());
  auto no_such_flag = [](absl::string_view flag) {
    EXPECT_NE(flag, "--webhook-self-alerts");
    return false;
  };
  ASSERT_TRUE(Apply("webhook_self_alerts:\n"
                    "  - name: ops_job\n"
                    "    matchers: ['job=\"vigil-prod\"', 'team!=\"apps\"']\n",
                    s, no_such_flag)
                  .ok());
  ASSERT_EQ(s.options.webhook_self_alerts.size(), 1u);
  EXPECT_EQ(s.options.webhook_self_alerts[0].name, "ops_job");
  EXPECT_EQ(s.options.webhook_self_alerts[0].matchers.size(), 2u);
  // An empty list: only Vigil's own notifications are recognised.
  ASSERT_TRUE(Apply("webhook_self_alerts: []\n", s).ok());
  EXPECT_TRUE(s.options.webhook_self_alerts.empty());

  absl::Status bad = Apply(
      "log_level: info\n"
      "webhook_self_alerts:\n"
      "  - name: a\n"
      "    matchers: ['job=~\"(\"']\n"
      "  - name: vigil_source\n"
      "    matchers: ['job=vigil']\n"
      "  - {name: c, matchers: ['no operator'], extra: 1}\n"
      "  - name: d\n"
      "    matchers: []\n",
      s);
  ASSERT_FALSE(bad.ok());
  const std::vector<std::string> lines = absl::StrSplit(bad.message(), '\n');
  ASSERT_EQ(lines.size(), 4u) << bad.message();
  EXPECT_THAT(lines[0], HasSubstr("controller.yaml:4: key 'webhook_self_alerts[0].matchers[0]'"));
  EXPECT_THAT(lines[0], HasSubstr("regular expression"));
  EXPECT_THAT(lines[1], HasSubstr("controller.yaml:5: key 'webhook_self_alerts[1].name'"));
  EXPECT_THAT(lines[1], HasSubstr("reserved"));
  EXPECT_THAT(lines[2], HasSubstr("controller.yaml:7"));
  EXPECT_THAT(lines[2], HasSubstr("extra"));
  EXPECT_THAT(lines[3], HasSubstr("controller.yaml:9: key 'webhook_self_alerts[3].matchers'"));
  EXPECT_THAT(Apply("webhook_self_alerts: {job: vigil}\n", s).message(),
              HasSubstr("controller.yaml:1: key 'webhook_self_alerts' must be a list"));
}

TEST(ControllerConfigTest, ReadsEveryKindOfSetting) {
  ControllerSettings s;
  ASSERT_TRUE(Apply("listen: 0.0.0.0:7443\n"
                    "db: /srv/vigil/vigil.db\n"
                    "http_listen: 'off'\n"
                    "rules: /etc/vigil/rules.yaml\n"
                    "policy: /etc/vigil/policy.yaml\n"
                    "signing_key: /var/lib/vigil/k.key\n"
                    "tls_ca: /etc/vigil/tls/ca.pem\n"
                    "tls_cert: /etc/vigil/tls/controller.pem\n"
                    "tls_key: /etc/vigil/tls/controller.key\n"
                    "admission_queue: 2048\n"
                    "ingest_nice: 0\n"
                    "webhook_max_alerts: 50\n"
                    "telemetry_max_skew: 5s\n"
                    "correlation_window: 20m\n"
                    "result_patience: 2h\n"
                    "insecure: false\n"
                    "log_level: debug\n"
                    "agent_listen: 0.0.0.0:7444\n"
                    "agent_listen_backlog: 32\n",
                    s)
                  .ok());
  EXPECT_EQ(s.options.listen, "0.0.0.0:7443");
  EXPECT_EQ(s.options.agent_listen, "0.0.0.0:7444");
  EXPECT_EQ(s.options.agent_listen_backlog, 32);
  EXPECT_EQ(s.options.db_path, "/srv/vigil/vigil.db");
  EXPECT_EQ(s.options.http_listen, "") << "'off' turns the HTTP port off, as the flag does";
  EXPECT_EQ(s.options.rules_path, "/etc/vigil/rules.yaml");
  EXPECT_EQ(s.options.policy_path, "/etc/vigil/policy.yaml");
  EXPECT_EQ(s.options.signing_key_path, "/var/lib/vigil/k.key");
  EXPECT_EQ(s.options.transport.ca, "/etc/vigil/tls/ca.pem");
  EXPECT_EQ(s.options.transport.cert, "/etc/vigil/tls/controller.pem");
  EXPECT_EQ(s.options.transport.key, "/etc/vigil/tls/controller.key");
  EXPECT_EQ(s.options.admission_queue, 2048u);
  EXPECT_EQ(s.options.ingest_nice, 0);
  EXPECT_EQ(s.options.webhook.max_alerts_per_request, 50u);
  EXPECT_EQ(s.options.ingest_limits.max_future_skew, absl::Seconds(5));
  EXPECT_EQ(s.options.incidents.correlation_window, absl::Minutes(20));
  EXPECT_EQ(s.options.remediation.result_patience, absl::Hours(2));
  EXPECT_EQ(s.log_level, "debug");
  EXPECT_EQ(s.origins.at("tls_cert"), "controller.yaml:8: key 'tls_cert'");
}

TEST(ControllerConfigTest, FlagsOnTheCommandLineWin) {
  ControllerSettings s;
  s.options.listen = "127.0.0.1:9000";  // as CLI11 left it, from --listen
  s.options.db_path = "/from/flag.db";
  const std::set<std::string> given = {"--listen", "--db"};
  ASSERT_TRUE(Apply("listen: 0.0.0.0:7443\ndb: /from/file.db\nadmission_queue: 7\n", s,
                    [&](absl::string_view flag) { return given.count(std::string(flag)) > 0; })
                  .ok());
  EXPECT_EQ(s.options.listen, "127.0.0.1:9000");
  EXPECT_EQ(s.options.db_path, "/from/flag.db");
  EXPECT_EQ(s.options.admission_queue, 7u) << "not on the command line: the file's";
  EXPECT_EQ(s.origins.count("listen"), 0u) << "messages name the flag it came from";
  EXPECT_EQ(s.origins.count("admission_queue"), 1u);

  // An overridden value is still checked: the file is wrong whatever the flags say.
  absl::Status bad = Apply("listen: [a, b]\n", s, [](absl::string_view) { return true; });
  EXPECT_TRUE(absl::StrContains(bad.message(), "controller.yaml:1: key 'listen'")) << bad;
}

TEST(ControllerConfigTest, UnknownKeysAreRefusedWithTheirLine) {
  ControllerSettings s;
  absl::Status status = Apply("listen: 127.0.0.1:7443\n\nhttp-listen: 127.0.0.1:9464\n", s);
  ASSERT_FALSE(status.ok());
  EXPECT_TRUE(absl::StrContains(status.message(),
                                "controller.yaml:3: unknown key 'http-listen' in the controller "
                                "config (known: listen, db, http_listen"))
      << status;
}

TEST(ControllerConfigTest, AValueFoldedOverLinesStaysOnItsProblemsLine) {
  ControllerSettings s;
  // YAML folds the indented "- x" into the plain scalar: the value holds a newline.
  absl::Status status = Apply(
      "notifications:\n"
      "  external_url: https://vigil.example.com\n"
      "  resend_interval: 0m\n"
      "  \n"
      "    - x\n",
      s);
  ASSERT_FALSE(status.ok());
  const std::string m(status.message());
  EXPECT_EQ(std::count(m.begin(), m.end(), '\n'), 0) << m;
  EXPECT_TRUE(absl::StartsWith(m, "controller.yaml:")) << m;
  EXPECT_TRUE(absl::StrContains(m, "bad duration '0m\\n- x'")) << m;
}

TEST(ControllerConfigTest, WrongTypesAndRangesNameFileLineAndKey) {
  ControllerSettings s;
  absl::Status status = Apply(
      "listen: {host: a}\n"
      "admission_queue: many\n"
      "telemetry_max_skew: 5 minutes\n"
      "insecure: maybe\n"
      "webhook_max_alerts: 0\n"
      "log_level: loud\n"
      "ingest_nice: 20\n",
      s);
  ASSERT_FALSE(status.ok());
  const std::string m(status.message());
  // Every problem at once, one a line.
  EXPECT_TRUE(absl::StrContains(m, "controller.yaml:1: key 'listen' must be a string")) << m;
  EXPECT_TRUE(absl::StrContains(m, "controller.yaml:2: key 'admission_queue' must be a whole "
                                   "number from 1 to 1000000"))
      << m;
  EXPECT_TRUE(absl::StrContains(m, "controller.yaml:3: key 'telemetry_max_skew': bad duration"))
      << m;
  EXPECT_TRUE(absl::StrContains(m, "controller.yaml:4: key 'insecure' must be true or false"))
      << m;
  EXPECT_TRUE(absl::StrContains(m, "controller.yaml:5: key 'webhook_max_alerts'")) << m;
  EXPECT_TRUE(absl::StrContains(m, "controller.yaml:6: key 'log_level': 'loud'")) << m;
  EXPECT_TRUE(absl::StrContains(
      m, "controller.yaml:7: key 'ingest_nice' must be a whole number from 0 to 19"))
      << m;
  EXPECT_EQ(std::count(m.begin(), m.end(), '\n'), 6) << m;
}

TEST(ControllerConfigTest, RepeatedEmptyAndCommandLineOnlyKeysAreRefused) {
  ControllerSettings s;
  absl::Status twice = Apply("db: /a.db\nlisten: x:1\ndb: /b.db\n", s);
  EXPECT_TRUE(absl::StrContains(twice.message(),
                                "controller.yaml:3: key 'db' given twice (first on line 1)"))
      << twice;
  absl::Status empty = Apply("db:\n", s);
  EXPECT_TRUE(absl::StrContains(empty.message(), "controller.yaml:1: key 'db' has no value"))
      << empty;
  absl::Status init = Apply("init: true\n", s);
  EXPECT_TRUE(absl::StrContains(init.message(), "controller.yaml:1: key 'init' is not a config key"))
      << init;
  absl::Status list = Apply("- listen\n", s);
  EXPECT_TRUE(absl::StrContains(list.message(), "controller.yaml:1: the controller config must be "
                                                "a map"))
      << list;
  // An empty file (or only comments) changes nothing.
  ControllerSettings untouched;
  EXPECT_TRUE(Apply("# nothing yet\n", untouched).ok());
  EXPECT_EQ(untouched.options.db_path, "/var/lib/vigil/vigil.db");
}

TEST(ControllerConfigTest, EveryErrorIsOneLineWhateverTheTextCarries) {
  ControllerSettings s;
  // A quoted key with a newline, a duration with a control character, and yaml-cpp quoting the
  // bad escape character (a newline) in its own message.
  absl::Status status = Apply("\"lis\\nten\": x\ncorrelation_window: \"1\\x01s\"\n", s);
  ASSERT_FALSE(status.ok());
  EXPECT_TRUE(absl::StrContains(status.message(), "unknown key 'lis\\nten'")) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "'1\\x01s'")) << status;
  EXPECT_EQ(std::count(status.message().begin(), status.message().end(), '\n'), 1) << status;
  // yaml-cpp's message for this one quotes a raw newline (a case the fuzzer found).
  absl::Status yaml = Apply(std::string("correlation_window: 1\x16\0\nsigning_key: /k\n", 40), s);
  ASSERT_FALSE(yaml.ok());
  EXPECT_TRUE(absl::StartsWith(yaml.message(), "controller.yaml:")) << yaml;
  EXPECT_FALSE(absl::StrContains(yaml.message(), "\n")) << yaml;
  EXPECT_TRUE(absl::StrContains(yaml.message(), "\\n")) << "the newline, escaped: " << yaml;
}

TEST(ControllerConfigTest, HostileYamlBecomesAnErrorWithALine) {
  for (const testing::HostileYaml& c : testing::HostileYamlCases("rules")) {
    ControllerSettings s;
    absl::Status status = Apply(c.text, s);
    if (status.ok()) continue;  // a harmless reading of the text is fine; a crash is not
    if (c.has_line) {
      EXPECT_TRUE(absl::StrContains(status.message(), "controller.yaml:")) << c.name << status;
    }
  }
}

TEST(ControllerConfigTest, ANamedFileMustExistTheDefaultOnlyWhenThere) {
  TempDir dir;
  const std::string file = dir.File("controller.yaml");
  auto missing = ChooseControllerConfig(true, file, file);
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(absl::IsNotFound(missing.status()));
  EXPECT_TRUE(absl::StrContains(missing.status().message(), "--config=" + file)) << missing.status();
  EXPECT_EQ(*ChooseControllerConfig(false, "", file), "") << "no default file: flags only";
  EXPECT_EQ(*ChooseControllerConfig(true, "", file), "") << "--config= reads none";
  WriteFile(file, "listen: 127.0.0.1:7443\n");
  EXPECT_EQ(*ChooseControllerConfig(false, "", file), file);
  EXPECT_EQ(*ChooseControllerConfig(true, file, "/nonexistent"), file);

  ControllerSettings s;
  absl::Status unreadable = LoadControllerConfig(dir.File("nope.yaml"), NoFlags, s);
  EXPECT_TRUE(absl::StrContains(unreadable.message(), dir.File("nope.yaml"))) << unreadable;
}

TEST(ControllerConfigTest, CheckFindsEveryProblemAndCreatesNothing) {
  TempDir dir;
  WriteFile(dir.File("rules.yaml"), "rules:\n  - alert: A\n    expr: nosuchfunc(x) >\n");
  WriteFile(dir.File("policy.yaml"), "colour: red\n");
  ControllerSettings s;
  ASSERT_TRUE(Apply(absl::StrCat("listen: 0.0.0.0:7443\ninsecure: true\ndb: ", dir.File("db/v.db"),
                                 "\nrules: ", dir.File("rules.yaml"), "\npolicy: ",
                                 dir.File("policy.yaml"), "\nhttp_tls_cert: ",
                                 dir.File("missing.pem"), "\nhttp_tls_key: ",
                                 dir.File("missing.key"), "\n"),
                    s)
                  .ok());
  const std::vector<std::string> errors = CheckControllerSettings(s);
  const std::string all = absl::StrJoin(errors, "\n");
  EXPECT_TRUE(absl::StrContains(all, "--insecure is refused for 0.0.0.0:7443")) << all;
  EXPECT_TRUE(absl::StrContains(all, dir.File("rules.yaml") + ":")) << all;
  EXPECT_TRUE(absl::StrContains(all, "colour")) << all;
  EXPECT_TRUE(absl::StrContains(all, "controller.yaml:6: key 'http_tls_cert': " +
                                         dir.File("missing.pem") + ": cannot read"))
      << all;
  EXPECT_FALSE(Exists(dir.File("db"))) << "the check creates no database folder";

  // A sound set: loopback plain text, built-in rules and policy.
  ControllerSettings good;
  ASSERT_TRUE(Apply(absl::StrCat("listen: 127.0.0.1:7443\ninsecure: true\nhttp_listen: 'off'\ndb: ",
                                 dir.File("db/v.db"), "\n"),
                    good)
                  .ok());
  EXPECT_EQ(CheckControllerSettings(good), std::vector<std::string>{});
  EXPECT_FALSE(Exists(dir.File("db")));
  EXPECT_FALSE(Exists(dir.File("db/controller-signing.key")));

  // Without TLS files or --insecure there is no transport at all.
  ControllerSettings bare;
  bare.options.db_path = dir.File("db/v.db");
  const std::string none = absl::StrJoin(CheckControllerSettings(bare), "\n");
  EXPECT_TRUE(absl::StrContains(none, "no transport security")) << none;

  // A signing key that is there must be a key; evidence of a lost database is refused.
  WriteFile(dir.File("k.key"), "not a key\n");
  good.options.signing_key_path = dir.File("k.key");
  const std::string key = absl::StrJoin(CheckControllerSettings(good), "\n");
  EXPECT_TRUE(absl::StrContains(key, dir.File("k.key") + ": not a usable signing key")) << key;
  EXPECT_TRUE(absl::StrContains(key, "is missing, but")) << key;
}

TEST(ControllerConfigTest, TheFleetTokenFileIsReadAndChecked) {
  TempDir dir;
  WriteFile(dir.File("short.token"), "abc\n");
  ControllerSettings s;
  ASSERT_TRUE(Apply(absl::StrCat("listen: 127.0.0.1:7443\ninsecure: true\ndb: ",
                                 dir.File("db/v.db"), "\nfleet_metrics_token_file: ",
                                 dir.File("short.token"), "\n"),
                    s)
                  .ok());
  EXPECT_EQ(s.options.fleet_metrics_token_file, dir.File("short.token"));
  const std::string errors = absl::StrJoin(CheckControllerSettings(s), "\n");
  EXPECT_TRUE(absl::StrContains(errors, "controller.yaml:4: key 'fleet_metrics_token_file': "))
      << errors;
  EXPECT_TRUE(absl::StrContains(errors, "fewer than 16")) << errors;

  WriteFile(dir.File("good.token"), "0123456789abcdef0123\n");
  s.options.fleet_metrics_token_file = dir.File("good.token");
  EXPECT_EQ(CheckControllerSettings(s), std::vector<std::string>{});
  s.options.http_listen.clear();
  EXPECT_TRUE(absl::StrContains(absl::StrJoin(CheckControllerSettings(s), "\n"),
                                "HTTP port, which is off"));
}

TEST(ControllerConfigTest, TheDeployExampleLoads) {
  ControllerSettings s;
  ASSERT_TRUE(
      LoadControllerConfig(testing::SourcePath("deploy/examples/controller.yaml"), NoFlags, s).ok());
  EXPECT_EQ(s.options.db_path, "/var/lib/vigil/vigil.db");
  EXPECT_EQ(s.options.transport.ca, "/etc/vigil/tls/ca.pem");
  EXPECT_EQ(s.options.listen, "0.0.0.0:7443");
}

}  // namespace
}  // namespace vigil::controller
