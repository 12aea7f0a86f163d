// Fuzzes the nginx log_format compiler and the line parser (agent/collectors/log_format.h).
// The whole input is compiled as a format; every line is parsed with the default format and a
// JSON one; when the first line compiles as a format, the other lines are parsed with it.
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "agent/collectors/log_format.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using vigil::agent::AccessLogEntry;
using vigil::agent::LogFormat;

const LogFormat& Fixed(absl::string_view format) {
  auto compiled = LogFormat::Compile(format);
  FUZZ_CHECK(compiled.ok());
  return *new LogFormat(*std::move(compiled));
}

// A view the parser returns must point into the line it was given.
bool Inside(absl::string_view part, absl::string_view line) {
  return part.empty() ||
         (part.data() >= line.data() && part.data() + part.size() <= line.data() + line.size());
}

void ParseLine(const LogFormat& format, absl::string_view line) {
  AccessLogEntry entry;
  if (!format.Parse(line, &entry)) {
    return;
  }
  FUZZ_CHECK(entry.status >= 100 && entry.status <= 999);
  FUZZ_CHECK(Inside(entry.method, line));
  FUZZ_CHECK(Inside(entry.path, line));
}

template <typename F>
void ForEachLine(absl::string_view text, F f) {
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    f(text.substr(0, nl));
    if (nl == absl::string_view::npos) {
      break;
    }
    text.remove_prefix(nl + 1);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const LogFormat& kDefault = Fixed(LogFormat::kTimedCombined);
  static const LogFormat& kJson = Fixed(
      "{\"time\":\"$time_iso8601\",\"request\":\"$request\",\"status\":$status,"
      "\"request_time\":$request_time,\"upstream\":\"$upstream_response_time\",\"uri\":\"$uri\"}");
  const absl::string_view input(reinterpret_cast<const char*>(data), size);

  (void)LogFormat::Compile(input);

  const size_t nl = input.find('\n');
  const absl::string_view first = input.substr(0, nl);
  const absl::string_view rest =
      nl == absl::string_view::npos ? absl::string_view() : input.substr(nl + 1);
  ForEachLine(input, [](absl::string_view line) {
    ParseLine(kDefault, line);
    ParseLine(kJson, line);
  });
  if (auto custom = LogFormat::Compile(first); custom.ok()) {
    ForEachLine(rest, [&custom](absl::string_view line) { ParseLine(*custom, line); });
  }
  return 0;
}
