#include "agent/collectors/json_values.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/redact.h"

namespace vigil::agent {
namespace {

using google::protobuf::Value;

constexpr size_t kMaxExtractErrors = 10;

// RFC 6901 array index: "0" or a decimal without leading zeros; "-" (past the end) never exists.
bool ArrayIndex(const std::string& token, size_t size, size_t* index) {
  if (token.empty() || token.size() > 10 || (token.size() > 1 && token[0] == '0')) {
    return false;
  }
  uint64_t n = 0;
  for (char c : token) {
    if (c < '0' || c > '9') {
      return false;
    }
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  if (n >= size) {
    return false;
  }
  *index = static_cast<size_t>(n);
  return true;
}

std::string PointerText(const std::vector<std::string>& tokens) {
  std::string text;
  for (const std::string& token : tokens) {
    text += '/';
    for (char c : token) {
      if (c == '~') {
        text += "~0";
      } else if (c == '/') {
        text += "~1";
      } else {
        text += c;
      }
    }
  }
  return text;
}

std::string NumberText(double v) {
  if (std::nearbyint(v) == v && std::fabs(v) < 9007199254740992.0) {
    return absl::StrCat(static_cast<int64_t>(v));
  }
  std::string text = absl::StrFormat("%.15g", v);
  double back = 0;
  if (!absl::SimpleAtod(text, &back) || back != v) {
    text = absl::StrFormat("%.17g", v);
  }
  return text;
}

std::string Truncate(std::string text, size_t max_bytes) {
  if (text.size() <= max_bytes) {
    return text;
  }
  const size_t keep = max_bytes > 3 ? max_bytes - 3 : 0;
  text.resize(keep);
  // Never end inside a UTF-8 sequence: drop continuation bytes and their lead.
  while (!text.empty() && (static_cast<unsigned char>(text.back()) & 0xC0) == 0x80) {
    text.pop_back();
  }
  if (!text.empty() && (static_cast<unsigned char>(text.back()) & 0x80) != 0) {
    text.pop_back();
  }
  return text + std::string("...").substr(0, max_bytes - keep);
}

// The elements of an array or object (an object's members in name order, so that a bound keeps
// the same ones every round), at most `max`. False when `v` is neither.
bool Elements(const Value& v, size_t max, std::vector<std::pair<std::string, const Value*>>* out) {
  if (v.kind_case() == Value::kListValue) {
    const auto& list = v.list_value().values();
    for (int i = 0; i < list.size() && out->size() < max; ++i) {
      out->emplace_back(absl::StrCat(i), &list[i]);
    }
    return true;
  }
  if (v.kind_case() == Value::kStructValue) {
    std::vector<std::pair<std::string, const Value*>> all;
    for (const auto& [name, member] : v.struct_value().fields()) {
      all.emplace_back(name, &member);
    }
    std::sort(all.begin(), all.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    if (all.size() > max) {
      all.resize(max);
    }
    *out = std::move(all);
    return true;
  }
  return false;
}

}  // namespace

size_t DeepNestingOffset(absl::string_view text, size_t max_depth) {
  size_t depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) {
        return i;
      }
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return absl::string_view::npos;
}

absl::StatusOr<Value> ParseJsonDocument(absl::string_view text, absl::string_view source,
                                        size_t max_bytes) {
  if (text.size() > max_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": JSON document of ", text.size(),
                                                   " bytes is over the limit of ", max_bytes));
  }
  // protobuf's JSON transcoder only fails deep nesting after converting all of it, in time
  // quadratic in the depth (5,000 levels: over a second): refuse it first, in one pass.
  if (const size_t at = DeepNestingOffset(text, kMaxJsonNesting); at != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": JSON nests deeper than ",
                                                   kMaxJsonNesting, " levels at byte ", at));
  }
  Value value;
  google::protobuf::util::JsonParseOptions options;
  const auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(text.data(), text.size()), &value, options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": not JSON: ", Truncate(std::string(status.message()), 200)));
  }
  return value;
}

absl::StatusOr<std::vector<std::string>> ParseJsonPointer(absl::string_view pointer) {
  std::vector<std::string> tokens;
  if (pointer.empty()) {
    return tokens;
  }
  if (pointer[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("JSON pointer '", pointer, "' must be empty or start with '/'"));
  }
  std::string token;
  for (size_t i = 1; i <= pointer.size(); ++i) {
    if (i == pointer.size() || pointer[i] == '/') {
      if (tokens.size() == kMaxPointerTokens) {
        return absl::InvalidArgumentError(absl::StrCat("JSON pointer '", pointer,
                                                       "' has more than ", kMaxPointerTokens,
                                                       " reference tokens"));
      }
      tokens.push_back(std::move(token));
      token.clear();
      continue;
    }
    if (pointer[i] == '~') {
      const char next = i + 1 < pointer.size() ? pointer[i + 1] : '\0';
      if (next != '0' && next != '1') {
        return absl::InvalidArgumentError(absl::StrCat(
            "JSON pointer '", pointer, "': '~' at offset ", i, " must be followed by 0 or 1"));
      }
      token += next == '0' ? '~' : '/';
      ++i;
      continue;
    }
    token += pointer[i];
  }
  return tokens;
}

const Value* EvaluateJsonPointer(const Value& root, const std::vector<std::string>& tokens) {
  const Value* at = &root;
  for (const std::string& token : tokens) {
    if (at->kind_case() == Value::kStructValue) {
      const auto& fields = at->struct_value().fields();
      auto it = fields.find(token);
      if (it == fields.end()) {
        return nullptr;
      }
      at = &it->second;
    } else if (at->kind_case() == Value::kListValue) {
      const auto& list = at->list_value().values();
      size_t index = 0;
      if (!ArrayIndex(token, static_cast<size_t>(list.size()), &index)) {
        return nullptr;
      }
      at = &list[static_cast<int>(index)];
    } else {
      return nullptr;
    }
  }
  return at;
}

absl::StatusOr<double> JsonValueAsNumber(const Value& value) {
  double v = 0;
  switch (value.kind_case()) {
    case Value::kNumberValue:
      v = value.number_value();
      break;
    case Value::kBoolValue:
      v = value.bool_value() ? 1 : 0;
      break;
    case Value::kStringValue: {
      int64_t n = 0;
      if (!absl::SimpleAtoi(value.string_value(), &n)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "string '", Truncate(value.string_value(), 40), "' is not a whole number"));
      }
      v = static_cast<double>(n);
      break;
    }
    case Value::kListValue:
      v = value.list_value().values_size();
      break;
    case Value::kStructValue:
      v = static_cast<double>(value.struct_value().fields_size());
      break;
    default:
      return absl::InvalidArgumentError("null is not a number");
  }
  if (!std::isfinite(v)) {
    return absl::InvalidArgumentError("not a finite number");
  }
  return v;
}

std::string JsonValueAsCell(const Value& value, size_t max_bytes) {
  switch (value.kind_case()) {
    case Value::kStringValue:
      return Truncate(value.string_value(), max_bytes);
    case Value::kNumberValue:
      return Truncate(NumberText(value.number_value()), max_bytes);
    case Value::kBoolValue:
      return Truncate(value.bool_value() ? "true" : "false", max_bytes);
    case Value::kListValue:
    case Value::kStructValue: {
      std::string json;
      if (!google::protobuf::util::MessageToJsonString(value, &json).ok()) {
        return "";
      }
      return Truncate(std::move(json), max_bytes);
    }
    default:
      return "";
  }
}

std::vector<std::string> ExtractJsonGauges(const Value& root, const JsonGaugeSpec& spec,
                                           const Labels& endpoint_labels, Collection& out) {
  std::vector<std::string> errors;
  auto fail = [&](std::string what) {
    if (errors.size() < kMaxExtractErrors) {
      errors.push_back(std::move(what));
    }
  };
  Labels base = endpoint_labels;
  for (const auto& [k, v] : spec.labels) {
    base[k] = v;
  }
  auto emit = [&](const Value& element, Labels labels, absl::string_view where) {
    const Value* v = EvaluateJsonPointer(element, spec.pointer);
    if (v == nullptr) {
      fail(absl::StrCat(spec.metric, ": nothing at ", where, PointerText(spec.pointer)));
      return;
    }
    absl::StatusOr<double> number = JsonValueAsNumber(*v);
    if (!number.ok()) {
      fail(absl::StrCat(spec.metric, ": ", where, PointerText(spec.pointer), ": ",
                        number.status().message()));
      return;
    }
    const double scaled = *number * spec.scale;
    if (!std::isfinite(scaled)) {
      fail(absl::StrCat(spec.metric, ": ", where, PointerText(spec.pointer), " overflows"));
      return;
    }
    out.Gauge(spec.metric, scaled, std::move(labels));
  };
  if (!spec.each) {
    emit(root, base, "");
    return errors;
  }
  const Value* container = EvaluateJsonPointer(root, spec.each_pointer);
  std::vector<std::pair<std::string, const Value*>> elements;
  if (container == nullptr || !Elements(*container, spec.max_elements, &elements)) {
    fail(absl::StrCat(spec.metric, ": no array or object at ", PointerText(spec.each_pointer)));
    return errors;
  }
  std::set<std::string> seen;  // two elements with one key would be one series twice
  for (const auto& [name, element] : elements) {
    std::string key = name;
    if (!spec.key_is_name) {
      const Value* k = EvaluateJsonPointer(*element, spec.key);
      if (k == nullptr || k->kind_case() == Value::kNullValue ||
          k->kind_case() == Value::kListValue || k->kind_case() == Value::kStructValue) {
        fail(absl::StrCat(spec.metric, ": element ", name, " has no scalar key at ",
                          PointerText(spec.key)));
        continue;
      }
      key = JsonValueAsCell(*k, 128);
    }
    if (!seen.insert(key).second) {
      fail(absl::StrCat(spec.metric, ": element ", name, " repeats key '", key, "'"));
      continue;
    }
    Labels labels = base;
    labels[spec.label] = key;
    emit(*element, std::move(labels),
         absl::StrCat(PointerText(spec.each_pointer), "/", name));
  }
  return errors;
}

v1::DiagnosticTable ExtractJsonTable(const Value& root, const JsonTableSpec& spec) {
  v1::DiagnosticTable table;
  table.set_name(spec.name);
  for (const JsonColumnSpec& column : spec.columns) {
    table.add_columns(column.name);
  }
  const Value* container = EvaluateJsonPointer(root, spec.rows);
  std::vector<std::pair<std::string, const Value*>> elements;
  if (container == nullptr || !Elements(*container, spec.max_rows, &elements)) {
    table.set_error(absl::StrCat("no array or object at '", PointerText(spec.rows), "'"));
    return table;
  }
  for (const auto& [name, element] : elements) {
    auto* row = table.add_rows();
    for (const JsonColumnSpec& column : spec.columns) {
      const Value* v = EvaluateJsonPointer(*element, column.pointer);
      std::string cell;
      if (v != nullptr && column.count) {
        absl::StatusOr<double> n = JsonValueAsNumber(*v);
        cell = n.ok() && (v->kind_case() == Value::kListValue ||
                          v->kind_case() == Value::kStructValue)
                   ? NumberText(*n)
                   : "";
      } else if (v != nullptr && v->kind_case() == Value::kNumberValue && column.scale != 1) {
        const double scaled = v->number_value() * column.scale;
        cell = std::isfinite(scaled) ? NumberText(scaled) : "";
      } else if (v != nullptr) {
        cell = JsonValueAsCell(*v, spec.max_cell_bytes);
      }
      row->add_cells(Truncate(Redact(cell), spec.max_cell_bytes));
    }
  }
  return table;
}

}  // namespace vigil::agent
