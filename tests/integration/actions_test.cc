// The agent's typed actions against real programs on loopback: restart_service under a real
// supervisord, set_nginx_upstream and reload_nginx against a real nginx (a broken edit is rolled
// back while nginx keeps serving), a forced run of the real logrotate, pg_terminate_backend and
// pg_cancel_backend on a real PostgreSQL, redis_flushdb on a real Redis.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <pqxx/pqxx>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "agent/actions/action.h"
#include "agent/collectors/postgres_collector.h"
#include "common/own_backends.h"
#include "common/yaml_util.h"
#include "tests/support/servers.h"

namespace vigil::agent {
namespace {

using ::testing::HasSubstr;
using testing::ReadFileOrEmpty;
using testing::RunCommand;
using testing::WaitUntil;
using testing::WriteFile;

// Builds the one action an agent config text enables, with the real process runner.
class ActionFixture {
 public:
  ActionFixture() { RegisterBuiltinActions(registry_); }

  std::unique_ptr<Action> Make(const std::string& text, ActionContext context = {}) {
    absl::StatusOr<YAML::Node> root = LoadYamlString(text, "agent.yaml");
    if (!root.ok()) {
      ADD_FAILURE() << root.status();
      return nullptr;
    }
    context.runner = runner_.get();
    if ((*root)["service_manager"].IsDefined()) {
      context.service_manager = (*root)["service_manager"];
    }
    auto actions = BuildActions((*root)["actions"], registry_, context, "agent.yaml");
    if (!actions.ok() || actions->size() != 1) {
      ADD_FAILURE() << "cannot build the action: " << actions.status();
      return nullptr;
    }
    return std::move(actions->front());
  }

 private:
  ActionRegistry registry_;
  std::unique_ptr<CommandRunner> runner_ = NewProcessRunner();
};

int ParsePid(const std::string& text) {
  int pid = 0;
  return absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &pid) ? pid : 0;
}

// --- restart_service under supervisord ----------------------------------------------------------

class SupervisorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string socket = dir_.File("supervisor.sock");
    WriteFile(conf_, absl::StrCat(
                         "[unix_http_server]\nfile=", socket,
                         "\n\n[supervisord]\nnodaemon=true\nlogfile=", dir_.File("supervisord.log"),
                         "\npidfile=", dir_.File("supervisord.pid"), "\nchildlogdir=", dir_.path(),
                         "\n\n[rpcinterface:supervisor]\n"
                         "supervisor.rpcinterface_factory = "
                         "supervisor.rpcinterface:make_main_rpcinterface\n\n"
                         "[supervisorctl]\nserverurl=unix://",
                         socket,
                         "\n\n[program:worker]\ncommand=sleep 1000\nstartsecs=1\n\n"
                         "[program:other]\ncommand=sleep 1000\nstartsecs=1\n"));
    supervisord_ = std::make_unique<testing::Subprocess>(
        std::vector<std::string>{"supervisord", "-n", "-c", conf_},
        std::map<std::string, std::string>{}, dir_.File("supervisord.out"));
    ASSERT_TRUE(WaitUntil([&] { return Running("worker") && Running("other"); }, absl::Seconds(30),
                          absl::Milliseconds(200)))
        << ReadFileOrEmpty(dir_.File("supervisord.out"))
        << ReadFileOrEmpty(dir_.File("supervisord.log"));
    action_ = fixture_.Make(
        absl::StrCat("actions:\n  restart_service: {units: [\"worker\", \"azalscore@*\"]}\n"
                     "service_manager: {restart: \"supervisorctl -c ",
                     conf_, " restart {unit}\"}\n"));
    ASSERT_NE(action_, nullptr);
  }

  void TearDown() override {
    if (supervisord_ != nullptr) {
      supervisord_->Stop(absl::Seconds(15));  // supervisord stops its programs on SIGTERM
    }
  }

  int Pid(const std::string& program) {
    return ParsePid(
        RunCommand({"supervisorctl", "-c", conf_, "pid", program}, absl::Seconds(10)).stdout_text);
  }
  bool Running(const std::string& program) {
    return absl::StrContains(
        RunCommand({"supervisorctl", "-c", conf_, "status", program}, absl::Seconds(10))
            .stdout_text,
        "RUNNING");
  }

  testing::TempDir dir_;
  std::string conf_ = dir_.File("supervisord.conf");
  std::unique_ptr<testing::Subprocess> supervisord_;
  ActionFixture fixture_;
  std::unique_ptr<Action> action_;
};

TEST_F(SupervisorTest, RestartServiceStartsANewWorker) {
  const int before = Pid("worker");
  ASSERT_GT(before, 0);
  ActionResult r = action_->Run({{"unit", "worker"}}, absl::Seconds(30));
  EXPECT_EQ(r.exit_code, 0) << r.reason << "\n" << r.output_tail;
  EXPECT_THAT(r.output_tail, HasSubstr("restart worker"));
  const int after = Pid("worker");
  EXPECT_GT(after, 0);
  EXPECT_NE(after, before) << "a new process";
  EXPECT_TRUE(Running("worker"));
  EXPECT_NE(kill(before, 0), 0) << "the old worker is gone";
}

TEST_F(SupervisorTest, UnitOutsideTheAllowListIsNotRestarted) {
  const int other = Pid("other");
  const int worker = Pid("worker");
  ASSERT_GT(other, 0);
  absl::Status s = action_->Check({{"unit", "other"}});
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(s.message(),
            "restart_service: unit 'other' is not allowed (allowed: worker, azalscore@*)");
  ActionResult r = action_->Run({{"unit", "other"}}, absl::Seconds(30));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.reason, HasSubstr("not allowed"));
  EXPECT_EQ(Pid("other"), other);
  EXPECT_EQ(Pid("worker"), worker);
}

TEST_F(SupervisorTest, UnknownProgramFailsWithTheManagersOutput) {
  auto action =
      fixture_.Make(absl::StrCat("actions:\n  restart_service: {units: [\"*\"]}\n"
                                 "service_manager: {restart: \"supervisorctl -c ",
                                 conf_, " restart {unit}\"}\n"));
  ASSERT_NE(action, nullptr);
  ActionResult r = action->Run({{"unit", "nosuchprogram"}}, absl::Seconds(30));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output_tail, HasSubstr("nosuchprogram"));
  EXPECT_THAT(r.reason, HasSubstr("supervisorctl"));
}

// --- nginx --------------------------------------------------------------------------------------

class NginxActionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(nginx_.ok()) << ReadFileOrEmpty(dir_.File("nginx.log"));
    ASSERT_EQ(testing::HttpGet(nginx_.port(), "/"), 200);
    // A request that tells which upstream answered.
    second_.SetRoute("/which", absl::ZeroDuration(), 203);
    prober_ = std::thread([this] {
      while (!stop_) {
        const int status = testing::HttpGet(nginx_.port(), "/", absl::Seconds(5));
        (status == 200 ? served_ : failed_)++;
        absl::SleepFor(absl::Milliseconds(10));
      }
    });
  }
  void TearDown() override {
    StopProbing();
    nginx_.Stop();
  }
  void StopProbing() {
    stop_ = true;
    if (prober_.joinable()) {
      prober_.join();
    }
  }
  // Whether the next `n` requests for /which are all answered with `status` (a drained or
  // removed server gets none of them once the new workers took over).
  bool AllAnswer(int status, int n = 10) {
    for (int i = 0; i < n; ++i) {
      const int got = testing::HttpGet(nginx_.port(), "/which");
      if (got != status) {
        last_other_ = got;
        return false;
      }
    }
    return true;
  }
  // Whether nginx runs a single generation of workers whose answer to /which is `status`: a
  // reload is asynchronous, and for a moment the old worker and the new one both accept.
  bool Settled(int status) {
    return WaitUntil(
        [&] {
          if (!AllAnswer(status)) {
            return false;
          }
          const int master = ParsePid(ReadFileOrEmpty(dir_.File("nginx/nginx.pid")));
          const std::string workers =
              RunCommand({"pgrep", "-P", absl::StrCat(master)}, absl::Seconds(10)).stdout_text;
          return master > 0 && std::count(workers.begin(), workers.end(), '\n') == 1;
        },
        absl::Seconds(10));
  }
  ActionResult Set(const std::string& server, const std::string& state) {
    return upstream_action_->Run({{"upstream", "app"}, {"server", server}, {"state", state}},
                                 absl::Seconds(30));
  }

  testing::TempDir dir_;
  testing::HttpUpstream first_;
  testing::HttpUpstream second_;
  testing::NginxServer nginx_{dir_.path(), first_.port()};
  ActionFixture fixture_;
  std::unique_ptr<Action> upstream_action_ = fixture_.Make(
      absl::StrCat("actions:\n  set_nginx_upstream:\n    upstreams_file: ", nginx_.upstreams_file(),
                   "\n    config: ", nginx_.config(), "\n    upstreams: [app]\n"));
  std::thread prober_;
  std::atomic<bool> stop_{false};
  std::atomic<int> served_{0};
  std::atomic<int> failed_{0};
  int last_other_ = 0;  // the last unexpected answer to /which, for messages
};

TEST_F(NginxActionsTest, SetUpstreamEditsReloadsAndRollsBackABrokenEdit) {
  ASSERT_NE(upstream_action_, nullptr);
  const std::string second = absl::StrCat("127.0.0.1:", second_.port());
  ActionResult r = Set(second, "add");
  ASSERT_EQ(r.exit_code, 0) << r.reason << "\n" << r.output_tail;
  EXPECT_THAT(ReadFileOrEmpty(nginx_.upstreams_file()), HasSubstr("server " + second + ";"));
  EXPECT_THAT(r.output_tail, HasSubstr("nginx reloaded"));

  // Draining the first server sends everything to the second: the reload really happened.
  const std::string first = absl::StrCat("127.0.0.1:", first_.port());
  r = Set(first, "drain");
  ASSERT_EQ(r.exit_code, 0) << r.reason << "\n" << r.output_tail;
  EXPECT_THAT(ReadFileOrEmpty(nginx_.upstreams_file()), HasSubstr("server " + first + " down;"));
  EXPECT_TRUE(Settled(203)) << "got " << last_other_;

  // An address nginx rejects: validation fails, the file is put back, nginx keeps serving.
  const std::string before = ReadFileOrEmpty(nginx_.upstreams_file());
  r = Set("999.1.1.1.1:99999", "add");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.reason, HasSubstr("nginx -t"));
  EXPECT_THAT(r.reason, HasSubstr("restored the previous"));
  EXPECT_THAT(r.output_tail, HasSubstr("invalid port in upstream"));
  EXPECT_EQ(ReadFileOrEmpty(nginx_.upstreams_file()), before) << "restored byte for byte";
  EXPECT_TRUE(Settled(203)) << "still the configuration from before the broken edit; got "
                            << last_other_;

  // Back to the first server only.
  r = Set(first, "add");
  ASSERT_EQ(r.exit_code, 0) << r.reason << "\n" << r.output_tail;
  r = Set(second, "remove");
  ASSERT_EQ(r.exit_code, 0) << r.reason << "\n" << r.output_tail;
  EXPECT_TRUE(Settled(200)) << "got " << last_other_;

  StopProbing();
  EXPECT_GT(served_, 0);
  EXPECT_EQ(failed_, 0) << "nginx served every request throughout";
}

TEST_F(NginxActionsTest, ReloadNginxValidatesFirst) {
  auto action =
      fixture_.Make(absl::StrCat("actions:\n  reload_nginx: {config: ", nginx_.config(), "}\n"));
  ASSERT_NE(action, nullptr);
  ActionResult r = action->Run({}, absl::Seconds(30));
  EXPECT_EQ(r.exit_code, 0) << r.reason << "\n" << r.output_tail;
  EXPECT_THAT(r.output_tail, HasSubstr("test is successful"));

  // A broken upstreams file (written behind the action's back) is never loaded.
  const std::string good = ReadFileOrEmpty(nginx_.upstreams_file());
  WriteFile(nginx_.upstreams_file(), "upstream app {\n    sever 127.0.0.1:1;\n}\n");
  r = action->Run({}, absl::Seconds(30));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.reason, HasSubstr("nginx -t"));
  EXPECT_THAT(r.output_tail, HasSubstr("not reloaded"));
  WriteFile(nginx_.upstreams_file(), good);
  EXPECT_EQ(testing::HttpGet(nginx_.port(), "/"), 200);
  StopProbing();
  EXPECT_EQ(failed_, 0);
}

// --- logrotate ----------------------------------------------------------------------------------

TEST(LogrotateActionTest, ForcedRotationWithTheRealLogrotate) {
  testing::TempDir dir;
  const std::string log = dir.File("app.log");
  const std::string conf = dir.File("logrotate.conf");
  WriteFile(log, "first line\nsecond line\n");
  WriteFile(conf, absl::StrCat(log, " {\n    rotate 3\n    missingok\n    nocompress\n}\n"));
  chmod(conf.c_str(), 0644);  // logrotate ignores configs others can write
  ActionFixture fixture;
  auto action = fixture.Make(absl::StrCat("actions:\n  logrotate:\n    configs: [", conf,
                                          "]\n    state: ", dir.File("logrotate.status"), "\n"));
  ASSERT_NE(action, nullptr);
  ActionResult r = action->Run({}, absl::Seconds(30));
  EXPECT_EQ(r.exit_code, 0) << r.reason << "\n" << r.output_tail;
  EXPECT_EQ(ReadFileOrEmpty(log + ".1"), "first line\nsecond line\n");
  EXPECT_TRUE(std::filesystem::exists(dir.File("logrotate.status")));

  // Forced: a second run rotates again although the log is tiny and young.
  WriteFile(log, "third line\n");
  r = action->Run({{"config", conf}}, absl::Seconds(30));
  EXPECT_EQ(r.exit_code, 0) << r.reason << "\n" << r.output_tail;
  EXPECT_EQ(ReadFileOrEmpty(log + ".1"), "third line\n");
  EXPECT_EQ(ReadFileOrEmpty(log + ".2"), "first line\nsecond line\n");

  r = action->Run({{"config", "/etc/logrotate.conf"}}, absl::Seconds(30));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.reason, HasSubstr("is not allowed"));
}

// --- PostgreSQL ---------------------------------------------------------------------------------

class PostgresActionsTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.ok()) << ReadFileOrEmpty(dir_.File("postgres.log")); }

  std::unique_ptr<Action> Make(const std::string& name, const std::string& options = "{}") {
    ActionContext context;
    context.postgres_dsn = server_.Dsn("vigil");
    return fixture_.Make(absl::StrCat("actions:\n  ", name, ": ", options, "\n"), context);
  }

  // The pid of the backend of `user` running pg_sleep, once it runs.
  int SleeperPid(const std::string& user) {
    int pid = 0;
    WaitUntil(
        [&] {
          pid = ParsePid(
              server_
                  .Psql(absl::StrCat("SELECT pid FROM pg_stat_activity WHERE usename = '", user,
                                     "' AND query LIKE 'SELECT pg_sleep%' AND state = "
                                     "'active'"))
                  .stdout_text);
          return pid > 0;
        },
        absl::Seconds(10));
    return pid;
  }

  bool Exists(int pid) {
    return server_.Psql(absl::StrCat("SELECT count(*) FROM pg_stat_activity WHERE pid = ", pid))
               .stdout_text == "1\n";
  }

  testing::TempDir dir_;
  testing::PostgresServer server_{dir_.path()};
  ActionFixture fixture_;
};

TEST_F(PostgresActionsTest, TerminateBackendEndsTheSession) {
  auto sleeper = server_.Background("SELECT pg_sleep(30)", "app");
  const int pid = SleeperPid("app");
  ASSERT_GT(pid, 0);
  auto action = Make("pg_terminate_backend");
  ASSERT_NE(action, nullptr);
  ActionResult r = action->Run({{"pid", absl::StrCat(pid)}}, absl::Seconds(10));
  EXPECT_EQ(r.exit_code, 0) << r.reason << "\n" << r.output_tail;
  EXPECT_THAT(r.output_tail, HasSubstr(absl::StrCat("pg_terminate_backend(", pid, ") = true")));
  EXPECT_THAT(r.output_tail, HasSubstr("user 'app'"));
  EXPECT_TRUE(WaitUntil([&] { return !Exists(pid); }, absl::Seconds(10)));
  EXPECT_NE(sleeper->Wait(absl::Seconds(10)), -1) << "psql lost its session";
}

TEST_F(PostgresActionsTest, CancelBackendCancelsTheQueryOnly) {
  auto sleeper = server_.Background("SELECT pg_sleep(30)", "app");
  const int pid = SleeperPid("app");
  ASSERT_GT(pid, 0);
  auto action = Make("pg_cancel_backend");
  ASSERT_NE(action, nullptr);
  ActionResult r = action->Run({{"pid", absl::StrCat(pid)}}, absl::Seconds(10));
  EXPECT_EQ(r.exit_code, 0) << r.reason << "\n" << r.output_tail;
  EXPECT_NE(sleeper->Wait(absl::Seconds(10)), -1);
  EXPECT_THAT(sleeper->Output(), HasSubstr("canceling statement due to user request"));
}

TEST_F(PostgresActionsTest, RefusesSuperuserOwnAndUnknownBackends) {
  auto action = Make("pg_terminate_backend");
  ASSERT_NE(action, nullptr);

  auto superuser = server_.Background("SELECT pg_sleep(30)", "postgres");
  const int su_pid = SleeperPid("postgres");
  ASSERT_GT(su_pid, 0);
  ActionResult r = action->Run({{"pid", absl::StrCat(su_pid)}}, absl::Seconds(10));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.reason, HasSubstr("belongs to superuser 'postgres'"));
  EXPECT_THAT(r.reason, HasSubstr("allow_superuser"));
  EXPECT_TRUE(Exists(su_pid));

  // Allowed by the config, the server itself still refuses a role without superuser.
  auto allowed = Make("pg_terminate_backend", "{allow_superuser: true}");
  r = allowed->Run({{"pid", absl::StrCat(su_pid)}}, absl::Seconds(10));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.reason, HasSubstr("superuser"));
  EXPECT_TRUE(Exists(su_pid));

  // The agent's own session: the collector's connection, known by the pid it recorded.
  auto collector =
      NewPostgresCollector(YAML::Load("{dsn: '" + server_.Dsn("vigil") + "'}"), "agent.yaml");
  ASSERT_TRUE(collector.ok()) << collector.status();
  Collection collection;
  (*collector)->Collect(absl::Now(), collection);
  const int collector_pid = ParsePid(
      server_.Psql("SELECT pid FROM pg_stat_activity WHERE application_name = 'vigil-agent'")
          .stdout_text);
  ASSERT_GT(collector_pid, 0);
  EXPECT_TRUE(OwnBackends::Get().Contains(collector_pid));
  r = action->Run({{"pid", absl::StrCat(collector_pid)}}, absl::Seconds(10));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.reason, HasSubstr("one of the agent's own connections"));
  EXPECT_TRUE(Exists(collector_pid));

  // A session that merely claims to be the agent is an ordinary backend.
  pqxx::connection impostor(server_.Dsn("app") + " application_name=vigil-agent");
  const int impostor_pid = impostor.backendpid();
  r = action->Run({{"pid", absl::StrCat(impostor_pid)}}, absl::Seconds(10));
  EXPECT_EQ(r.exit_code, 0) << r.reason << "\n" << r.output_tail;
  EXPECT_TRUE(WaitUntil([&] { return !Exists(impostor_pid); }, absl::Seconds(10)));
  collector->reset();  // closes its connection and forgets its pid
  EXPECT_FALSE(OwnBackends::Get().Contains(collector_pid));

  // A background process of the server is not a client backend.
  const int checkpointer =
      ParsePid(server_.Psql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'")
                   .stdout_text);
  ASSERT_GT(checkpointer, 0);
  r = action->Run({{"pid", absl::StrCat(checkpointer)}}, absl::Seconds(10));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.reason, HasSubstr("not a client backend"));

  r = action->Run({{"pid", "999999"}}, absl::Seconds(10));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.reason, HasSubstr("pid 999999 is not a backend of this server"));
}

TEST_F(PostgresActionsTest, StoppedServerCostsOneTimeout) {
  auto action = Make("pg_terminate_backend");
  ASSERT_NE(action, nullptr);
  server_.process().Signal(SIGSTOP);
  const absl::Time start = absl::Now();
  ActionResult r = action->Run({{"pid", "12345"}}, absl::Seconds(2));
  const absl::Duration took = absl::Now() - start;
  server_.process().Signal(SIGCONT);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_LT(took, absl::Seconds(5));
}

// --- Redis --------------------------------------------------------------------------------------

TEST(RedisFlushdbActionTest, FlushesAListedDatabaseOnly) {
  testing::TempDir dir;
  testing::RedisServer redis(dir.path());
  ASSERT_TRUE(redis.ok()) << ReadFileOrEmpty(dir.File("redis.log"));
  ASSERT_EQ(redis.Cli({"set", "a", "1"}).stdout_text, "OK\n");
  ASSERT_EQ(redis.Cli({"set", "b", "2"}).stdout_text, "OK\n");
  ASSERT_EQ(redis.Cli({"-n", "1", "set", "c", "3"}).stdout_text, "OK\n");
  ActionFixture fixture;
  ActionContext context;
  context.redis_address = absl::StrCat("127.0.0.1:", redis.port());
  auto action = fixture.Make("actions:\n  redis_flushdb: {databases: [0]}\n", context);
  ASSERT_NE(action, nullptr);

  ActionResult r = action->Run({{"db", "0"}}, absl::Seconds(10));
  EXPECT_EQ(r.exit_code, 0) << r.reason << "\n" << r.output_tail;
  EXPECT_THAT(r.output_tail, HasSubstr("flushed db 0"));
  EXPECT_THAT(r.output_tail, HasSubstr("(2 keys)"));
  EXPECT_EQ(redis.Cli({"dbsize"}).stdout_text, "0\n");

  r = action->Run({{"db", "1"}}, absl::Seconds(10));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.reason, HasSubstr("redis_flushdb: db 1 is not allowed (allowed: 0)"));
  EXPECT_EQ(redis.Cli({"-n", "1", "dbsize"}).stdout_text, "1\n");

  redis.Stop();
  r = action->Run({{"db", "0"}}, absl::Seconds(2));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.reason, HasSubstr("cannot connect to Redis"));
}

}  // namespace
}  // namespace vigil::agent
