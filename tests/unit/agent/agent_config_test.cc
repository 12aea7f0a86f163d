#include "agent/agent_config.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"

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
            "agent.yaml:2: collectors.host.top_processes must be 0 to 1000"},
           {"collectors:\n  nginx: {access_log: /x, slow_endpoints: 1e300}\n",
            "agent.yaml:2: collectors.nginx.slow_endpoints must be 0 to 1000"},
           {"collectors:\n  postgres: {dsn: x, max_query_text: -1e300}\n",
            "agent.yaml:2: collectors.postgres.max_query_text must be 0 to 1000000"},
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

}  // namespace
}  // namespace vigil::agent
