#include "common/yaml_util.h"

#include <gtest/gtest.h>

#include "gmock/gmock.h"

namespace vigil {
namespace {

using ::testing::HasSubstr;

TEST(YamlUtilTest, SyntaxErrorNamesFileAndLine) {
  auto node = LoadYamlString("a: 1\nb: [unclosed\n", "agent.yaml");
  ASSERT_FALSE(node.ok());
  EXPECT_THAT(node.status().message(), HasSubstr("agent.yaml:"));
  EXPECT_THAT(node.status().message(), HasSubstr("not valid YAML"));
}

TEST(YamlUtilTest, MissingFileIsNotFound) {
  auto node = LoadYamlFile("/nonexistent/vigil.yaml");
  ASSERT_FALSE(node.ok());
  EXPECT_EQ(node.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(node.status().message(), HasSubstr("/nonexistent/vigil.yaml"));
}

TEST(YamlUtilTest, UnknownKeyNamesKeyAndLine) {
  auto node = LoadYamlString("id: x\nlables: {}\n", "a.yaml");
  ASSERT_TRUE(node.ok());
  absl::Status s = YamlCheckKeys(*node, "a.yaml", "agent config", {"id", "labels"});
  EXPECT_THAT(s.message(), HasSubstr("a.yaml:2: unknown key 'lables'"));
}

TEST(YamlUtilTest, WrongTypeNamesKey) {
  auto node = LoadYamlString("id: [1, 2]\n", "a.yaml");
  auto id = YamlString(*node, "id", "a.yaml");
  ASSERT_FALSE(id.ok());
  EXPECT_THAT(id.status().message(), HasSubstr("a.yaml:1: key 'id' must be a string"));
}

TEST(YamlUtilTest, Durations) {
  EXPECT_EQ(*ParseDurationText("5m"), absl::Minutes(5));
  EXPECT_EQ(*ParseDurationText("1500ms"), absl::Milliseconds(1500));
  EXPECT_EQ(*ParseDurationText("2d"), absl::Hours(48));
  EXPECT_EQ(*ParseDurationText("0"), absl::ZeroDuration());
  EXPECT_FALSE(ParseDurationText("5 minutes").ok());
  EXPECT_FALSE(ParseDurationText("-5s").ok());
}

}  // namespace
}  // namespace vigil
