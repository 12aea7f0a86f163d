// Response compression for the HTTP layer: gzip (RFC 1952) when the client says it takes it.
// Prometheus sends `Accept-Encoding: gzip` on every scrape; a fleet page of text compresses
// about tenfold, which is what lets a page of 10,000 agents leave within the write timeout.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/http/http_message.h"

namespace vigil::http {

// True when an Accept-Encoding value lists gzip (or *) without q=0 (RFC 9110 12.5.3).
bool AcceptsGzip(absl::string_view accept_encoding);

// `data` as one gzip member. Level 1: the fastest, most of the gain on repetitive text.
absl::StatusOr<std::string> GzipCompress(absl::string_view data, int level = 1);

// Compresses a 200 response's body in place and adds `Content-Encoding: gzip` when `request`
// accepts it and the body is worth it (at least 1 KiB); `Vary: Accept-Encoding` either way. A
// compression failure leaves the response as it was.
void MaybeGzip(const HttpRequest& request, HttpResponse& response);

}  // namespace vigil::http
