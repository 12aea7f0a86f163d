// A small blocking HTTP/1.1 client for probes, scrapes and notifications: one request per
// connection to http(s)://HOST:PORT/PATH, with a connect deadline, a deadline for the whole
// exchange, a cap on the response size and optional TLS (a CA to verify the server, and a client
// certificate). No redirects, no proxies, no connection reuse.
// Thread-safe: every call is independent (the TLS context is built per call).
#pragma once

#include <netdb.h>

#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace vigil::http {

struct HttpClientOptions {
  absl::Duration connect_timeout = absl::Seconds(5);
  // From the start of the call to the last byte of the response.
  absl::Duration timeout = absl::Seconds(10);
  size_t max_response_bytes = 4 * 1024 * 1024;  // head and body; ResourceExhausted beyond
  // https only: the CA bundle that must have signed the server (empty: the system's), and an
  // optional client certificate and key (PEM).
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  std::vector<std::pair<std::string, std::string>> headers;  // sent with every request
  // When set, the connection goes to this unix socket (e.g. /var/run/docker.sock) instead of the
  // URL's HOST:PORT, which then only names the Host header; http:// URLs only.
  std::string unix_socket;
  // Name lookup, getaddrinfo's signature; empty: getaddrinfo itself. Tests replace it to stand
  // for a resolver that does not answer.
  std::function<int(const char* host, const char* service, const addrinfo* hints,
                    addrinfo** result)>
      address_lookup;
};

struct HttpClientResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased; repeated ones joined by ", "
  std::string body;                            // chunked bodies decoded
};

// Sends METHOD to `url` with `body` (a Content-Length is always sent for POST, PUT and PATCH).
// Errors name the URL: InvalidArgument for a bad URL, Unavailable when the connection fails or
// the server's answer is not HTTP, DeadlineExceeded past a deadline, ResourceExhausted past the
// size cap, Unauthenticated when TLS verification fails. Any status code is a successful call.
absl::StatusOr<HttpClientResponse> HttpFetch(absl::string_view method, absl::string_view url,
                                             absl::string_view body, absl::string_view content_type,
                                             const HttpClientOptions& options);

inline absl::StatusOr<HttpClientResponse> HttpGet(absl::string_view url,
                                                  const HttpClientOptions& options = {}) {
  return HttpFetch("GET", url, "", "", options);
}
inline absl::StatusOr<HttpClientResponse> HttpPost(absl::string_view url, absl::string_view body,
                                                   absl::string_view content_type,
                                                   const HttpClientOptions& options = {}) {
  return HttpFetch("POST", url, body, content_type, options);
}

// Pure pieces, exposed for tests and fuzzing.
struct ParsedUrl {
  bool tls = false;
  std::string host;  // without brackets for IPv6
  int port = 0;
  std::string target;  // path and query, "/" at least
};
absl::StatusOr<ParsedUrl> ParseHttpUrl(absl::string_view url);
// A complete response (everything up to the server's close) into status, headers and body.
absl::StatusOr<HttpClientResponse> ParseHttpResponse(absl::string_view raw);
// The payload of a chunked body; InvalidArgument for a malformed or truncated one.
absl::StatusOr<std::string> DecodeChunked(absl::string_view chunked);

}  // namespace vigil::http
