// Tokens and roles: only hashes are stored, unknown tokens are refused, roles are ordered.
#include "controller/auth/auth.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace vigil::controller
