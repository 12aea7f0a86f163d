// The small pieces of HTTP and HTML the review page needs, pure and bounded: HTML escaping,
// application/x-www-form-urlencoded bodies and query strings, and the Cookie header.
// Stateless; thread-safe.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace vigil::controller::review {

// `text` safe as HTML element content and as a double- or single-quoted attribute value:
// & < > " ' are replaced by character references. Bytes are otherwise kept as they are.
std::string HtmlEscape(absl::string_view text);

// Percent-encodes everything but unreserved characters (RFC 3986), for a query value in a link.
std::string UrlEncode(absl::string_view text);

// Limits on a form or query string from a client.
inline constexpr size_t kMaxFormFields = 16;
inline constexpr size_t kMaxFormBytes = 16 * 1024;

// "a=1&b=x+y%21" -> {a: "1", b: "x y!"}. A repeated name keeps its first value; a field without
// '=' has an empty value. InvalidArgument naming the problem for more than kMaxFormFields fields,
// more than kMaxFormBytes bytes, or a malformed percent escape.
absl::StatusOr<std::map<std::string, std::string>> ParseForm(absl::string_view encoded);

// The value of cookie `name` in a Cookie header ("a=1; b=2"); nullopt when absent.
std::optional<std::string> CookieValue(absl::string_view cookie_header, absl::string_view name);

// "ADDRESS" of a peer given as "ADDRESS:PORT" or "[V6]:PORT"; the input when it has no port.
std::string PeerAddress(absl::string_view peer);

}  // namespace vigil::controller::review
