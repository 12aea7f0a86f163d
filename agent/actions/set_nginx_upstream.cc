#include "agent/actions/set_nginx_upstream.h"

#include <stdlib.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "agent/actions/action_util.h"
#include "agent/actions/reload_nginx.h"
#include "common/action_schema.h"
#include "common/status.h"
#include "spdlog/spdlog.h"

namespace vigil::agent {
namespace {

constexpr char kSetNginxUpstream[] = "set_nginx_upstream";

struct ServerLine {
  size_t line = 0;  // index into the file's lines
  std::string address;
  std::vector<std::string> params;  // weight=5, backup, down...
  std::string indent;
  std::string comment;  // from '#', kept when the line is rewritten

  bool down() const { return std::find(params.begin(), params.end(), "down") != params.end(); }
  std::string Text() const {
    std::string text = absl::StrCat(indent, "server ", address);
    for (const std::string& p : params) {
      absl::StrAppend(&text, " ", p);
    }
    absl::StrAppend(&text, ";", comment.empty() ? "" : " ", comment);
    return text;
  }
};

struct UpstreamBlock {
  std::string name;
  size_t close = 0;  // the line of its `}`
  std::vector<ServerLine> servers;
};

bool ValidName(absl::string_view name) {
  if (name.empty()) {
    return false;
  }
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '_' && c != '-' && c != '.') {
      return false;
    }
  }
  return true;
}

// What nginx accepts in a `server` address, without anything that could end the directive.
bool ValidServer(absl::string_view server) {
  if (server.empty() || server.size() > 255 || server[0] == '-') {
    return false;
  }
  for (char c : server) {
    if (!absl::ascii_isalnum(c) && c != '.' && c != ':' && c != '-' && c != '_' && c != '[' &&
        c != ']' && c != '/') {
      return false;
    }
  }
  return true;
}

absl::Status Unparsable(size_t line, absl::string_view what) {
  return absl::FailedPreconditionError(
      absl::StrCat("the upstreams file is not in the managed format: line ", line + 1, ": ", what));
}

absl::StatusOr<std::vector<UpstreamBlock>> ParseUpstreams(const std::vector<std::string>& lines) {
  std::vector<UpstreamBlock> blocks;
  std::optional<UpstreamBlock> open;
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string& raw = lines[i];
    const size_t hash = raw.find('#');
    const absl::string_view code =
        absl::StripAsciiWhitespace(absl::string_view(raw).substr(0, hash));
    if (code.empty()) {
      continue;
    }
    if (!open.has_value()) {
      absl::string_view rest = code;
      if (!absl::ConsumePrefix(&rest, "upstream") || rest.empty() ||
          !absl::ascii_isspace(rest[0]) || !absl::ConsumeSuffix(&rest, "{")) {
        return Unparsable(i, "expected `upstream NAME {`");
      }
      const std::string name(absl::StripAsciiWhitespace(rest));
      if (!ValidName(name)) {
        return Unparsable(i, absl::StrCat("bad upstream name '", name, "'"));
      }
      for (const UpstreamBlock& b : blocks) {
        if (b.name == name) {
          return Unparsable(i, absl::StrCat("upstream '", name, "' is defined twice"));
        }
      }
      open.emplace();
      open->name = name;
      continue;
    }
    if (code == "}") {
      open->close = i;
      blocks.push_back(std::move(*open));
      open.reset();
      continue;
    }
    absl::string_view statement = code;
    if (!absl::ConsumeSuffix(&statement, ";") || absl::StrContains(statement, ";") ||
        absl::StrContains(statement, "{") || absl::StrContains(statement, "}")) {
      return Unparsable(i, "expected one directive ending with ';' or the closing '}'");
    }
    std::vector<std::string> tokens =
        absl::StrSplit(statement, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (tokens.empty()) {
      return Unparsable(i, "an empty directive");
    }
    if (tokens[0] != "server") {
      continue;  // another directive of the upstream (least_conn, keepalive...): kept as it is
    }
    if (tokens.size() < 2) {
      return Unparsable(i, "a server without an address");
    }
    ServerLine server;
    server.line = i;
    server.address = tokens[1];
    server.params.assign(tokens.begin() + 2, tokens.end());
    server.indent = raw.substr(0, raw.find_first_not_of(" \t"));
    server.comment = hash == std::string::npos ? "" : raw.substr(hash);
    for (const ServerLine& other : open->servers) {
      if (other.address == server.address) {
        return Unparsable(
            i, absl::StrCat("server ", server.address, " is listed twice in '", open->name, "'"));
      }
    }
    open->servers.push_back(std::move(server));
  }
  if (open.has_value()) {
    return Unparsable(lines.size() - 1, absl::StrCat("upstream '", open->name, "' is not closed"));
  }
  return blocks;
}

// How many servers of `block` are up (not `down`) once `except` is removed or drained.
int ServersLeftUp(const UpstreamBlock& block, absl::string_view except) {
  int up = 0;
  for (const ServerLine& s : block.servers) {
    up += s.address != except && !s.down() ? 1 : 0;
  }
  return up;
}

class SetNginxUpstream final : public Action {
 public:
  SetNginxUpstream(CommandRunner* runner, std::string upstreams_file, NginxCommands nginx,
                   std::vector<std::string> upstreams, std::vector<std::string> unix_sockets)
      : runner_(runner),
        file_(std::move(upstreams_file)),
        nginx_(std::move(nginx)),
        upstreams_(std::move(upstreams)),
        unix_sockets_(std::move(unix_sockets)) {}

  absl::string_view name() const override { return kSetNginxUpstream; }

  absl::Status Check(const ActionParams& params) const override {
    RETURN_IF_ERROR(CheckActionParams(kSetNginxUpstream, params));
    const std::string& upstream = params.at("upstream");
    const std::string& server = params.at("server");
    if (!ValidName(upstream)) {
      return absl::InvalidArgumentError(
          absl::StrCat(kSetNginxUpstream, ": upstream '", upstream,
                       "' is not a valid name (letters, digits, _-.)"));
    }
    if (!ValidServer(server)) {
      return absl::InvalidArgumentError(
          absl::StrCat(kSetNginxUpstream, ": server '", server,
                       "' is not a valid address (host:port, [v6]:port or unix:/path)"));
    }
    // A unix: server sends traffic to any local socket (a database's, the agent's): only the
    // paths the config lists.
    if (absl::StartsWithIgnoreCase(server, "unix:")) {
      const std::string path = server.substr(5);
      if (std::find(unix_sockets_.begin(), unix_sockets_.end(), path) == unix_sockets_.end()) {
        return absl::PermissionDeniedError(absl::StrCat(
            kSetNginxUpstream, ": server '", server,
            "' is a unix socket not listed in the action's config (",
            unix_sockets_.empty() ? "no unix_sockets are allowed"
                                  : absl::StrCat("allowed: ", absl::StrJoin(unix_sockets_, ", ")),
            ")"));
      }
    }
    if (!upstreams_.empty() &&
        std::find(upstreams_.begin(), upstreams_.end(), upstream) == upstreams_.end()) {
      return absl::PermissionDeniedError(
          absl::StrCat(kSetNginxUpstream, ": upstream '", upstream,
                       "' is not allowed (allowed: ", absl::StrJoin(upstreams_, ", "), ")"));
    }
    return absl::OkStatus();
  }

  ActionResult Run(const ActionParams& params, absl::Duration timeout) override {
    if (absl::Status s = Check(params); !s.ok()) {
      return Failure(std::string(s.message()));
    }
    const std::string& upstream = params.at("upstream");
    const std::string& server = params.at("server");
    const std::string& state = params.at("state");
    StepRunner steps(kSetNginxUpstream, runner_, timeout);
    const std::string path = ResolvedPath();
    absl::StatusOr<std::string> before = ReadWholeFile(path);
    if (!before.ok()) {
      steps.Fail(std::string(before.status().message()));
      return steps.Finish();
    }
    absl::StatusOr<std::string> after =
        EditUpstreamsFile(*before, upstream, server, *ParseUpstreamChange(state));
    if (!after.ok()) {
      steps.Fail(absl::StrCat(path, ": ", after.status().message()));
      return steps.Finish();
    }
    if (*after == *before) {
      steps.Note(absl::StrCat("server ", server, " of upstream '", upstream,
                              "' is already drained: nothing to change"));
      return steps.Finish();
    }
    if (absl::Status s = WriteFileAtomically(path, *after); !s.ok()) {
      steps.Fail(std::string(s.message()));
      return steps.Finish();
    }
    steps.Note(absl::StrCat("wrote ", path, ": ", state, " server ", server, " in upstream '",
                            upstream, "'"));
    if (steps.Run(nginx_.TestArgv()) && steps.Run(nginx_.ReloadArgv())) {
      steps.Note("nginx reloaded");
      spdlog::info("{}: {} server {} in upstream '{}'; nginx reloaded", kSetNginxUpstream, state,
                   server, upstream);
      return steps.Finish();
    }
    // Validation or reload failed: the running nginx still has the old upstreams; so must the file.
    std::string restored;
    if (absl::Status s = WriteFileAtomically(path, *before); s.ok()) {
      restored = absl::StrCat("; restored the previous ", path);
      steps.Note(absl::StrCat("restored the previous ", path));
      spdlog::warn("{}{}", steps.Finish().reason, restored);
    } else {
      restored = absl::StrCat("; COULD NOT RESTORE the previous ", path, ": ", s.message());
      steps.Note(restored.substr(2));
      spdlog::error("{}{}", steps.Finish().reason, restored);
    }
    ActionResult result = steps.Finish();
    result.reason += restored;
    return result;
  }

 private:
  // The file the path names (rename would replace a symlink itself).
  std::string ResolvedPath() const {
    char* real = realpath(file_.c_str(), nullptr);
    if (real == nullptr) {
      return file_;
    }
    std::string path(real);
    free(real);
    return path;
  }

  CommandRunner* runner_;
  std::string file_;
  NginxCommands nginx_;
  std::vector<std::string> upstreams_;
  std::vector<std::string> unix_sockets_;  // the unix: paths a server may name
};

}  // namespace

absl::StatusOr<UpstreamChange> ParseUpstreamChange(absl::string_view state) {
  if (state == "add") {
    return UpstreamChange::kAdd;
  }
  if (state == "remove") {
    return UpstreamChange::kRemove;
  }
  if (state == "drain") {
    return UpstreamChange::kDrain;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("state '", state, "' is not one of add, remove, drain"));
}

absl::StatusOr<std::string> EditUpstreamsFile(absl::string_view text, absl::string_view upstream,
                                              absl::string_view server, UpstreamChange change) {
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  ASSIGN_OR_RETURN(std::vector<UpstreamBlock> blocks, ParseUpstreams(lines));
  auto block = std::find_if(blocks.begin(), blocks.end(),
                            [&](const UpstreamBlock& b) { return b.name == upstream; });
  if (block == blocks.end()) {
    std::vector<std::string> names;
    for (const UpstreamBlock& b : blocks) {
      names.push_back(b.name);
    }
    return absl::FailedPreconditionError(
        absl::StrCat("upstream '", upstream, "' is not in the file (upstreams there: ",
                     names.empty() ? "none" : absl::StrJoin(names, ", "), ")"));
  }
  auto found = std::find_if(block->servers.begin(), block->servers.end(),
                            [&](const ServerLine& s) { return s.address == server; });
  const bool present = found != block->servers.end();
  switch (change) {
    case UpstreamChange::kAdd: {
      if (present && !found->down()) {
        return absl::FailedPreconditionError(
            absl::StrCat("server ", server, " is already in upstream '", upstream, "'"));
      }
      if (present) {  // drained: back in service
        found->params.erase(std::remove(found->params.begin(), found->params.end(), "down"),
                            found->params.end());
        lines[found->line] = found->Text();
        break;
      }
      ServerLine added;
      added.address = std::string(server);
      added.indent = block->servers.empty() ? "    " : block->servers.front().indent;
      const size_t at = block->servers.empty() ? block->close : block->servers.back().line + 1;
      lines.insert(lines.begin() + at, added.Text());
      break;
    }
    case UpstreamChange::kRemove:
    case UpstreamChange::kDrain: {
      const bool remove = change == UpstreamChange::kRemove;
      if (!present) {
        return absl::FailedPreconditionError(
            absl::StrCat("server ", server, " is not in upstream '", upstream, "'"));
      }
      if (!remove && found->down()) {
        break;  // already drained
      }
      if (ServersLeftUp(*block, server) == 0) {
        return absl::FailedPreconditionError(absl::StrCat(remove ? "removing " : "draining ",
                                                          server, " would leave upstream '",
                                                          upstream, "' with no server up"));
      }
      if (remove) {
        lines.erase(lines.begin() + found->line);
      } else {
        found->params.push_back("down");
        lines[found->line] = found->Text();
      }
      break;
    }
  }
  return absl::StrJoin(lines, "\n");
}

absl::StatusOr<std::unique_ptr<Action>> NewSetNginxUpstreamAction(const YAML::Node& options,
                                                                  const ActionContext& context,
                                                                  absl::string_view file) {
  ActionOptions o(options, file, kSetNginxUpstream);
  RETURN_IF_ERROR(o.CheckKeys({"upstreams_file", "config", "nginx", "upstreams", "unix_sockets"}));
  ASSIGN_OR_RETURN(NginxCommands nginx, ReadNginxCommands(o));
  ASSIGN_OR_RETURN(std::string upstreams_file,
                   o.Path("upstreams_file", "/etc/nginx/conf.d/upstreams.conf"));
  ASSIGN_OR_RETURN(std::vector<std::string> upstreams, o.List("upstreams", /*required=*/false));
  if (upstreams.empty() && options.IsMap() && options["upstreams"].IsDefined() &&
      !options["upstreams"].IsNull()) {
    return o.Error("upstreams", "must not be empty (leave it out to allow every upstream)");
  }
  for (const std::string& name : upstreams) {
    if (!ValidName(name)) {
      return o.Error("upstreams", absl::StrCat("'", name, "' is not a valid upstream name"));
    }
  }
  ASSIGN_OR_RETURN(std::vector<std::string> unix_sockets,
                   o.List("unix_sockets", /*required=*/false));
  for (const std::string& path : unix_sockets) {
    if (path.empty() || path[0] != '/' || absl::StrContains(path, "/../") ||
        absl::EndsWith(path, "/..") || !ValidServer(absl::StrCat("unix:", path))) {
      return o.Error("unix_sockets", absl::StrCat("'", path, "' is not an absolute socket path"));
    }
  }
  return std::make_unique<SetNginxUpstream>(context.runner, std::move(upstreams_file),
                                            std::move(nginx), std::move(upstreams),
                                            std::move(unix_sockets));
}

}  // namespace vigil::agent
