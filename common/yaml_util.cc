#include "common/yaml_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
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

// `node[key]` when `node` is a map; undefined otherwise (yaml-cpp throws on a scalar).
YAML::Node Child(const YAML::Node& node, absl::string_view key) {
  if (!node.IsMap()) {
    return YAML::Node(YAML::NodeType::Undefined);
  }
  return node[std::string(key)];
}

// 1-based line and column of byte `offset` in `text`.
std::string Position(absl::string_view text, size_t offset) {
  size_t line = 1;
  size_t line_start = 0;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
  }
  return absl::StrCat(line, ":", offset - line_start + 1);
}

// Offset of the first byte that is not part of well-formed UTF-8, or npos.
size_t FirstInvalidUtf8(absl::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    size_t extra = 0;
    uint32_t min = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1;
      min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      min = 0x10000;
    } else {
      return i;
    }
    if (i + extra >= text.size()) {
      return i;
    }
    uint32_t code = c & (0x3F >> extra);
    for (size_t k = 1; k <= extra; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xC0) != 0x80) {
        return i;
      }
      code = (code << 6) | (next & 0x3F);
    }
    if (code < min || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) {
      return i;
    }
    i += extra + 1;
  }
  return absl::string_view::npos;
}

// Offset of the first [ or { that opens a flow collection deeper than kMaxYamlNesting, or npos.
// Quotes and comments are skipped roughly; a plain scalar full of brackets is refused too, which
// no real config needs.
size_t TooDeep(absl::string_view text) {
  int depth = 0;
  char quote = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const char before = i == 0 ? '\n' : text[i - 1];
    if (quote != 0) {
      if (c == quote) {
        quote = 0;
      }
      continue;
    }
    switch (c) {
      case '\'':
      case '"':
        if (absl::string_view(" \t\n[{,:").find(before) != absl::string_view::npos) {
          quote = c;
        }
        break;
      case '#':
        if (before == ' ' || before == '\t' || before == '\n') {
          while (i < text.size() && text[i] != '\n') {
            ++i;
          }
        }
        break;
      case '[':
      case '{':
        if (++depth > kMaxYamlNesting) {
          return i;
        }
        break;
      case ']':
      case '}':
        depth = std::max(0, depth - 1);
        break;
      default:
        break;
    }
  }
  return absl::string_view::npos;
}

}  // namespace

absl::Status YamlExceptionStatus(absl::string_view file) {
  try {
    throw;
  } catch (const YAML::Exception& e) {
    if (e.mark.is_null()) {
      return absl::InvalidArgumentError(absl::StrCat(file, ": ", e.msg));
    }
    return absl::InvalidArgumentError(absl::StrCat(file, ":", e.mark.line + 1, ": ", e.msg));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": ", e.what()));
  } catch (...) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": unknown error"));
  }
}

absl::StatusOr<YAML::Node> LoadYamlString(absl::string_view text, absl::string_view name) {
  if (size_t bad = FirstInvalidUtf8(text); bad != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ":", Position(text, bad), ": not valid UTF-8 (byte 0x",
                     absl::Hex(static_cast<unsigned char>(text[bad]), absl::kZeroPad2), ")"));
  }
  if (size_t deep = TooDeep(text); deep != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(name, ":", Position(text, deep),
                                                   ": lists and maps nested deeper than ",
                                                   kMaxYamlNesting, " levels"));
  }
  try {
    return YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    std::string hint;
    if (!e.mark.is_null()) {
      // yaml-cpp says "illegal map value" for a tab in the indentation; say what it is.
      absl::string_view rest = text;
      for (int line = 0; line < e.mark.line && !rest.empty(); ++line) {
        const size_t eol = rest.find('\n');
        rest = eol == absl::string_view::npos ? absl::string_view() : rest.substr(eol + 1);
      }
      const absl::string_view this_line = rest.substr(0, rest.find('\n'));
      const absl::string_view indent = this_line.substr(0, this_line.find_first_not_of(" \t"));
      if (absl::StrContains(indent, "\t")) {
        hint = " (a tab in the indentation: YAML indents with spaces)";
      }
      return absl::InvalidArgumentError(absl::StrCat(
          name, ":", e.mark.line + 1, ":", e.mark.column + 1, ": not valid YAML: ", e.msg, hint));
    }
    return absl::InvalidArgumentError(absl::StrCat(name, ": not valid YAML: ", e.msg));
  } catch (...) {
    return YamlExceptionStatus(name);
  }
}

absl::StatusOr<std::string> ReadConfigFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    const std::string message = absl::StrCat(path, ": cannot read: ", std::strerror(error));
    return error == ENOENT ? absl::NotFoundError(message) : absl::PermissionDeniedError(message);
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int error = errno;
    close(fd);
    return absl::PermissionDeniedError(absl::StrCat(path, ": cannot read: ", std::strerror(error)));
  }
  if (S_ISDIR(st.st_mode)) {
    close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": is a directory, not a file"));
  }
  if (!S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode) && !S_ISCHR(st.st_mode)) {
    close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": is not a regular file"));
  }
  std::string text;
  char buffer[65536];
  while (true) {
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      const int error = errno;
      close(fd);
      return absl::DataLossError(absl::StrCat(path, ": read error: ", std::strerror(error)));
    }
    if (n == 0) {
      break;
    }
    if (text.size() + static_cast<size_t>(n) > kMaxConfigFileBytes) {
      close(fd);
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": larger than ", kMaxConfigFileBytes, " bytes: not a config file"));
    }
    text.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  return text;
}

absl::StatusOr<YAML::Node> LoadYamlFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadConfigFile(path);
  if (!text.ok()) {
    return text.status();
  }
  return LoadYamlString(*text, path);
}

absl::StatusOr<std::string> YamlKey(const YAML::Node& key, absl::string_view file,
                                    absl::string_view context) {
  if (!key.IsScalar()) {
    return absl::InvalidArgumentError(absl::StrCat(YamlWhere(file, key), ": a key in ", context,
                                                   " must be a plain name, not ", TypeName(key)));
  }
  return key.Scalar();
}

std::string YamlWhere(absl::string_view file, const YAML::Node& node) {
  if (!node.IsDefined() || node.Mark().is_null()) return std::string(file);
  return absl::StrCat(file, ":", node.Mark().line + 1);
}

absl::Status YamlCheckKeys(const YAML::Node& node, absl::string_view file,
                           absl::string_view context,
                           std::initializer_list<absl::string_view> allowed) {
  if (!node.IsMap()) {
    if (node.IsNull()) return absl::OkStatus();
    return WrongType(file, node, context, "a map");
  }
  for (const auto& kv : node) {
    absl::StatusOr<std::string> read = YamlKey(kv.first, file, context);
    if (!read.ok()) {
      return read.status();
    }
    const std::string& key = *read;
    bool known = false;
    for (absl::string_view a : allowed) known = known || a == key;
    if (!known) {
      return absl::InvalidArgumentError(
          absl::StrCat(YamlWhere(file, kv.first), ": unknown key '", key, "' in ", context,
                       " (expected one of: ", absl::StrJoin(allowed, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> YamlString(const YAML::Node& node, absl::string_view key,
                                       absl::string_view file, bool required,
                                       absl::string_view fallback) {
  YAML::Node v = Child(node, key);
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
  YAML::Node v = Child(node, key);
  if (!v.IsDefined() || v.IsNull()) return fallback;
  double d;
  if (!v.IsScalar() || !absl::SimpleAtod(v.Scalar(), &d))
    return WrongType(file, v, key, "a number");
  if (!std::isfinite(d)) {
    return absl::InvalidArgumentError(absl::StrCat(YamlWhere(file, v), ": key '", key,
                                                   "': ", v.Scalar(), " is not a finite number"));
  }
  return d;
}

absl::StatusOr<int64_t> YamlInt(const YAML::Node& node, absl::string_view key,
                                absl::string_view file, int64_t fallback, int64_t min,
                                int64_t max) {
  YAML::Node v = Child(node, key);
  if (!v.IsDefined() || v.IsNull()) return fallback;
  int64_t i = 0;
  if (!v.IsScalar() || !absl::SimpleAtoi(v.Scalar(), &i) || i < min || i > max) {
    return absl::InvalidArgumentError(absl::StrCat(
        YamlWhere(file, v), ": key '", key, "' must be a whole number from ", min, " to ", max));
  }
  return i;
}

absl::StatusOr<bool> YamlBool(const YAML::Node& node, absl::string_view key, absl::string_view file,
                              bool fallback) {
  YAML::Node v = Child(node, key);
  if (!v.IsDefined() || v.IsNull()) return fallback;
  bool b;
  if (!v.IsScalar() || !absl::SimpleAtob(v.Scalar(), &b))
    return WrongType(file, v, key, "true or false");
  return b;
}

absl::StatusOr<std::vector<std::string>> YamlStringList(const YAML::Node& node,
                                                        absl::string_view key,
                                                        absl::string_view file) {
  std::vector<std::string> out;
  YAML::Node v = Child(node, key);
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
    if (absl::SimpleAtoi(text.substr(0, text.size() - 1), &days) && days >= 0 && days <= 36500) {
      return absl::Hours(24 * days);
    }
  } else if (absl::ParseDuration(text, &d) && d >= absl::ZeroDuration() &&
             d < absl::InfiniteDuration()) {
    return d;
  }
  return absl::InvalidArgumentError(
      // Escaped: a value YAML folded over lines must not break the one-line "FILE:LINE: key" form.
      absl::StrCat("bad duration '", absl::CHexEscape(text), "' (write e.g. 500ms, 30s, 5m, 1h, 2d)"));
}

absl::StatusOr<absl::Duration> YamlDuration(const YAML::Node& node, absl::string_view key,
                                            absl::string_view file, absl::Duration fallback) {
  YAML::Node v = Child(node, key);
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
