// The runbooks' remaining fixes as typed actions, against the real thing wherever it runs here:
// drop_caches on a stand-in file (never the host's /proc) after a real sync; journal_vacuum with
// the real journalctl on real journal files written by systemd-journal-remote; VACUUM (ANALYZE),
// REINDEX and CREATE INDEX CONCURRENTLY on a real PostgreSQL, checked in its catalog;
// CONFIG SET on a real Redis; and, where no server can run here, fixtures recorded from the
// documentation: the Kubernetes API over HTTPS (a test CA, a bearer token the server checks) and
// the Docker Engine API over a unix socket, with the exact requests checked.
#include <gmock/gmock.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "agent/actions/action.h"
#include "common/http/http_server.h"
#include "common/yaml_util.h"
#include "tests/support/servers.h"
#include "tests/support/unix_http_server.h"

namespace vigil::agent {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::ReadFileOrEmpty;
using testing::RunCommand;
using testing::WaitUntil;
using testing::WriteFile;

// Builds the one action a config text enables, with the real process runner.
std::unique_ptr<Action> Make(const std::string& text, ActionContext context = {}) {
  static CommandRunner* runner = NewProcessRunner().release();
  ActionRegistry registry;
  RegisterBuiltinActions(registry);
  absl::StatusOr<YAML::Node> root = LoadYamlString(text, "agent.yaml");
  if (!root.ok()) {
    ADD_FAILURE() << root.status();
    return nullptr;
  }
  context.runner = runner;
  auto actions = BuildActions((*root)["actions"], registry, context, "agent.yaml");
  if (!actions.ok() || actions->size() != 1) {
    ADD_FAILURE() << "cannot build the action: " << actions.status();
    return nullptr;
  }
  return std::move(actions->front());
}

std::string Fixture(const std::string& name) {
  return ReadFileOrEmpty(testing::SourcePath("tests/integration/fixtures/" + name));
}

// --- drop_caches --------------------------------------------------------------------------------

TEST(DropCachesActionTest, SyncsThenWritesThreeToTheStandIn) {
  testing::TempDir dir;
  const std::string standin = dir.File("drop_caches");
  WriteFile(standin, "");
  auto action = Make(absl::StrCat("actions:\n  drop_caches: {path: ", standin, "}\n"));
  ASSERT_NE(action, nullptr);
  ActionResult r = action->Run({}, absl::Seconds(20));
  EXPECT_EQ(r.exit_code, 0) << r.reason << "\n" << r.output_tail;
  EXPECT_EQ(ReadFileOrEmpty(standin), "3\n");
  EXPECT_THAT(r.output_tail, HasSubstr("$ sync"));
  EXPECT_THAT(r.output_tail, HasSubstr("page cache: "));
}

// --- journal_vacuum -----------------------------------------------------------------------------

constexpr char kJournalRemote[] = "/lib/systemd/systemd-journal-remote";

// A real journal file at `path` holding one entry at `when`, written by systemd-journal-remote
// from the journal export format.
void WriteJournal(const std::string& path, absl::Time when, const std::string& message) {
  const std::string export_file = path + ".export";
  WriteFile(export_file,
            absl::StrCat("__REALTIME_TIMESTAMP=", absl::ToUnixMicros(when),
                         "\n_BOOT_ID=0123456789abcdef0123456789abcdef\nMESSAGE=", message, "\n\n"));
  testing::CommandResult r =
      RunCommand({kJournalRemote, "-o", path, export_file}, absl::Seconds(20));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(std::filesystem::exists(path)) << r.output;
}

// journald's name for an archived file: the realtime of its first entry, which vacuum reads.
std::string ArchivedName(int seqnum, absl::Time first_entry) {
  return absl::StrFormat("system@0123456789abcdef0123456789abcdef-%016x-%016x.journal", seqnum,
                         absl::ToUnixMicros(first_entry));
}

TEST(JournalVacuumActionTest, DeletesOnlyArchivedJournalsOlderThanAsked) {
  ASSERT_TRUE(std::filesystem::exists(kJournalRemote))
      << kJournalRemote << " is missing: scripts/install-deps.sh installs systemd-journal-remote";
  testing::TempDir dir;
  const std::string journals = dir.File("journal");
  std::filesystem::create_directories(journals);
  const absl::Time old_time = absl::Now() - absl::Hours(24 * 40);
  const absl::Time recent_time = absl::Now() - absl::Hours(2);
  WriteJournal(journals + "/" + ArchivedName(1, old_time), old_time, "old entry");
  WriteJournal(journals + "/" + ArchivedName(2, recent_time), recent_time, "recent entry");
  WriteJournal(journals + "/system.journal", old_time, "active entry");
  const std::string before =
      RunCommand({"journalctl", "--directory=" + journals, "-o", "cat"}).stdout_text;
  ASSERT_THAT(before, HasSubstr("old entry"));
  ASSERT_THAT(before, HasSubstr("recent entry"));

  auto action =
      Make(absl::StrCat("actions:\n  journal_vacuum: {directory: ", journals, ", min_age: 1d}\n"));
  ASSERT_NE(action, nullptr);
  ActionResult r = action->Run({{"older_than", "12h"}}, absl::Seconds(20));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.reason, HasSubstr("older_than 12h is below the limit 24h (min_age)"));

  r = action->Run({{"older_than", "7d"}}, absl::Seconds(20));
  EXPECT_EQ(r.exit_code, 0) << r.reason << "\n" << r.output_tail;
  EXPECT_THAT(r.output_tail, HasSubstr("--vacuum-time=604800s"));
  EXPECT_THAT(r.output_tail, HasSubstr("Deleted archived journal"));
  EXPECT_FALSE(std::filesystem::exists(journals + "/" + ArchivedName(1, old_time)));
  EXPECT_TRUE(std::filesystem::exists(journals + "/" + ArchivedName(2, recent_time)));
  EXPECT_TRUE(std::filesystem::exists(journals + "/system.journal")) << "active files stay";
  const std::string after =
      RunCommand({"journalctl", "--directory=" + journals, "-o", "cat"}).stdout_text;
  EXPECT_THAT(after, Not(HasSubstr("old entry")));
  EXPECT_THAT(after, HasSubstr("recent entry"));
}

// --- PostgreSQL maintenance ---------------------------------------------------------------------

// One server for all the cases (its start costs seconds, and ctest runs each test in a process of
// its own); each case starts from the same table.
class PgMaintenanceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    server_ = new testing::PostgresServer(dir_->path());
  }
  static void TearDownTestSuite() {
    delete server_;
    delete dir_;
  }

  void VacuumAnalyzeATableShowsInItsStatistics();
  void ReindexConcurrentlyRebuildsTheIndex();
  void CreateIndexConcurrentlyMakesAValidIndex();
  void ATimedOutCreateIndexLeavesNoInvalidIndex();

  void ResetTable() {
    ASSERT_TRUE(server_->ok()) << ReadFileOrEmpty(dir_->File("postgres.log"));
    // A table with bloat (half its rows deleted), owned by the agent's role so it may maintain
    // it; an index in a schema needs CREATE on it.
    const testing::CommandResult r = server_->Psql(
        "DROP TABLE IF EXISTS documents;"
        "CREATE TABLE documents (id int PRIMARY KEY, created_at timestamptz NOT NULL, "
        "body text NOT NULL);"
        "INSERT INTO documents SELECT g, now() - g * interval '1 minute', md5(g::text) "
        "FROM generate_series(1, 20000) g;"
        "DELETE FROM documents WHERE id % 2 = 0;"
        "CREATE INDEX idx_documents_body ON documents (body);"
        "ALTER TABLE documents OWNER TO vigil;"
        "GRANT CREATE ON SCHEMA public TO vigil;");
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }

  std::unique_ptr<Action> MakePg(const std::string& name, const std::string& options = "{}") {
    ActionContext context;
    context.postgres_dsn = server_->Dsn("vigil");
    return Make(absl::StrCat("actions:\n  ", name, ": ", options, "\n"), context);
  }

  std::string Query(const std::string& sql) {
    return std::string(absl::StripAsciiWhitespace(server_->Psql(sql).stdout_text));
  }

  static testing::TempDir* dir_;
  static testing::PostgresServer* server_;
};
testing::TempDir* PgMaintenanceTest::dir_ = nullptr;
testing::PostgresServer* PgMaintenanceTest::server_ = nullptr;

void PgMaintenanceTest::VacuumAnalyzeATableShowsInItsStatistics() {
  const std::string before = Query("SELECT now()");
  auto action = MakePg("pg_vacuum_analyze", "{tables: [\"public.*\"]}");
  ASSERT_NE(action, nullptr);
  ActionResult r = action->Run({{"table", "documents"}}, absl::Seconds(30));
  EXPECT_EQ(r.exit_code, 0) << r.reason << "\n" << r.output_tail;
  EXPECT_THAT(r.output_tail, HasSubstr("> VACUUM (ANALYZE) \"public\".\"documents\""));
  EXPECT_THAT(r.output_tail, HasSubstr("public.documents: "));
  // The server publishes the statistics once the action's session ends.
  const std::string done =
      absl::StrCat("SELECT last_vacuum > '", before, "' AND last_analyze > '", before,
                   "' FROM pg_stat_user_tables WHERE relname = 'documents'");
  EXPECT_TRUE(WaitUntil([&] { return Query(done) == "t"; }, absl::Seconds(10)))
      << Query("SELECT last_vacuum, last_analyze FROM pg_stat_user_tables");

  // A table the role may not vacuum: the server only warns, and the action fails on it.
  r = action->Run({{"table", "public.accounts"}}, absl::Seconds(30));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.reason, HasSubstr("WARNING:  skipping \"accounts\""));
  // The whole database, as the runbook's vacuumdb does: the tables the role does not own are
  // skipped with a warning, so the action says it could not do it all.
  auto whole = MakePg("pg_vacuum_analyze");
  r = whole->Run({}, absl::Seconds(30));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output_tail, HasSubstr("> VACUUM (ANALYZE)\n"));
  EXPECT_THAT(r.reason, HasSubstr("WARNING:  skipping"));
  // vacuumdb --all --analyze: every database that accepts connections, each on its own
  // connection (as the superuser, who may vacuum every table there), templates left out.
  // Two calls: CREATE DATABASE cannot run in the one transaction of a multi-statement -c.
  ASSERT_EQ(server_->Psql("DROP DATABASE IF EXISTS archive").exit_code, 0);
  ASSERT_EQ(server_->Psql("CREATE DATABASE archive").exit_code, 0);
  {
    ActionContext context;
    context.postgres_dsn = server_->Dsn("postgres");
    auto every = Make("actions:\n  pg_vacuum_analyze: {}\n", context);
    ASSERT_NE(every, nullptr);
    r = every->Run({{"all_databases", "yes"}}, absl::Seconds(60));
    EXPECT_EQ(r.exit_code, 0) << r.reason << "\n" << r.output_tail;
    EXPECT_THAT(r.output_tail, HasSubstr("database archive:\n> VACUUM (ANALYZE)\n"));
    EXPECT_THAT(r.output_tail, Not(HasSubstr("database template")));
    // With a table, or beside a tables allow-list, it is refused before anything runs.
    EXPECT_THAT(every->Run({{"all_databases", "yes"}, {"table", "documents"}}, absl::Seconds(5))
                    .reason,
                HasSubstr("exclude each other"));
    EXPECT_THAT(action->Run({{"all_databases", "yes"}}, absl::Seconds(5)).reason,
                HasSubstr("all_databases=yes is refused: the agent allows only the tables"));
  }
  // Outside the allow-list, a system table, a missing one, free SQL.
  auto limited = MakePg("pg_vacuum_analyze", "{tables: [\"public.doc*\"]}");
  r = limited->Run({{"table", "accounts"}}, absl::Seconds(30));
  EXPECT_THAT(r.reason, HasSubstr("table public.accounts is not allowed (tables: public.doc*)"));
  r = action->Run({{"table", "pg_catalog.pg_class"}}, absl::Seconds(30));
  EXPECT_THAT(r.reason, HasSubstr("is in the system schema pg_catalog"));
  r = action->Run({{"table", "missing"}}, absl::Seconds(30));
  EXPECT_THAT(r.reason, HasSubstr("table 'missing' does not exist"));
  r = action->Run({{"table", "documents; DROP TABLE documents"}}, absl::Seconds(30));
  EXPECT_THAT(r.reason, HasSubstr("may hold only letters, digits and '_'"));
  EXPECT_EQ(Query("SELECT count(*) FROM documents"), "10000");
}

void PgMaintenanceTest::ReindexConcurrentlyRebuildsTheIndex() {
  const std::string before =
      Query("SELECT relfilenode FROM pg_class WHERE relname = 'idx_documents_body'");
  auto action = MakePg("pg_reindex_concurrently");
  ASSERT_NE(action, nullptr);
  ActionResult r = action->Run({{"index", "public.idx_documents_body"}}, absl::Seconds(30));
  EXPECT_EQ(r.exit_code, 0) << r.reason << "\n" << r.output_tail;
  EXPECT_THAT(r.output_tail,
              HasSubstr("> REINDEX INDEX CONCURRENTLY \"public\".\"idx_documents_body\""));
  EXPECT_THAT(r.output_tail, HasSubstr("index public.idx_documents_body is valid"));
  const std::string after =
      Query("SELECT relfilenode FROM pg_class WHERE relname = 'idx_documents_body'");
  EXPECT_NE(after, before) << "a new index file";
  EXPECT_EQ(Query("SELECT indisvalid FROM pg_index WHERE indexrelid = "
                  "'idx_documents_body'::regclass"),
            "t");

  r = action->Run({{"index", "documents"}}, absl::Seconds(30));
  EXPECT_THAT(r.reason, HasSubstr("index 'documents' is not an index (relkind 'r')"));
  auto limited = MakePg("pg_reindex_concurrently", "{tables: [\"public.accounts\"]}");
  r = limited->Run({{"index", "idx_documents_body"}}, absl::Seconds(30));
  EXPECT_THAT(r.reason, HasSubstr("table public.documents is not allowed"));
}

void PgMaintenanceTest::CreateIndexConcurrentlyMakesAValidIndex() {
  auto action = MakePg("pg_create_index_concurrently", "{tables: [\"public.documents\"]}");
  ASSERT_NE(action, nullptr);
  ActionResult r = action->Run(
      {{"table", "documents"}, {"columns", "created_at"}, {"name", "idx_documents_created_at"}},
      absl::Seconds(30));
  EXPECT_EQ(r.exit_code, 0) << r.reason << "\n" << r.output_tail;
  EXPECT_THAT(r.output_tail,
              HasSubstr("> CREATE INDEX CONCURRENTLY \"idx_documents_created_at\" ON "
                        "\"public\".\"documents\" USING btree (\"created_at\")"));
  EXPECT_EQ(Query("SELECT i.indisvalid, pg_get_indexdef(i.indexrelid) FROM pg_index i "
                  "WHERE i.indexrelid = 'public.idx_documents_created_at'::regclass"),
            "t|CREATE INDEX idx_documents_created_at ON public.documents USING btree "
            "(created_at)");

  // The name is taken now; a column that does not exist; a table outside the list.
  r = action->Run(
      {{"table", "documents"}, {"columns", "created_at"}, {"name", "idx_documents_created_at"}},
      absl::Seconds(30));
  EXPECT_THAT(r.reason, HasSubstr("name 'idx_documents_created_at' is already taken"));
  r = action->Run({{"table", "documents"}, {"columns", "id, nope"}, {"name", "idx_x"}},
                  absl::Seconds(30));
  EXPECT_THAT(r.reason, HasSubstr("columns: 'nope' is not a column of public.documents"));
  r = action->Run({{"table", "accounts"}, {"columns", "id"}, {"name", "idx_y"}}, absl::Seconds(30));
  EXPECT_THAT(r.reason, HasSubstr("table public.accounts is not allowed"));
  EXPECT_EQ(Query("SELECT count(*) FROM pg_class WHERE relname IN ('idx_x', 'idx_y')"), "0");
}

void PgMaintenanceTest::ATimedOutCreateIndexLeavesNoInvalidIndex() {
  // A writer's open transaction: CREATE INDEX CONCURRENTLY registers its (invalid) index, then
  // waits for the writer past the action's timeout. The writer commits a little later.
  auto writer = server_->Background(
      "BEGIN; INSERT INTO documents VALUES (100001, now(), 'x'); SELECT pg_sleep(2.5); COMMIT;");
  ASSERT_TRUE(WaitUntil(
      [&] {
        return Query(
                   "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                   "WHERE c.relname = 'documents' AND l.mode = 'RowExclusiveLock' AND "
                   "l.granted") == "1";
      },
      absl::Seconds(10)));
  auto action = MakePg("pg_create_index_concurrently");
  ASSERT_NE(action, nullptr);
  const absl::Time start = absl::Now();
  ActionResult r = action->Run(
      {{"table", "documents"}, {"columns", "body, id"}, {"name", "idx_stalled"}}, absl::Seconds(1));
  EXPECT_LT(absl::Now() - start, absl::Seconds(7)) << "the action's timeout and the cleanup's";
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.reason, HasSubstr("canceling statement due to statement timeout"));
  EXPECT_THAT(r.output_tail, HasSubstr("dropped the invalid index public.idx_stalled"));
  EXPECT_EQ(Query("SELECT count(*) FROM pg_class WHERE relname = 'idx_stalled'"), "0");
  writer->Wait(absl::Seconds(10));
}

TEST_F(PgMaintenanceTest, VacuumReindexAndCreateIndexOnARealServer) {
  {
    SCOPED_TRACE("VacuumAnalyzeATableShowsInItsStatistics");
    ResetTable();
    if (HasFatalFailure()) {
      return;
    }
    VacuumAnalyzeATableShowsInItsStatistics();
  }
  {
    SCOPED_TRACE("ReindexConcurrentlyRebuildsTheIndex");
    ResetTable();
    if (HasFatalFailure()) {
      return;
    }
    ReindexConcurrentlyRebuildsTheIndex();
  }
  {
    SCOPED_TRACE("CreateIndexConcurrentlyMakesAValidIndex");
    ResetTable();
    if (HasFatalFailure()) {
      return;
    }
    CreateIndexConcurrentlyMakesAValidIndex();
  }
  {
    SCOPED_TRACE("ATimedOutCreateIndexLeavesNoInvalidIndex");
    ResetTable();
    if (HasFatalFailure()) {
      return;
    }
    ATimedOutCreateIndexLeavesNoInvalidIndex();
  }
}

// --- redis_config_set ---------------------------------------------------------------------------

TEST(RedisConfigSetActionTest, SetsAListedValueOnly) {
  testing::TempDir dir;
  testing::RedisServer redis(dir.path());
  ASSERT_TRUE(redis.ok()) << ReadFileOrEmpty(dir.File("redis.log"));
  ActionContext context;
  context.redis_address = absl::StrCat("127.0.0.1:", redis.port());
  auto action = Make(
      "actions:\n  redis_config_set:\n    parameters:\n"
      "      maxmemory-policy: [allkeys-lru, volatile-lru]\n",
      context);
  ASSERT_NE(action, nullptr);
  ASSERT_EQ(redis.Cli({"config", "get", "maxmemory-policy"}).stdout_text,
            "maxmemory-policy\nnoeviction\n");

  ActionResult r =
      action->Run({{"parameter", "maxmemory-policy"}, {"value", "allkeys-lru"}}, absl::Seconds(10));
  EXPECT_EQ(r.exit_code, 0) << r.reason << "\n" << r.output_tail;
  EXPECT_THAT(r.output_tail, HasSubstr("maxmemory-policy: 'noeviction' -> 'allkeys-lru'"));
  EXPECT_EQ(redis.Cli({"config", "get", "maxmemory-policy"}).stdout_text,
            "maxmemory-policy\nallkeys-lru\n");

  r = action->Run({{"parameter", "maxmemory-policy"}, {"value", "allkeys-random"}},
                  absl::Seconds(10));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.reason, HasSubstr("value 'allkeys-random' is not allowed for maxmemory-policy"));
  r = action->Run({{"parameter", "dir"}, {"value", "/tmp"}}, absl::Seconds(10));
  EXPECT_THAT(r.reason, HasSubstr("parameter 'dir' is not allowed"));
  EXPECT_EQ(redis.Cli({"config", "get", "maxmemory-policy"}).stdout_text,
            "maxmemory-policy\nallkeys-lru\n");

  redis.Stop();
  r = action->Run({{"parameter", "maxmemory-policy"}, {"value", "volatile-lru"}}, absl::Seconds(2));
  EXPECT_THAT(r.reason, HasSubstr("cannot connect to Redis"));
}

// --- Kubernetes API (fixtures over HTTPS) -------------------------------------------------------

// The API server's part the actions use: GET and a JSON merge PATCH of `spec` on the documented
// objects, behind a bearer token; every request recorded.
class K8sApiFixture {
 public:
  static constexpr char kToken[] = "eyJhbGciOiJSUzI1NiJ9.test-service-account";

  explicit K8sApiFixture(const std::string& certs) {
    http::HttpServer::Options options;
    options.tls_cert_file = certs + "/controller.pem";
    options.tls_key_file = certs + "/controller.key";
    options.stop_timeout = absl::Milliseconds(200);
    server_ = std::make_unique<http::HttpServer>(options);
    Serve("/apis/apps/v1/namespaces/rag-production/deployments/rag-api/scale",
          Fixture("k8s/scale-rag-api.json"));
    Serve("/apis/autoscaling/v2/namespaces/rag-production/horizontalpodautoscalers/rag-api-hpa",
          Fixture("k8s/hpa-rag-api-hpa.json"));
    const std::string not_found = Fixture("k8s/status-not-found.json");
    server_->Handle("GET", "/apis/apps/v1/namespaces/rag-production/deployments/rag-celery/scale",
                    [this, not_found](const http::HttpRequest& request) {
                      Record(request);
                      return Json(404, not_found);
                    });
    ok_ = server_->Start("127.0.0.1:0").ok();
  }

  bool ok() const { return ok_; }
  std::string url() const { return absl::StrCat("https://127.0.0.1:", server_->port()); }
  std::vector<http::HttpRequest> requests() {
    absl::MutexLock lock(&mu_);
    return requests_;
  }

 private:
  static http::HttpResponse Json(int status, std::string body) {
    http::HttpResponse response;
    response.status = status;
    response.content_type = "application/json";
    response.body = std::move(body);
    return response;
  }

  void Record(const http::HttpRequest& request) {
    absl::MutexLock lock(&mu_);
    requests_.push_back(request);
  }

  void Serve(const std::string& path, std::string object) {
    auto state = std::make_shared<std::string>(std::move(object));
    auto unauthorized = Fixture("k8s/status-unauthorized.json");
    auto handler = [this, state, unauthorized](const http::HttpRequest& request) {
      Record(request);
      if (request.Header("authorization") != absl::StrCat("Bearer ", kToken)) {
        return Json(401, unauthorized);
      }
      if (request.method == "GET") {
        return Json(200, *state);
      }
      if (request.Header("content-type") != "application/merge-patch+json") {
        return Json(415, "{\"kind\":\"Status\",\"message\":\"unsupported media type\"}");
      }
      google::protobuf::Struct object;
      google::protobuf::Struct patch;
      if (!google::protobuf::util::JsonStringToMessage(*state, &object).ok() ||
          !google::protobuf::util::JsonStringToMessage(request.body, &patch).ok()) {
        return Json(400, "{\"kind\":\"Status\",\"message\":\"bad patch\"}");
      }
      // RFC 7386 on spec, the only key the actions patch.
      auto* spec = (*object.mutable_fields())["spec"].mutable_struct_value()->mutable_fields();
      for (const auto& [key, value] : patch.fields().at("spec").struct_value().fields()) {
        (*spec)[key] = value;
      }
      std::string json;
      (void)google::protobuf::util::MessageToJsonString(object, &json);
      *state = json;
      return Json(200, json);
    };
    server_->Handle("GET", path, handler);
    server_->Handle("PATCH", path, handler);
  }

  std::unique_ptr<http::HttpServer> server_;
  bool ok_ = false;
  absl::Mutex mu_;
  std::vector<http::HttpRequest> requests_ ABSL_GUARDED_BY(mu_);
};

class K8sActionsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    certs_ = new testing::TempDir();
    for (const std::string& out : {certs_->path(), certs_->File("other")}) {
      testing::CommandResult r =
          RunCommand({testing::SourcePath("scripts/dev-ca.sh"), out}, absl::Seconds(60));
      ASSERT_EQ(r.exit_code, 0) << r.output;
    }
  }
  static void TearDownTestSuite() {
    delete certs_;
    certs_ = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(api_.ok());
    WriteFile(token_, absl::StrCat(K8sApiFixture::kToken, "\n"));
  }

  std::unique_ptr<Action> MakeK8s(const std::string& name, const std::string& list,
                                  const std::string& ca = "") {
    return Make(absl::StrCat(
        "actions:\n  ", name, ":\n    api_server: ", api_.url(), "\n    token_file: ", token_,
        "\n    ca_file: ", ca.empty() ? certs_->File("ca.pem") : ca, "\n    ", list, "\n"));
  }

  static testing::TempDir* certs_;
  testing::TempDir dir_;
  std::string token_ = dir_.File("token");
  K8sApiFixture api_{certs_->path()};
};
testing::TempDir* K8sActionsTest::certs_ = nullptr;

TEST_F(K8sActionsTest, ScaleReadsThenPatchesTheScaleSubresource) {
  auto action = MakeK8s("k8s_scale",
                        "deployments: {rag-production/rag-api: {min: 2, max: 10}, "
                        "rag-production/rag-celery: {min: 1, max: 5}}");
  ASSERT_NE(action, nullptr);
  ActionResult r =
      action->Run({{"namespace", "rag-production"}, {"deployment", "rag-api"}, {"replicas", "5"}},
                  absl::Seconds(10));
  EXPECT_EQ(r.exit_code, 0) << r.reason << "\n" << r.output_tail;
  EXPECT_THAT(r.output_tail, HasSubstr("deployment rag-production/rag-api: replicas 3 -> 5"));
  const std::string path = "/apis/apps/v1/namespaces/rag-production/deployments/rag-api/scale";
  std::vector<http::HttpRequest> requests = api_.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].method, "GET");
  EXPECT_EQ(requests[0].path, path);
  EXPECT_EQ(requests[0].body, "");
  EXPECT_EQ(requests[1].method, "PATCH");
  EXPECT_EQ(requests[1].path, path);
  EXPECT_EQ(requests[1].Header("content-type"), "application/merge-patch+json");
  EXPECT_EQ(requests[1].body, "{\"spec\":{\"replicas\":5}}");
  for (const http::HttpRequest& request : requests) {
    EXPECT_EQ(request.Header("authorization"), absl::StrCat("Bearer ", K8sApiFixture::kToken));
    EXPECT_EQ(request.Header("accept"), "application/json");
  }
  // The token never reaches the timeline.
  EXPECT_THAT(r.output_tail, Not(HasSubstr(K8sApiFixture::kToken)));

  // The API's own refusal (a listed deployment that does not exist) is the reason.
  r = action->Run(
      {{"namespace", "rag-production"}, {"deployment", "rag-celery"}, {"replicas", "2"}},
      absl::Seconds(10));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.reason, HasSubstr("HTTP 404: deployments.apps \"rag-celery\" not found"));
  EXPECT_EQ(api_.requests().size(), 3u) << "no PATCH after a failed GET";

  // Beyond the configured bound: nothing is sent.
  r = action->Run({{"namespace", "rag-production"}, {"deployment", "rag-api"}, {"replicas", "50"}},
                  absl::Seconds(10));
  EXPECT_THAT(r.reason, HasSubstr("replicas 50 is above the limit 10"));
  EXPECT_EQ(api_.requests().size(), 3u);

  // A rotated token that the server does not accept.
  WriteFile(token_, "expired");
  r = action->Run({{"namespace", "rag-production"}, {"deployment", "rag-api"}, {"replicas", "4"}},
                  absl::Seconds(10));
  EXPECT_THAT(r.reason, HasSubstr("HTTP 401: Unauthorized"));
  std::filesystem::remove(token_);
  r = action->Run({{"namespace", "rag-production"}, {"deployment", "rag-api"}, {"replicas", "4"}},
                  absl::Seconds(10));
  EXPECT_THAT(r.reason, HasSubstr(absl::StrCat("no service account token in ", token_)));
}

TEST_F(K8sActionsTest, PatchHpaSetsMinAndMax) {
  auto action = MakeK8s("k8s_patch_hpa", "hpas: {rag-production/rag-api-hpa: {min: 2, max: 20}}");
  ASSERT_NE(action, nullptr);
  ActionResult r = action->Run(
      {{"namespace", "rag-production"}, {"hpa", "rag-api-hpa"}, {"min", "3"}, {"max", "10"}},
      absl::Seconds(10));
  EXPECT_EQ(r.exit_code, 0) << r.reason << "\n" << r.output_tail;
  EXPECT_THAT(r.output_tail, HasSubstr("maxReplicas 6 -> 10, minReplicas 2 -> 3"));
  std::vector<http::HttpRequest> requests = api_.requests();
  ASSERT_EQ(requests.size(), 2u);
  const std::string path =
      "/apis/autoscaling/v2/namespaces/rag-production/horizontalpodautoscalers/rag-api-hpa";
  EXPECT_EQ(requests[0].method, "GET");
  EXPECT_EQ(requests[0].path, path);
  EXPECT_EQ(requests[1].method, "PATCH");
  EXPECT_EQ(requests[1].path, path);
  EXPECT_EQ(requests[1].Header("content-type"), "application/merge-patch+json");
  EXPECT_EQ(requests[1].body, "{\"spec\":{\"minReplicas\":3,\"maxReplicas\":10}}");
}

TEST_F(K8sActionsTest, AServerFromAnotherCaIsRefused) {
  auto action = MakeK8s("k8s_scale", "deployments: {rag-production/rag-api: {min: 2, max: 10}}",
                        certs_->File("other/ca.pem"));
  ASSERT_NE(action, nullptr);
  ActionResult r =
      action->Run({{"namespace", "rag-production"}, {"deployment", "rag-api"}, {"replicas", "5"}},
                  absl::Seconds(10));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.reason, HasSubstr("certificate"));
  EXPECT_TRUE(api_.requests().empty()) << "the token is never sent to an unverified server";
}

// --- Docker Engine API (fixtures over a unix socket) --------------------------------------------

TEST(DockerPruneActionTest, PrunesLikeSystemPruneAllOverTheSocket) {
  testing::TempDir dir;
  std::map<std::string, std::string> answers = {
      {"/containers/prune", Fixture("docker/containers-prune.json")},
      {"/networks/prune", Fixture("docker/networks-prune.json")},
      {"/images/prune", Fixture("docker/images-prune.json")},
      {"/build/prune", Fixture("docker/build-prune.json")}};
  testing::UnixHttpServer docker(dir.File("docker.sock"), [&](const http::HttpRequest& request) {
    http::HttpResponse response;
    response.content_type = "application/json";
    auto it = answers.find(request.path);
    response.status = it == answers.end() ? 404 : 200;
    response.body = it == answers.end() ? "{\"message\":\"page not found\"}" : it->second;
    return response;
  });
  ASSERT_TRUE(docker.ok());
  auto action = Make(absl::StrCat("actions:\n  docker_prune: {socket: ", docker.path(), "}\n"));
  ASSERT_NE(action, nullptr);
  ActionResult r = action->Run({}, absl::Seconds(10));
  EXPECT_EQ(r.exit_code, 0) << r.reason << "\n" << r.output_tail;
  EXPECT_THAT(r.output_tail, HasSubstr("containers: 2 deleted, 15728640 bytes reclaimed"));
  EXPECT_THAT(r.output_tail, HasSubstr("networks: 1 deleted, 0 bytes reclaimed"));
  EXPECT_THAT(r.output_tail, HasSubstr("images: 4 deleted, 734003200 bytes reclaimed"));
  EXPECT_THAT(r.output_tail, HasSubstr("build cache: 2 deleted, 268435456 bytes reclaimed"));
  EXPECT_THAT(r.output_tail, HasSubstr("total reclaimed: 1018167296 bytes"));
  std::vector<http::HttpRequest> requests = docker.requests();
  ASSERT_EQ(requests.size(), 4u);
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"/containers/prune", ""},
      {"/networks/prune", ""},
      {"/images/prune", "filters=%7B%22dangling%22%3A%5B%22false%22%5D%7D"},
      {"/build/prune", "all=true"}};
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(requests[i].method, "POST");
    EXPECT_EQ(requests[i].path, expected[i].first);
    EXPECT_EQ(requests[i].query, expected[i].second);
    EXPECT_EQ(requests[i].body, "");
  }

  // The daemon's refusal stops the action at the first step, with its message.
  answers.clear();
  testing::UnixHttpServer busy(dir.File("busy.sock"), [&](const http::HttpRequest&) {
    http::HttpResponse response;
    response.status = 409;
    response.content_type = "application/json";
    response.body = Fixture("docker/error-conflict.json");
    return response;
  });
  auto on_busy = Make(absl::StrCat("actions:\n  docker_prune: {socket: ", busy.path(), "}\n"));
  r = on_busy->Run({}, absl::Seconds(10));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.reason, HasSubstr("POST /containers/prune: HTTP 409: a prune operation is "
                                  "already running"));
  EXPECT_EQ(busy.requests().size(), 1u);

  // No daemon on this host: refused clearly.
  auto absent =
      Make(absl::StrCat("actions:\n  docker_prune: {socket: ", dir.File("none.sock"), "}\n"));
  r = absent->Run({}, absl::Seconds(10));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.reason, HasSubstr(absl::StrCat("no Docker socket at ", dir.File("none.sock"))));
}

}  // namespace
}  // namespace vigil::agent
