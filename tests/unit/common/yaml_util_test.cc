#include "common/yaml_util.h"

#include <gtest/gtest.h>

#include "gmock/gmock.h"
#include "tests/support/hostile_yaml.h"
#include "tests/support/process.h"

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

TEST(YamlUtilTest, HugeDurationsAreRefused) {
  EXPECT_FALSE(ParseDurationText("99999999999999999d").ok());
  EXPECT_FALSE(ParseDurationText("9999999999999999999999h").ok());
  EXPECT_FALSE(ParseDurationText("inf").ok());
}

TEST(YamlUtilTest, NonScalarKeyIsAnErrorNotACrash) {
  auto node = LoadYamlString("id: x\n? [a, b]\n: 1\n", "a.yaml");
  ASSERT_TRUE(node.ok()) << node.status();
  absl::Status s = YamlCheckKeys(*node, "a.yaml", "the agent config", {"id"});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("a.yaml:2: a key in the agent config must be a plain name"));
  for (const auto& kv : *node) {
    if (!kv.first.IsScalar()) {
      auto key = YamlKey(kv.first, "a.yaml", "x");
      ASSERT_FALSE(key.ok());
      EXPECT_THAT(key.status().message(), HasSubstr("not a list"));
    }
  }
}

TEST(YamlUtilTest, InvalidUtf8NamesLineAndColumn) {
  auto node = LoadYamlString("a: 1\nb: \"x\xc3\x28\"\n", "a.yaml");
  ASSERT_FALSE(node.ok());
  EXPECT_THAT(node.status().message(), HasSubstr("a.yaml:2:6: not valid UTF-8 (byte 0xc3)"));
  // Overlong forms and surrogates are not UTF-8 either; real multi-byte text is.
  EXPECT_FALSE(LoadYamlString("a: \"\xc0\xaf\"\n", "a.yaml").ok());
  EXPECT_FALSE(LoadYamlString("a: \"\xed\xa0\x80\"\n", "a.yaml").ok());
  EXPECT_FALSE(LoadYamlString("a: \"\xe2\x82\"", "a.yaml").ok());  // cut at the end
  EXPECT_TRUE(LoadYamlString("a: \"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\xa5\"\n", "a.yaml").ok());
}

TEST(YamlUtilTest, DeepNestingIsRefusedBeforeParsing) {
  auto node = LoadYamlString("a: 1\nb: " + std::string(100000, '[') + "\n", "a.yaml");
  ASSERT_FALSE(node.ok());
  EXPECT_THAT(node.status().message(), HasSubstr("a.yaml:2:"));
  EXPECT_THAT(node.status().message(), HasSubstr("nested deeper than 64 levels"));
  // Brackets in quotes and comments do not count; ordinary nesting passes.
  EXPECT_TRUE(LoadYamlString("a: '" + std::string(200, '[') + "'\n# " + std::string(200, '{') +
                                 "\nb: [[1, 2], {c: [3]}]\n",
                             "a.yaml")
                  .ok());
}

TEST(YamlUtilTest, TabIndentationIsExplained) {
  auto node = LoadYamlString("a:\n\tb: 1\n", "a.yaml");
  ASSERT_FALSE(node.ok());
  EXPECT_THAT(node.status().message(), HasSubstr("a.yaml:2:"));
  EXPECT_THAT(node.status().message(), HasSubstr("tab in the indentation"));
}

TEST(YamlUtilTest, AliasLoopsAreAnErrorForTypedReads) {
  auto node = LoadYamlString("a: &x [*x]\nb: &y {c: *y}\n", "a.yaml");
  ASSERT_TRUE(node.ok()) << node.status();
  auto list = YamlStringList(*node, "a", "a.yaml");
  ASSERT_FALSE(list.ok());
  EXPECT_THAT(list.status().message(), HasSubstr("a.yaml:1: key 'a' must be a list of strings"));
  auto b = YamlString(*node, "b", "a.yaml");
  ASSERT_FALSE(b.ok());
  EXPECT_THAT(b.status().message(), HasSubstr("a.yaml:2"));
}

TEST(YamlUtilTest, NumbersMustBeFiniteAndInRange) {
  auto node = LoadYamlString("big: 1e999999\nnan: .nan\nint: 1e300\nfrac: 1.5\nok: 7\n", "a.yaml");
  ASSERT_TRUE(node.ok());
  auto big = YamlDouble(*node, "big", "a.yaml", 0);
  ASSERT_FALSE(big.ok());
  EXPECT_THAT(big.status().message(), HasSubstr("a.yaml:1: key 'big'"));
  EXPECT_FALSE(YamlDouble(*node, "nan", "a.yaml", 0).ok());
  auto i = YamlInt(*node, "int", "a.yaml", 0, 0, 100);
  ASSERT_FALSE(i.ok());
  EXPECT_THAT(i.status().message(),
              HasSubstr("a.yaml:3: key 'int' must be a whole number from 0 to 100"));
  EXPECT_FALSE(YamlInt(*node, "frac", "a.yaml", 0, 0, 100).ok());
  EXPECT_EQ(*YamlInt(*node, "ok", "a.yaml", 0, 0, 100), 7);
  EXPECT_EQ(*YamlInt(*node, "missing", "a.yaml", 3, 0, 100), 3);
}

TEST(YamlUtilTest, TypedReadsOfAScalarDoNotThrow) {
  auto node = LoadYamlString("just text\n", "a.yaml");
  ASSERT_TRUE(node.ok());
  auto s = YamlString(*node, "id", "a.yaml", /*required=*/true);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("missing required key 'id'"));
  auto n = YamlInt(*node, "n", "a.yaml", 4, 0, 10);  // not a map: nothing set, the fallback
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 4);
}

TEST(YamlUtilTest, ADirectoryIsNotAFile) {
  testing::TempDir dir;
  auto node = LoadYamlFile(dir.path());
  ASSERT_FALSE(node.ok());
  EXPECT_EQ(node.status().message(), dir.path() + ": is a directory, not a file");
}

TEST(YamlUtilTest, OversizedFileIsRefused) {
  testing::TempDir dir;
  testing::WriteFile(dir.File("big.yaml"), std::string(kMaxConfigFileBytes + 1, '#'));
  auto node = LoadYamlFile(dir.File("big.yaml"));
  ASSERT_FALSE(node.ok());
  EXPECT_THAT(node.status().message(), HasSubstr("big.yaml: larger than"));
}

TEST(YamlUtilTest, HostileTextsNeverThrow) {
  for (const testing::HostileYaml& c : testing::HostileYamlCases("a")) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<YAML::Node> node = LoadYamlString(c.text, "h.yaml");
    if (!node.ok()) {
      EXPECT_THAT(std::string(node.status().message()), ::testing::StartsWith("h.yaml:"));
    }
  }
}

}  // namespace
}  // namespace vigil
