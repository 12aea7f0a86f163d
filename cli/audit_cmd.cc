#include "cli/audit_cmd.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"

namespace vigil::cli {
namespace {

absl::Status ErrnoError(absl::string_view what, const std::string& path) {
  return absl::UnavailableError(
      absl::StrCat("cannot ", what, " ", path, ": ", std::strerror(errno)));
}

int RunVerify(CommandEnv& env) {
  v1::VerifyAuditResponse response;
  if (!env.Call("VerifyAudit", &v1::ControlService::StubInterface::VerifyAudit,
                v1::VerifyAuditRequest(), &response)) {
    return kExitFailed;
  }
  if (env.json()) {
    env.PrintJson(response);
  } else if (response.ok()) {
    env.out() << "audit chain OK: " << response.events_checked() << " events\n";
  } else {
    env.out() << "audit chain BROKEN at seq " << response.first_bad_seq() << ": "
              << OneLine(response.problem()) << '\n';
  }
  env.out().flush();
  return response.ok() ? kExitOk : kExitFailed;
}

struct ExportOptions {
  std::string incident;
  std::string format = "markdown";
  std::string out;
};

int RunExport(CommandEnv& env, const ExportOptions& options) {
  v1::ExportIncidentRequest request;
  request.set_incident_id(options.incident);
  request.set_format(options.format);
  v1::ExportIncidentResponse response;
  if (!env.Call("ExportIncident", &v1::ControlService::StubInterface::ExportIncident, request,
                &response)) {
    return kExitFailed;
  }
  if (!options.out.empty()) {
    if (absl::Status written = WriteFileAtomically(options.out, response.content());
        !written.ok()) {
      return env.Fail(written.message());
    }
  }
  if (env.json()) return env.PrintJson(response);
  if (options.out.empty()) {
    // A report is several lines; its other control characters are shown, not obeyed.
    const std::string content = EscapeForTerminal(response.content(), /*keep_newlines=*/true);
    env.out() << content;
    if (!content.empty() && content.back() != '\n') env.out() << '\n';
  } else {
    env.out() << "exported incident " << OneLine(options.incident) << " (" << options.format << ", "
              << response.content().size() << " bytes) to " << OneLine(options.out) << '\n';
  }
  env.out().flush();
  return kExitOk;
}

}  // namespace

absl::Status WriteFileAtomically(const std::string& path, absl::string_view content) {
  std::string temp = path + ".tmp.XXXXXX";
  std::vector<char> name(temp.begin(), temp.end());
  name.push_back('\0');
  int fd = mkstemp(name.data());
  if (fd < 0) return ErrnoError("create a temporary file beside", path);
  temp.assign(name.data());
  // mkstemp makes the file 0600; give it the mode a plain open() would have.
  mode_t mask = umask(0);
  umask(mask);
  fchmod(fd, 0666 & ~mask);
  absl::Status status;
  const char* data = content.data();
  size_t left = content.size();
  while (left > 0 && status.ok()) {
    ssize_t n = write(fd, data, left);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      status = ErrnoError("write", temp);
    } else {
      data += n;
      left -= static_cast<size_t>(n);
    }
  }
  if (status.ok() && fsync(fd) != 0) status = ErrnoError("sync", temp);
  if (close(fd) != 0 && status.ok()) status = ErrnoError("close", temp);
  if (status.ok() && std::rename(temp.c_str(), path.c_str()) != 0) {
    status = ErrnoError("rename the temporary file to", path);
  }
  if (!status.ok()) unlink(temp.c_str());
  return status;
}

void AddAuditCommands(CLI::App& app, CommandEnv& env) {
  CLI::App* audit = app.add_subcommand("audit", "Check or export the audited timeline");
  audit->require_subcommand(1);

  CLI::App* verify = audit->add_subcommand("verify", "Check the timeline's hash chain");
  verify->callback([&env] { env.SetAction([&env] { return RunVerify(env); }); });

  auto options = std::make_shared<ExportOptions>();
  CLI::App* export_cmd = audit->add_subcommand("export", "Export one incident as a report");
  export_cmd->add_option("incident", options->incident, "incident id")->required();
  export_cmd->add_option("--format", options->format, "json or markdown")
      ->check(CLI::IsMember({"json", "markdown"}))
      ->capture_default_str();
  export_cmd->add_option("--out", options->out,
                         "write to this file (atomically) instead of stdout");
  export_cmd->callback(
      [&env, options] { env.SetAction([&env, options] { return RunExport(env, *options); }); });
}

}  // namespace vigil::cli
