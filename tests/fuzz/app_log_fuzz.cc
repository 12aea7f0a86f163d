// Fuzzes the app_log collector's patterns (agent/collectors/app_log_collector.h): the first line
// of the input is compiled as a pattern (its module group, if any, taken by number from the
// second line's first byte), and every other line is matched with it and with the default
// runbook pattern; a match's module becomes a label.
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "agent/collectors/app_log_collector.h"
#include "agent/collectors/utf8.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using vigil::agent::AppLogMatcher;
using vigil::agent::AppLogModuleLabel;
using vigil::agent::AppLogPattern;

void MatchLine(const AppLogMatcher& m, absl::string_view line) {
  std::optional<std::string> module = m.Match(line);
  if (!module) {
    return;
  }
  FUZZ_CHECK(module->size() <= line.size());
  const std::string label = AppLogModuleLabel(*module);
  FUZZ_CHECK(!label.empty() && label.size() <= vigil::agent::kAppLogMaxModuleChars);
  for (char c : label) {
    FUZZ_CHECK(static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7f);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const AppLogMatcher& kDefault = *new AppLogMatcher(
      *AppLogMatcher::Compile({{R"(ERROR \[(?P<module>[^\]]+)\]|Exception|Traceback)", 0, ""}}));
  absl::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nl = input.find('\n');
  const absl::string_view first = input.substr(0, nl);
  absl::string_view rest = nl == absl::string_view::npos ? "" : input.substr(nl + 1);
  const int group = rest.empty() ? 0 : static_cast<unsigned char>(rest[0]) % 4;
  auto custom = AppLogMatcher::Compile({{std::string(first), group, ""}});
  auto named = AppLogMatcher::Compile({{std::string(first), 0, "m"}});
  FUZZ_CHECK(custom.ok() || !custom.status().message().empty());
  while (!rest.empty()) {
    const size_t end = rest.find('\n');
    const absl::string_view line = rest.substr(0, end);
    MatchLine(kDefault, line);
    // Lines become diagnostic cells: valid UTF-8, one byte out per byte in, idempotent.
    const std::string cell = vigil::agent::ValidUtf8(line);
    FUZZ_CHECK(cell.size() == line.size());
    FUZZ_CHECK(vigil::agent::ValidUtf8(cell) == cell);
    if (custom.ok()) {
      MatchLine(*custom, line);
    }
    if (named.ok()) {
      MatchLine(*named, line);
    }
    if (end == absl::string_view::npos) {
      break;
    }
    rest.remove_prefix(end + 1);
  }
  return 0;
}
