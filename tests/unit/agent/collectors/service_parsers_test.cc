// Pure parts of the service collectors, on canned server output.
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "agent/collectors/postgres_collector.h"
#include "agent/collectors/redis_collector.h"

namespace vigil::agent {
namespace {

constexpr char kInfo[] =
    "# Server\r\nredis_version:7.0.11\r\nuptime_in_seconds:42\r\n\r\n# "
    "Clients\r\nconnected_clients:3\r\n"
    "# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\n"
    "# "
    "Stats\r\ntotal_commands_processed:1234\r\ninstantaneous_ops_per_sec:5\r\nkeyspace_hits:90\r\n"
    "keyspace_misses:10\r\n# Keyspace\r\ndb0:keys=2,expires=0,avg_ttl=0\r\n";

TEST(ParseRedisInfo, ReadsCountersAndKeepsEveryField) {
  auto info = ParseRedisInfo(kInfo);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->total_commands_processed, 1234u);
  EXPECT_EQ(info->keyspace_hits, 90u);
  EXPECT_EQ(info->keyspace_misses, 10u);
  EXPECT_EQ(info->connected_clients, 3u);
  EXPECT_EQ(info->used_memory, 1048576u);
  EXPECT_EQ(info->fields.at("db0"), "keys=2,expires=0,avg_ttl=0");  // values may hold ':' and ','
}

TEST(ParseRedisInfo, MissingOrGarbledCountersAreErrors) {
  EXPECT_FALSE(ParseRedisInfo("# Server\nredis_version:7\n").ok());
  std::string garbled = kInfo;
  garbled.replace(garbled.find("keyspace_hits:90"), 16, "keyspace_hits:9x");
  auto info = ParseRedisInfo(garbled);
  ASSERT_FALSE(info.ok());
  EXPECT_TRUE(absl::StrContains(info.status().message(), "keyspace_hits")) << info.status();
}

TEST(AgentDsn, TagsTheSessionAndBoundsItsTime) {
  EXPECT_EQ(AgentDsn("host=db port=5432", absl::Seconds(2)),
            "host=db port=5432 application_name=vigil-agent connect_timeout=2 "
            "options='-c statement_timeout=2000'");
  EXPECT_EQ(AgentDsn("postgresql://u@db/app?sslmode=require", absl::Milliseconds(500)),
            "postgresql://u@db/app?sslmode=require&application_name=vigil-agent&connect_timeout=1"
            "&options=-c%20statement_timeout%3D500");
}

TEST(ServiceCollectorConfig, RequiredKeysAndBadAddresses) {
  CollectorRegistry registry;
  RegisterBuiltinCollectors(registry);
  YAML::Node empty = YAML::Load("{}");
  auto pg = (*registry.Find("postgres"))(empty, "agent.yaml");
  ASSERT_FALSE(pg.ok());
  EXPECT_TRUE(absl::StrContains(pg.status().message(), "dsn")) << pg.status();
  auto redis = (*registry.Find("redis"))(YAML::Load("{address: localhost}"), "agent.yaml");
  ASSERT_FALSE(redis.ok());
  EXPECT_TRUE(absl::StrContains(redis.status().message(), "HOST:PORT")) << redis.status();
}

}  // namespace
}  // namespace vigil::agent
