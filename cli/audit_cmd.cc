#include "cli/audit_cmd.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <google/protobuf/util/json_util.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <memory>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/audit/bundle.h"
#include "common/audit/checkpoint.h"
#include "common/ed25519.h"
#include "common/yaml_util.h"
#include "vigil/v1/audit.pb.h"

namespace vigil::cli {
namespace {

absl::Status ErrnoError(absl::string_view what, const std::string& path) {
  return absl::UnavailableError(
      absl::StrCat("cannot ", what, " ", path, ": ", std::strerror(errno)));
}

// Where the CLI keeps what it verified of `controller`: one file per controller address.
std::string WitnessPath(const std::string& controller) {
  std::string folder;
  if (const char* state = std::getenv("VIGIL_STATE_DIR"); state != nullptr && *state != '\0') {
    folder = state;
  } else if (const char* xdg = std::getenv("XDG_CONFIG_HOME"); xdg != nullptr && *xdg != '\0') {
    folder = absl::StrCat(xdg, "/vigil");
  } else if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    folder = absl::StrCat(home, "/.config/vigil");
  } else {
    return "";
  }
  std::string name;
  for (char c : controller) {
    name.push_back(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-'
                       ? c
                       : '_');
  }
  return absl::StrCat(folder, "/witness/", name.empty() ? "default" : name, ".json");
}

// The whole file, refused past `max_bytes`.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  }
  std::string content;
  char buffer[1 << 16];
  while (in.read(buffer, sizeof(buffer)) || in.gcount() > 0) {
    content.append(buffer, static_cast<size_t>(in.gcount()));
    if (content.size() > max_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, " is larger than ", max_bytes >> 20, " MiB"));
    }
  }
  return content;
}

std::optional<v1::AuditWitness> LoadWitness(CommandEnv& env, const std::string& path) {
  if (path.empty()) return std::nullopt;
  absl::StatusOr<std::string> text = ReadWholeFile(path, 1 << 20);
  if (!text.ok()) return std::nullopt;  // none yet
  v1::AuditWitness witness;
  if (!google::protobuf::util::JsonStringToMessage(*text, &witness).ok()) {
    env.err() << "vigil: warning: " << path
              << " is damaged and is not used as a witness (it is replaced after this check)\n";
    return std::nullopt;
  }
  return witness;
}

int RunVerify(CommandEnv& env, bool full) {
  const std::string witness_path = WitnessPath(env.connection.controller);
  std::optional<v1::AuditWitness> witness = LoadWitness(env, witness_path);
  v1::VerifyAuditRequest request;
  request.set_full(full);
  if (witness.has_value() && witness->has_checkpoint()) {
    *request.mutable_witness() = witness->checkpoint();
  }
  v1::VerifyAuditResponse response;
  if (!env.Call("VerifyAudit", &v1::ControlService::StubInterface::VerifyAudit, request,
                &response)) {
    return kExitFailed;
  }
  // The controller's word is checked, not taken: the key it signs with is the one seen first,
  // and its newest checkpoint verifies with it.
  std::string trouble;
  const std::string key_pem = witness.has_value() && !witness->public_key_pem().empty()
                                  ? witness->public_key_pem()
                                  : response.audit_public_key_pem();
  absl::StatusOr<std::unique_ptr<Ed25519PublicKey>> key = Ed25519PublicKey::FromPem(key_pem);
  if (!response.audit_public_key_pem().empty() && witness.has_value() &&
      !witness->public_key_pem().empty() &&
      witness->public_key_pem() != response.audit_public_key_pem()) {
    trouble = absl::StrCat("the controller's audit key is not the one this CLI verified before (",
                           witness_path,
                           "): its checkpoints cannot be trusted; if the controller was "
                           "replaced on purpose, remove that file");
  } else if (response.has_latest_checkpoint()) {
    if (!key.ok()) {
      trouble = absl::StrCat("the controller sent no usable audit key: ", key.status().message());
    } else if (absl::Status valid = audit::VerifyCheckpoint(**key, response.latest_checkpoint());
               !valid.ok()) {
      trouble = std::string(valid.message());
    } else if (witness.has_value() && witness->has_checkpoint() &&
               response.rollback_accepted_unix_ms() >= witness->checkpoint().time_unix_ms()) {
      // Said, not hidden: the acceptance is on the timeline for auditors to read.
      env.err() << "vigil: note: a rollback was accepted at "
                << FormatTimestamp(response.rollback_accepted_unix_ms())
                << " (see the audit.rollback_accepted event); the "
                << audit::DescribeCheckpoint(witness->checkpoint())
                << " this CLI verified before is superseded\n";
    } else if (witness.has_value() && witness->has_checkpoint() &&
               response.latest_checkpoint().seq() < witness->checkpoint().seq()) {
      trouble = absl::StrCat("rollback: the controller's newest checkpoint is ",
                             audit::DescribeCheckpoint(response.latest_checkpoint()),
                             " but this CLI verified ",
                             audit::DescribeCheckpoint(witness->checkpoint()), " before");
    }
  }
  const bool ok = response.ok() && trouble.empty();
  if (ok && response.has_latest_checkpoint() && !witness_path.empty()) {
    v1::AuditWitness updated;
    updated.set_controller(env.connection.controller);
    updated.set_public_key_pem(response.audit_public_key_pem());
    *updated.mutable_checkpoint() = response.latest_checkpoint();
    updated.set_verified_unix_ms(absl::ToUnixMillis(env.clock().Now()));
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(witness_path).parent_path(), ec);
    if (absl::Status saved = WriteFileAtomically(witness_path, ToJson(updated, true) + "\n");
        !saved.ok()) {
      env.err() << "vigil: warning: the verified checkpoint was not kept: " << saved.message()
                << '\n';
    }
  }
  if (env.json()) {
    if (!trouble.empty()) {
      response.set_ok(false);
      response.set_problem(trouble);
    }
    env.PrintJson(response);
  } else if (ok) {
    env.out() << "audit chain OK: " << response.events_checked() << " events checked ("
              << (response.verified_from_seq() <= 1
                      ? std::string("the whole chain")
                      : absl::StrCat("from the checkpoint at ", response.verified_from_seq()))
              << "), head " << response.head_seq();
    if (response.has_latest_checkpoint()) {
      env.out() << ", newest " << audit::DescribeCheckpoint(response.latest_checkpoint())
                << " signed by audit key " << response.latest_checkpoint().key_id();
    } else {
      env.out() << ", no signed checkpoint yet";
    }
    env.out() << '\n';
  } else if (!trouble.empty()) {
    env.out() << "audit chain NOT TRUSTED: " << OneLine(trouble) << '\n';
  } else {
    env.out() << "audit chain BROKEN at seq " << response.first_bad_seq()
              << (response.rollback_detected() ? " (rollback detected)" : "") << ": "
              << OneLine(response.problem()) << '\n';
  }
  env.out().flush();
  return ok ? kExitOk : kExitFailed;
}

int RunVerifyBundle(CommandEnv& env, const std::string& bundle_path,
                    const std::string& public_key_path) {
  if (public_key_path.empty()) {
    return env.UsageError("--bundle needs --public-key FILE (the controller's audit public key, "
                          "obtained apart from the bundle)",
                          "audit verify");
  }
  absl::StatusOr<std::string> key_pem = ReadWholeFile(public_key_path, 64 << 10);
  if (!key_pem.ok()) return env.Fail(key_pem.status().message());
  absl::StatusOr<std::unique_ptr<Ed25519PublicKey>> key = Ed25519PublicKey::FromPem(*key_pem);
  if (!key.ok()) {
    return env.Fail(absl::StrCat(public_key_path, ": ", key.status().message()));
  }
  absl::StatusOr<std::string> text = ReadWholeFile(bundle_path, size_t{2} << 30);
  if (!text.ok()) return env.Fail(text.status().message());
  absl::StatusOr<v1::AuditBundle> bundle = audit::BundleFromJson(*text, bundle_path);
  if (!bundle.ok()) return env.Fail(bundle.status().message());
  const audit::BundleReport report = audit::VerifyBundle(*bundle, **key);
  v1::BundleVerification result;
  result.set_ok(report.ok);
  result.set_problem(report.problem);
  result.set_first_bad_seq(report.first_bad_seq);
  result.set_first_seq(report.first_seq);
  result.set_last_seq(report.last_seq);
  result.set_events_in_scope(report.events_in_scope);
  result.set_incident_id(bundle->incident_id());
  result.set_since_unix_ms(bundle->since_unix_ms());
  result.set_until_unix_ms(bundle->until_unix_ms());
  *result.mutable_covering_checkpoint() = report.covering_checkpoint;
  result.set_key_id((*key)->key_id());
  if (env.json()) {
    env.PrintJson(result);
  } else if (report.ok) {
    env.out() << "bundle OK: " << report.events_in_scope << " events of "
              << (bundle->incident_id().empty()
                      ? absl::StrCat("the range ", FormatTimestamp(bundle->since_unix_ms()), " to ",
                                     bundle->until_unix_ms() == 0
                                         ? std::string("the export")
                                         : FormatTimestamp(bundle->until_unix_ms()))
                      : absl::StrCat("incident ", OneLine(bundle->incident_id())))
              << " (chain events " << report.first_seq << "-" << report.last_seq
              << "), covered by the signed " << audit::DescribeCheckpoint(report.covering_checkpoint)
              << ", audit key " << (*key)->key_id() << '\n';
  } else {
    env.out() << "bundle BROKEN" << (report.first_bad_seq > 0
                                         ? absl::StrCat(" at seq ", report.first_bad_seq)
                                         : std::string())
              << ": " << OneLine(report.problem) << '\n';
  }
  env.out().flush();
  return report.ok ? kExitOk : kExitFailed;
}

struct ExportOptions {
  std::string incident;
  std::string format = "markdown";
  std::string out;
  bool bundle = false;
  std::string since;
  std::string until;
};

// A time for --since/--until: RFC 3339 ("2026-12-01T08:00:00Z"), or a duration back from now
// ("24h").
absl::StatusOr<int64_t> ParseWhen(CommandEnv& env, const std::string& text, const char* flag) {
  absl::Time when;
  std::string error;
  if (absl::ParseTime(absl::RFC3339_full, text, &when, &error)) return absl::ToUnixMillis(when);
  absl::StatusOr<absl::Duration> ago = ParseDurationText(text);
  if (ago.ok() && *ago >= absl::ZeroDuration()) {
    return absl::ToUnixMillis(env.clock().Now() - *ago);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      flag, " '", OneLine(text), "' is neither an RFC 3339 time nor a duration such as 24h"));
}

int RunExport(CommandEnv& env, const ExportOptions& options) {
  v1::ExportIncidentRequest request;
  request.set_incident_id(options.incident);
  request.set_format(options.bundle ? "bundle" : options.format);
  if (!options.bundle && (!options.since.empty() || !options.until.empty())) {
    return env.UsageError("--since and --until go with --bundle", "audit export");
  }
  if (options.bundle && !options.incident.empty() &&
      (!options.since.empty() || !options.until.empty())) {
    return env.UsageError("a bundle is of one incident or of a time range, not both",
                          "audit export");
  }
  if (!options.bundle && options.incident.empty()) {
    return env.UsageError("an incident id is needed (or --bundle with --since/--until)",
                          "audit export");
  }
  if (!options.since.empty()) {
    absl::StatusOr<int64_t> since = ParseWhen(env, options.since, "--since");
    if (!since.ok()) return env.UsageError(since.status().message(), "audit export");
    request.set_since_unix_ms(*since);
  }
  if (!options.until.empty()) {
    absl::StatusOr<int64_t> until = ParseWhen(env, options.until, "--until");
    if (!until.ok()) return env.UsageError(until.status().message(), "audit export");
    request.set_until_unix_ms(*until);
  }
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
  if (env.json() && !options.bundle) return env.PrintJson(response);
  if (options.out.empty()) {
    // A report is several lines; its other control characters are shown, not obeyed.
    const std::string content = EscapeForTerminal(response.content(), /*keep_newlines=*/true);
    env.out() << content;
    if (!content.empty() && content.back() != '\n') env.out() << '\n';
  } else {
    const std::string what =
        options.bundle ? std::string("audit bundle") : absl::StrCat(options.format, " report");
    env.out() << "exported "
              << (options.incident.empty() ? std::string("the range")
                                           : absl::StrCat("incident ", OneLine(options.incident)))
              << " (" << what << ", " << response.content().size() << " bytes) to "
              << OneLine(options.out) << '\n';
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

  struct VerifyOptions {
    bool full = false;
    std::string bundle;
    std::string public_key;
  };
  auto verify_options = std::make_shared<VerifyOptions>();
  CLI::App* verify = audit->add_subcommand(
      "verify",
      "Check the timeline against its signed checkpoints (incremental; --full from the first "
      "event), or check an exported bundle offline (--bundle, --public-key)");
  verify->add_flag("--full", verify_options->full, "re-hash the whole chain");
  verify->add_option("--bundle", verify_options->bundle,
                     "an audit bundle to check here, with no controller");
  verify->add_option("--public-key", verify_options->public_key,
                     "the controller's audit public key (controller-audit.pub), for --bundle");
  verify->callback([&env, verify_options] {
    env.offline = !verify_options->bundle.empty();
    env.SetAction([&env, verify_options] {
      if (!verify_options->bundle.empty()) {
        return RunVerifyBundle(env, verify_options->bundle, verify_options->public_key);
      }
      if (!verify_options->public_key.empty()) {
        return env.UsageError("--public-key goes with --bundle", "audit verify");
      }
      return RunVerify(env, verify_options->full);
    });
  });

  auto options = std::make_shared<ExportOptions>();
  CLI::App* export_cmd = audit->add_subcommand(
      "export",
      "Export one incident as a report (markdown or json), or as an audit bundle that verifies "
      "offline (--bundle: one incident, or every event --since/--until)");
  export_cmd->add_option("incident", options->incident, "incident id");
  export_cmd->add_option("--format", options->format, "json or markdown")
      ->check(CLI::IsMember({"json", "markdown"}))
      ->capture_default_str();
  export_cmd->add_flag("--bundle", options->bundle,
                       "a self-contained, signed audit bundle (JSON; see README, Audit bundles)");
  export_cmd->add_option("--since", options->since,
                         "bundle of a time range: from (RFC 3339, or a duration back from now)");
  export_cmd->add_option("--until", options->until, "bundle of a time range: until");
  export_cmd->add_option("--out", options->out,
                         "write to this file (atomically) instead of stdout");
  export_cmd->callback(
      [&env, options] { env.SetAction([&env, options] { return RunExport(env, *options); }); });
}

}  // namespace vigil::cli
