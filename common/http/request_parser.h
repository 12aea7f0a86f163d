// The pure part of the HTTP server: parsing a request head (request line and header lines) and
// deciding the body's length. No I/O, no state: fuzzable as is. Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "absl/strings/string_view.h"
#include "common/http/http_message.h"

namespace vigil::http {

// Parses `head`, the bytes before the empty line that ends the headers (without that "\r\n\r\n"),
// into method, path, query and headers of *request. Returns nullopt on success, else the error
// response to send (400 malformed request line or header line, 505 HTTP version); *request is
// then partly filled and must not be served. Accepts any bytes.
std::optional<HttpResponse> ParseRequestHead(absl::string_view head, HttpRequest* request);

// The body length a parsed request announces: Content-Length, or 0 without one. Errors: 411 for
// Transfer-Encoding or for POST/PUT/PATCH without a length, 400 for a malformed Content-Length,
// 413 beyond `max_body_bytes`.
std::optional<HttpResponse> RequestBodyLength(const HttpRequest& request, size_t max_body_bytes,
                                              uint64_t* length);

}  // namespace vigil::http
