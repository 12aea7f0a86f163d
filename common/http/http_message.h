// The request and response a handler of the HTTP server sees, and their wire helpers (reason
// phrases, response serialization). Plain values; thread-compatible.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace vigil::http {

struct HttpRequest {
  std::string method;
  std::string path;                            // the request target before '?', not percent-decoded
  std::string query;                           // after '?', without it; empty when there is none
  std::map<std::string, std::string> headers;  // names lower-cased; repeated ones joined by ", "
  std::string body;
  // The common name of the client certificate the server verified against its CA; empty when the
  // port runs without TLS, without a CA, or the client sent no certificate.
  std::string client_cn;
  std::string peer;  // "ADDRESS:PORT" of the client, for log lines

  // The header's value, or "" when absent. `name` must be lower-case.
  const std::string& Header(const std::string& name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  // Further headers (e.g. WWW-Authenticate, Retry-After). Content-Type, Content-Length and
  // Connection are the server's: set them here and they are ignored.
  std::vector<std::pair<std::string, std::string>> headers;
};

// "OK", "Not Found", ...; a generic phrase for codes without one of their own.
const char* ReasonPhrase(int status);

// A text/plain response whose body is `text` plus a newline.
HttpResponse TextResponse(int status, absl::string_view text);

// The status line, headers (with Content-Length and `Connection: close`) and body.
std::string SerializeResponse(const HttpResponse& response);

}  // namespace vigil::http
