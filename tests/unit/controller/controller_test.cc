// The controller in-process on loopback port 0: reloading rules and policy (what SIGHUP does).
#include "controller/controller.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "storage/sqlite/sqlite_store.h"
#include "tests/support/process.h"
#include "tests/support/servers.h"

namespace vigil::controller {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kTwoRules[] = R"(rules:
  - alert: HighLoad
    expr: host_load1 > 4
  - alert: HighCPU
    expr: host_cpu_usage_ratio > 0.9
)";

TEST(GrpcExperimentsTest, TurnsOffFixedReadChunksAndKeepsTheOperatorsOwn) {
  EXPECT_EQ(GrpcExperimentsForController(nullptr), "-tcp_read_chunks");
  EXPECT_EQ(GrpcExperimentsForController(""), "-tcp_read_chunks");
  EXPECT_EQ(GrpcExperimentsForController("tcp_rcv_lowat"), "tcp_rcv_lowat,-tcp_read_chunks");
  // Naming the experiment either way is the operator's decision, left as it is.
  EXPECT_EQ(GrpcExperimentsForController("tcp_read_chunks"), "tcp_read_chunks");
  EXPECT_EQ(GrpcExperimentsForController("tcp_rcv_lowat, -tcp_read_chunks"),
            "tcp_rcv_lowat, -tcp_read_chunks");
  // A longer name that starts the same is another experiment.
  EXPECT_EQ(GrpcExperimentsForController("tcp_read_chunks_v2"),
            "tcp_read_chunks_v2,-tcp_read_chunks");
}

class ControllerReloadTest : public ::testing::Test {
 protected:
  void Start(bool with_files) {
    ControllerOptions options;
    options.listen = "127.0.0.1:0";
    options.http_listen = "127.0.0.1:0";
    options.db_path = dir_.File("data/vigil.db");
    options.transport.insecure = true;
    if (with_files) {
      testing::WriteFile(dir_.File("rules.yaml"), kTwoRules);
      testing::WriteFile(dir_.File("policy.yaml"), "wave_size: 5\n");
      options.rules_path = dir_.File("rules.yaml");
      options.policy_path = dir_.File("policy.yaml");
    }
    controller_ = std::make_unique<Controller>(options, RealClock::Get());
    ASSERT_TRUE(controller_->Start().ok());
  }
  void TearDown() override {
    if (controller_ != nullptr) {
      controller_->Stop();
    }
  }

  std::vector<std::string> RuleNames() {
    std::vector<std::string> names;
    for (const Rule& r : controller_->rules().rules()) {
      names.push_back(r.name);
    }
    return names;
  }
  std::string Metrics() {
    std::string body;
    EXPECT_EQ(testing::HttpGet(controller_->http_port(), "/metrics", absl::Seconds(5), &body), 200);
    return body;
  }

  testing::TempDir dir_;
  std::unique_ptr<Controller> controller_;
};

TEST_F(ControllerReloadTest, GoodFilesAreSwappedInAndCounted) {
  Start(true);
  EXPECT_THAT(RuleNames(), ElementsAre("HighLoad", "HighCPU"));
  testing::WriteFile(dir_.File("rules.yaml"), R"(rules:
  - alert: HighLoad
    expr: host_load1 > 8
  - alert: SlowQueries
    expr: pg_longest_query_seconds > 5
)");
  ASSERT_TRUE(controller_->Reload().ok());
  EXPECT_THAT(RuleNames(), ElementsAre("HighLoad", "SlowQueries"));
  EXPECT_EQ(controller_->rules().rules()[0].expr.threshold, 8);
  const std::string metrics = Metrics();
  EXPECT_THAT(metrics, HasSubstr("vigil_config_reloads_total{result=\"ok\"} 1\n"));
  EXPECT_THAT(metrics, HasSubstr("vigil_config_reloads_total{result=\"failed\"} 0\n"));
  EXPECT_THAT(metrics, HasSubstr("vigil_rules_loaded 2\n"));
}

TEST_F(ControllerReloadTest, ABadFileOfEitherKindChangesNothing) {
  Start(true);
  // Rules with two problems, a good policy: every problem named with file and line.
  testing::WriteFile(dir_.File("rules.yaml"), R"(rules:
  - alert: HighLoad
    expr: host_load1 >> 4
  - alert: Typo
    expr: host_lod1 > 4
)");
  absl::Status bad_rules = controller_->Reload();
  ASSERT_FALSE(bad_rules.ok());
  EXPECT_THAT(std::string(bad_rules.message()), HasSubstr(dir_.File("rules.yaml") + ":3: "));
  EXPECT_THAT(std::string(bad_rules.message()),
              HasSubstr(dir_.File("rules.yaml") + ":5: rule Typo: expr: unknown metric"));
  EXPECT_THAT(RuleNames(), ElementsAre("HighLoad", "HighCPU"));

  // Good rules, a bad policy: the rules are not taken either.
  testing::WriteFile(dir_.File("rules.yaml"),
                     "rules:\n  - alert: Other\n    expr: host_load1 > 1\n");
  testing::WriteFile(dir_.File("policy.yaml"), "wave_size: 0\n");
  absl::Status bad_policy = controller_->Reload();
  ASSERT_FALSE(bad_policy.ok());
  EXPECT_THAT(std::string(bad_policy.message()),
              HasSubstr(dir_.File("policy.yaml") + ":1: wave_size must be 1 to 100000"));
  EXPECT_THAT(RuleNames(), ElementsAre("HighLoad", "HighCPU"));

  // A file that went away is an error too.
  std::remove(dir_.File("policy.yaml").c_str());
  EXPECT_THAT(std::string(controller_->Reload().message()), HasSubstr("policy.yaml"));
  EXPECT_THAT(RuleNames(), ElementsAre("HighLoad", "HighCPU"));
  EXPECT_THAT(Metrics(), HasSubstr("vigil_config_reloads_total{result=\"failed\"} 3\n"));

  // Fixed: both are taken.
  testing::WriteFile(dir_.File("policy.yaml"), "wave_size: 2\n");
  ASSERT_TRUE(controller_->Reload().ok());
  EXPECT_THAT(RuleNames(), ElementsAre("Other"));
}

TEST_F(ControllerReloadTest, WithoutFilesReloadKeepsTheBuiltInRules) {
  Start(false);
  const std::vector<std::string> before = RuleNames();
  ASSERT_FALSE(before.empty());
  EXPECT_TRUE(controller_->Reload().ok());
  EXPECT_EQ(RuleNames(), before);
  EXPECT_THAT(Metrics(), HasSubstr("vigil_config_reloads_total{result=\"ok\"} 1\n"));
}

// What a previous run left in the store is the rule engine's own before any telemetry arrives.
TEST(ControllerRestoreTest, StoredRuleAlertsAreTakenBackAtStart) {
  testing::TempDir dir;
  const std::string db = dir.File("data/vigil.db");
  testing::WriteFile(dir.File("rules.yaml"), kTwoRules);
  const int64_t now_ms = absl::ToUnixMillis(absl::Now());
  auto alert = [&](const std::string& id, const std::string& rule, v1::AlertState state,
                   int64_t active_since_ms) {
    v1::Alert a;
    a.set_id(id);
    a.set_rule(rule);
    a.set_agent_id("web-1");
    a.set_source("rules");
    a.set_state(state);
    a.set_active_since_unix_ms(active_since_ms);
    a.set_evaluated_unix_ms(now_ms - 2'000);
    (*a.mutable_labels())["role"] = "api";
    return a;
  };
  {
    absl::StatusOr<std::unique_ptr<storage::Store>> store = storage::OpenSqliteStore(db);
    ASSERT_TRUE(store.ok()) << store.status();
    for (const v1::Alert& a : {alert("alert-pending", "HighLoad", v1::PENDING, now_ms - 15'000),
                               alert("alert-firing", "HighCPU", v1::FIRING, now_ms - 90'000),
                               alert("alert-older-copy", "HighCPU", v1::STALE, now_ms - 300'000),
                               alert("alert-gone", "NoSuchRule", v1::FIRING, now_ms - 90'000)}) {
      ASSERT_TRUE((*store)->SaveAlert(a).ok());
    }
  }
  ControllerOptions options;
  options.listen = "127.0.0.1:0";
  options.http_listen = "";
  options.db_path = db;
  options.transport.insecure = true;
  options.rules_path = dir.File("rules.yaml");
  Controller controller(options, RealClock::Get());
  ASSERT_TRUE(controller.Start().ok());
  std::map<std::string, v1::Alert> active;
  for (const v1::Alert& a : controller.rules().ActiveAlerts()) {
    active[a.id()] = a;
  }
  controller.Stop();
  ASSERT_EQ(active.size(), 2u);
  ASSERT_TRUE(active.contains("alert-pending"));
  EXPECT_EQ(active["alert-pending"].state(), v1::PENDING);
  EXPECT_EQ(active["alert-pending"].active_since_unix_ms(), now_ms - 15'000);
  ASSERT_TRUE(active.contains("alert-firing"));
  EXPECT_EQ(active["alert-firing"].state(), v1::STALE);
  EXPECT_EQ(active["alert-firing"].labels().at("stale_reason"), "the controller restarted");
}

}  // namespace
}  // namespace vigil::controller

namespace vigil::controller {
namespace {

// The review page rides on the HTTP port: over plain HTTP it is served on loopback (and says
// so), and refused on any other address; its counters are on /metrics.
TEST(ControllerReviewPage, PlainHttpIsServedOnLoopbackOnly) {
  for (const std::string listen : {"127.0.0.1:0", "0.0.0.0:0"}) {
    SCOPED_TRACE(listen);
    testing::TempDir dir;
    ControllerOptions options;
    options.listen = "127.0.0.1:0";
    options.http_listen = listen;
    options.db_path = dir.File("data/vigil.db");
    options.transport.insecure = true;
    Controller controller(options, RealClock::Get());
    ASSERT_TRUE(controller.Start().ok());
    std::string body;
    const int status =
        testing::HttpGet(controller.http_port(), "/review/login", absl::Seconds(5), &body);
    if (listen.rfind("127.", 0) == 0) {
      EXPECT_EQ(status, 200);
      EXPECT_THAT(body, HasSubstr("id=\"plain-http\""));
      EXPECT_THAT(body, HasSubstr("name=\"token\""));
    } else {
      EXPECT_EQ(status, 403);
      EXPECT_THAT(body, HasSubstr("not served here"));
    }
    std::string metrics;
    EXPECT_EQ(testing::HttpGet(controller.http_port(), "/metrics", absl::Seconds(5), &metrics),
              200);
    EXPECT_THAT(metrics, HasSubstr("vigil_review_sessions 0\n"));
    controller.Stop();
  }
}

TEST(DatabaseEvidence, AMissingDatabaseThatExistedIsRefusedUnlessInit) {
  testing::TempDir dir;
  const std::string db = dir.File("vigil.db");
  const std::string key = dir.File("controller-signing.key");
  // A first install: nothing here, nothing to lose.
  EXPECT_TRUE(CheckDatabaseEvidence(db, key, false).ok());
  // The signing key (or the WAL, or the lock file) says a database lived here.
  testing::WriteFile(key, "key");
  absl::Status refused = CheckDatabaseEvidence(db, key, false);
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(refused.message(), db)) << refused;
  EXPECT_TRUE(absl::StrContains(refused.message(), key)) << refused;
  EXPECT_TRUE(absl::StrContains(refused.message(), "--init")) << refused;
  EXPECT_TRUE(CheckDatabaseEvidence(db, key, true).ok());
  std::filesystem::remove(key);
  testing::WriteFile(db + "-wal", "");
  EXPECT_FALSE(CheckDatabaseEvidence(db, key, false).ok());
  // The database itself is there: nothing to check.
  testing::WriteFile(db, "");
  EXPECT_TRUE(CheckDatabaseEvidence(db, key, false).ok());
}

}  // namespace
}  // namespace vigil::controller
