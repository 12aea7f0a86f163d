#include "agent/collectors/log_format.h"

#include <cctype>
#include <charconv>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace vigil::agent {
namespace {

bool IsVarChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// Seconds as nginx writes them ("0.123"); "-" or garbage gives -1.
double ParseSeconds(absl::string_view s) {
  double v = -1;
  const auto* end = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(s.data(), end, v);
  return ec == std::errc() && ptr == end ? v : -1;
}

// "$upstream_response_time" lists one time per upstream tried ("0.010, 0.020" or "0.1 : 0.2").
double ParseUpstreamTimes(absl::string_view s) {
  double total = 0;
  bool any = false;
  while (!s.empty()) {
    size_t i = 0;
    while (i < s.size() && (s[i] == ' ' || s[i] == ',' || s[i] == ':')) {
      ++i;
    }
    s.remove_prefix(i);
    size_t j = 0;
    while (j < s.size() && s[j] != ' ' && s[j] != ',' && s[j] != ':') {
      ++j;
    }
    if (j == 0) {
      break;
    }
    const double v = ParseSeconds(s.substr(0, j));
    if (v >= 0) {
      total += v;
      any = true;
    }
    s.remove_prefix(j);
  }
  return any ? total : -1;
}

}  // namespace

absl::StatusOr<LogFormat> LogFormat::Compile(absl::string_view format) {
  LogFormat out;
  std::string literal;
  bool has_status = false, has_latency = false;
  for (size_t i = 0; i < format.size();) {
    if (format[i] != '$') {
      literal.push_back(format[i++]);
      continue;
    }
    size_t start = i + 1, end;
    std::string name;
    if (start < format.size() && format[start] == '{') {
      end = format.find('}', start);
      if (end == absl::string_view::npos) {
        return absl::InvalidArgumentError(absl::StrCat("log_format: unclosed ${ at offset ", i));
      }
      name = std::string(format.substr(start + 1, end - start - 1));
      i = end + 1;
    } else {
      end = start;
      while (end < format.size() && IsVarChar(format[end])) {
        ++end;
      }
      name = std::string(format.substr(start, end - start));
      i = end;
    }
    if (name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("log_format: '$' without a variable name at offset ", start - 1));
    }
    if (!out.tokens_.empty() && literal.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("log_format: $", name,
                       " follows another variable with nothing between them; the line "
                       "cannot be split"));
    }
    Token token;
    token.literal = std::move(literal);
    literal.clear();
    if (name == "status") {
      token.field = Field::kStatus;
      has_status = true;
    } else if (name == "request_time") {
      token.field = Field::kRequestTime;
      has_latency = true;
    } else if (name == "upstream_response_time") {
      token.field = Field::kUpstreamTime;
      has_latency = true;
    } else if (name == "request") {
      token.field = Field::kRequest;
    } else if (name == "request_method") {
      token.field = Field::kMethod;
    } else if (name == "uri" || name == "request_uri") {
      token.field = Field::kUri;
    }
    out.tokens_.push_back(std::move(token));
  }
  out.trailer_ = std::move(literal);
  if (!has_status) {
    return absl::InvalidArgumentError("log_format has no $status: errors cannot be counted");
  }
  if (!has_latency) {
    return absl::InvalidArgumentError(
        "log_format has neither $request_time nor $upstream_response_time: latency cannot be "
        "measured");
  }
  // JSON logs open with '{' and quote their keys.
  out.json_ = !out.tokens_.empty() &&
              absl::StartsWith(absl::StripLeadingAsciiWhitespace(out.tokens_[0].literal), "{");
  return out;
}

bool LogFormat::Parse(absl::string_view line, AccessLogEntry* entry) const {
  *entry = AccessLogEntry{};
  size_t pos = 0;
  for (size_t t = 0; t < tokens_.size(); ++t) {
    const Token& token = tokens_[t];
    if (line.substr(pos, token.literal.size()) != token.literal) {
      return false;
    }
    pos += token.literal.size();
    // The value runs to the next literal (or the trailer, or the end of the line).
    const std::string& next = t + 1 < tokens_.size() ? tokens_[t + 1].literal : trailer_;
    size_t end;
    if (next.empty()) {
      end = line.size();
    } else {
      end = line.find(next, pos);
      // In JSON logs a quote inside a value is escaped: skip matches right after a backslash.
      while (json_ && end != absl::string_view::npos && next[0] == '"' && end > pos &&
             line[end - 1] == '\\') {
        end = line.find(next, end + 1);
      }
      if (end == absl::string_view::npos) {
        return false;
      }
    }
    const absl::string_view value = line.substr(pos, end - pos);
    switch (token.field) {
      case Field::kStatus: {
        int status = 0;
        auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), status);
        if (ec != std::errc() || ptr != value.data() + value.size() || status < 100 ||
            status > 999) {
          return false;
        }
        entry->status = status;
        break;
      }
      case Field::kRequestTime:
        entry->request_time = ParseSeconds(value);
        break;
      case Field::kUpstreamTime:
        entry->upstream_response_time = ParseUpstreamTimes(value);
        break;
      case Field::kRequest: {
        // "GET /path?query HTTP/1.1"; a garbled request line keeps the line countable.
        const size_t sp = value.find(' ');
        if (sp != absl::string_view::npos) {
          entry->method = value.substr(0, sp);
          absl::string_view target = value.substr(sp + 1);
          target = target.substr(
              0, target.rfind(' ') == absl::string_view::npos ? target.size() : target.rfind(' '));
          if (entry->path.empty()) {
            entry->path = target.substr(0, target.find('?'));
          }
        }
        break;
      }
      case Field::kMethod:
        entry->method = value;
        break;
      case Field::kUri:
        entry->path = value.substr(0, value.find('?'));
        break;
      case Field::kOther:
        break;
    }
    pos = end;
  }
  if (line.substr(pos) != trailer_) {
    return false;
  }
  if (entry->status == 0) {
    return false;
  }
  if (entry->request_time < 0 && entry->upstream_response_time >= 0) {
    entry->request_time = entry->upstream_response_time;
  }
  return true;
}

}  // namespace vigil::agent
