#include "common/redact.h"

#include <re2/re2.h>

#include <memory>
#include <string>
#include <vector>

namespace vigil {
namespace {

// A key that names a secret, with the quote that may close it ("password": ...).
constexpr char kKey[] =
    R"([a-z0-9_.-]*(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|)"
    R"(private[_-]?key|credentials?)[a-z0-9_.-]*["']?)";

struct Rule {
  std::unique_ptr<RE2> pattern;
  const char* rewrite;
};

const std::vector<Rule>& Rules() {
  static const auto* rules = [] {
    RE2::Options options;
    options.set_case_sensitive(false);
    options.set_log_errors(false);
    auto* list = new std::vector<Rule>();
    auto add = [&](const std::string& pattern, const char* rewrite) {
      list->push_back(Rule{std::make_unique<RE2>(pattern, options), rewrite});
    };
    const std::string key = kKey;
    // Credentials in URIs: postgres://user:pass@host.
    add(R"(([a-z][a-z0-9+.-]*://[^/\s:@'"]*):[^/\s@'"]+@)", R"(\1:***@)");
    // Authorization headers, whatever the scheme, and bare bearer tokens.
    add(R"((\bauthorization\s*[:=]\s*(?:bearer|basic|digest|token|negotiate)\s+)[^\s'",;]+)",
        R"(\1***)");
    add(R"((\bauthorization\s*[:=]\s*)[^\s'",;*]+\s*$)", R"(\1***)");
    add(R"((\bbearer\s+)[a-z0-9._~+/=-]+)", R"(\1***)");
    // SQL: IDENTIFIED BY 'x' (and PASSWORD 'x' below, a key followed by a quoted value).
    add(R"((\bidentified\s+by\s+)'(?:[^']|'')*')", R"(\1'***')");
    // key = 'quoted', key "quoted" (SQL PASSWORD 'x'), key: "quoted".
    add("(" + key + R"((?:\s*[=:]\s*|\s+)e?)'(?:[^'\\]|''|\\.)*')", R"(\1'***')");
    add("(" + key + R"((?:\s*[=:]\s*|\s+)))" + R"("(?:[^"\\]|\\.)*")", R"(\1"***")");
    // --password VALUE
    add(R"((--?[a-z0-9_-]*(?:password|passwd|secret|token|api[_-]?key)\s+)[^\s'"*-][^\s'"]*)",
        R"(\1***)");
    // key=value, key: value (unquoted, up to a space or a separator).
    add("(" + key + R"(\s*[=:]\s*)[^\s'"&,;)*][^\s'"&,;)]*)", R"(\1***)");
    return list;
  }();
  return *rules;
}

}  // namespace

std::string Redact(absl::string_view text) {
  std::string out(text);
  for (const Rule& rule : Rules()) {
    RE2::GlobalReplace(&out, *rule.pattern, rule.rewrite);
  }
  return out;
}

}  // namespace vigil
