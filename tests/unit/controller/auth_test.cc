// Tokens and roles: only hashes are stored, unknown tokens are refused, roles are ordered; people
// over time: expired tokens, disabled users and replaced tokens are refused, and what the cache
// remembers goes at once on Forget() and when another process changes the users table.
#include "controller/auth/auth.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/clock.h"
#include "controller/auth/users.h"
#include "storage/sqlite/sqlite_store.h"
#include "tests/support/process.h"

namespace vigil::controller {
namespace {

using ::testing::HasSubstr;

TEST(Auth, TokensAuthenticateTheirUserAndOnlyHashesAreStored) {
  testing::TempDir dir;
  auto store = storage::OpenSqliteStore(dir.File("vigil.db"));
  ASSERT_TRUE(store.ok());
  auto token = AddUser(**store, "alice", "commander", 1);
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(token->rfind("vgt_", 0), 0u);
  EXPECT_EQ(token->size(), 4u + 64u);
  for (const char* file : {"vigil.db", "vigil.db-wal"}) {
    EXPECT_EQ(testing::ReadFileOrEmpty(dir.File(file)).find(*token), std::string::npos) << file;
  }

  Authenticator auth(store->get());
  auto caller = auth.Authenticate("Bearer " + *token);
  ASSERT_TRUE(caller.ok()) << caller.status();
  EXPECT_EQ(caller->name, "alice");
  EXPECT_EQ(caller->role, Role::kCommander);
  EXPECT_TRUE(auth.Authenticate("Bearer " + *token).ok());  // from the cache

  EXPECT_TRUE(absl::IsUnauthenticated(auth.Authenticate("").status()));
  EXPECT_TRUE(absl::IsUnauthenticated(auth.Authenticate(*token).status()));  // no "Bearer "
  EXPECT_THAT(std::string(auth.Authenticate("Bearer vgt_nope").status().message()),
              HasSubstr("unknown token"));
  // A user added after the first call is found on first use.
  auto later = AddUser(**store, "bob", "viewer", 2);
  ASSERT_TRUE(later.ok());
  EXPECT_EQ(auth.Authenticate("Bearer " + *later)->name, "bob");
}

TEST(Auth, VerifiedCertificateNamesAUser) {
  testing::TempDir dir;
  auto store = storage::OpenSqliteStore(dir.File("vigil.db"));
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE(AddUser(**store, "alertmanager", "responder", 1).ok());
  Authenticator auth(store->get());
  auto caller = auth.AuthenticateCertificate("alertmanager");
  ASSERT_TRUE(caller.ok()) << caller.status();
  EXPECT_EQ(caller->name, "alertmanager");
  EXPECT_EQ(caller->role, Role::kResponder);
  EXPECT_TRUE(auth.AuthenticateCertificate("alertmanager").ok());  // from the cache
  EXPECT_THAT(std::string(auth.AuthenticateCertificate("mallory").status().message()),
              HasSubstr("CN 'mallory' is not a user"));
  EXPECT_TRUE(absl::IsUnauthenticated(auth.AuthenticateCertificate("").status()));
}

TEST(Auth, ATokenHashAuthenticatesLikeItsToken) {
  testing::TempDir dir;
  auto store = storage::OpenSqliteStore(dir.File("vigil.db"));
  ASSERT_TRUE(store.ok());
  auto token = AddUser(**store, "victor", "viewer", 1);
  ASSERT_TRUE(token.ok());
  ASSERT_TRUE(AddUser(**store, "alertmanager", "responder", 1).ok());
  Authenticator auth(store->get());
  auto caller = auth.AuthenticateTokenHash(TokenHash(*token));
  ASSERT_TRUE(caller.ok()) << caller.status();
  EXPECT_EQ(caller->name, "victor");
  EXPECT_EQ(caller->role, Role::kViewer);
  EXPECT_THAT(std::string(auth.AuthenticateTokenHash(TokenHash("vgt_nope")).status().message()),
              HasSubstr("unknown token"));
  // Only digests: never a key of the certificates' entries in the same cache.
  ASSERT_TRUE(auth.AuthenticateCertificate("alertmanager").ok());
  EXPECT_TRUE(absl::IsUnauthenticated(auth.AuthenticateTokenHash("cn:alertmanager").status()));
  EXPECT_TRUE(absl::IsUnauthenticated(auth.AuthenticateTokenHash(*token).status()));
  EXPECT_TRUE(absl::IsUnauthenticated(auth.AuthenticateTokenHash("").status()));
  ASSERT_TRUE((*store)->SetUserDisabled("victor", 2).ok());
  auth.Forget();
  EXPECT_THAT(std::string(auth.AuthenticateTokenHash(TokenHash(*token)).status().message()),
              HasSubstr("disabled"));
}

TEST(Auth, BadUsersAreRefused) {
  testing::TempDir dir;
  auto store = storage::OpenSqliteStore(dir.File("vigil.db"));
  ASSERT_TRUE(store.ok());
  EXPECT_THAT(std::string(AddUser(**store, "alice", "boss", 1).status().message()),
              HasSubstr("role 'boss' is not one of: viewer, responder, commander, admin"));
  EXPECT_TRUE(absl::IsInvalidArgument(AddUser(**store, "a b", "viewer", 1).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(AddUser(**store, "", "viewer", 1).status()));
  ASSERT_TRUE(AddUser(**store, "alice", "viewer", 1).ok());
  EXPECT_FALSE(AddUser(**store, "alice", "admin", 1).ok());
}

TEST(Auth, RolesAreOrdered) {
  Caller viewer{"victor", Role::kViewer};
  Caller admin{"root", Role::kAdmin};
  EXPECT_TRUE(Authenticator::Require(admin, Role::kCommander, "approving").ok());
  absl::Status refused = Authenticator::Require(viewer, Role::kResponder, "acknowledging");
  EXPECT_TRUE(absl::IsPermissionDenied(refused));
  EXPECT_EQ(refused.message(),
            "victor is a viewer; acknowledging needs the responder role or above");
}

class UsersOverTime : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = storage::OpenSqliteStore(dir_.File("vigil.db"));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }
  int64_t NowMs() const { return absl::ToUnixMillis(clock_.Now()); }
  // The authenticator's refusal of `token`, or "" when it is accepted.
  std::string Refusal(const Authenticator& auth, const std::string& token) {
    absl::StatusOr<Caller> caller = auth.Authenticate("Bearer " + token);
    if (caller.ok()) {
      return "";
    }
    EXPECT_TRUE(absl::IsUnauthenticated(caller.status())) << caller.status();
    return std::string(caller.status().message());
  }

  testing::TempDir dir_;
  SimulatedClock clock_{absl::FromUnixSeconds(1'800'000'000)};  // 2027-01-15 08:00:00Z
  std::unique_ptr<storage::Store> store_;
};

TEST_F(UsersOverTime, AnExpiredTokenIsRefusedSayingWhenEvenFromTheCache) {
  auto token = AddUser(*store_, "alice", "viewer", NowMs(), absl::Hours(1));
  ASSERT_TRUE(token.ok()) << token.status();
  Authenticator auth(store_.get(), absl::Seconds(30), &clock_);
  EXPECT_EQ(Refusal(auth, *token), "");
  clock_.Advance(absl::Minutes(59) + absl::Seconds(59));
  EXPECT_EQ(Refusal(auth, *token), "");
  // Within the cache's 30 s, yet refused: the cache knows when the token ends.
  clock_.Advance(absl::Seconds(1));
  const std::string expired =
      "the token of user alice expired at 2027-01-15 09:00:00Z; an admin issues a new one with "
      "'vigil users rotate alice'";
  std::optional<absl::StatusOr<Caller>> cached = auth.AuthenticateCached("Bearer " + *token);
  ASSERT_TRUE(cached.has_value());
  EXPECT_EQ(cached->status().message(), expired);
  EXPECT_EQ(Refusal(auth, *token), expired);  // and from the store

  // A token without expiry does not end.
  auto forever = AddUser(*store_, "bob", "viewer", NowMs(), absl::InfiniteDuration());
  ASSERT_TRUE(forever.ok());
  clock_.Advance(absl::Hours(24 * 365 * 20));
  EXPECT_EQ(Refusal(auth, *forever), "");
}

TEST_F(UsersOverTime, DisabledUsersAreRefusedAtOnceAfterForgetWhateverTheCredential) {
  auto token = AddUser(*store_, "alice", "responder", NowMs(), kDefaultTokenLifetime);
  ASSERT_TRUE(token.ok());
  Authenticator auth(store_.get(), absl::Seconds(30), &clock_);
  EXPECT_EQ(Refusal(auth, *token), "");
  EXPECT_TRUE(auth.AuthenticateCertificate("alice").ok());

  auto disabled = DisableUser(*store_, "alice", NowMs());
  ASSERT_TRUE(disabled.ok()) << disabled.status();
  EXPECT_TRUE(disabled->disabled());
  // Without Forget the cache still answers for up to 30 s: the reason Forget exists.
  EXPECT_EQ(Refusal(auth, *token), "");
  auth.Forget();
  EXPECT_EQ(Refusal(auth, *token),
            "user alice is disabled (since 2027-01-15 08:00:00Z); an admin enables them again "
            "with 'vigil users enable alice'");
  EXPECT_FALSE(auth.AuthenticateCached("Bearer " + *token).has_value());  // not cached
  EXPECT_TRUE(absl::IsUnauthenticated(auth.AuthenticateCertificate("alice").status()));

  // Disabling twice keeps the first time; enabling brings the same token back.
  clock_.Advance(absl::Minutes(5));
  EXPECT_EQ(DisableUser(*store_, "alice", NowMs())->disabled_unix_ms(),
            disabled->disabled_unix_ms());
  auto enabled = EnableUser(*store_, "alice");
  ASSERT_TRUE(enabled.ok());
  EXPECT_FALSE(enabled->disabled());
  auth.Forget();
  EXPECT_EQ(Refusal(auth, *token), "");
}

TEST_F(UsersOverTime, ARotatedTokenIsRefusedAndTheNewOneWorks) {
  auto old_token = AddUser(*store_, "alice", "admin", NowMs(), kDefaultTokenLifetime);
  ASSERT_TRUE(old_token.ok());
  Authenticator auth(store_.get(), absl::Seconds(30), &clock_);
  EXPECT_EQ(Refusal(auth, *old_token), "");
  clock_.Advance(absl::Hours(1));
  auto rotated = RotateUserToken(*store_, "alice", NowMs(), absl::Hours(24 * 7));
  ASSERT_TRUE(rotated.ok()) << rotated.status();
  EXPECT_NE(rotated->token(), *old_token);
  EXPECT_EQ(rotated->user().rotated_unix_ms(), NowMs());
  EXPECT_EQ(rotated->user().expires_unix_ms(), NowMs() + 7 * 24 * 3600 * 1000LL);
  for (const char* file : {"vigil.db", "vigil.db-wal"}) {
    EXPECT_EQ(testing::ReadFileOrEmpty(dir_.File(file)).find(rotated->token()), std::string::npos);
  }
  auth.Forget();
  EXPECT_EQ(Refusal(auth, *old_token), "unknown token");
  EXPECT_EQ(Refusal(auth, rotated->token()), "");
}

TEST_F(UsersOverTime, AChangeByAnotherProcessIsSeenByRefresh) {
  auto token = AddUser(*store_, "alice", "viewer", NowMs(), kDefaultTokenLifetime);
  ASSERT_TRUE(token.ok());
  Authenticator auth(store_.get(), absl::Seconds(30), &clock_);
  ASSERT_TRUE(auth.Refresh().ok());  // the first read only learns the version
  EXPECT_EQ(Refusal(auth, *token), "");
  EXPECT_FALSE(*auth.Refresh());  // nothing moved

  {
    // `vigil-controller users disable` is another process with its own connection.
    auto other = storage::OpenSqliteStore(dir_.File("vigil.db"));
    ASSERT_TRUE(other.ok());
    ASSERT_TRUE(DisableUser(**other, "alice", NowMs()).ok());
  }
  EXPECT_EQ(Refusal(auth, *token), "");  // still cached
  absl::StatusOr<bool> moved = auth.Refresh();
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_TRUE(*moved);
  EXPECT_THAT(Refusal(auth, *token), HasSubstr("user alice is disabled"));
}

// A lookup that read the store before a change and finishes after Forget() must not put the
// old answer back in the cache.
class RacingStore final : public storage::Store {
 public:
  explicit RacingStore(storage::Store* real) : real_(real) {}
  std::function<void()> during_find;
  absl::StatusOr<std::optional<storage::UserRecord>> FindUserByTokenHash(
      absl::string_view hash) override {
    auto user = real_->FindUserByTokenHash(hash);
    if (during_find) {
      during_find();
    }
    return user;
  }
  absl::Status UpsertAgents(const std::vector<v1::AgentInfo>&) override { return Unused(); }
  absl::StatusOr<std::vector<v1::AgentInfo>> ListAgents() override { return Unused(); }
  absl::StatusOr<std::vector<v1::TimelineEvent>> Commit(storage::WriteBatch) override {
    return Unused();
  }
  absl::StatusOr<std::optional<v1::Incident>> GetIncident(absl::string_view) override {
    return Unused();
  }
  absl::StatusOr<std::vector<v1::Incident>> ListIncidents(absl::string_view) override {
    return Unused();
  }
  absl::StatusOr<std::vector<v1::Alert>> ListAlerts(bool) override { return Unused(); }
  absl::StatusOr<std::vector<v1::Alert>> ListIncidentAlerts(absl::string_view) override {
    return Unused();
  }
  absl::StatusOr<std::vector<v1::TimelineEvent>> ListEvents(absl::string_view, uint64_t,
                                                            int) override {
    return Unused();
  }
  absl::Status AddUser(const storage::UserRecord& user) override { return real_->AddUser(user); }
  absl::StatusOr<std::optional<v1::ActionProposal>> GetProposal(absl::string_view) override {
    return Unused();
  }
  absl::StatusOr<std::vector<v1::ActionProposal>> ListProposals(absl::string_view) override {
    return Unused();
  }

 private:
  static absl::Status Unused() { return absl::UnimplementedError("not in this test"); }
  storage::Store* real_;
};

TEST_F(UsersOverTime, ALookupOverlappingForgetIsNotCached) {
  auto token = AddUser(*store_, "alice", "viewer", NowMs(), kDefaultTokenLifetime);
  ASSERT_TRUE(token.ok());
  RacingStore racing(store_.get());
  Authenticator auth(&racing, absl::Seconds(30), &clock_);
  racing.during_find = [&] {
    ASSERT_TRUE(DisableUser(*store_, "alice", NowMs()).ok());
    auth.Forget();
  };
  EXPECT_EQ(Refusal(auth, *token), "");  // this call read the store before the change
  racing.during_find = nullptr;
  EXPECT_FALSE(auth.AuthenticateCached("Bearer " + *token).has_value());
  EXPECT_THAT(Refusal(auth, *token), HasSubstr("is disabled"));
}

TEST_F(UsersOverTime, UnknownUsersAreNamedAndLifetimesParsed) {
  for (absl::Status s : {DisableUser(*store_, "nobody", 1).status(),
                         EnableUser(*store_, "nobody").status(),
                         RotateUserToken(*store_, "nobody", 1, kDefaultTokenLifetime).status()}) {
    EXPECT_TRUE(absl::IsNotFound(s)) << s;
    EXPECT_EQ(s.message(), "no user named 'nobody'");
  }
  EXPECT_EQ(*ParseTokenLifetime(""), kDefaultTokenLifetime);
  EXPECT_EQ(*ParseTokenLifetime("90d"), absl::Hours(24 * 90));
  EXPECT_EQ(*ParseTokenLifetime("12h"), absl::Hours(12));
  EXPECT_EQ(*ParseTokenLifetime("never"), absl::InfiniteDuration());
  for (const char* bad : {"soon", "0s", "-1d", "20000d"}) {
    EXPECT_TRUE(absl::IsInvalidArgument(ParseTokenLifetime(bad).status())) << bad;
  }
  EXPECT_THAT(std::string(ParseTokenLifetime("soon").status().message()), HasSubstr("'soon'"));
}

TEST_F(UsersOverTime, ListShowsEveryUserAsATable) {
  ASSERT_TRUE(AddUser(*store_, "bob", "viewer", NowMs(), absl::InfiniteDuration()).ok());
  ASSERT_TRUE(AddUser(*store_, "alice", "admin", NowMs(), absl::Hours(24)).ok());
  ASSERT_TRUE(DisableUser(*store_, "bob", NowMs() + 1000).ok());
  auto users = ListUsers(*store_);
  ASSERT_TRUE(users.ok()) << users.status();
  ASSERT_EQ(users->users_size(), 2);
  EXPECT_EQ(users->users(0).name(), "alice");
  EXPECT_EQ(FormatUsersTable(*users),
            "NAME    ROLE     CREATED                EXPIRES                DISABLED               ROTATED\n"
            "alice   admin    2027-01-15 08:00:00Z   2027-01-16 08:00:00Z   -                      -\n"
            "bob     viewer   2027-01-15 08:00:00Z   never                  2027-01-15 08:00:01Z   -\n");
  // A name written by other means (sqlite3) cannot drive the terminal or break a row.
  ASSERT_TRUE(store_->AddUser({"x\x1b[2J\ny", "viewer", "h", NowMs()}).ok());
  EXPECT_THAT(FormatUsersTable(*ListUsers(*store_)), HasSubstr("\nx?[2J?y   viewer "));
}

}  // namespace
}  // namespace vigil::controller
