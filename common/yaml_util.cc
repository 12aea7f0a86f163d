#include "common/yaml_util.h"

#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace vigil {
namespace {

const char* TypeName(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
      return "null";
    case YAML::NodeType::Scalar:
      return "a scalar";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a map";
    default:
      return "undefined";
  }
}

absl::Status WrongType(absl::string_view file, const YAML::Node& node, absl::string_view key,
                       absl::string_view wanted) {
  return absl::InvalidArgumentError(absl::StrCat(YamlWhere(file, node), ": key '", key,
                                                 "' must be ", wanted, ", not ", TypeName(node)));
}

}  // namespace

absl::StatusOr<YAML::Node> LoadYamlString(absl::string_view text, absl::string_view name) {
  try {
    return YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ":", e.mark.line + 1, ":", e.mark.column + 1, ": not valid YAML: ", e.msg));
  }
}

absl::StatusOr<YAML::Node> LoadYamlFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot read: ", std::strerror(errno)));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  return LoadYamlString(buffer.str(), path);
}

std::string YamlWhere(absl::string_view file, const YAML::Node& node) {
  if (!node.IsDefined() || node.Mark().is_null()) return std::string(file);
  return absl::StrCat(file, ":", node.Mark().line + 1);
}

absl::Status YamlCheckKeys(const YAML::Node& node, absl::string_view file, absl::string_view context,
                           std::initializer_list<absl::string_view> allowed) {
  if (!node.IsMap()) {
    if (node.IsNull()) return absl::OkStatus();
    return WrongType(file, node, context, "a map");
  }
  for (const auto& kv : node) {
    std::string key = kv.first.as<std::string>();
    bool known = false;
    for (absl::string_view a : allowed) known = known || a == key;
    if (!known) {
      return absl::InvalidArgumentError(absl::StrCat(YamlWhere(file, kv.first), ": unknown key '",
                                                     key, "' in ", context, " (expected one of: ",
                                                     absl::StrJoin(allowed, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> YamlString(const YAML::Node& node, absl::string_view key,
                                       absl::string_view file, bool required,
                                       absl::string_view fallback) {
  YAML::Node v = node[std::string(key)];
  if (!v.IsDefined() || v.IsNull()) {
    if (required) {
      return absl::InvalidArgumentError(
          absl::StrCat(YamlWhere(file, node), ": missing required key '", key, "'"));
    }
    return std::string(fallback);
  }
  if (!v.IsScalar()) return WrongType(file, v, key, "a string");
  return v.Scalar();
}

absl::StatusOr<double> YamlDouble(const YAML::Node& node, absl::string_view key,
                                  absl::string_view file, double fallback) {
  YAML::Node v = node[std::string(key)];
  if (!v.IsDefined() || v.IsNull()) return fallback;
  double d;
  if (!v.IsScalar() || !absl::SimpleAtod(v.Scalar(), &d)) return WrongType(file, v, key, "a number");
  return d;
}

absl::StatusOr<bool> YamlBool(const YAML::Node& node, absl::string_view key, absl::string_view file,
                              bool fallback) {
  YAML::Node v = node[std::string(key)];
  if (!v.IsDefined() || v.IsNull()) return fallback;
  bool b;
  if (!v.IsScalar() || !absl::SimpleAtob(v.Scalar(), &b)) return WrongType(file, v, key, "true or false");
  return b;
}

absl::StatusOr<std::vector<std::string>> YamlStringList(const YAML::Node& node,
                                                        absl::string_view key,
                                                        absl::string_view file) {
  std::vector<std::string> out;
  YAML::Node v = node[std::string(key)];
  if (!v.IsDefined() || v.IsNull()) return out;
  if (v.IsScalar()) {  // a lone string is a list of one
    out.push_back(v.Scalar());
    return out;
  }
  if (!v.IsSequence()) return WrongType(file, v, key, "a list of strings");
  for (const auto& item : v) {
    if (!item.IsScalar()) return WrongType(file, item, key, "a list of strings");
    out.push_back(item.Scalar());
  }
  return out;
}

absl::StatusOr<absl::Duration> ParseDurationText(absl::string_view text) {
  absl::Duration d;
  if (text == "0") return absl::ZeroDuration();
  // absl understands h/m/s/ms/us/ns; add the day, which rule files use.
  if (!text.empty() && text.back() == 'd') {
    int64_t days;
    if (absl::SimpleAtoi(text.substr(0, text.size() - 1), &days) && days >= 0) {
      return absl::Hours(24 * days);
    }
  } else if (absl::ParseDuration(text, &d) && d >= absl::ZeroDuration()) {
    return d;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("bad duration '", text, "' (write e.g. 500ms, 30s, 5m, 1h, 2d)"));
}

absl::StatusOr<absl::Duration> YamlDuration(const YAML::Node& node, absl::string_view key,
                                            absl::string_view file, absl::Duration fallback) {
  YAML::Node v = node[std::string(key)];
  if (!v.IsDefined() || v.IsNull()) return fallback;
  if (!v.IsScalar()) return WrongType(file, v, key, "a duration");
  auto d = ParseDurationText(v.Scalar());
  if (!d.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(YamlWhere(file, v), ": key '", key, "': ", d.status().message()));
  }
  return d;
}

}  // namespace vigil
