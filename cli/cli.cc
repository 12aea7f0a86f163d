#include "cli/cli.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdlib>
#include <exception>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "cli/actions_cmd.h"
#include "cli/agents_cmd.h"
#include "cli/audit_cmd.h"
#include "cli/command_env.h"
#include "cli/incidents_cmd.h"
#include "cli/notify_cmd.h"
#include "cli/output.h"
#include "cli/users_cmd.h"
#include "cli/watch_cmd.h"
#include "common/transport.h"

namespace vigil::cli {
namespace {

// "10s", "500ms", "2m", or a plain number of seconds.
bool ParseTimeout(const std::string& text, absl::Duration* timeout) {
  if (absl::ParseDuration(text, timeout) && *timeout > absl::ZeroDuration()) return true;
  double seconds = 0;
  if (absl::SimpleAtod(text, &seconds) && seconds > 0) {
    *timeout = absl::Seconds(seconds);
    return true;
  }
  return false;
}

// "incident show" for `vigil incident show ...`: the verbs CLI11 selected, for help hints.
std::string SelectedCommand(CLI::App& app) {
  std::string path;
  CLI::App* current = &app;
  while (!current->get_subcommands().empty()) {
    current = current->get_subcommands().front();
    absl::StrAppend(&path, path.empty() ? "" : " ", current->get_name());
  }
  return path;
}

int Run(std::vector<std::string> args, std::ostream& out, std::ostream& err,
        const CliContext& context) {
  CommandEnv env(out, err, context.clock != nullptr ? *context.clock : *RealClock::Get(),
                 context.interrupt);

  CLI::App app("vigil: the incident commander's command line for a Vigil fleet", "vigil");
  app.require_subcommand(1);
  app.fallthrough();  // global flags may also follow the verb
  app.set_version_flag("--version", "vigil " VIGIL_VERSION, "print the version and exit");
  std::string output = "table";
  std::string timeout = "10s";
  app.add_option("--controller", env.connection.controller, "controller address HOST:PORT")
      ->envname("VIGIL_CONTROLLER")
      ->capture_default_str();
  // VIGIL_TOKEN is read after parsing, so that an error can say where a bad token came from.
  app.add_option("--token", env.connection.token,
                 "API token, sent as a bearer token [VIGIL_TOKEN]");
  app.add_option("-o,--output", output, "table (for people) or json (for scripts)")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  app.add_option("--timeout", timeout, "deadline of each request, e.g. 10s or 500ms")
      ->check([](const std::string& text) {
        absl::Duration parsed;
        return ParseTimeout(text, &parsed) ? std::string()
                                           : "'" + text + "' is not a duration such as 10s";
      })
      ->capture_default_str();
  // The same --insecure and --tls-* flags as the agent and the controller; the environment
  // (VIGIL_TLS_*, VIGIL_INSECURE) is applied after parsing, where flags can win over it as a set.
  AddTransportFlags(app, env.connection.transport);
  app.get_option("--tls-ca")
      ->description("CA bundle (PEM) that signs the controller [VIGIL_TLS_CA]");
  app.get_option("--tls-cert")->description("client certificate (PEM) [VIGIL_TLS_CERT]");
  app.get_option("--tls-key")->description("client private key (PEM) [VIGIL_TLS_KEY]");
  app.get_option("--insecure")
      ->description("plain text, no TLS: loopback controllers only [VIGIL_INSECURE=1]");

  AddAgentsCommands(app, env);
  AddIncidentsCommands(app, env);
  AddActionsCommands(app, env);
  AddWatchCommand(app, env);
  AddAuditCommands(app, env);
  AddUsersCommands(app, env);
  AddNotifyCommands(app, env);

  std::reverse(args.begin(), args.end());  // CLI11 takes the arguments last first
  try {
    app.parse(args);
  } catch (const CLI::CallForHelp&) {
    out << app.help();
    return kExitOk;
  } catch (const CLI::CallForAllHelp&) {
    out << app.help("", CLI::AppFormatMode::All);
    return kExitOk;
  } catch (const CLI::CallForVersion& e) {
    out << e.what() << '\n';
    return kExitOk;
  } catch (const CLI::ParseError& e) {
    return env.UsageError(e.what(), SelectedCommand(app));
  }
  env.format = output == "json" ? OutputFormat::kJson : OutputFormat::kTable;
  ParseTimeout(timeout, &env.connection.timeout);
  if (!env.action()) return env.UsageError("a command is required", SelectedCommand(app));
  const bool insecure_flag = app.get_option("--insecure")->count() > 0;
  const bool tls_flag = app.get_option("--tls-ca")->count() > 0 ||
                        app.get_option("--tls-cert")->count() > 0 ||
                        app.get_option("--tls-key")->count() > 0;
  if (insecure_flag && tls_flag) {
    return env.UsageError("--insecure and --tls-ca/--tls-cert/--tls-key exclude each other",
                          SelectedCommand(app));
  }
  ApplyTransportEnvironment(env.connection.transport, insecure_flag, tls_flag);
  std::string token_source = "--token";
  if (app.get_option("--token")->count() == 0) {
    const char* token = std::getenv("VIGIL_TOKEN");
    env.connection.token = token == nullptr ? "" : token;
    token_source = "VIGIL_TOKEN";
  }
  // gRPC aborts the process on a metadata value it cannot send; say so as bad usage instead.
  if (absl::Status token = CheckToken(env.connection.token, token_source);
      !token.ok() && !env.offline) {
    err << "vigil: " << OneLine(token.message()) << '\n';
    err.flush();
    return kExitUsage;
  }
  // A verb that talks to the controller: a connection that cannot be secured is bad usage (2),
  // said before anything is sent, not a failed request (1).
  if (absl::Status transport = CheckTransport(env.connection); !transport.ok() && !env.offline) {
    err << "vigil: " << OneLine(transport.message()) << '\n';
    err.flush();
    return kExitUsage;
  }
  int status = env.action()();
  out.flush();
  err.flush();
  return status;
}

}  // namespace

int RunCli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
           const CliContext& context) {
  try {
    return Run(args, out, err, context);
  } catch (const std::exception& e) {
    err << "vigil: internal error: " << OneLine(e.what()) << '\n';
  } catch (...) {
    err << "vigil: internal error\n";
  }
  return kExitFailed;
}

int RunCli(int argc, char** argv, std::ostream& out, std::ostream& err, const CliContext& context) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  return RunCli(args, out, err, context);
}

}  // namespace vigil::cli
