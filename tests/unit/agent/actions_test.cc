// Unit tests of the agent's typed actions (agent/actions/) with a fake CommandRunner: allow-lists,
// the service manager's argv, nginx validate-then-reload, upstream file edits and their rollback,
// path escapes of clean_old_logs, strict config errors; and the real process runner (exit codes,
// output bound, timeouts that kill the whole process group, programs that cannot start).
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "agent/actions/action.h"
#include "agent/actions/action_util.h"
#include "agent/actions/docker_prune.h"
#include "agent/actions/k8s.h"
#include "agent/actions/pg_maintenance.h"
#include "agent/actions/restart_service.h"
#include "agent/actions/set_nginx_upstream.h"
#include "common/yaml_util.h"
#include "tests/support/process.h"

namespace vigil::agent {
namespace {

using ::testing::HasSubstr;

// Records every command; answers with `handler` (exit 0 and no output by default).
class FakeRunner : public CommandRunner {
 public:
  absl::StatusOr<ProcessResult> Run(const std::vector<std::string>& argv,
                                    absl::Duration timeout) override {
    calls.push_back(argv);
    if (handler) {
      return handler(argv);
    }
    return ProcessResult{0, false, ""};
  }

  std::vector<std::vector<std::string>> calls;
  std::function<absl::StatusOr<ProcessResult>(const std::vector<std::string>&)> handler;
};

using ::vigil::testing::TempDir;

void Write(const std::string& path, absl::string_view content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
}

std::string Read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void MakeOld(const std::string& path, absl::Duration age) {
  const timespec when = absl::ToTimespec(absl::Now() - age);
  const timespec times[2] = {when, when};
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW), 0) << path;
}

class ActionsTest : public ::testing::Test {
 protected:
  ActionsTest() { RegisterBuiltinActions(registry_); }

  // Builds the actions of an agent config text (its `actions` and `service_manager` keys).
  absl::StatusOr<std::vector<std::unique_ptr<Action>>> Build(const std::string& text) {
    absl::StatusOr<YAML::Node> root = LoadYamlString(text, "agent.yaml");
    if (!root.ok()) {
      return root.status();
    }
    ActionContext context;
    context.runner = &runner_;
    context.postgres_dsn = postgres_dsn_;
    context.redis_address = redis_address_;
    if ((*root)["service_manager"].IsDefined()) {
      context.service_manager = (*root)["service_manager"];
    }
    return BuildActions((*root)["actions"], registry_, context, "agent.yaml");
  }

  // The one action a config text builds.
  std::unique_ptr<Action> One(const std::string& text) {
    auto actions = Build(text);
    EXPECT_TRUE(actions.ok()) << actions.status();
    if (!actions.ok() || actions->size() != 1) {
      ADD_FAILURE() << "expected one action";
      return nullptr;
    }
    return std::move(actions->front());
  }

  absl::Status Error(const std::string& text) { return Build(text).status(); }

  ActionRegistry registry_;
  FakeRunner runner_;
  std::string postgres_dsn_ = "host=127.0.0.1 port=5432 user=vigil dbname=postgres";
  std::string redis_address_ = "127.0.0.1:6379";
};

// --- config -------------------------------------------------------------------------------------

TEST_F(ActionsTest, BuildsEveryListedAction) {
  auto actions = Build(
      "actions:\n"
      "  restart_service: {units: [\"azalscore\", \"azalscore@*\"]}\n"
      "  reload_nginx: {config: /etc/nginx/nginx.conf, nginx: /usr/sbin/nginx}\n"
      "  set_nginx_upstream: {upstreams_file: /etc/nginx/conf.d/upstreams.conf}\n"
      "  pg_terminate_backend: {allow_superuser: false}\n"
      "  pg_cancel_backend: {}\n"
      "  logrotate: {configs: [/etc/logrotate.conf]}\n"
      "  clean_old_logs: {dirs: [/var/log/app]}\n"
      "  redis_flushdb: {databases: [0]}\n"
      "service_manager: systemd\n");
  ASSERT_TRUE(actions.ok()) << actions.status();
  std::vector<std::string> names;
  for (const auto& a : *actions) {
    names.emplace_back(a->name());
  }
  EXPECT_EQ(names,
            (std::vector<std::string>{"restart_service", "reload_nginx", "set_nginx_upstream",
                                      "pg_terminate_backend", "pg_cancel_backend", "logrotate",
                                      "clean_old_logs", "redis_flushdb"}));
}

TEST_F(ActionsTest, NoActionsKeyBuildsNone) {
  auto actions = Build("id: a\n");
  ASSERT_TRUE(actions.ok()) << actions.status();
  EXPECT_TRUE(actions->empty());
}

TEST_F(ActionsTest, UnknownActionNamesFileLineAndKey) {
  absl::Status s = Error("actions:\n  restart_service: {units: [a]}\n  reboot: {}\n");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("agent.yaml:3"));
  EXPECT_THAT(s.message(), HasSubstr("unknown action 'reboot'"));
  EXPECT_THAT(s.message(), HasSubstr("restart_service"));  // the known ones are listed
}

TEST_F(ActionsTest, UnknownOptionNamesFileLineAndKey) {
  absl::Status s = Error("actions:\n  restart_service:\n    units: [a]\n    colour: red\n");
  EXPECT_THAT(s.message(), HasSubstr("agent.yaml:4"));
  EXPECT_THAT(s.message(), HasSubstr("'colour'"));
  EXPECT_THAT(s.message(), HasSubstr("actions.restart_service"));
}

TEST_F(ActionsTest, RequiredAndEmptyOptionsAreRefused) {
  absl::Status s = Error("id: a\nactions:\n  restart_service: {}\n");
  EXPECT_THAT(s.message(), HasSubstr("agent.yaml:3"));
  EXPECT_THAT(s.message(), HasSubstr("actions.restart_service.units"));
  s = Error("actions:\n  clean_old_logs:\n    dirs: []\n");
  EXPECT_THAT(s.message(), HasSubstr("agent.yaml:3"));
  EXPECT_THAT(s.message(), HasSubstr("actions.clean_old_logs.dirs: must not be empty"));
  s = Error("actions:\n  clean_old_logs:\n    dirs: [var/log]\n");
  EXPECT_THAT(s.message(), HasSubstr("agent.yaml:3"));
  EXPECT_THAT(s.message(), HasSubstr("absolute"));
  s = Error("actions:\n  redis_flushdb:\n    databases: [zero]\n");
  EXPECT_THAT(s.message(), HasSubstr("agent.yaml:3"));
  EXPECT_THAT(s.message(), HasSubstr("'zero' is not a database number"));
}

TEST_F(ActionsTest, WrongOptionTypesAreRefused) {
  absl::Status s = Error("actions:\n  reload_nginx:\n    config: nginx.conf\n");
  EXPECT_THAT(s.message(), HasSubstr("agent.yaml:3"));
  EXPECT_THAT(s.message(), HasSubstr("actions.reload_nginx.config"));
  s = Error("actions:\n  pg_terminate_backend:\n    allow_superuser: maybe\n");
  EXPECT_THAT(s.message(), HasSubstr("agent.yaml:3"));
  EXPECT_THAT(s.message(), HasSubstr("allow_superuser"));
  s = Error("actions:\n  restart_service: [a, b]\n");
  EXPECT_THAT(s.message(), HasSubstr("agent.yaml:2"));
  EXPECT_THAT(s.message(), HasSubstr("must be a map"));
  s = Error("actions: [restart_service]\n");
  EXPECT_THAT(s.message(), HasSubstr("'actions' must be a map"));
}

TEST_F(ActionsTest, DatabaseActionsNeedTheirCollector) {
  postgres_dsn_.clear();
  redis_address_.clear();
  absl::Status s = Error("actions:\n  pg_terminate_backend: {}\n");
  EXPECT_THAT(s.message(), HasSubstr("agent.yaml:2"));
  EXPECT_THAT(s.message(), HasSubstr("collectors.postgres"));
  s = Error("actions:\n  redis_flushdb: {databases: [0]}\n");
  EXPECT_THAT(s.message(), HasSubstr("agent.yaml:2"));
  EXPECT_THAT(s.message(), HasSubstr("collectors.redis"));
}

TEST_F(ActionsTest, BadServiceManagerIsRefused) {
  const std::string actions = "actions:\n  restart_service: {units: [a]}\n";
  absl::Status s = Error(actions + "service_manager: upstart\n");
  EXPECT_THAT(s.message(), HasSubstr("agent.yaml:3"));
  EXPECT_THAT(s.message(), HasSubstr("'upstart' is not known"));
  s = Error(actions + "service_manager:\n  restart: supervisorctl restart\n");
  EXPECT_THAT(s.message(), HasSubstr("agent.yaml:4"));
  EXPECT_THAT(s.message(), HasSubstr("must contain {unit}"));
  s = Error(actions + "service_manager:\n  restart: sv restart {unit}\n  stop: sv stop {unit}\n");
  EXPECT_THAT(s.message(), HasSubstr("agent.yaml:5"));
  EXPECT_THAT(s.message(), HasSubstr("'stop'"));
}

// --- restart_service ----------------------------------------------------------------------------

TEST_F(ActionsTest, RestartServiceAllowListGlobs) {
  auto action = One("actions:\n  restart_service: {units: [\"azalscore\", \"azalscore@*\"]}\n");
  ASSERT_NE(action, nullptr);
  EXPECT_TRUE(action->Check({{"unit", "azalscore"}}).ok());
  EXPECT_TRUE(action->Check({{"unit", "azalscore@2"}}).ok());
  absl::Status s = action->Check({{"unit", "sshd"}});
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(s.message(),
            "restart_service: unit 'sshd' is not allowed (allowed: azalscore, azalscore@*)");
  EXPECT_FALSE(action->Check({{"unit", "azalscore-old"}}).ok());
  EXPECT_FALSE(action->Check({{"unit", "azalscore@1; reboot"}}).ok());
  EXPECT_FALSE(action->Check({{"unit", "--force"}}).ok());
  EXPECT_THAT(action->Check({}).message(), HasSubstr("missing parameter 'unit'"));
  EXPECT_THAT(action->Check({{"unit", "azalscore"}, {"force", "yes"}}).message(),
              HasSubstr("unknown parameter 'force'"));

  ActionResult refused = action->Run({{"unit", "sshd"}}, absl::Seconds(10));
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_THAT(refused.reason, HasSubstr("not allowed"));
  EXPECT_TRUE(runner_.calls.empty()) << "nothing runs for a refused unit";
}

TEST_F(ActionsTest, RestartServiceUsesSystemdByDefault) {
  auto action = One("actions:\n  restart_service: {units: [\"azalscore@*\"]}\n");
  ActionResult r = action->Run({{"unit", "azalscore@2"}}, absl::Seconds(10));
  EXPECT_EQ(r.exit_code, 0) << r.reason;
  ASSERT_EQ(runner_.calls.size(), 1u);
  EXPECT_EQ(runner_.calls[0], (std::vector<std::string>{"systemctl", "restart", "azalscore@2"}));
  EXPECT_THAT(r.output_tail, HasSubstr("$ systemctl restart azalscore@2"));
}

TEST_F(ActionsTest, RestartServiceTemplateIsSplitAndSubstituted) {
  auto action = One(
      "actions:\n  restart_service: {units: [\"worker*\"]}\n"
      "service_manager: {restart: \"supervisorctl -c /etc/supervisor.conf  restart {unit}\"}\n");
  EXPECT_EQ(action->Run({{"unit", "worker1"}}, absl::Seconds(10)).exit_code, 0);
  ASSERT_EQ(runner_.calls.size(), 1u);
  EXPECT_EQ(runner_.calls[0],
            (std::vector<std::string>{"supervisorctl", "-c", "/etc/supervisor.conf", "restart",
                                      "worker1"}));
  // Inside an argument, and as a list (for arguments with spaces).
  auto s6 =
      One("actions:\n  restart_service: {units: [\"worker*\"]}\n"
          "service_manager: {restart: [s6-svc, -r, \"/run/service/{unit}\"]}\n");
  EXPECT_EQ(s6->Run({{"unit", "worker2"}}, absl::Seconds(10)).exit_code, 0);
  ASSERT_EQ(runner_.calls.size(), 2u);
  EXPECT_EQ(runner_.calls[1], (std::vector<std::string>{"s6-svc", "-r", "/run/service/worker2"}));
  EXPECT_EQ(RestartArgv({"sv", "restart", "{unit}-{unit}"}, "a"),
            (std::vector<std::string>{"sv", "restart", "a-a"}));
}

TEST_F(ActionsTest, RestartServiceReportsExitCodeTimeoutAndMissingProgram) {
  auto action = One("actions:\n  restart_service: {units: [\"*\"]}\n");
  runner_.handler = [](const std::vector<std::string>&) -> absl::StatusOr<ProcessResult> {
    return ProcessResult{5, false, "Failed to restart x.service: Unit x.service not found.\n"};
  };
  ActionResult r = action->Run({{"unit", "x"}}, absl::Seconds(10));
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_THAT(r.reason, HasSubstr("systemctl restart x failed (exit 5): Failed to restart"));
  EXPECT_THAT(r.output_tail, HasSubstr("Unit x.service not found."));

  runner_.handler = [](const std::vector<std::string>&) -> absl::StatusOr<ProcessResult> {
    return ProcessResult{-1, true, ""};
  };
  r = action->Run({{"unit", "x"}}, absl::Seconds(10));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.reason, HasSubstr("timed out after 10s"));

  runner_.handler = [](const std::vector<std::string>&) -> absl::StatusOr<ProcessResult> {
    return absl::NotFoundError("cannot run 'systemctl': No such file or directory");
  };
  r = action->Run({{"unit", "x"}}, absl::Seconds(10));
  EXPECT_EQ(r.exit_code, 127);
  EXPECT_THAT(r.reason, HasSubstr("cannot run"));

  runner_.handler = [](const std::vector<std::string>&) -> absl::StatusOr<ProcessResult> {
    return ProcessResult{1, false, std::string(100000, 'x') + "the end\n"};
  };
  r = action->Run({{"unit", "x"}}, absl::Seconds(10));
  EXPECT_LE(r.output_tail.size(), 4096u);
  EXPECT_THAT(r.output_tail, HasSubstr("the end"));
}

// --- reload_nginx -------------------------------------------------------------------------------

TEST_F(ActionsTest, ReloadNginxReloadsOnlyWhenTheTestPasses) {
  auto action = One("actions:\n  reload_nginx: {config: /srv/nginx.conf, nginx: /opt/nginx}\n");
  runner_.handler = [](const std::vector<std::string>& argv) -> absl::StatusOr<ProcessResult> {
    if (argv[1] == "-t") {
      return ProcessResult{1, false, "nginx: [emerg] unknown directive \"sever\"\n"};
    }
    return ProcessResult{0, false, ""};
  };
  ActionResult r = action->Run({}, absl::Seconds(10));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.reason, HasSubstr("nginx -t"));
  EXPECT_THAT(r.reason, HasSubstr("unknown directive"));
  ASSERT_EQ(runner_.calls.size(), 1u) << "no reload after a failed test";
  EXPECT_EQ(runner_.calls[0],
            (std::vector<std::string>{"/opt/nginx", "-t", "-c", "/srv/nginx.conf"}));

  runner_.handler = nullptr;
  r = action->Run({}, absl::Seconds(10));
  EXPECT_EQ(r.exit_code, 0) << r.reason;
  ASSERT_EQ(runner_.calls.size(), 3u);
  EXPECT_EQ(runner_.calls[2],
            (std::vector<std::string>{"/opt/nginx", "-s", "reload", "-c", "/srv/nginx.conf"}));
}

TEST_F(ActionsTest, ReloadNginxDefaults) {
  auto action = One("actions:\n  reload_nginx: {}\n");
  EXPECT_EQ(action->Run({}, absl::Seconds(10)).exit_code, 0);
  ASSERT_EQ(runner_.calls.size(), 2u);
  EXPECT_EQ(runner_.calls[0],
            (std::vector<std::string>{"/usr/sbin/nginx", "-t", "-c", "/etc/nginx/nginx.conf"}));
}

// --- set_nginx_upstream: the file edits ----------------------------------------------------------

constexpr char kUpstreams[] =
    "# managed by vigil\n"
    "upstream api_backend {\n"
    "    least_conn;\n"
    "    server 127.0.0.1:8081;\n"
    "    server 127.0.0.1:8082 weight=2;  # the big one\n"
    "}\n"
    "\n"
    "upstream app {\n"
    "    server 127.0.0.1:9000;\n"
    "}\n";

TEST(UpstreamsFileTest, AddAppendsAfterTheLastServer) {
  auto edited =
      EditUpstreamsFile(kUpstreams, "api_backend", "127.0.0.1:8083", UpstreamChange::kAdd);
  ASSERT_TRUE(edited.ok()) << edited.status();
  EXPECT_EQ(*edited,
            "# managed by vigil\n"
            "upstream api_backend {\n"
            "    least_conn;\n"
            "    server 127.0.0.1:8081;\n"
            "    server 127.0.0.1:8082 weight=2;  # the big one\n"
            "    server 127.0.0.1:8083;\n"
            "}\n"
            "\n"
            "upstream app {\n"
            "    server 127.0.0.1:9000;\n"
            "}\n");
  auto again = EditUpstreamsFile(*edited, "api_backend", "127.0.0.1:8083", UpstreamChange::kAdd);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(again.status().message(), HasSubstr("already in upstream 'api_backend'"));
}

TEST(UpstreamsFileTest, RemoveDeletesTheLine) {
  auto edited =
      EditUpstreamsFile(kUpstreams, "api_backend", "127.0.0.1:8082", UpstreamChange::kRemove);
  ASSERT_TRUE(edited.ok()) << edited.status();
  EXPECT_FALSE(absl::StrContains(*edited, "8082"));
  EXPECT_TRUE(absl::StrContains(*edited, "    server 127.0.0.1:8081;\n}\n"));
  EXPECT_THAT(
      EditUpstreamsFile(kUpstreams, "api_backend", "127.0.0.1:9999", UpstreamChange::kRemove)
          .status()
          .message(),
      HasSubstr("server 127.0.0.1:9999 is not in upstream 'api_backend'"));
  EXPECT_THAT(EditUpstreamsFile(kUpstreams, "app", "127.0.0.1:9000", UpstreamChange::kRemove)
                  .status()
                  .message(),
              HasSubstr("would leave upstream 'app' with no server up"));
}

TEST(UpstreamsFileTest, DrainMarksDownAndAddPutsBack) {
  auto drained =
      EditUpstreamsFile(kUpstreams, "api_backend", "127.0.0.1:8082", UpstreamChange::kDrain);
  ASSERT_TRUE(drained.ok()) << drained.status();
  EXPECT_TRUE(
      absl::StrContains(*drained, "    server 127.0.0.1:8082 weight=2 down; # the big one\n"))
      << *drained;
  // Already drained: nothing changes.
  EXPECT_EQ(*EditUpstreamsFile(*drained, "api_backend", "127.0.0.1:8082", UpstreamChange::kDrain),
            *drained);
  // The last server up cannot be drained.
  EXPECT_THAT(
      EditUpstreamsFile(*drained, "api_backend", "127.0.0.1:8081", UpstreamChange::kDrain)
          .status()
          .message(),
      HasSubstr("draining 127.0.0.1:8081 would leave upstream 'api_backend' with no server up"));
  auto back = EditUpstreamsFile(*drained, "api_backend", "127.0.0.1:8082", UpstreamChange::kAdd);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(absl::StrContains(*back, "    server 127.0.0.1:8082 weight=2; # the big one\n"));
}

TEST(UpstreamsFileTest, ReadsTheFileTheTestNginxWrites) {
  const std::string text = "upstream app {\n    server 127.0.0.1:4242;\n}\n";
  auto edited = EditUpstreamsFile(text, "app", "127.0.0.1:4243", UpstreamChange::kAdd);
  ASSERT_TRUE(edited.ok()) << edited.status();
  EXPECT_EQ(*edited, "upstream app {\n    server 127.0.0.1:4242;\n    server 127.0.0.1:4243;\n}\n");
}

TEST(UpstreamsFileTest, UnknownUpstreamAndForeignFilesAreRefused) {
  EXPECT_THAT(
      EditUpstreamsFile(kUpstreams, "web", "127.0.0.1:1", UpstreamChange::kAdd).status().message(),
      HasSubstr("upstream 'web' is not in the file (upstreams there: api_backend, app)"));
  for (const char* text : {
           "server { listen 80; }\n",
           "upstream app {\n    server 127.0.0.1:1; server 127.0.0.1:2;\n}\n",
           "upstream app {\n    server 127.0.0.1:1;\n",
           "upstream app\n{\n    server 127.0.0.1:1;\n}\n",
       }) {
    auto edited = EditUpstreamsFile(text, "app", "127.0.0.1:3", UpstreamChange::kAdd);
    EXPECT_EQ(edited.status().code(), absl::StatusCode::kFailedPrecondition) << text;
    EXPECT_THAT(edited.status().message(), HasSubstr("not in the managed format")) << text;
  }
}

// --- set_nginx_upstream: the action -------------------------------------------------------------

class SetNginxUpstreamTest : public ActionsTest {
 protected:
  void SetUp() override {
    Write(file_, kUpstreams);
    action_ = One(absl::StrCat("actions:\n  set_nginx_upstream:\n    upstreams_file: ", file_,
                               "\n    config: /srv/nginx.conf\n    nginx: nginx\n"
                               "    upstreams: [api_backend]\n"));
    ASSERT_NE(action_, nullptr);
  }

  ActionResult Set(const std::string& server, const std::string& state,
                   const std::string& upstream = "api_backend") {
    return action_->Run({{"upstream", upstream}, {"server", server}, {"state", state}},
                        absl::Seconds(10));
  }

  TempDir dir_;
  std::string file_ = dir_.File("upstreams.conf");
  std::unique_ptr<Action> action_;
};

TEST_F(SetNginxUpstreamTest, EditsValidatesAndReloads) {
  std::string seen_by_test;
  runner_.handler = [&](const std::vector<std::string>& argv) -> absl::StatusOr<ProcessResult> {
    if (argv[1] == "-t") {
      seen_by_test = Read(file_);
    }
    return ProcessResult{0, false, ""};
  };
  ActionResult r = Set("127.0.0.1:8083", "add");
  EXPECT_EQ(r.exit_code, 0) << r.reason;
  ASSERT_EQ(runner_.calls.size(), 2u);
  EXPECT_EQ(runner_.calls[0], (std::vector<std::string>{"nginx", "-t", "-c", "/srv/nginx.conf"}));
  EXPECT_EQ(runner_.calls[1],
            (std::vector<std::string>{"nginx", "-s", "reload", "-c", "/srv/nginx.conf"}));
  EXPECT_THAT(seen_by_test, HasSubstr("server 127.0.0.1:8083;")) << "nginx -t checks the new file";
  EXPECT_THAT(Read(file_), HasSubstr("server 127.0.0.1:8083;"));

  EXPECT_EQ(Set("127.0.0.1:8081", "drain").exit_code, 0);
  EXPECT_THAT(Read(file_), HasSubstr("server 127.0.0.1:8081 down;"));
  EXPECT_EQ(Set("127.0.0.1:8082", "remove").exit_code, 0);
  EXPECT_FALSE(absl::StrContains(Read(file_), "8082"));
  // No temp files are left behind.
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir_.path())) {
    ++files;
    EXPECT_EQ(entry.path().filename(), "upstreams.conf");
  }
  EXPECT_EQ(files, 1);
}

TEST_F(SetNginxUpstreamTest, FailedValidationRestoresTheFile) {
  std::string seen_by_test;
  runner_.handler = [&](const std::vector<std::string>& argv) -> absl::StatusOr<ProcessResult> {
    if (argv[1] == "-t") {
      seen_by_test = Read(file_);
      return ProcessResult{1, false,
                           "nginx: [emerg] invalid port in upstream \"127.0.0.1:8083\"\n"
                           "nginx: configuration file /srv/nginx.conf test failed\n"};
    }
    return ProcessResult{0, false, ""};
  };
  ActionResult r = Set("127.0.0.1:8083", "add");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.reason, HasSubstr("nginx -t -c /srv/nginx.conf failed (exit 1)"));
  EXPECT_THAT(r.reason, HasSubstr("restored the previous"));
  EXPECT_THAT(r.output_tail, HasSubstr("invalid port in upstream"));
  EXPECT_THAT(seen_by_test, HasSubstr("127.0.0.1:8083"));
  EXPECT_EQ(Read(file_), kUpstreams) << "restored byte for byte";
  EXPECT_EQ(runner_.calls.size(), 1u) << "no reload after a failed test";
}

TEST_F(SetNginxUpstreamTest, FailedReloadRestoresTheFile) {
  runner_.handler = [&](const std::vector<std::string>& argv) -> absl::StatusOr<ProcessResult> {
    if (argv[1] == "-s") {
      return ProcessResult{1, false,
                           "nginx: [error] invalid PID number \"\" in \"/run/nginx.pid\"\n"};
    }
    return ProcessResult{0, false, ""};
  };
  ActionResult r = Set("127.0.0.1:8081", "drain");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.reason, HasSubstr("reload"));
  EXPECT_THAT(r.reason, HasSubstr("restored the previous"));
  EXPECT_EQ(Read(file_), kUpstreams);
}

TEST_F(SetNginxUpstreamTest, RefusalsRunNothing) {
  ActionResult r = Set("127.0.0.1:8081", "add");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.reason, HasSubstr("already in upstream 'api_backend'"));
  r = Set("127.0.0.1:1", "add", "app");
  EXPECT_THAT(r.reason, HasSubstr("upstream 'app' is not allowed (allowed: api_backend)"));
  EXPECT_THAT(action_
                  ->Check({{"upstream", "api_backend"},
                           {"server", "127.0.0.1:1; include /etc/passwd"},
                           {"state", "add"}})
                  .message(),
              HasSubstr("is not a valid address"));
  EXPECT_THAT(
      action_->Check({{"upstream", "api_backend"}, {"server", "a:1"}, {"state", "up"}}).message(),
      HasSubstr("'state'"));
  EXPECT_TRUE(runner_.calls.empty());
  EXPECT_EQ(Read(file_), kUpstreams);
}

TEST_F(SetNginxUpstreamTest, UnixSocketsOnlyWhenListed) {
  ActionResult r = Set("unix:/run/postgresql/.s.PGSQL.5432", "add");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.reason, HasSubstr("is a unix socket not listed in the action's config (no "
                                  "unix_sockets are allowed)"));
  EXPECT_EQ(
      action_
          ->Check({{"upstream", "api_backend"}, {"server", "UNIX:/run/x.sock"}, {"state", "add"}})
          .code(),
      absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(runner_.calls.empty());
  EXPECT_EQ(Read(file_), kUpstreams);

  auto listed = One(absl::StrCat("actions:\n  set_nginx_upstream:\n    upstreams_file: ", file_,
                                 "\n    config: /srv/nginx.conf\n    nginx: nginx\n"
                                 "    unix_sockets: [/run/api.sock]\n"));
  ASSERT_NE(listed, nullptr);
  EXPECT_TRUE(
      listed
          ->Check({{"upstream", "api_backend"}, {"server", "unix:/run/api.sock"}, {"state", "add"}})
          .ok());
  absl::Status other = listed->Check(
      {{"upstream", "api_backend"}, {"server", "unix:/run/other.sock"}, {"state", "add"}});
  EXPECT_EQ(other.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(other.message(), HasSubstr("allowed: /run/api.sock"));
  EXPECT_THAT(Error("actions:\n  set_nginx_upstream: {unix_sockets: [run/api.sock]}\n").message(),
              HasSubstr("not an absolute socket path"));
}

// --- logrotate ----------------------------------------------------------------------------------

TEST_F(ActionsTest, LogrotateForcesAnAllowedConfig) {
  auto action =
      One("actions:\n  logrotate:\n    configs: [/etc/logrotate.d/app, /etc/logrotate.conf]\n"
          "    state: /var/lib/vigil/logrotate.status\n");
  EXPECT_EQ(action->Run({}, absl::Seconds(10)).exit_code, 0);
  EXPECT_EQ(action->Run({{"config", "/etc/logrotate.conf"}}, absl::Seconds(10)).exit_code, 0);
  ASSERT_EQ(runner_.calls.size(), 2u);
  EXPECT_EQ(runner_.calls[0],
            (std::vector<std::string>{"/usr/sbin/logrotate", "-f", "-s",
                                      "/var/lib/vigil/logrotate.status", "/etc/logrotate.d/app"}));
  EXPECT_EQ(runner_.calls[1].back(), "/etc/logrotate.conf");
  absl::Status s = action->Check({{"config", "/tmp/evil.conf"}});
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(s.message(), HasSubstr("logrotate: config '/tmp/evil.conf' is not allowed"));
}

TEST_F(ActionsTest, RedisFlushdbRefusesUnlistedDatabases) {
  auto action = One("actions:\n  redis_flushdb: {databases: [0, 2]}\n");
  EXPECT_TRUE(action->Check({{"db", "2"}}).ok());
  absl::Status s = action->Check({{"db", "1"}});
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(s.message(), "redis_flushdb: db 1 is not allowed (allowed: 0, 2)");
}

TEST_F(ActionsTest, PgBackendChecksThePid) {
  auto action = One("actions:\n  pg_cancel_backend: {}\n");
  EXPECT_TRUE(action->Check({{"pid", "1234"}}).ok());
  EXPECT_FALSE(action->Check({{"pid", "0"}}).ok());
  EXPECT_FALSE(action->Check({{"pid", "-3"}}).ok());
  EXPECT_FALSE(action->Check({{"pid", "99999999999"}}).ok());
}

// --- clean_old_logs -----------------------------------------------------------------------------

class CleanOldLogsTest : public ActionsTest {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(logs_);
    std::filesystem::create_directories(outside_);
    action_ = One(absl::StrCat("actions:\n  clean_old_logs: {dirs: [", logs_, "]}\n"));
    ASSERT_NE(action_, nullptr);
  }
  std::string OldFile(const std::string& path, size_t size = 10) {
    Write(path, std::string(size, 'x'));
    MakeOld(path, absl::Hours(24 * 10));
    return path;
  }
  ActionParams Params(const std::string& dir, const std::string& older_than = "7d") {
    return {{"dir", dir}, {"older_than", older_than}};
  }

  TempDir dir_;
  std::string logs_ = dir_.File("logs");
  std::string outside_ = dir_.File("outside");
  std::unique_ptr<Action> action_;
};

TEST_F(CleanOldLogsTest, RemovesOldRotatedFilesOnly) {
  OldFile(logs_ + "/app.log.1", 100);
  OldFile(logs_ + "/app.log.2.gz", 50);
  OldFile(logs_ + "/app.log");                                    // the live log: no match
  OldFile(logs_ + "/.hidden.log.1");                              // dot files never match
  Write(logs_ + "/app.log.3", "recent");                          // too young
  std::filesystem::create_directories(logs_ + "/archive.log.1");  // not a regular file
  OldFile(outside_ + "/secret.log.1");
  std::filesystem::create_symlink(outside_ + "/secret.log.1", logs_ + "/link.log.1");
  MakeOld(logs_ + "/link.log.1", absl::Hours(24 * 10));

  ActionResult r = action_->Run(Params(logs_), absl::Seconds(10));
  EXPECT_EQ(r.exit_code, 0) << r.reason;
  EXPECT_THAT(r.output_tail, HasSubstr("removed 2 files, 150 bytes"));
  EXPECT_FALSE(std::filesystem::exists(logs_ + "/app.log.1"));
  EXPECT_FALSE(std::filesystem::exists(logs_ + "/app.log.2.gz"));
  EXPECT_TRUE(std::filesystem::exists(logs_ + "/app.log"));
  EXPECT_TRUE(std::filesystem::exists(logs_ + "/.hidden.log.1"));
  EXPECT_TRUE(std::filesystem::exists(logs_ + "/app.log.3"));
  EXPECT_TRUE(std::filesystem::exists(logs_ + "/archive.log.1"));
  EXPECT_TRUE(std::filesystem::is_symlink(logs_ + "/link.log.1"));
  EXPECT_TRUE(std::filesystem::exists(outside_ + "/secret.log.1"));

  // An explicit pattern.
  OldFile(logs_ + "/trace.txt");
  r = action_->Run({{"dir", logs_}, {"older_than", "7d"}, {"pattern", "*.txt"}}, absl::Seconds(10));
  EXPECT_EQ(r.exit_code, 0) << r.reason;
  EXPECT_FALSE(std::filesystem::exists(logs_ + "/trace.txt"));
  EXPECT_TRUE(std::filesystem::exists(logs_ + "/app.log"));
}

TEST_F(CleanOldLogsTest, PathEscapesAreRefused) {
  OldFile(outside_ + "/secret.log.1");
  // A `..` escape.
  absl::Status s = action_->Check(Params(logs_ + "/../outside"));
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(s.message(), HasSubstr("is not inside an allowed directory"));
  EXPECT_THAT(s.message(), HasSubstr(absl::StrCat("resolves to ", outside_)));
  // A symlink inside the allowed directory that leads out of it.
  std::filesystem::create_directory_symlink(outside_, logs_ + "/escape");
  s = action_->Check(Params(logs_ + "/escape"));
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(s.message(), HasSubstr(absl::StrCat("(allowed: ", logs_, ")")));
  // A sibling whose name starts like the allowed one.
  std::filesystem::create_directories(logs_ + "2");
  EXPECT_EQ(action_->Check(Params(logs_ + "2")).code(), absl::StatusCode::kPermissionDenied);
  // Relative paths.
  EXPECT_FALSE(action_->Check(Params("logs")).ok());

  ActionResult r = action_->Run(Params(logs_ + "/escape"), absl::Seconds(10));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(std::filesystem::exists(outside_ + "/secret.log.1"));

  // A real subdirectory is inside.
  std::filesystem::create_directories(logs_ + "/sub");
  EXPECT_TRUE(action_->Check(Params(logs_ + "/sub")).ok());
  EXPECT_TRUE(action_->Check(Params(logs_ + "/sub/..")).ok());
}

TEST_F(CleanOldLogsTest, LimitsOnAgeAndPattern) {
  absl::Status s = action_->Check(Params(logs_, "5m"));
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(s.message(), HasSubstr("older_than 5m is below the limit 1h (min_age)"));
  EXPECT_FALSE(action_->Check({{"dir", logs_}, {"older_than", "7d"}, {"pattern", "../*"}}).ok());
  EXPECT_FALSE(action_->Check(Params(logs_, "soon")).ok());
  EXPECT_FALSE(action_->Check(Params(logs_ + "/missing")).ok());
}

// --- the process runner -------------------------------------------------------------------------

bool GoneOrZombie(pid_t pid) {
  if (kill(pid, 0) != 0) {
    return true;
  }
  std::string stat = Read(absl::StrCat("/proc/", pid, "/stat"));
  const size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z';
}

bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() > deadline) {
      return false;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

TEST(ProcessRunnerTest, ExitCodesAndOutput) {
  auto runner = NewProcessRunner();
  auto r = runner->Run({"sh", "-c", "echo out; echo err >&2; exit 3"}, absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_FALSE(r->timed_out);
  EXPECT_THAT(r->output, HasSubstr("out\n"));
  EXPECT_THAT(r->output, HasSubstr("err\n"));
  r = runner->Run({"true"}, absl::Seconds(10));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_code, 0);
  r = runner->Run({"sh", "-c", "kill -9 $$"}, absl::Seconds(10));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_code, -1) << "killed by a signal";
  EXPECT_FALSE(r->timed_out);
  // No shell: metacharacters are plain arguments.
  r = runner->Run({"echo", "a;", "$(id)", "|", "b"}, absl::Seconds(10));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->output, "a; $(id) | b\n");
}

TEST(ProcessRunnerTest, OutputKeepsTheTail) {
  auto runner = NewProcessRunner(1000);
  auto r = runner->Run({"sh", "-c", "head -c 200000 /dev/zero | tr '\\0' a; echo; echo END"},
                       absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->output.size(), 1000u);
  EXPECT_TRUE(absl::EndsWith(r->output, "aaa\nEND\n"));
}

TEST(ProcessRunnerTest, TimeoutKillsTheWholeProcessGroupQuickly) {
  auto runner = NewProcessRunner();
  const absl::Time start = absl::Now();
  // The shell starts a `sleep 30` of its own that also holds the output pipe.
  auto r = runner->Run({"sh", "-c", "sleep 30 & echo $!; sleep 30"}, absl::Milliseconds(300));
  const absl::Duration took = absl::Now() - start;
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->timed_out);
  EXPECT_EQ(r->exit_code, -1);
  EXPECT_LT(took, absl::Seconds(3));
  pid_t grandchild = 0;
  ASSERT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(r->output), &grandchild)) << r->output;
  EXPECT_TRUE(WaitFor([&] { return GoneOrZombie(grandchild); }, absl::Seconds(5)))
      << "the background sleep was killed with the group";
}

TEST(ProcessRunnerTest, DoesNotWaitForChildrenLeftBehind) {
  auto runner = NewProcessRunner();
  const absl::Time start = absl::Now();
  auto r = runner->Run({"sh", "-c", "sleep 20 & echo $!"}, absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  EXPECT_EQ(r->exit_code, 0);
  pid_t left = 0;
  ASSERT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(r->output), &left)) << r->output;
  kill(left, SIGKILL);
}

TEST(ProcessRunnerTest, MissingProgramIsAnError) {
  auto runner = NewProcessRunner();
  auto r = runner->Run({"/nonexistent/vigil-no-such-program"}, absl::Seconds(5));
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("No such file or directory"));
  EXPECT_FALSE(runner->Run({"vigil-no-such-program-in-path"}, absl::Seconds(5)).ok());
  EXPECT_FALSE(runner->Run({}, absl::Seconds(5)).ok());
}

TEST(ActionUtilTest, TailStartsOnACharacter) {
  EXPECT_EQ(Tail("hello", 10), "hello");
  EXPECT_EQ(Tail("hello", 3), "llo");
  EXPECT_EQ(Tail("a\xc3\xa9z", 2), "z");  // never half of "é"
}

// --- drop_caches, journal_vacuum ----------------------------------------------------------------

TEST_F(ActionsTest, DropCachesSyncsThenWritesThreeToTheConfiguredFile) {
  TempDir dir;
  const std::string standin = dir.File("drop_caches");
  Write(standin, "0\n");
  auto action = One(absl::StrCat("actions:\n  drop_caches: {path: ", standin, "}\n"));
  ASSERT_NE(action, nullptr);
  ActionResult r = action->Run({}, absl::Seconds(5));
  EXPECT_EQ(r.exit_code, 0) << r.reason;
  ASSERT_EQ(runner_.calls.size(), 1u);
  EXPECT_EQ(runner_.calls[0], (std::vector<std::string>{"sync"}));
  EXPECT_EQ(Read(standin), "3\n");
  EXPECT_THAT(r.output_tail, HasSubstr(absl::StrCat("$ echo 3 > ", standin)));

  // A failed sync writes nothing.
  Write(standin, "0\n");
  runner_.handler = [](const std::vector<std::string>&) -> absl::StatusOr<ProcessResult> {
    return ProcessResult{1, false, "sync: error syncing\n"};
  };
  r = action->Run({}, absl::Seconds(5));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.reason, HasSubstr("sync failed (exit 1)"));
  EXPECT_EQ(Read(standin), "0\n");

  // The file is never created: a wrong path fails, naming it.
  runner_.handler = nullptr;
  auto missing = One(absl::StrCat("actions:\n  drop_caches: {path: ", dir.File("nope"), "}\n"));
  r = missing->Run({}, absl::Seconds(5));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.reason, HasSubstr(absl::StrCat("cannot open ", dir.File("nope"))));
  EXPECT_FALSE(std::filesystem::exists(dir.File("nope")));

  EXPECT_THAT(action->Check({{"now", "1"}}).message(), HasSubstr("unknown parameter 'now'"));
  EXPECT_THAT(Error("actions:\n  drop_caches: {path: proc/drop}\n").message(),
              HasSubstr("agent.yaml:2: actions.drop_caches.path: 'proc/drop' must be an absolute"));
}

TEST_F(ActionsTest, JournalVacuumBoundsTheAgeAndPassesTheDirectory) {
  auto action = One("actions:\n  journal_vacuum: {directory: /var/log/journal/x, min_age: 2d}\n");
  ASSERT_NE(action, nullptr);
  absl::Status s = action->Check({{"older_than", "1d"}});
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(s.message(), "journal_vacuum: older_than 1d is below the limit 48h (min_age)");
  ActionResult r = action->Run({{"older_than", "1h"}}, absl::Seconds(5));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(runner_.calls.empty()) << "a refusal runs nothing";
  EXPECT_THAT(action->Check({{"older_than", "soon"}}).message(),
              HasSubstr("parameter 'older_than' = 'soon' is not a duration"));
  EXPECT_THAT(action->Check({}).message(), HasSubstr("missing parameter 'older_than'"));

  r = action->Run({{"older_than", "7d"}}, absl::Seconds(5));
  EXPECT_EQ(r.exit_code, 0) << r.reason;
  ASSERT_EQ(runner_.calls.size(), 1u);
  EXPECT_EQ(runner_.calls[0],
            (std::vector<std::string>{"journalctl", "--directory=/var/log/journal/x",
                                      "--vacuum-time=604800s"}));
  // Default: the system's journals, at least a day old.
  auto plain = One("actions:\n  journal_vacuum: {}\n");
  EXPECT_THAT(plain->Check({{"older_than", "12h"}}).message(), HasSubstr("limit 24h"));
  EXPECT_THAT(Error("actions:\n  journal_vacuum:\n    min_age: forever\n").message(),
              HasSubstr("agent.yaml:3"));
}

// --- PostgreSQL maintenance: identifiers --------------------------------------------------------

TEST(PgNamesTest, IdentifiersAreCheckedNeverQuotedBlindly) {
  absl::StatusOr<PgName> name = ParsePgName("public.documents", "a", "table");
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_EQ(name->schema, "public");
  EXPECT_EQ(name->name, "documents");
  EXPECT_EQ(ParsePgName("documents", "a", "table")->schema, "");
  EXPECT_TRUE(ParsePgName("_t1", "a", "table").ok());
  for (const char* bad : {"", "a.b.c", "docs; DROP TABLE x", "\"docs\"", "1docs", "docs-2", "docs.",
                          ".docs", "d\xc3\xa9j\xc3\xa0", "a b"}) {
    absl::Status s = ParsePgName(bad, "pg_vacuum_analyze", "table").status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(s.message(), HasSubstr("pg_vacuum_analyze: table '")) << bad;
  }
  EXPECT_THAT(ParsePgName(std::string(64, 'a'), "a", "index").status().message(),
              HasSubstr("longer than the limit of 63 bytes"));
  EXPECT_TRUE(ParsePgName(std::string(63, 'a'), "a", "index").ok());

  EXPECT_EQ(*ParsePgColumns("created_at", "a", 4), (std::vector<std::string>{"created_at"}));
  EXPECT_EQ(*ParsePgColumns("a, b ,c", "a", 4), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_THAT(ParsePgColumns("a,b,c", "x", 2).status().message(),
              HasSubstr("has 3 columns, above the limit 2 (max_columns)"));
  EXPECT_THAT(ParsePgColumns("a,a", "x", 4).status().message(), HasSubstr("names 'a' twice"));
  EXPECT_FALSE(ParsePgColumns("a,", "x", 4).ok());
  EXPECT_FALSE(ParsePgColumns("lower(a)", "x", 4).ok());
  EXPECT_FALSE(ParsePgColumns("t.a", "x", 4).ok());
}

TEST_F(ActionsTest, PgMaintenanceChecksParametersAndConfig) {
  auto actions = Build(
      "actions:\n"
      "  pg_vacuum_analyze: {tables: [\"public.*\"]}\n"
      "  pg_reindex_concurrently: {}\n"
      "  pg_create_index_concurrently: {max_columns: 2}\n");
  ASSERT_TRUE(actions.ok()) << actions.status();
  Action& vacuum = *(*actions)[0];
  Action& reindex = *(*actions)[1];
  Action& create = *(*actions)[2];
  EXPECT_TRUE(vacuum.Check({{"table", "public.documents"}}).ok());
  // With an allow-list, the whole database is not one of its tables.
  absl::Status s = vacuum.Check({});
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(s.message(), HasSubstr("parameter 'table' is required"));
  EXPECT_THAT(s.message(), HasSubstr("public.* (tables)"));
  EXPECT_THAT(reindex.Check({{"index", "idx; DROP TABLE x"}}).message(),
              HasSubstr("pg_reindex_concurrently: index 'idx; DROP TABLE x'"));
  EXPECT_THAT(reindex.Check({}).message(), HasSubstr("missing parameter 'index'"));
  EXPECT_TRUE(create.Check({{"table", "documents"}, {"columns", "a,b"}, {"name", "i"}}).ok());
  EXPECT_THAT(create.Check({{"table", "documents"}, {"columns", "a,b,c"}, {"name", "i"}}).message(),
              HasSubstr("above the limit 2 (max_columns)"));
  EXPECT_THAT(
      create.Check({{"table", "documents"}, {"columns", "a"}, {"name", "other.i"}}).message(),
      HasSubstr("name 'other.i' must not name a schema"));
  EXPECT_THAT(
      create
          .Check(
              {{"table", "documents"}, {"columns", "a"}, {"name", "i"}, {"method", "spgist; DROP"}})
          .message(),
      HasSubstr("parameter 'method' = 'spgist; DROP' is not one of btree|hash|gin|gist"));
  // A refusal at Check time never connects: it fails the same way at Run.
  ActionResult r = reindex.Run({{"index", "bad name"}}, absl::Seconds(5));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.reason, HasSubstr("index 'bad name'"));

  EXPECT_THAT(Error("actions:\n  pg_vacuum_analyze:\n    tables: [documents]\n").message(),
              HasSubstr("agent.yaml:3: actions.pg_vacuum_analyze.tables: 'documents' must be "
                        "schema.table"));
  EXPECT_THAT(
      Error("actions:\n  pg_create_index_concurrently:\n    max_columns: 99\n").message(),
      HasSubstr("agent.yaml:3: actions.pg_create_index_concurrently.max_columns: '99' is not a "
                "number from 1 to 32"));
  postgres_dsn_.clear();
  EXPECT_THAT(Error("actions:\n  pg_reindex_concurrently: {}\n").message(),
              HasSubstr("needs the postgres collector"));
}

// --- redis_config_set ---------------------------------------------------------------------------

TEST_F(ActionsTest, RedisConfigSetAllowsListedParametersAndValuesOnly) {
  auto action =
      One("actions:\n  redis_config_set:\n    parameters:\n"
          "      maxmemory-policy: [allkeys-lru, volatile-lru]\n");
  ASSERT_NE(action, nullptr);
  EXPECT_TRUE(action->Check({{"parameter", "maxmemory-policy"}, {"value", "allkeys-lru"}}).ok());
  absl::Status s = action->Check({{"parameter", "maxmemory-policy"}, {"value", "noeviction"}});
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(s.message(),
            "redis_config_set: value 'noeviction' is not allowed for maxmemory-policy (values: "
            "allkeys-lru, volatile-lru)");
  s = action->Check({{"parameter", "dir"}, {"value", "/tmp"}});
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(s.message(),
            "redis_config_set: parameter 'dir' is not allowed (parameters: maxmemory-policy)");
  EXPECT_THAT(action->Check({{"parameter", "maxmemory-policy"}}).message(),
              HasSubstr("missing parameter 'value'"));

  EXPECT_THAT(Error("actions:\n  redis_config_set: {}\n").message(),
              HasSubstr("actions.redis_config_set.parameters: is required"));
  EXPECT_THAT(
      Error("actions:\n  redis_config_set:\n    parameters:\n      maxmemory: 1gb\n").message(),
      HasSubstr("agent.yaml:4: actions.redis_config_set.parameters.maxmemory: must be a "
                "non-empty list"));
  EXPECT_THAT(
      Error("actions:\n  redis_config_set:\n    parameters:\n      \"a b\": [x]\n").message(),
      HasSubstr("is not a Redis parameter name"));
  redis_address_.clear();
  EXPECT_THAT(
      Error("actions:\n  redis_config_set: {parameters: {maxmemory-policy: [x]}}\n").message(),
      HasSubstr("needs the redis collector"));
}

// --- Kubernetes ---------------------------------------------------------------------------------

TEST_F(ActionsTest, K8sActionsCheckNamesAllowListAndBounds) {
  auto actions = Build(
      "actions:\n"
      "  k8s_scale:\n"
      "    api_server: https://10.96.0.1:443\n"
      "    deployments:\n"
      "      rag-production/rag-api: {min: 2, max: 10}\n"
      "  k8s_patch_hpa:\n"
      "    api_server: https://10.96.0.1\n"
      "    hpas: {rag-production/rag-api-hpa: {min: 2, max: 20}}\n");
  ASSERT_TRUE(actions.ok()) << actions.status();
  Action& scale = *(*actions)[0];
  Action& hpa = *(*actions)[1];
  const ActionParams ok = {
      {"namespace", "rag-production"}, {"deployment", "rag-api"}, {"replicas", "5"}};
  EXPECT_TRUE(scale.Check(ok).ok());
  ActionParams p = ok;
  p["replicas"] = "11";
  absl::Status s = scale.Check(p);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(s.message(),
            "k8s_scale: replicas 11 is above the limit 10 for rag-production/rag-api "
            "(deployments.rag-production/rag-api.max)");
  p["replicas"] = "1";
  EXPECT_THAT(scale.Check(p).message(), HasSubstr("replicas 1 is below the limit 2"));
  p = ok;
  p["deployment"] = "rag-celery";
  s = scale.Check(p);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(s.message(),
            "k8s_scale: deployment rag-production/rag-celery is not allowed (deployments: "
            "rag-production/rag-api)");
  p = ok;
  p["namespace"] = "Rag_Production";
  EXPECT_THAT(scale.Check(p).message(), HasSubstr("namespace 'Rag_Production' is not a DNS label"));
  p = ok;
  p["deployment"] = "../../secrets";
  EXPECT_THAT(scale.Check(p).message(), HasSubstr("deployment '../../secrets' is not a DNS"));
  p = ok;
  p["replicas"] = "-1";
  EXPECT_THAT(scale.Check(p).message(), HasSubstr("parameter 'replicas' = '-1'"));

  const ActionParams hpa_ok = {
      {"namespace", "rag-production"}, {"hpa", "rag-api-hpa"}, {"min", "3"}, {"max", "10"}};
  EXPECT_TRUE(hpa.Check(hpa_ok).ok());
  p = hpa_ok;
  p["max"] = "30";
  EXPECT_THAT(hpa.Check(p).message(),
              HasSubstr("k8s_patch_hpa: max 30 is above the limit 20 for "
                        "rag-production/rag-api-hpa (hpas.rag-production/rag-api-hpa.max)"));
  p = hpa_ok;
  p["min"] = "12";
  EXPECT_THAT(hpa.Check(p).message(), HasSubstr("min 12 is above max 10"));
  // A refusal sends nothing (the API server here does not exist).
  ActionResult r = hpa.Run(p, absl::Seconds(5));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.reason, HasSubstr("min 12 is above max 10"));
}

TEST_F(ActionsTest, K8sConfigIsStrict) {
  const char* base = "actions:\n  k8s_scale:\n    api_server: https://10.96.0.1\n";
  EXPECT_THAT(Error(base).message(), HasSubstr("actions.k8s_scale.deployments: is required"));
  EXPECT_THAT(Error(absl::StrCat(base, "    deployments: {rag-api: {min: 1, max: 2}}\n")).message(),
              HasSubstr("agent.yaml:4: actions.k8s_scale.deployments.rag-api: must be "
                        "NAMESPACE/NAME"));
  EXPECT_THAT(
      Error(absl::StrCat(base, "    deployments:\n      ns/app: {min: 5, max: 2}\n")).message(),
      HasSubstr("agent.yaml:5: actions.k8s_scale.deployments.ns/app: min 5 is above max 2"));
  EXPECT_THAT(
      Error(absl::StrCat(base, "    deployments:\n      ns/app: {min: 1, most: 2}\n")).message(),
      HasSubstr("'most'"));
  EXPECT_THAT(Error("actions:\n  k8s_scale:\n    api_server: http://10.96.0.1\n"
                    "    deployments: {ns/app: {min: 1, max: 2}}\n")
                  .message(),
              HasSubstr("agent.yaml:3: actions.k8s_scale.api_server: 'http://10.96.0.1' is not "
                        "https://HOST[:PORT]"));
  EXPECT_THAT(Error("actions:\n  k8s_patch_hpa:\n    api_server: https://k\n"
                    "    hpas: {ns/h: {min: 0, max: 2}}\n")
                  .message(),
              HasSubstr("min must be at least 1"));
}

TEST(K8sParseTest, SpecIntegersAndErrorMessages) {
  auto spec = ParseK8sSpec(R"({"kind":"Scale","spec":{"replicas":3},"status":{"replicas":2}})",
                           {"replicas"});
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->at("replicas"), 3);
  // Zero values are left out by the API.
  EXPECT_TRUE(ParseK8sSpec(R"({"spec":{}})", {"replicas"})->empty());
  EXPECT_FALSE(ParseK8sSpec(R"({"status":{}})", {"replicas"}).ok());
  EXPECT_FALSE(ParseK8sSpec(R"({"spec":{"replicas":"3"}})", {"replicas"}).ok());
  EXPECT_FALSE(ParseK8sSpec(R"({"spec":{"replicas":2.5}})", {"replicas"}).ok());
  EXPECT_FALSE(ParseK8sSpec(R"({"spec":{"replicas":1e300}})", {"replicas"}).ok());
  EXPECT_FALSE(ParseK8sSpec("[1]", {"replicas"}).ok());
  EXPECT_FALSE(ParseK8sSpec("", {"replicas"}).ok());
  EXPECT_EQ(JsonErrorMessage(R"({"kind":"Status","message":"forbidden: no"})"), "forbidden: no");
  EXPECT_EQ(JsonErrorMessage("<html>"), "");
}

// --- docker_prune -------------------------------------------------------------------------------

TEST_F(ActionsTest, DockerPruneRefusesWithoutItsSocket) {
  TempDir dir;
  auto action =
      One(absl::StrCat("actions:\n  docker_prune: {socket: ", dir.File("docker.sock"), "}\n"));
  ASSERT_NE(action, nullptr);
  absl::Status s = action->Check({});
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr(absl::StrCat("docker_prune: no Docker socket at ",
                                                  dir.File("docker.sock"), " (socket)")));
  Write(dir.File("docker.sock"), "");
  EXPECT_THAT(action->Check({}).message(), HasSubstr("is not a unix socket"));
  ActionResult r = action->Run({}, absl::Seconds(5));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.reason, HasSubstr("is not a unix socket"));
  EXPECT_THAT(action->Check({{"all", "true"}}).message(), HasSubstr("unknown parameter 'all'"));
}

TEST(DockerParseTest, PruneAnswers) {
  auto pruned = ParseDockerPrune(
      R"({"ImagesDeleted":[{"Untagged":"a:1"},{"Deleted":"sha256:x"}],"SpaceReclaimed":1024})");
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(pruned->deleted, 2);
  EXPECT_EQ(pruned->space_reclaimed, 1024);
  pruned = ParseDockerPrune(R"({"ContainersDeleted":null,"SpaceReclaimed":0})");
  ASSERT_TRUE(pruned.ok());
  EXPECT_EQ(pruned->deleted, 0);
  EXPECT_EQ(ParseDockerPrune(R"({"NetworksDeleted":["n1"]})")->deleted, 1);
  EXPECT_FALSE(ParseDockerPrune(R"({"SpaceReclaimed":"lots"})").ok());
  EXPECT_FALSE(ParseDockerPrune(R"({"CachesDeleted":3})").ok());
  EXPECT_FALSE(ParseDockerPrune("not json").ok());
}

// --- clean_old_logs: the backups folder ---------------------------------------------------------

TEST_F(ActionsTest, CleanOldLogsBackupsFolderHasItsOwnPatternsAndAge) {
  TempDir dir;
  const std::string logs = dir.File("log");
  const std::string backups = dir.File("backups");
  std::filesystem::create_directories(logs);
  std::filesystem::create_directories(backups);
  auto action =
      One(absl::StrCat("actions:\n  clean_old_logs:\n    dirs:\n      - ", logs,
                       "\n      - {dir: ", backups, ", patterns: [\"*.sql.gz\"], min_age: 7d}\n"));
  ASSERT_NE(action, nullptr);
  for (const char* name : {"db-1.sql.gz", "db-2.sql.gz", "notes.txt"}) {
    Write(backups + "/" + name, "x");
    MakeOld(backups + "/" + name, absl::Hours(24 * 40));
  }
  Write(backups + "/db-3.sql.gz", "x");
  MakeOld(backups + "/db-3.sql.gz", absl::Hours(24 * 10));

  absl::Status s = action->Check({{"dir", backups}, {"pattern", "*"}, {"older_than", "30d"}});
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(s.message(), absl::StrCat("clean_old_logs: pattern '*' is not allowed in ", backups,
                                      " (patterns: *.sql.gz)"));
  s = action->Check({{"dir", backups}, {"older_than", "2d"}});
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(s.message(), HasSubstr(absl::StrCat("older_than 2d is below the limit 168h (min_age "
                                                  "of ",
                                                  backups, ")")));
  // The plain entry keeps the global limit and any pattern.
  EXPECT_TRUE(action->Check({{"dir", logs}, {"older_than", "2h"}, {"pattern", "*"}}).ok());

  // find BACKUPS -name "*.sql.gz" -mtime +30 -delete: the default pattern is the entry's first.
  ActionResult r = action->Run({{"dir", backups}, {"older_than", "30d"}}, absl::Seconds(10));
  EXPECT_EQ(r.exit_code, 0) << r.reason;
  EXPECT_THAT(r.output_tail, HasSubstr("removed 2 files"));
  EXPECT_FALSE(std::filesystem::exists(backups + "/db-1.sql.gz"));
  EXPECT_FALSE(std::filesystem::exists(backups + "/db-2.sql.gz"));
  EXPECT_TRUE(std::filesystem::exists(backups + "/db-3.sql.gz"));
  EXPECT_TRUE(std::filesystem::exists(backups + "/notes.txt"));

  EXPECT_THAT(Error("actions:\n  clean_old_logs:\n    dirs:\n      - {patterns: [x]}\n").message(),
              HasSubstr("agent.yaml:4"));
  EXPECT_THAT(Error("actions:\n  clean_old_logs:\n    dirs:\n      - {dir: /b, patterns: [a/b]}\n")
                  .message(),
              HasSubstr("pattern 'a/b' must be a file name glob"));
  EXPECT_THAT(
      Error("actions:\n  clean_old_logs:\n    dirs:\n      - {dir: /b, age: 1d}\n").message(),
      HasSubstr("'age'"));
}

// find BACKUPS -name "*.sql.gz" -mtime +30 -delete descends into subfolders: so does
// recursive=yes, never through a symlink and never out of the requested folder.
TEST_F(ActionsTest, CleanOldLogsRecursiveDescendsIntoSubfoldersButNotThroughSymlinks) {
  TempDir dir;
  const std::string backups = dir.File("backups");
  const std::string outside = dir.File("outside");
  std::filesystem::create_directories(backups + "/daily/2026");
  std::filesystem::create_directories(outside);
  auto action = One(absl::StrCat("actions:\n  clean_old_logs:\n    dirs:\n      - {dir: ", backups,
                                 ", patterns: [\"*.sql.gz\"], min_age: 7d}\n"));
  ASSERT_NE(action, nullptr);
  for (const std::string& path :
       {backups + "/top.sql.gz", backups + "/daily/a.sql.gz", backups + "/daily/2026/b.sql.gz",
        backups + "/daily/2026/keep.txt", outside + "/victim.sql.gz"}) {
    Write(path, "xyz");
    MakeOld(path, absl::Hours(24 * 40));
  }
  Write(backups + "/daily/fresh.sql.gz", "x");
  std::filesystem::create_directory_symlink(outside, backups + "/daily/link");

  EXPECT_EQ(action->Check({{"dir", backups}, {"older_than", "30d"}, {"recursive", "maybe"}}).code(),
            absl::StatusCode::kInvalidArgument);

  // Without the parameter only the folder itself, as before.
  ActionResult r = action->Run({{"dir", backups}, {"older_than", "30d"}}, absl::Seconds(10));
  EXPECT_EQ(r.exit_code, 0) << r.reason;
  EXPECT_THAT(r.output_tail, HasSubstr("removed 1 files"));
  EXPECT_FALSE(std::filesystem::exists(backups + "/top.sql.gz"));
  EXPECT_TRUE(std::filesystem::exists(backups + "/daily/a.sql.gz"));

  r = action->Run({{"dir", backups}, {"older_than", "30d"}, {"recursive", "yes"}},
                  absl::Seconds(10));
  EXPECT_EQ(r.exit_code, 0) << r.reason;
  EXPECT_THAT(r.output_tail, HasSubstr("removed daily/a.sql.gz (3 bytes)"));
  EXPECT_THAT(r.output_tail, HasSubstr("removed daily/2026/b.sql.gz (3 bytes)"));
  EXPECT_THAT(r.output_tail, HasSubstr("removed 2 files, 6 bytes, from "));
  EXPECT_THAT(r.output_tail, HasSubstr("and its subfolders"));
  EXPECT_FALSE(std::filesystem::exists(backups + "/daily/a.sql.gz"));
  EXPECT_FALSE(std::filesystem::exists(backups + "/daily/2026/b.sql.gz"));
  EXPECT_TRUE(std::filesystem::exists(backups + "/daily/2026/keep.txt"));
  EXPECT_TRUE(std::filesystem::exists(backups + "/daily/fresh.sql.gz"));
  // The symlinked folder is outside the allowed one: never entered.
  EXPECT_TRUE(std::filesystem::exists(outside + "/victim.sql.gz"));
  EXPECT_TRUE(std::filesystem::is_symlink(backups + "/daily/link"));
}

}  // namespace
}  // namespace vigil::agent
