// Strict YAML reading for config and rule files: every error names file, line and key.
// yaml-cpp exceptions stop here and become absl::Status. Stateless; thread-safe.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace vigil {

// Config files are small: anything larger is refused before it is read.
inline constexpr size_t kMaxConfigFileBytes = 4 << 20;
// Flow collections ([ and {) nested deeper than this are refused before yaml-cpp sees them.
inline constexpr int kMaxYamlNesting = 64;

// Reads a whole config file: a missing or unreadable path, a directory or a file over
// kMaxConfigFileBytes is an error naming the path.
absl::StatusOr<std::string> ReadConfigFile(const std::string& path);

// Parses a whole file. Missing, unreadable or malformed files are errors naming the file
// (and the line, for syntax errors). Text that is not UTF-8 or nests too deep is refused with
// its line. No exception escapes.
absl::StatusOr<YAML::Node> LoadYamlFile(const std::string& path);
absl::StatusOr<YAML::Node> LoadYamlString(absl::string_view text, absl::string_view name);

// The exception being handled (call inside a catch block) as an InvalidArgument status naming
// `file` and, for yaml-cpp exceptions that carry one, the line.
absl::Status YamlExceptionStatus(absl::string_view file);

// The text of a map key; a key that is not a plain scalar (`? [a, b]`) is an error naming the
// line and `context`.
absl::StatusOr<std::string> YamlKey(const YAML::Node& key, absl::string_view file,
                                    absl::string_view context);

// "file:LINE" of a node (1-based), or just "file" when yaml-cpp has no mark for it.
std::string YamlWhere(absl::string_view file, const YAML::Node& node);

// Errors on any key of the map `node` that is not in `allowed`.
absl::Status YamlCheckKeys(const YAML::Node& node, absl::string_view file,
                           absl::string_view context,
                           std::initializer_list<absl::string_view> allowed);

// Typed reads of `node[key]`; a missing key yields `fallback` unless `required`. Numbers must be
// finite. `node` must be a map (or null).
absl::StatusOr<std::string> YamlString(const YAML::Node& node, absl::string_view key,
                                       absl::string_view file, bool required = false,
                                       absl::string_view fallback = "");
absl::StatusOr<double> YamlDouble(const YAML::Node& node, absl::string_view key,
                                  absl::string_view file, double fallback);
// A whole number in [min, max]; anything else (1.5, 1e300, -1 below min) names the key and range.
absl::StatusOr<int64_t> YamlInt(const YAML::Node& node, absl::string_view key,
                                absl::string_view file, int64_t fallback, int64_t min, int64_t max);
absl::StatusOr<bool> YamlBool(const YAML::Node& node, absl::string_view key, absl::string_view file,
                              bool fallback);
absl::StatusOr<std::vector<std::string>> YamlStringList(const YAML::Node& node,
                                                        absl::string_view key,
                                                        absl::string_view file);
// Durations as Go/Prometheus write them: 300ms, 5s, 5m, 1h, 1d.
absl::StatusOr<absl::Duration> ParseDurationText(absl::string_view text);
absl::StatusOr<absl::Duration> YamlDuration(const YAML::Node& node, absl::string_view key,
                                            absl::string_view file, absl::Duration fallback);

}  // namespace vigil
