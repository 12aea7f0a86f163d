#include "agent/agent_config.h"

#include <gtest/gtest.h>

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
