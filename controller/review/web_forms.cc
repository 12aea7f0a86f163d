#include "controller/review/web_forms.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace vigil::controller::review {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

absl::StatusOr<std::string> Decode(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%') {
      if (i + 2 >= text.size()) {
        return absl::InvalidArgumentError("a percent escape is cut short");
      }
      const int high = HexValue(text[i + 1]);
      const int low = HexValue(text[i + 2]);
      if (high < 0 || low < 0) {
        return absl::InvalidArgumentError("a percent escape is not two hex digits");
      }
      out.push_back(static_cast<char>(high * 16 + low));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace

std::string HtmlEscape(absl::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 8);
  for (const char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

std::string UrlEncode(absl::string_view text) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  std::string out;
  for (const unsigned char c : text) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kDigits[c >> 4]);
      out.push_back(kDigits[c & 15]);
    }
  }
  return out;
}

absl::StatusOr<std::map<std::string, std::string>> ParseForm(absl::string_view encoded) {
  if (encoded.size() > kMaxFormBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("the form has ", encoded.size(), " bytes; at most ", kMaxFormBytes));
  }
  std::map<std::string, std::string> fields;
  size_t count = 0;
  for (absl::string_view pair : absl::StrSplit(encoded, '&', absl::SkipEmpty())) {
    if (++count > kMaxFormFields) {
      return absl::InvalidArgumentError(
          absl::StrCat("the form has more than ", kMaxFormFields, " fields"));
    }
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(pair, absl::MaxSplits('=', 1));
    absl::StatusOr<std::string> name = Decode(kv.first);
    if (!name.ok()) {
      return name.status();
    }
    absl::StatusOr<std::string> value = Decode(kv.second);
    if (!value.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("form field '", *name, "': ", value.status().message()));
    }
    fields.emplace(*std::move(name), *std::move(value));
  }
  return fields;
}

std::optional<std::string> CookieValue(absl::string_view cookie_header, absl::string_view name) {
  for (absl::string_view part : absl::StrSplit(cookie_header, ';')) {
    part = absl::StripAsciiWhitespace(part);
    if (absl::ConsumePrefix(&part, name) && absl::ConsumePrefix(&part, "=")) {
      return std::string(absl::StripAsciiWhitespace(part));
    }
  }
  return std::nullopt;
}

std::string PeerAddress(absl::string_view peer) {
  if (absl::ConsumePrefix(&peer, "[")) {
    const size_t close = peer.find(']');
    return std::string(close == absl::string_view::npos ? peer : peer.substr(0, close));
  }
  const size_t colon = peer.rfind(':');
  if (colon == absl::string_view::npos || peer.find(':') != colon) {
    return std::string(peer);  // no port, or a bare IPv6 address
  }
  return std::string(peer.substr(0, colon));
}

}  // namespace vigil::controller::review
