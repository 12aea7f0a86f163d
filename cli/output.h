// Output formatting for the vigil CLI: aligned text tables for people, protobuf JSON for scripts,
// and the small value formatters (percent, relative time, enum names) the tables share.
// Everything here is stateless or owned by one caller; thread-compatible.
#pragma once

#include <google/protobuf/message.h>

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/model_names.h"
#include "vigil/v1/control_service.pb.h"
#include "vigil/v1/incident.pb.h"

namespace vigil::cli {

enum class OutputFormat { kTable, kJson };

// A text table: a header row and data rows, printed with columns aligned on the widest cell,
// three spaces between columns and no trailing blanks. Every header and cell goes through
// OneLine(), so a field from the controller can neither break a row nor drive the terminal.
class Table {
 public:
  explicit Table(std::vector<std::string> headers);

  // Adds a row; missing cells print empty, extra cells are dropped.
  void AddRow(std::vector<std::string> cells);
  size_t size() const { return rows_.size(); }
  // Writes the table, each line prefixed with `indent`.
  void Print(std::ostream& out, absl::string_view indent = "") const;

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

// `message` in protobuf's JSON mapping with proto field names and default values printed.
// `pretty` indents it over several lines; otherwise it is one line (for streams).
std::string ToJson(const google::protobuf::Message& message, bool pretty);

// "42%" for a ratio of 0.42; "-" for a negative (unknown) ratio.
std::string FormatPercent(double ratio);
// Integers without decimals, other values with four significant digits ("0.4213", "2.5").
std::string FormatNumber(double value);
// "2s ago", "5m ago", "3h ago", "2d ago" relative to `now`; "-" for 0 (never).
std::string FormatAgo(int64_t unix_ms, absl::Time now);
// "2023-11-14 22:13:20Z" (UTC); "-" for 0.
std::string FormatTimestamp(int64_t unix_ms);
// "350ms", "1.2s", "3m4s".
std::string FormatDurationMs(int64_t ms);
// "k1=v1,k2=v2" sorted by key; "-" when empty.
std::string FormatLabels(const google::protobuf::Map<std::string, std::string>& labels);
// Items joined by ","; "-" when empty.
std::string JoinOrDash(const google::protobuf::RepeatedPtrField<std::string>& items);
// `text` made safe to print on a terminal: control characters (C0 including ESC, CR, LF and
// TAB; DEL; C1, U+0080 to U+009F), the bidirectional overrides and isolates, the line and
// paragraph separators, and bytes that are not UTF-8 are shown as visible escapes: "\n", "\r",
// "\t", "\x1b", "\u009b", "\u202e", "\xff". Everything else, backslashes included, passes
// unchanged, so escaping twice changes nothing. With `keep_newlines`, LF and TAB pass too (for a
// multi-line document such as an exported report). Every string from the controller is printed
// through this (mostly through OneLine() and Table).
std::string EscapeForTerminal(absl::string_view text, bool keep_newlines = false);
// `text` as one line for a terminal: surrounding blanks trimmed, then EscapeForTerminal().
std::string OneLine(absl::string_view text);

// Lower-case names people read: "SEV2", "acknowledged", "firing", "approved", "connected".

// One timeline event as one line: time, #seq, incident, kind, actor, summary; every field
// escaped, so an event can never print as two lines.
std::string FormatEventLine(const v1::TimelineEvent& event);

}  // namespace vigil::cli
