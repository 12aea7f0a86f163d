#include "common/sd_notify.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tests/support/notify_listener.h"
#include "tests/support/process.h"

namespace vigil {
namespace {

using Listener = testing::NotifyListener;

TEST(SdNotifyTest, SendsStatesToAPathSocket) {
  testing::TempDir dir;
  const std::string path = dir.File("notify");
  Listener listener(path);
  ASSERT_TRUE(listener.bound());
  const SdNotifier notifier(path);
  ASSERT_TRUE(notifier.enabled());
  ASSERT_TRUE(notifier.Notify("READY=1").ok());
  EXPECT_EQ(listener.Receive(), "READY=1");
  notifier.Reloading();
  const std::string reloading = listener.Receive();
  EXPECT_TRUE(absl::StartsWith(reloading, "RELOADING=1\nMONOTONIC_USEC=")) << reloading;
  notifier.Ready();
  EXPECT_EQ(listener.Receive(), "READY=1");
  notifier.Stopping();
  EXPECT_EQ(listener.Receive(), "STOPPING=1");
}

TEST(SdNotifyTest, SendsToAnAbstractSocket) {
  const std::string name = absl::StrCat("@vigil-notify-test-", getpid());
  Listener listener(name);
  ASSERT_TRUE(listener.bound());
  ASSERT_TRUE(SdNotifier(name).Notify("READY=1").ok());
  EXPECT_EQ(listener.Receive(), "READY=1");
}

TEST(SdNotifyTest, TakesTheSocketOutOfTheEnvironment) {
  testing::TempDir dir;
  const std::string path = dir.File("notify");
  Listener listener(path);
  ASSERT_EQ(setenv("NOTIFY_SOCKET", path.c_str(), 1), 0);
  const SdNotifier notifier = SdNotifier::FromEnvironment();
  EXPECT_EQ(std::getenv("NOTIFY_SOCKET"), nullptr) << "children must not inherit it";
  EXPECT_EQ(notifier.socket(), path);
  notifier.Ready();
  EXPECT_EQ(listener.Receive(), "READY=1");

  const SdNotifier none = SdNotifier::FromEnvironment();
  EXPECT_FALSE(none.enabled());
  EXPECT_TRUE(none.Notify("READY=1").ok()) << "without a manager, nothing to tell";
}

TEST(SdNotifyTest, BadAddressesAndAbsentListenersAreErrorsNamingTheSocket) {
  testing::TempDir dir;
  absl::Status relative = SdNotifier("run/notify").Notify("READY=1");
  EXPECT_TRUE(absl::StrContains(relative.message(), "NOTIFY_SOCKET=run/notify")) << relative;
  absl::Status too_long = SdNotifier("/" + std::string(200, 'x')).Notify("READY=1");
  EXPECT_TRUE(absl::StrContains(too_long.message(), "longer than")) << too_long;
  const std::string nobody = dir.File("nobody");
  absl::Status absent = SdNotifier(nobody).Notify("READY=1");
  EXPECT_FALSE(absent.ok());
  EXPECT_TRUE(absl::StrContains(absent.message(), nobody)) << absent;
}

}  // namespace
}  // namespace vigil
