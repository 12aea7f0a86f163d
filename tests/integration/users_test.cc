// People over time against the real controller: a token works until an admin disables its user
// through the API (the very next call is refused), `vigil-controller users disable` on the
// database of a running controller is felt within 2 s, a rotated token is refused and its
// successor works, an expired token is refused saying when, and `vigil users list` shows it all.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "tests/support/process.h"
#include "tests/support/proto_json.h"
#include "vigil/v1/control_service.pb.h"

namespace vigil {
namespace {

using testing::BinaryPath;
using testing::CommandResult;
using testing::RunCommand;

const std::map<std::string, std::string>& kCleanEnvironment = testing::CleanVigilEnvironment();

class UsersTest : public ::testing::Test {
 protected:
  CommandResult Vigil(const std::string& token, std::vector<std::string> args) {
    std::vector<std::string> argv = {BinaryPath("vigil"), "--controller=" + address_,
                                     "--insecure", "--token=" + token};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, absl::Seconds(10), kCleanEnvironment);
  }
  CommandResult Controller(std::vector<std::string> args) {
    std::vector<std::string> argv = {BinaryPath("vigil-controller"), "users"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("--db=" + db_);
    return RunCommand(argv, absl::Seconds(10), kCleanEnvironment);
  }
  // The first line of stdout: the token `users add` or `users rotate` printed.
  static std::string Token(const CommandResult& r) {
    return r.stdout_text.substr(0, r.stdout_text.find('\n'));
  }

  testing::TempDir dir_;
  const std::string db_ = dir_.File("vigil.db");
  const std::string address_ = absl::StrCat("127.0.0.1:", testing::FreeLoopbackPort());
};

TEST_F(UsersTest, RevokedRotatedAndExpiredTokensAreRefusedWithoutWaitingForTheCache) {
  const std::string root = testing::AddVigilUser(db_, "root", "admin");
  const std::string alice = testing::AddVigilUser(db_, "alice", "viewer");
  const std::string bob = testing::AddVigilUser(db_, "bob", "viewer");
  const std::string carol = testing::AddVigilUser(db_, "carol", "viewer");
  testing::Subprocess controller({BinaryPath("vigil-controller"), "--listen=" + address_,
                                  "--db=" + db_, "--insecure", "--http-listen=off"},
                                 kCleanEnvironment, dir_.File("controller.log"));
  ASSERT_TRUE(testing::WaitUntil([&] { return Vigil(alice, {"agents"}).exit_code == 0; },
                                 absl::Seconds(15)))
      << controller.Output();
  ASSERT_EQ(Vigil(bob, {"agents"}).exit_code, 0);  // bob is in the token cache now

  // Admin only.
  CommandResult denied = Vigil(alice, {"users", "list"});
  EXPECT_EQ(denied.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(denied.output, "listing users needs the admin role"))
      << denied.output;

  // Through the API: the very next call is refused, though alice's token was cached.
  CommandResult disabled = Vigil(root, {"users", "disable", "alice"});
  ASSERT_EQ(disabled.exit_code, 0) << disabled.output;
  CommandResult refused = Vigil(alice, {"agents"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(refused.output, "user alice is disabled")) << refused.output;
  CommandResult self = Vigil(root, {"users", "disable", "root"});
  EXPECT_EQ(self.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(self.output, "cannot disable themselves")) << self.output;
  CommandResult unknown = Vigil(root, {"users", "disable", "nobody"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_EQ(unknown.output, "vigil: no user named 'nobody'\n");

  // On the database, beside the running controller (which holds DB.lock): within 2 s.
  CommandResult offline = Controller({"disable", "bob"});
  ASSERT_EQ(offline.exit_code, 0) << offline.output;
  const absl::Time disabled_at = absl::Now();
  absl::Time refused_at = absl::InfiniteFuture();
  testing::WaitUntil(
      [&] {
        CommandResult r = Vigil(bob, {"agents"});
        if (r.exit_code == 1 && absl::StrContains(r.output, "user bob is disabled")) {
          refused_at = absl::Now();
          return true;
        }
        return false;
      },
      absl::Seconds(5), absl::Milliseconds(20));
  EXPECT_LT(refused_at - disabled_at, absl::Seconds(2)) << controller.Output();

  // Rotation through the API: the old token is refused at once, the new one works.
  ASSERT_EQ(Vigil(carol, {"agents"}).exit_code, 0);
  CommandResult rotated = Vigil(root, {"users", "rotate", "carol"});
  ASSERT_EQ(rotated.exit_code, 0) << rotated.output;
  const std::string carol2 = Token(rotated);
  ASSERT_TRUE(absl::StartsWith(carol2, "vgt_")) << rotated.output;
  CommandResult old_token = Vigil(carol, {"agents"});
  EXPECT_EQ(old_token.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(old_token.output, "unknown token")) << old_token.output;
  CommandResult new_token = Vigil(carol2, {"whoami"});
  EXPECT_EQ(new_token.exit_code, 0) << new_token.output;
  EXPECT_TRUE(absl::StartsWith(new_token.stdout_text, "carol (viewer)")) << new_token.output;

  // An expired token is refused, saying when it expired.
  CommandResult added = Controller({"add", "dave", "--role", "viewer", "--expires-in", "1s"});
  ASSERT_EQ(added.exit_code, 0) << added.output;
  const std::string dave = Token(added);
  std::string expired;
  EXPECT_TRUE(testing::WaitUntil(
      [&] {
        expired = Vigil(dave, {"agents"}).output;
        return absl::StrContains(expired, "the token of user dave expired at ");
      },
      absl::Seconds(5), absl::Milliseconds(100)))
      << expired;

  // Enabling brings alice back with her token.
  ASSERT_EQ(Vigil(root, {"users", "enable", "alice"}).exit_code, 0);
  EXPECT_EQ(Vigil(alice, {"agents"}).exit_code, 0);

  // The list shows it all, from the API and from the database alike.
  CommandResult listed = Vigil(root, {"-o", "json", "users", "list"});
  ASSERT_EQ(listed.exit_code, 0) << listed.output;
  v1::ListUsersResponse users;
  ASSERT_TRUE(testing::ParseJson(listed.stdout_text, &users)) << listed.stdout_text;
  std::map<std::string, v1::UserInfo> by_name;
  for (const v1::UserInfo& user : users.users()) {
    by_name[user.name()] = user;
  }
  ASSERT_EQ(by_name.size(), 5u) << listed.stdout_text;
  EXPECT_FALSE(by_name["alice"].disabled());
  EXPECT_TRUE(by_name["bob"].disabled());
  EXPECT_GT(by_name["carol"].rotated_unix_ms(), 0);
  EXPECT_GT(by_name["dave"].expires_unix_ms(), 0);
  EXPECT_EQ(by_name["root"].role(), "admin");
  CommandResult table = Controller({"list"});
  ASSERT_EQ(table.exit_code, 0) << table.output;
  EXPECT_TRUE(absl::StartsWith(table.stdout_text,
                               "NAME    ROLE     CREATED                EXPIRES   "))
      << table.stdout_text;
  EXPECT_EQ(Controller({"disable", "nobody"}).exit_code, 1);
}

}  // namespace
}  // namespace vigil
