#include "cli/output.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/utf8.h"

namespace vigil::cli {
namespace {

// Display width of UTF-8 text: code points, not bytes.
size_t DisplayWidth(absl::string_view text) {
  size_t width = 0;
  for (char c : text) {
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++width;
  }
  return width;
}

}  // namespace

std::string EscapeForTerminal(absl::string_view text, bool keep_newlines) {
  std::string escaped;
  escaped.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7F) {
      escaped.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    if (c < 0x80) {  // C0 control or DEL
      if (keep_newlines && (c == '\n' || c == '\t')) {
        escaped.push_back(static_cast<char>(c));
      } else if (c == '\n') {
        escaped += "\\n";
      } else if (c == '\r') {
        escaped += "\\r";
      } else if (c == '\t') {
        escaped += "\\t";
      } else {
        absl::StrAppendFormat(&escaped, "\\x%02x", static_cast<unsigned>(c));
      }
      ++i;
      continue;
    }
    char32_t code_point = 0;
    const size_t length = DecodeUtf8(text.substr(i), &code_point);
    if (length == 0) {  // not UTF-8: the byte alone, and resynchronise on the next one
      absl::StrAppendFormat(&escaped, "\\x%02x", static_cast<unsigned>(c));
      ++i;
    } else if (IsHiddenControl(code_point)) {
      absl::StrAppendFormat(&escaped, "\\u%04x", static_cast<uint32_t>(code_point));
      i += length;
    } else {
      escaped.append(text.data() + i, length);
      i += length;
    }
  }
  return escaped;
}

Table::Table(std::vector<std::string> headers) : headers_(std::move(headers)) {
  for (std::string& header : headers_) header = OneLine(header);
}

void Table::AddRow(std::vector<std::string> cells) {
  cells.resize(headers_.size());
  for (std::string& cell : cells) cell = OneLine(cell);
  rows_.push_back(std::move(cells));
}

void Table::Print(std::ostream& out, absl::string_view indent) const {
  std::vector<size_t> widths(headers_.size(), 0);
  auto measure = [&widths](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], DisplayWidth(row[i]));
  };
  measure(headers_);
  for (const auto& row : rows_) measure(row);
  auto print_row = [&](const std::vector<std::string>& row) {
    std::string line(indent);
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line.append(widths[i] - DisplayWidth(row[i]) + 3, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out << line << '\n';
  };
  print_row(headers_);
  for (const auto& row : rows_) print_row(row);
}

std::string ToJson(const google::protobuf::Message& message, bool pretty) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  options.add_whitespace = pretty;
  std::string json;
  auto status = google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!status.ok()) {
    // Only possible for messages with unresolvable Any fields, which the API does not use.
    return absl::StrCat("{\"error\": \"cannot print ", message.GetTypeName(), " as JSON\"}\n");
  }
  if (pretty && (json.empty() || json.back() != '\n')) json += '\n';
  return json;
}

std::string FormatPercent(double ratio) {
  if (ratio < 0 || std::isnan(ratio)) return "-";
  return absl::StrCat(static_cast<int64_t>(std::llround(ratio * 100)), "%");
}

std::string FormatNumber(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    return absl::StrCat(static_cast<int64_t>(value));
  }
  if (std::fabs(value) >= 1e4) return absl::StrFormat("%.1f", value);
  return absl::StrFormat("%.4g", value);
}

std::string FormatAgo(int64_t unix_ms, absl::Time now) {
  if (unix_ms <= 0) return "-";
  int64_t seconds = std::max<int64_t>(0, absl::ToInt64Seconds(now - absl::FromUnixMillis(unix_ms)));
  if (seconds < 60) return absl::StrCat(seconds, "s ago");
  if (seconds < 3600) return absl::StrCat(seconds / 60, "m ago");
  if (seconds < 48 * 3600) return absl::StrCat(seconds / 3600, "h ago");
  return absl::StrCat(seconds / 86400, "d ago");
}

std::string FormatTimestamp(int64_t unix_ms) {
  if (unix_ms <= 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M:%SZ", absl::FromUnixMillis(unix_ms), absl::UTCTimeZone());
}

std::string FormatDurationMs(int64_t ms) {
  if (ms < 1000) return absl::StrCat(ms, "ms");
  if (ms < 60'000) return absl::StrFormat("%.1fs", ms / 1000.0);
  return absl::StrCat(ms / 60'000, "m", (ms % 60'000) / 1000, "s");
}

std::string FormatLabels(const google::protobuf::Map<std::string, std::string>& labels) {
  if (labels.empty()) return "-";
  std::vector<std::pair<std::string, std::string>> sorted(labels.begin(), labels.end());
  std::sort(sorted.begin(), sorted.end());
  return absl::StrJoin(sorted, ",", absl::PairFormatter("="));
}

std::string JoinOrDash(const google::protobuf::RepeatedPtrField<std::string>& items) {
  if (items.empty()) return "-";
  return absl::StrJoin(items, ",");
}

std::string OneLine(absl::string_view text) {
  return EscapeForTerminal(absl::StripAsciiWhitespace(text));
}

std::string FormatEventLine(const v1::TimelineEvent& event) {
  return absl::StrCat(
      FormatTimestamp(event.time_unix_ms()), "  #", event.seq(), "  ",
      event.incident_id().empty() ? "-" : OneLine(event.incident_id()), "  ", OneLine(event.kind()),
      "  ", event.actor().empty() ? "-" : OneLine(event.actor()), "  ", OneLine(event.summary()));
}

}  // namespace vigil::cli
