// nginx access-log lines parsed with the user's own `log_format` string (as pasted from
// nginx.conf), including `escape=json` formats. The format is compiled once into literals and
// variables; a line is matched left to right without allocating. Pure, no I/O; a compiled
// LogFormat is immutable and thread-safe.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace vigil::agent {

// The fields the collector needs from one line. Views point into the line.
struct AccessLogEntry {
  int status = 0;
  double request_time = -1;            // seconds; -1 when the format has none
  double upstream_response_time = -1;  // seconds, the sum of a "0.1, 0.2" list; -1 for "-"
  absl::string_view method;
  absl::string_view path;  // without the query string
};

class LogFormat {
 public:
  // Refuses formats without $status, or without a latency ($request_time or
  // $upstream_response_time), naming what is missing.
  static absl::StatusOr<LogFormat> Compile(absl::string_view format);
  // nginx's combined format plus " $request_time", the default.
  static constexpr absl::string_view kTimedCombined =
      "$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent "
      "\"$http_referer\" \"$http_user_agent\" $request_time";

  // False when the line does not match the format.
  bool Parse(absl::string_view line, AccessLogEntry* entry) const;

 private:
  enum class Field { kOther, kStatus, kRequestTime, kUpstreamTime, kRequest, kMethod, kUri };
  struct Token {
    std::string literal;  // the text that precedes the variable (may be empty)
    Field field = Field::kOther;
  };
  std::vector<Token> tokens_;  // each literal then its variable
  std::string trailer_;        // literal after the last variable
  bool json_ = false;          // values may hold \" escapes
};

}  // namespace vigil::agent
