#include "agent/agent_config.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "agent/actions/action.h"
#include "agent/agent.h"
#include "tests/support/hostile_yaml.h"
#include "tests/support/process.h"

namespace vigil::agent {
namespace {

class AgentConfigTest : public ::testing::Test {
 protected:
  AgentConfigTest() { RegisterBuiltinCollectors(registry_); }
  absl::Status Error(const std::string& text) {
    return ParseAgentConfig(text, "agent.yaml", registry_).status();
  }
  CollectorRegistry registry_;
};

// The Hello declares what the scraping collectors may send, each marked with its collector.
TEST_F(AgentConfigTest, TheHelloDeclaresTheScrapedMetrics) {
  auto config = ParseAgentConfig(
      "id: web-1\ncollectors:\n  host: {}\n  prometheus:\n    targets:\n"
      "      - {name: app, url: 'http://127.0.0.1:8000/metrics', prefix: app_,\n"
      "         series: {http_request_duration_seconds: histogram, jobs_total: counter}}\n",
      "agent.yaml", registry_);
  ASSERT_TRUE(config.ok()) << config.status();
  const v1::Hello hello = MakeHello(*config, absl::Seconds(1));
  EXPECT_EQ(hello.collectors_size(), 2);
  ASSERT_EQ(hello.metrics_size(), 2);
  EXPECT_EQ(hello.metrics(0).name(), "app_http_request_duration_seconds");
  EXPECT_EQ(hello.metrics(0).kind(), v1::MetricDeclaration::HISTOGRAM);
  EXPECT_EQ(hello.metrics(0).collector(), "prometheus");
  EXPECT_EQ(hello.metrics(1).name(), "app_jobs_total");
  EXPECT_TRUE(hello.metrics(1).per_second_rate());
}

TEST_F(AgentConfigTest, ReadsIdLabelsAndCollectors) {
  auto config = ParseAgentConfig(
      "id: web-1\nlabels: {role: api, depends_on: \"postgres,redis\", shard: 3}\n"
      "interval: 2s\ncollectors:\n  host: {top_processes: 5}\n",
      "agent.yaml", registry_);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->id, "web-1");
  EXPECT_EQ(config->labels.at("role"), "api");
  EXPECT_EQ(config->labels.at("depends_on"), "postgres,redis");
  EXPECT_EQ(config->labels.at("shard"), "3");
  EXPECT_EQ(config->interval, absl::Seconds(2));
  ASSERT_EQ(config->collectors.size(), 1u);
  EXPECT_EQ(config->collectors[0]->name(), "host");
}

TEST_F(AgentConfigTest, UnknownTopLevelKeyNamesFileLineAndKey) {
  absl::Status s = Error("id: a\ncollectors: {host: {}}\nlables: {role: api}\n");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.message(), "agent.yaml:3")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "'lables'")) << s;
}

TEST_F(AgentConfigTest, UnknownCollectorOptionNamesLine) {
  absl::Status s = Error("collectors:\n  host:\n    top_processes: 5\n    colour: red\n");
  EXPECT_TRUE(absl::StrContains(s.message(), "agent.yaml:4")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "'colour'")) << s;
}

TEST_F(AgentConfigTest, UnknownCollectorIsRefused) {
  absl::Status s = Error("collectors:\n  mongodb: {}\n");
  EXPECT_TRUE(absl::StrContains(s.message(), "agent.yaml:2")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "unknown collector 'mongodb'")) << s;
}

TEST_F(AgentConfigTest, WrongTypesAreRefused) {
  EXPECT_TRUE(absl::StrContains(Error("labels: [a, b]\ncollectors: {host: {}}\n").message(),
                                "agent.yaml:1"));
  EXPECT_TRUE(
      absl::StrContains(Error("collectors: {host: {}}\ninterval: soon\n").message(), "interval"));
  EXPECT_TRUE(
      absl::StrContains(Error("collectors: [host]\n").message(), "'collectors' must be a map"));
  EXPECT_TRUE(absl::StrContains(Error("collectors:\n  host: {top_processes: many}\n").message(),
                                "top_processes"));
}

// Found by fuzzing: a number out of int's range (or NaN) was converted to int, which is undefined.
TEST_F(AgentConfigTest, CountsOutOfRangeAreRefusedNotConverted) {
  for (const auto& [text, want] : std::vector<std::pair<std::string, std::string>>{
           {"collectors:\n  host: {top_processes: 1e300}\n",
            "agent.yaml:2: key 'top_processes' must be a whole number from 0 to 1000"},
           {"collectors:\n  nginx: {access_log: /x, slow_endpoints: 1e300}\n",
            "agent.yaml:2: key 'slow_endpoints' must be a whole number from 0 to 1000"},
           {"collectors:\n  postgres: {dsn: x, max_query_text: -1e300}\n",
            "agent.yaml:2: key 'max_query_text' must be a whole number from 1 to 1048576"},
       }) {
    absl::Status s = Error(text);
    EXPECT_TRUE(absl::StrContains(s.message(), want)) << text << " -> " << s;
  }
  EXPECT_TRUE(Error("collectors:\n  host: {top_processes: 1000}\n").ok());
}

TEST_F(AgentConfigTest, NotYamlOrEmptyOrMissing) {
  absl::Status s = Error("collectors: {host: {}\n");
  EXPECT_TRUE(absl::StrContains(s.message(), "agent.yaml:")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "not valid YAML")) << s;
  EXPECT_TRUE(absl::StrContains(Error("").message(), "empty"));
  EXPECT_TRUE(absl::StrContains(Error("id: x\n").message(), "'collectors' is missing"));
  auto missing = LoadAgentConfig("/nonexistent/agent.yaml", registry_);
  EXPECT_TRUE(absl::StrContains(missing.status().message(), "/nonexistent/agent.yaml"))
      << missing.status();
}

// Every hostile text is an InvalidArgument error naming the file (and its line when there is
// one), wherever in the config it sits; none throws.
TEST_F(AgentConfigTest, HostileFilesGiveFileLineErrors) {
  for (const std::string key : {"collectors", "labels", "actions"}) {
    for (const testing::HostileYaml& c : testing::HostileYamlCases(key)) {
      SCOPED_TRACE(c.name);
      if (key != "collectors" && !c.has_line) {
        continue;  // an empty text after a valid config is a valid config
      }
      const std::string text =
          key == "collectors" ? c.text : absl::StrCat("collectors: {host: {}}\n", c.text);
      absl::StatusOr<AgentConfig> config = ParseAgentConfig(text, "agent.yaml", registry_);
      if (key == "actions" && config.ok()) {
        // Actions are checked by BuildActions, which the agent runs at start.
        ActionRegistry actions;
        RegisterBuiltinActions(actions);
        ActionContext context;
        auto built = BuildActions(config->actions, actions, context, "agent.yaml");
        ASSERT_FALSE(built.ok());
        EXPECT_TRUE(
            testing::OpensWithFileLine(std::string(built.status().message()), "agent.yaml", true))
            << built.status();
        continue;
      }
      ASSERT_FALSE(config.ok());
      EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument) << config.status();
      EXPECT_TRUE(testing::OpensWithFileLine(std::string(config.status().message()), "agent.yaml",
                                             c.has_line))
          << config.status();
    }
  }
}

TEST_F(AgentConfigTest, NonScalarKeysAreNamed) {
  absl::Status s = Error("collectors:\n  host: {}\n  ? [a, b]\n  : {}\n");
  EXPECT_TRUE(
      absl::StrContains(s.message(), "agent.yaml:3: a key in collectors must be a plain name"))
      << s;
  s = Error("collectors: {host: {}}\nlabels:\n  ? {x: 1}\n  : y\n");
  EXPECT_TRUE(absl::StrContains(s.message(), "agent.yaml:3: a key in labels")) << s;
}

TEST_F(AgentConfigTest, HugeNumbersAreRefused) {
  absl::Status s = Error("collectors:\n  host: {top_processes: 1e300}\n");
  EXPECT_TRUE(absl::StrContains(s.message(), "agent.yaml:2: key 'top_processes' must be a whole"))
      << s;
  s = Error("collectors: {host: {}}\ninterval: 99999999999999999999h\n");
  EXPECT_TRUE(absl::StrContains(s.message(), "agent.yaml:2: key 'interval'")) << s;
}

TEST_F(AgentConfigTest, ADirectoryIsNotAConfig) {
  testing::TempDir dir;
  auto config = LoadAgentConfig(dir.path(), registry_);
  ASSERT_FALSE(config.ok());
  EXPECT_TRUE(absl::StrContains(config.status().message(), "is a directory")) << config.status();
}

TEST_F(AgentConfigTest, SpoolFolderAndBound) {
  auto config = ParseAgentConfig("id: web-1\ncollectors: {host: {}}\n", "agent.yaml", registry_);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->spool_dir, "/var/lib/vigil/web-1.spool");
  EXPECT_EQ(config->spool_max_bytes, uint64_t{64} << 20);
  config = ParseAgentConfig(
      "id: web-1\ncollectors: {host: {}}\njournal: /srv/a/j\nspool_max_bytes: 2048\n",
      "agent.yaml", registry_);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->spool_dir, "/srv/a/web-1.spool");  // beside the journal
  EXPECT_EQ(config->spool_max_bytes, 2048u);
  config = ParseAgentConfig("collectors: {host: {}}\nspool_dir: /tmp/s\n", "agent.yaml",
                            registry_);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->spool_dir, "/tmp/s");
  for (const char* bad : {"12", "-1", "1.5", "lots", "[1]", "99999999999999999999"}) {
    absl::Status s = Error(absl::StrCat("collectors: {host: {}}\nspool_max_bytes: ", bad, "\n"));
    EXPECT_TRUE(absl::StrContains(s.message(), "agent.yaml:2: key 'spool_max_bytes'"))
        << bad << ": " << s;
  }
  absl::Status empty = Error("collectors: {host: {}}\nspool_dir: ''\n");
  EXPECT_TRUE(absl::StrContains(empty.message(), "agent.yaml:2: key 'spool_dir' is empty")) << empty;
}

TEST_F(AgentConfigTest, MaxCommandLifetime) {
  auto config = ParseAgentConfig("collectors: {host: {}}\n", "agent.yaml", registry_);
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->max_command_lifetime, absl::Minutes(15));
  config = ParseAgentConfig("collectors: {host: {}}\nmax_command_lifetime: 2m\n", "agent.yaml",
                            registry_);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->max_command_lifetime, absl::Minutes(2));
  absl::Status s = Error("collectors: {host: {}}\nmax_command_lifetime: 0s\n");
  EXPECT_TRUE(absl::StrContains(s.message(), "agent.yaml:2: key 'max_command_lifetime'")) << s;
}

TEST_F(AgentConfigTest, ResultJournalSitsBesideTheCommandJournalUnlessNamed) {
  auto config = ParseAgentConfig("id: web-1\ncollectors: {host: {}}\n", "agent.yaml", registry_);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(ResultJournalPath(*config), "/var/lib/vigil/web-1.results");
  EXPECT_EQ(config->result_journal_max_bytes, 4u << 20);
  config = ParseAgentConfig("collectors: {host: {}}\njournal: /state/j\n", "agent.yaml",
                            registry_);
  ASSERT_TRUE(config.ok()) << config.status();
  // Not /state/j.results: a file named JOURNAL.* is evidence of an earlier command journal.
  EXPECT_EQ(ResultJournalPath(*config), "/state/j-results");
  config = ParseAgentConfig(
      "collectors: {host: {}}\nresult_journal: /x/r\nresult_journal_max_bytes: 65536\n",
      "agent.yaml", registry_);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(ResultJournalPath(*config), "/x/r");
  EXPECT_EQ(config->result_journal_max_bytes, 65536u);
  absl::Status s = Error("collectors: {host: {}}\nresult_journal_max_bytes: 1000\n");
  EXPECT_TRUE(absl::StrContains(s.message(), "agent.yaml:2")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "result_journal_max_bytes")) << s;
  s = Error("collectors: {host: {}}\njournal: /x/j\nresult_journal: /x/j\n");
  EXPECT_TRUE(absl::StrContains(s.message(), "name the same file /x/j")) << s;
}

TEST_F(AgentConfigTest, AuditCheckpointSitsBesideTheCommandJournalUnlessNamed) {
  auto config = ParseAgentConfig("id: web-1\ncollectors: {host: {}}\n", "agent.yaml", registry_);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(CheckpointPath(*config), "/var/lib/vigil/web-1.checkpoint");
  config = ParseAgentConfig("collectors: {host: {}}\njournal: /state/j\n", "agent.yaml",
                            registry_);
  ASSERT_TRUE(config.ok()) << config.status();
  // Not /state/j.checkpoint: a file named JOURNAL.* is evidence of an earlier command journal.
  EXPECT_EQ(CheckpointPath(*config), "/state/j-checkpoint");
  config = ParseAgentConfig("collectors: {host: {}}\naudit_checkpoint: /o/web-1.checkpoint\n",
                            "agent.yaml", registry_);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(CheckpointPath(*config), "/o/web-1.checkpoint");
  AgentConfig in_memory;
  EXPECT_EQ(CheckpointPath(in_memory), "");
  absl::Status s = Error("collectors: {host: {}}\njournal: /x/j\naudit_checkpoint: /x/j\n");
  EXPECT_TRUE(absl::StrContains(s.message(), "agent.yaml:3: key 'audit_checkpoint'")) << s;
  s = Error("collectors: {host: {}}\nresult_journal: /x/r\naudit_checkpoint: /x/r\n");
  EXPECT_TRUE(absl::StrContains(s.message(), "names the command or result journal /x/r")) << s;
}

TEST_F(AgentConfigTest, NamesItsTlsFilesWithTheirLines) {
  auto config = ParseAgentConfig(
      "collectors: {host: {}}\ntls:\n  ca: /etc/vigil/tls/ca.pem\n  cert: /etc/vigil/tls/a.pem\n"
      "  key: /etc/vigil/tls/a.key\n",
      "agent.yaml", registry_);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->tls.ca, "/etc/vigil/tls/ca.pem");
  EXPECT_EQ(config->tls.cert, "/etc/vigil/tls/a.pem");
  EXPECT_EQ(config->tls.key, "/etc/vigil/tls/a.key");
  EXPECT_FALSE(config->tls.insecure);
  // Messages about the files point at the lines that name them.
  EXPECT_EQ(config->tls_names.ca, "agent.yaml:3: key 'tls.ca'");
  EXPECT_EQ(config->tls_names.key, "agent.yaml:5: key 'tls.key'");

  // A CA alone is a client without a certificate (the controller refuses it, but that is its
  // call); unnamed files keep the flags' names.
  config = ParseAgentConfig("collectors: {host: {}}\ntls: {ca: /ca.pem}\n", "agent.yaml",
                            registry_);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->tls.cert, "");
  EXPECT_EQ(config->tls_names.cert, "--tls-cert");

  absl::Status s = Error("collectors: {host: {}}\ntls:\n  ca: /ca.pem\n  crt: /a.pem\n");
  EXPECT_TRUE(absl::StrContains(s.message(), "agent.yaml:4: unknown key 'crt' in tls")) << s;
  s = Error("collectors: {host: {}}\ntls:\n  ca: [a, b]\n");
  EXPECT_TRUE(absl::StrContains(s.message(), "agent.yaml:3: key 'ca' must be a string")) << s;
  s = Error("collectors: {host: {}}\ntls: /etc/vigil/tls\n");
  EXPECT_TRUE(absl::StrContains(s.message(), "agent.yaml:2: key 'tls' must be a map")) << s;
  s = Error("collectors: {host: {}}\ntls: {ca: /ca.pem, cert: /a.pem}\n");
  EXPECT_TRUE(absl::StrContains(s.message(), "'tls.cert' and 'tls.key' go together")) << s;
}

TEST_F(AgentConfigTest, StateDefaultsToVarLibVigil) {
  auto config = ParseAgentConfig("id: web-1\ncollectors: {host: {}}\n", "agent.yaml", registry_);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->journal_path, "/var/lib/vigil/web-1.journal");
  EXPECT_EQ(config->journal_path, DefaultJournalPath("web-1"));
}

// The shipped examples load: the quick start's (its key under ./data, as run.sh leaves it) and the
// packaged one (its /etc/vigil files moved under a temp folder).
TEST_F(AgentConfigTest, TheDeployExamplesLoad) {
  testing::TempDir dir;
  char cwd[4096];
  ASSERT_NE(getcwd(cwd, sizeof(cwd)), nullptr);
  ASSERT_EQ(chdir(dir.path().c_str()), 0);
  mkdir("data", 0700);
  testing::WriteFile("data/controller-signing.pub", "-----BEGIN PUBLIC KEY-----\nx\n");
  auto local = LoadAgentConfig(testing::SourcePath("deploy/examples/agent-local.yaml"), registry_);
  ASSERT_EQ(chdir(cwd), 0);
  ASSERT_TRUE(local.ok()) << local.status();
  EXPECT_EQ(local->journal_path, "data/agent.journal");

  std::string packaged =
      testing::ReadFileOrEmpty(testing::SourcePath("deploy/examples/agent.yaml"));
  ASSERT_TRUE(absl::StrContains(packaged, "/etc/vigil/controller-signing.pub"));
  testing::WriteFile(dir.File("controller-signing.pub"), "-----BEGIN PUBLIC KEY-----\nx\n");
  packaged = absl::StrReplaceAll(packaged, {{"/etc/vigil/", dir.path() + "/"}});
  auto config = ParseAgentConfig(packaged, "agent.yaml", registry_);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->tls.cert, dir.File("tls/agent.pem"));
  EXPECT_EQ(config->journal_path, DefaultJournalPath(config->id));
}

}  // namespace
}  // namespace vigil::agent
