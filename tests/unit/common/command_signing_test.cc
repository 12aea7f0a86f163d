// Ed25519 command signatures: what the controller signs, only its key verifies, unchanged.
#include "common/command_signing.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "tests/support/process.h"

namespace vigil {
namespace {

v1::Command MakeCommand() {
  v1::Command c;
  c.set_id("cmd-1");
  c.set_agent_id("db-1");
  c.set_action("pg_terminate_backend");
  (*c.mutable_params())["pid"] = "4242";
  c.set_expires_unix_ms(1'700'000'060'000);
  c.set_incident_id("INC-0001");
  c.set_timeout_ms(10'000);
  return c;
}

TEST(CommandSigning, SignedCommandVerifiesAndAnyChangeBreaksIt) {
  testing::TempDir dir;
  auto signer = CommandSigner::LoadOrCreate(dir.File("key.pem"), dir.File("key.pub"));
  ASSERT_TRUE(signer.ok()) << signer.status();
  auto verifier = CommandVerifier::FromPem(testing::ReadFileOrEmpty(dir.File("key.pub")));
  ASSERT_TRUE(verifier.ok()) << verifier.status();
  v1::Command command = MakeCommand();
  ASSERT_TRUE((*signer)->Sign(command).ok());
  EXPECT_EQ(command.signature().size(), 64u);
  EXPECT_TRUE((*verifier)->Verify(command).ok());

  for (auto change : std::vector<std::function<void(v1::Command&)>>{
           [](v1::Command& c) { (*c.mutable_params())["pid"] = "1"; },
           [](v1::Command& c) { c.set_agent_id("db-2"); },
           [](v1::Command& c) { c.set_expires_unix_ms(c.expires_unix_ms() + 1); },
           [](v1::Command& c) { c.set_action("pg_cancel_backend"); },
           [](v1::Command& c) { (*c.mutable_params())["extra"] = ""; },
           [](v1::Command& c) { c.set_timeout_ms(1); },
       }) {
    v1::Command changed = command;
    change(changed);
    absl::Status s = (*verifier)->Verify(changed);
    EXPECT_TRUE(absl::IsPermissionDenied(s));
    EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("bad signature"));
  }
}

TEST(CommandSigning, AnotherKeyDoesNotVerify) {
  testing::TempDir dir;
  auto ours = CommandSigner::LoadOrCreate(dir.File("a.pem"), dir.File("a.pub"));
  auto theirs = CommandSigner::LoadOrCreate(dir.File("b.pem"), dir.File("b.pub"));
  ASSERT_TRUE(ours.ok() && theirs.ok());
  auto verifier = CommandVerifier::FromPem((*ours)->public_key_pem());
  ASSERT_TRUE(verifier.ok());
  v1::Command command = MakeCommand();
  ASSERT_TRUE((*theirs)->Sign(command).ok());
  EXPECT_FALSE((*verifier)->Verify(command).ok());
}

TEST(CommandSigning, KeyIsCreatedOncePrivateAndReused) {
  testing::TempDir dir;
  auto first = CommandSigner::LoadOrCreate(dir.File("k.pem"), dir.File("k.pub"));
  ASSERT_TRUE(first.ok());
  struct stat st {};
  ASSERT_EQ(stat(dir.File("k.pem").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(stat(dir.File("k.pub").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);  // the agents read it
  auto second = CommandSigner::LoadOrCreate(dir.File("k.pem"), dir.File("k.pub"));
  ASSERT_TRUE(second.ok());
  EXPECT_EQ((*first)->public_key_pem(), (*second)->public_key_pem());
}

TEST(CommandSigning, KeyReadableByOthersIsTightenedOnLoad) {
  testing::TempDir dir;
  ASSERT_TRUE(CommandSigner::LoadOrCreate(dir.File("k.pem"), dir.File("k.pub")).ok());
  ASSERT_EQ(chmod(dir.File("k.pem").c_str(), 0644), 0);
  ASSERT_TRUE(CommandSigner::LoadOrCreate(dir.File("k.pem"), dir.File("k.pub")).ok());
  struct stat st {};
  ASSERT_EQ(stat(dir.File("k.pem").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(CommandSigning, BadKeysAreRefusedWithTheFileName) {
  testing::TempDir dir;
  testing::WriteFile(dir.File("junk.pem"), "not a key");
  auto signer = CommandSigner::LoadOrCreate(dir.File("junk.pem"), dir.File("junk.pub"));
  ASSERT_FALSE(signer.ok());
  EXPECT_THAT(std::string(signer.status().message()), ::testing::HasSubstr("junk.pem"));
  EXPECT_FALSE(CommandVerifier::FromPem("-----BEGIN PUBLIC KEY-----\nxx\n").ok());
}

}  // namespace
}  // namespace vigil
