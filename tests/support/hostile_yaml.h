// Hostile YAML texts every config, rule and policy parser must turn into a `file:line` error
// rather than a crash: the cases a careless operator or an attacker editing a file would try.
// Header-only; the texts are built once and never change.
#pragma once

#include <regex>
#include <string>
#include <vector>

namespace vigil::testing {

struct HostileYaml {
  std::string name;  // what the case tries, for test messages
  std::string text;
  bool has_line;  // the error can name a line (everything but an empty file)
};

// Cases that break any of Vigil's files whatever its schema. `wrap` places a hostile fragment
// where the schema expects a map of user-chosen keys (e.g. "collectors:\n  " for the agent), so
// the deep cases reach past the top level.
inline std::vector<HostileYaml> HostileYamlCases(const std::string& map_key) {
  const std::string deep(100000, '[');
  return {
      {"non-scalar key at the top", "? [a, b]\n: 1\n", true},
      {"non-scalar map key at the top", "? {a: 1}\n: 1\n", true},
      {"non-scalar key inside " + map_key, map_key + ":\n  ? [a, b]\n  : 1\n", true},
      {"a list where a map is expected", "- a\n- b\n", true},
      {"a list inside " + map_key, map_key + ": [a, b]\n", true},
      {"a scalar inside " + map_key, map_key + ": 5\n", true},
      {"an alias loop at the top", "&x [*x]\n", true},
      {"an alias loop inside " + map_key, map_key + ": &x {a: *x}\n", true},
      {"an alias loop as a map value", "a: &x\n  b: *x\n", true},
      {"an undefined alias", map_key + ": *nowhere\n", true},
      {"a huge number", map_key + ": 1e999999\n", true},
      {"a tab in the indentation", map_key + ":\n\tb: 1\n", true},
      {"invalid UTF-8", map_key + ": \"\xff\xfe\"\n", true},
      {"100000 nested [", deep, true},
      {"100000 nested [ inside " + map_key, map_key + ": " + deep + "\n", true},
      {"100000 nested {", std::string(100000, '{'), true},
      {"an empty file", "", false},
      {"only a comment", "# nothing\n", false},
      {"a NUL byte", map_key + std::string(": a\0b\n", 6), true},
  };
}

// Whether `message` opens with "FILE:LINE: " (or "FILE: " when `has_line` is false).
inline bool OpensWithFileLine(const std::string& message, const std::string& file, bool has_line) {
  const std::string quoted =
      std::regex_replace(file, std::regex(R"([.^$|()\[\]{}*+?\\])"), R"(\$&)");
  const std::regex pattern(quoted + (has_line ? R"(:\d+(:\d+)?: )" : ": "));
  return std::regex_search(message, pattern, std::regex_constants::match_continuous);
}

}  // namespace vigil::testing
