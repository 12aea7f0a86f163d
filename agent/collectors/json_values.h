// Pure pieces of the http_json collector: JSON text into google.protobuf.Value (protobuf's own
// parser, already linked), RFC 6901 JSON pointers, and the extraction of gauges and table rows
// from a parsed document as the collector's config describes them. No I/O; every function is
// pure and thread-safe, and bounded by the limits it is given.
#pragma once

#include <google/protobuf/struct.pb.h>

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "agent/collector.h"
#include "vigil/v1/telemetry.pb.h"

namespace vigil::agent {

// Arrays and objects nested deeper than this are refused before protobuf's parser sees them
// (it refuses about 50 anyway, since each level is two messages, but only after a slow pass).
inline constexpr size_t kMaxJsonNesting = 48;
// The offset of the first '[' or '{' that opens a level deeper than `max_depth` outside strings,
// or npos. One pass; never fails (it does not validate the JSON).
size_t DeepNestingOffset(absl::string_view text, size_t max_depth);

// Parses a JSON document of at most `max_bytes` and kMaxJsonNesting levels. InvalidArgument names
// `source` and says why.
absl::StatusOr<google::protobuf::Value> ParseJsonDocument(absl::string_view text,
                                                          absl::string_view source,
                                                          size_t max_bytes);

// A JSON pointer checked once ("" is the whole document; otherwise "/"-separated reference
// tokens with ~0 for '~' and ~1 for '/'). InvalidArgument for a pointer that does not start with
// '/', a bad escape, or more than kMaxPointerTokens tokens.
inline constexpr size_t kMaxPointerTokens = 64;
absl::StatusOr<std::vector<std::string>> ParseJsonPointer(absl::string_view pointer);

// The value `tokens` designates in `root`, or nullptr when there is none: a missing member, an
// index that is not a decimal without leading zeros, out of range, "-", or a step into a scalar.
const google::protobuf::Value* EvaluateJsonPointer(const google::protobuf::Value& root,
                                                   const std::vector<std::string>& tokens);

// A value as a gauge: a number as is, true/false as 1/0, a string that is a whole decimal
// number as that number, an array or object as its element count. InvalidArgument otherwise
// (null, other strings, non-finite results).
absl::StatusOr<double> JsonValueAsNumber(const google::protobuf::Value& value);

// A value as a table cell of at most `max_bytes` (longer text is cut and ends with "..."):
// strings as is, numbers in the shortest form that reads back, booleans, "" for null, arrays and
// objects as compact JSON.
std::string JsonValueAsCell(const google::protobuf::Value& value, size_t max_bytes);

// One gauge of an endpoint. Without `each`: `pointer` names a value. With `each`: it names an
// array or object, and each element (at most `max_elements`) gives one gauge whose value is at
// `pointer` relative to the element and whose `label` is the element's `key` (a pointer relative
// to the element; empty: the member name for an object, the index for an array).
struct JsonGaugeSpec {
  std::string metric;
  std::vector<std::string> pointer;
  bool each = false;
  std::vector<std::string> each_pointer;
  std::string label;
  std::vector<std::string> key;
  bool key_is_name = true;  // no `key` given
  size_t max_elements = 100;
  double scale = 1;
  Labels labels;  // static labels, added to every gauge
};

// One table from an array (or object) at `rows`: one row per element, at most `max_rows`, each
// column the value at its pointer relative to the element.
struct JsonColumnSpec {
  std::string name;
  std::vector<std::string> pointer;
  bool count = false;  // the element count of an array or object, not its text
  double scale = 1;    // numbers only
};
struct JsonTableSpec {
  std::string name;
  std::vector<std::string> rows;
  std::vector<JsonColumnSpec> columns;
  size_t max_rows = 20;
  size_t max_cell_bytes = 256;
};

// Appends the gauges `spec` finds in `root` to `out` (each labelled with `endpoint_labels` and
// the spec's labels). Returns what could not be read (one line per value, at most 10 lines), empty
// when everything was found.
std::vector<std::string> ExtractJsonGauges(const google::protobuf::Value& root,
                                           const JsonGaugeSpec& spec, const Labels& endpoint_labels,
                                           Collection& out);

// The table `spec` describes, read from `root` (the error field set when `rows` is not an array
// or object). Cells pass common/redact.h.
v1::DiagnosticTable ExtractJsonTable(const google::protobuf::Value& root, const JsonTableSpec& spec);

}  // namespace vigil::agent
