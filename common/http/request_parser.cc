// ParseRequestHead and RequestBodyLength: RFC 9112 request lines and header fields, strictly
// (no folding, token names, no control characters in the target).
#include "common/http/request_parser.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace vigil::http {
namespace {

bool IsTokenChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         absl::string_view("!#$%&'*+-.^_`|~").find(c) != absl::string_view::npos;
}

bool IsToken(absl::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), IsTokenChar);
}

}  // namespace

std::optional<HttpResponse> ParseRequestHead(absl::string_view head, HttpRequest* request) {
  std::vector<absl::string_view> lines = absl::StrSplit(head, "\r\n");
  std::vector<absl::string_view> parts = absl::StrSplit(lines[0], ' ');
  if (parts.size() != 3 || !IsToken(parts[0]) || parts[1].empty() || parts[1][0] != '/' ||
      !absl::StartsWith(parts[2], "HTTP/")) {
    return TextResponse(400, "malformed request line");
  }
  for (char c : parts[1]) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return TextResponse(400, "malformed request line");
    }
  }
  if (parts[2] != "HTTP/1.1" && parts[2] != "HTTP/1.0") {
    return TextResponse(505, "only HTTP/1.0 and HTTP/1.1 are supported");
  }
  request->method = std::string(parts[0]);
  absl::string_view target = parts[1];
  size_t question = target.find('?');
  request->path = std::string(target.substr(0, question));
  if (question != absl::string_view::npos) {
    request->query = std::string(target.substr(question + 1));
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    absl::string_view line = lines[i];
    if (!line.empty() && (line[0] == ' ' || line[0] == '\t')) {
      return TextResponse(400, "folded header lines are not supported");
    }
    size_t colon = line.find(':');
    if (colon == absl::string_view::npos || !IsToken(line.substr(0, colon))) {
      return TextResponse(400, absl::StrCat("malformed header line ", i + 1));
    }
    absl::string_view value = absl::StripAsciiWhitespace(line.substr(colon + 1));
    for (char c : value) {
      if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) {
        return TextResponse(400, absl::StrCat("control character in header line ", i + 1));
      }
    }
    std::string name = absl::AsciiStrToLower(line.substr(0, colon));
    auto [it, inserted] = request->headers.emplace(name, std::string(value));
    if (!inserted) {
      absl::StrAppend(&it->second, ", ", value);
    }
  }
  return std::nullopt;
}

std::optional<HttpResponse> RequestBodyLength(const HttpRequest& request, size_t max_body_bytes,
                                              uint64_t* length) {
  *length = 0;
  if (request.headers.count("transfer-encoding") > 0) {
    return TextResponse(411, "Transfer-Encoding is not supported; send Content-Length");
  }
  auto header = request.headers.find("content-length");
  if (header == request.headers.end()) {
    if (request.method == "POST" || request.method == "PUT" || request.method == "PATCH") {
      return TextResponse(411, absl::StrCat(request.method, " needs a Content-Length"));
    }
    return std::nullopt;
  }
  const std::string& text = header->second;
  if (text.empty() || text.size() > 18 ||
      !std::all_of(text.begin(), text.end(), absl::ascii_isdigit) ||
      !absl::SimpleAtoi(text, length)) {
    *length = 0;
    return TextResponse(400,
                        absl::StrFormat("invalid Content-Length \"%s\"", absl::CHexEscape(text)));
  }
  if (*length > max_body_bytes) {
    return TextResponse(413, absl::StrFormat("request body exceeds %d bytes", max_body_bytes));
  }
  return std::nullopt;
}

}  // namespace vigil::http
