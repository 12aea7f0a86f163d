// ReadPool: tasks run on its threads, the queue is bounded, heavy tasks never take the last
// thread, and destruction runs what was queued.
#include "controller/api/read_pool.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "absl/synchronization/notification.h"

namespace vigil::controller {
namespace {

using ::testing::HasSubstr;

// Polls `condition` for up to ten seconds.
bool Eventually(const std::function<bool()>& condition) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    if (condition()) {
      return true;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  return condition();
}

TEST(ReadPoolTest, RunsTasksOffTheCallingThread) {
  ReadPool pool(ReadPool::Options{.threads = 2, .max_queued = 8});
  const std::thread::id caller = std::this_thread::get_id();
  absl::Notification ran;
  std::thread::id where;
  ASSERT_TRUE(pool.Submit(ReadPool::Lane::kLight, [&] {
                    where = std::this_thread::get_id();
                    ran.Notify();
                  })
                  .ok());
  ASSERT_TRUE(ran.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_NE(where, caller);
}

TEST(ReadPoolTest, HeavyTasksLeaveAThreadForLightOnes) {
  ReadPool pool(ReadPool::Options{.threads = 3, .max_queued = 8});
  absl::Notification release;
  std::atomic<int> heavy_started{0};
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(pool.Submit(ReadPool::Lane::kHeavy, [&] {
                      ++heavy_started;
                      release.WaitForNotification();
                    })
                    .ok());
  }
  ASSERT_TRUE(Eventually([&] { return heavy_started.load() == 2; }));
  // Two heavy ones hold two of three threads; the others wait, and a light one runs at once.
  absl::Notification light;
  ASSERT_TRUE(pool.Submit(ReadPool::Lane::kLight, [&] { light.Notify(); }).ok());
  EXPECT_TRUE(light.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(heavy_started.load(), 2);
  EXPECT_EQ(pool.stats().queued, 2u);
  release.Notify();
  EXPECT_TRUE(Eventually([&] { return pool.stats().done == 5; }));
  EXPECT_EQ(heavy_started.load(), 4);
}

TEST(ReadPoolTest, AFullQueueRefusesAndSaysWhy) {
  ReadPool pool(ReadPool::Options{.threads = 2, .max_queued = 2});
  absl::Notification release;
  std::atomic<int> started{0};
  auto block = [&] {
    ++started;
    release.WaitForNotification();
  };
  ASSERT_TRUE(pool.Submit(ReadPool::Lane::kLight, block).ok());
  ASSERT_TRUE(pool.Submit(ReadPool::Lane::kLight, block).ok());
  ASSERT_TRUE(Eventually([&] { return started.load() == 2; }));
  ASSERT_TRUE(pool.Submit(ReadPool::Lane::kLight, [] {}).ok());
  ASSERT_TRUE(pool.Submit(ReadPool::Lane::kHeavy, [] {}).ok());
  absl::Status refused = pool.Submit(ReadPool::Lane::kLight, [] { FAIL() << "must not run"; });
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(refused.message()), HasSubstr("2 reads waiting for 2 reader threads"));
  EXPECT_EQ(pool.stats().refused, 1u);
  EXPECT_EQ(pool.stats().running, 2u);
  release.Notify();
  EXPECT_TRUE(Eventually([&] { return pool.stats().done == 4; }));
}

TEST(ReadPoolTest, DestructionRunsWhatWasQueued) {
  std::atomic<int> ran{0};
  {
    ReadPool pool(ReadPool::Options{.threads = 2, .max_queued = 100});
    for (int i = 0; i < 50; ++i) {
      ASSERT_TRUE(pool.Submit(i % 2 == 0 ? ReadPool::Lane::kLight : ReadPool::Lane::kHeavy,
                              [&] { ++ran; })
                      .ok());
    }
  }
  EXPECT_EQ(ran.load(), 50);
}

}  // namespace
}  // namespace vigil::controller
