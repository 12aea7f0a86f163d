// set_nginx_upstream{upstream, server, state=add|remove|drain}: edits one server of an upstream
// in a managed upstreams file that nginx includes, validates with `nginx -t`, reloads, and puts
// the previous bytes back (atomically) when validation or reload fails, so nginx keeps serving
// the old upstreams. Every write is a temp file + rename.
//
//   actions:
//     set_nginx_upstream:
//       upstreams_file: /etc/nginx/conf.d/upstreams.conf   # optional, this default; absolute
//       config: /etc/nginx/nginx.conf                      # optional, this default; includes it
//       nginx: /usr/sbin/nginx                             # optional, this default
//       upstreams: [api_backend]    # optional: the upstreams that may be edited (default: all)
//       unix_sockets: [/run/api.sock]  # optional: the only unix: servers allowed (default: none)
//
// The managed file (the format scripts/test-servers/nginx.sh writes too):
//
//   # comments and blank lines are kept
//   upstream api_backend {
//       least_conn;                      # other directives are kept as they are
//       server 127.0.0.1:8081;
//       server 127.0.0.1:8082 down;      # drained
//   }
//
// One directive per line, `{` on the upstream line, only upstream blocks at the top level.
// Changes: add appends `server ADDR;` after the upstream's last server (a drained server is put
// back in service instead; one already in service is refused); remove deletes the server's line;
// drain marks it `down` (no change when it already is). Remove and drain are refused when the
// server is absent or when no server of the upstream would be left up. Used by the command
// executor's thread only.
#pragma once

#include <yaml-cpp/yaml.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "agent/actions/action.h"

namespace vigil::agent {

enum class UpstreamChange { kAdd, kRemove, kDrain };

// "add", "remove" or "drain".
absl::StatusOr<UpstreamChange> ParseUpstreamChange(absl::string_view state);

// The managed file `text` with `change` applied to `server` of `upstream`; the same text when
// there is nothing to change. A file it cannot parse, and a refused change, are
// FailedPrecondition errors that say why.
absl::StatusOr<std::string> EditUpstreamsFile(absl::string_view text, absl::string_view upstream,
                                              absl::string_view server, UpstreamChange change);

absl::StatusOr<std::unique_ptr<Action>> NewSetNginxUpstreamAction(const YAML::Node& options,
                                                                  const ActionContext& context,
                                                                  absl::string_view file);

}  // namespace vigil::agent
