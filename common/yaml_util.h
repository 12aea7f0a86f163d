// Strict YAML reading for config and rule files: every error names file, line and key.
// yaml-cpp exceptions stop here and become absl::Status. Stateless; thread-safe.
#pragma once

#include <yaml-cpp/yaml.h>

#include <initializer_list>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace vigil {

// Parses a whole file. Missing, unreadable or malformed files are errors naming the file
// (and the line, for syntax errors).
absl::StatusOr<YAML::Node> LoadYamlFile(const std::string& path);
absl::StatusOr<YAML::Node> LoadYamlString(absl::string_view text, absl::string_view name);

// "file:LINE" of a node (1-based), or just "file" when yaml-cpp has no mark for it.
std::string YamlWhere(absl::string_view file, const YAML::Node& node);

// Errors on any key of the map `node` that is not in `allowed`.
absl::Status YamlCheckKeys(const YAML::Node& node, absl::string_view file, absl::string_view context,
                           std::initializer_list<absl::string_view> allowed);

// Typed reads of `node[key]`; a missing key yields `fallback` unless `required`.
absl::StatusOr<std::string> YamlString(const YAML::Node& node, absl::string_view key,
                                       absl::string_view file, bool required = false,
                                       absl::string_view fallback = "");
absl::StatusOr<double> YamlDouble(const YAML::Node& node, absl::string_view key,
                                  absl::string_view file, double fallback);
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
