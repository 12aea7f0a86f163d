#include "common/heartbeat.h"

#include <gtest/gtest.h>

namespace vigil {
namespace {

TEST(HeartbeatPeriodTest, AgentsStreamingEverySecondSendNoHeartbeatUnderTheDefaultTimeout) {
  // The controller's default silence timeout is 2.5 s and agents collect every second.
  const absl::Duration period = HeartbeatPeriod(absl::Seconds(2), 2'500);
  EXPECT_EQ(period, absl::Milliseconds(1'125));
  EXPECT_GT(period, absl::Seconds(1));
  // And a late message still arrives well inside the timeout.
  EXPECT_LT(2 * period, absl::Milliseconds(2'500));
}

TEST(HeartbeatPeriodTest, TheConfiguredPeriodCapsItAndStandsAloneWithoutATimeout) {
  EXPECT_EQ(HeartbeatPeriod(absl::Milliseconds(50), 2'500), absl::Milliseconds(50));
  EXPECT_EQ(HeartbeatPeriod(absl::Seconds(2), 0), absl::Seconds(2));
  EXPECT_EQ(HeartbeatPeriod(absl::Seconds(2), -5), absl::Seconds(2));
  EXPECT_EQ(HeartbeatPeriod(absl::Seconds(2), 30'000), absl::Seconds(2));
}

}  // namespace
}  // namespace vigil
