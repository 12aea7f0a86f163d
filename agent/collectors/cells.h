// Text from a monitored service (Redis keys and values) made safe for a diagnostic cell: secrets
// masked (common/redact.h), bytes outside printable ASCII written as \xNN so the cell is valid
// UTF-8 for protobuf, and cut to a bound. Pure; thread-safe.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>

#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "common/redact.h"

namespace vigil::agent {

inline std::string PrintableCell(absl::string_view raw, size_t max_bytes) {
  std::string escaped;
  bool cut = false;
  for (unsigned char c : raw) {
    if (escaped.size() >= max_bytes + 4) {
      cut = true;  // enough to fill the cell; the rest is cut anyway
      break;
    }
    if (c >= 0x20 && c < 0x7f) {
      escaped += static_cast<char>(c);
    } else {
      escaped += absl::StrFormat("\\x%02x", c);
    }
  }
  std::string cell = Redact(escaped);
  if (cell.size() > max_bytes || cut) {
    cell.resize(std::min(cell.size(), max_bytes > 3 ? max_bytes - 3 : 0));
    cell += "...";
  }
  return cell;
}

}  // namespace vigil::agent
