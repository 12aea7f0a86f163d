// Secrets in free text are masked and the rest is kept readable.
#include "common/redact.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace vigil {
namespace {

TEST(Redact, MasksEachForm) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      // key=value, key: value, in any case, quoted or not.
      {"password=hunter2", "password=***"},
      {"PASSWORD=hunter2 user=app",
       "PASSWORD=***"
       " user=app"},
      {"host=db port=5432 user=app password=s3cr3t dbname=x",
       "host=db port=5432 user=app password=*** dbname=x"},
      {"passwd: abc123", "passwd: ***"},
      {"secret=xyz&next=1", "secret=***&next=1"},
      {"client_secret = 'a b c'", "client_secret = '***'"},
      {"token=eyJhbGciOi.abc.def", "token=***"},
      {"api_key=AKIA1234", "api_key=***"},
      {"X-Api-Key: 12345", "X-Api-Key: ***"},
      {"apikey=zzz", "apikey=***"},
      {"aws_secret_access_key=abc/def+ghi", "aws_secret_access_key=***"},
      {"PGPASSWORD=pw psql -h db", "PGPASSWORD=*** psql -h db"},
      {R"({"password": "p@ss \"w\" d", "user": "app"})", R"({"password": "***", "user": "app"})"},
      {"--password hunter2 --user app", "--password *** --user app"},
      {"--password=hunter2", "--password=***"},
      // SQL.
      {"ALTER ROLE app WITH PASSWORD 'hunter2'", "ALTER ROLE app WITH PASSWORD '***'"},
      {"CREATE ROLE bob LOGIN ENCRYPTED PASSWORD 'it''s secret' VALID UNTIL 'infinity'",
       "CREATE ROLE bob LOGIN ENCRYPTED PASSWORD '***' VALID UNTIL 'infinity'"},
      {"create user x password E'a\\'b'", "create user x password E'***'"},
      {"ALTER USER 'a'@'%' IDENTIFIED BY 'pw'", "ALTER USER 'a'@'%' IDENTIFIED BY '***'"},
      {"SELECT * FROM users WHERE password = 'x' AND id = 3",
       "SELECT * FROM users WHERE password = '***' AND id = 3"},
      // URIs.
      {"postgres://app:hunter2@db.internal:5432/app", "postgres://app:***@db.internal:5432/app"},
      {"connect redis://:pw@127.0.0.1:6379/0 failed",
       "connect redis://:***@127.0.0.1:6379/0 failed"},
      {"https://user:tok@example.com/x", "https://user:***@example.com/x"},
      // Headers.
      {"Authorization: Bearer abc.def-ghi", "Authorization: Bearer ***"},
      {"authorization: Basic dXNlcjpwYXNz", "authorization: Basic ***"},
      {"curl -H 'Authorization: Bearer xyz' http://x",
       "curl -H 'Authorization: Bearer ***' http://x"},
      {"got bearer abc123 from env", "got bearer *** from env"},
  };
  for (const auto& [in, want] : cases) {
    EXPECT_EQ(Redact(in), want) << in;
  }
}

TEST(Redact, LeavesOrdinaryTextAlone) {
  for (const std::string& text : {
           std::string("SELECT pid, state FROM pg_stat_activity WHERE datname = 'app'"),
           std::string("restarted azalscore@2"),
           std::string("postgres://db.internal:5432/app"),
           std::string("user=app host=db"),
           std::string("the password was changed"),
           std::string("https://example.com/a:b@c"),
           std::string(""),
       }) {
    EXPECT_EQ(Redact(text), text);
  }
}

TEST(Redact, MasksEveryOccurrenceAndIsIdempotent) {
  const std::string text = "a password=1 b password=2 postgres://u:p@h postgres://v:q@h";
  const std::string once = Redact(text);
  EXPECT_EQ(once, "a password=*** b password=*** postgres://u:***@h postgres://v:***@h");
  EXPECT_EQ(Redact(once), once);
}

TEST(Redact, HandlesMultiLineOutput) {
  EXPECT_EQ(Redact("line one\nDB_PASSWORD=abc\nline three\n"),
            "line one\nDB_PASSWORD=***\nline three\n");
}

}  // namespace
}  // namespace vigil
