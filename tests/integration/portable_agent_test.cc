// The vigil-agent binary's PostgreSQL logins against a real server whose pg_hba.conf asks for
// SCRAM for one role and GSSAPI (Kerberos) for another. The portable agent links libpq
// statically with GSSAPI answered as "not available" (agent/portable/libpq_absent_auth.cc): a
// password login must work as with Debian's libpq, and a server asking for Kerberos must get an
// error that says why, not a crash or silence.
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tests/support/process.h"
#include "tests/support/servers.h"
#include "vigil/v1/control_service.pb.h"

namespace vigil {
namespace {

using testing::BinaryPath;
using testing::CommandResult;
using testing::RunCommand;
using testing::WaitUntil;

TEST(PortableAgentPostgres, ScramLoginWorksAndAServerAskingForKerberosIsToldWhy) {
  testing::TempDir dir;
  testing::PostgresServer postgres(dir.File("pg"));
  ASSERT_TRUE(postgres.ok());
  ASSERT_EQ(postgres
                .Psql("SET password_encryption = 'scram-sha-256';"
                      "CREATE ROLE watcher LOGIN PASSWORD 'correct-horse-7' IN ROLE pg_monitor;"
                      "CREATE ROLE kerberos_only LOGIN IN ROLE pg_monitor;")
                .exit_code,
            0);
  // First match wins: these two roles authenticate as asked, everyone else as before (trust).
  const std::string hba = dir.File("pg/pg/data/pg_hba.conf");
  const std::string before = testing::ReadFileOrEmpty(hba);
  ASSERT_FALSE(before.empty()) << hba;
  testing::WriteFile(hba, absl::StrCat("host all watcher 127.0.0.1/32 scram-sha-256\n",
                                       "host all kerberos_only 127.0.0.1/32 gss\n", before));
  ASSERT_EQ(postgres.Psql("SELECT pg_reload_conf()").exit_code, 0);
  // The server now refuses a password-less login of watcher (the rule is live).
  EXPECT_NE(postgres.Psql("SELECT 1", "watcher").exit_code, 0);

  const std::string address = absl::StrCat("127.0.0.1:", testing::FreeLoopbackPort());
  const std::string db = dir.File("vigil.db");
  const std::string token = testing::AddVigilUser(db, "tester", "viewer");
  testing::Subprocess controller({BinaryPath("vigil-controller"), "--listen=" + address,
                                  "--db=" + db, "--http-listen=off", "--insecure"},
                                 {}, dir.File("controller.log"));
  auto start_agent = [&](const std::string& id, const std::string& dsn) {
    testing::WriteFile(dir.File(id + ".yaml"),
                       absl::StrCat("id: ", id, "\ncollectors:\n  postgres: {dsn: '", dsn,
                                    "'}\nspool_dir: ", dir.File(id + ".spool"),
                                    "\njournal: ", dir.File(id + ".journal"), "\n"));
    return std::make_unique<testing::Subprocess>(
        std::vector<std::string>{BinaryPath("vigil-agent"), "--config=" + dir.File(id + ".yaml"),
                                 "--controller=" + address, "--insecure"},
        std::map<std::string, std::string>{}, dir.File(id + ".log"));
  };
  auto scram = start_agent("scram", postgres.Dsn("watcher") + " password=correct-horse-7");
  auto kerberos = start_agent("kerberos", postgres.Dsn("kerberos_only"));

  // pg_up as the controller has it: -1 while the agent has not reported it yet.
  auto pg_up = [&](const std::string& agent) {
    CommandResult r = RunCommand({BinaryPath("vigil"), "--controller=" + address, "--insecure",
                                  "--token=" + token, "metrics", agent, "-o", "json"});
    v1::GetMetricsResponse response;
    if (r.exit_code != 0 ||
        !google::protobuf::util::JsonStringToMessage(r.stdout_text, &response).ok()) {
      return -1.0;
    }
    for (const auto& m : response.metrics()) {
      if (m.name() == "pg_up") {
        return m.value();
      }
    }
    return -1.0;
  };
  EXPECT_TRUE(WaitUntil([&] { return pg_up("scram") == 1; }, absl::Seconds(30),
                        absl::Milliseconds(300)))
      << scram->Output() << controller.Output();
  EXPECT_TRUE(WaitUntil([&] { return pg_up("kerberos") == 0; }, absl::Seconds(30),
                        absl::Milliseconds(300)))
      << kerberos->Output();
  // The agent's log says why the Kerberos login failed.
  EXPECT_TRUE(WaitUntil(
      [&] {
        const std::string log = testing::ReadFileOrEmpty(dir.File("kerberos.log"));
#if VIGIL_PORTABLE_LIBPQ_STATIC
        return absl::StrContains(log, "GSSAPI (Kerberos) is not built into this portable");
#else
        return absl::StrContains(log, "is down");
#endif
      },
      absl::Seconds(10)))
      << testing::ReadFileOrEmpty(dir.File("kerberos.log"));
  // And a wrong password is a plain refusal, named.
  scram.reset();
  auto wrong = start_agent("wrong", postgres.Dsn("watcher") + " password=battery-staple-9");
  EXPECT_TRUE(WaitUntil(
      [&] {
        return absl::StrContains(testing::ReadFileOrEmpty(dir.File("wrong.log")),
                                 "password authentication failed for user \"watcher\"");
      },
      absl::Seconds(20)))
      << testing::ReadFileOrEmpty(dir.File("wrong.log"));
  EXPECT_FALSE(absl::StrContains(testing::ReadFileOrEmpty(dir.File("wrong.log")), "battery-staple"))
      << "the password is not logged";
}

}  // namespace
}  // namespace vigil
