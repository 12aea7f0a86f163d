// Identifiers and host facts. Thread-safe.
#pragma once

#include <string>
#include "absl/strings/string_view.h"

namespace vigil {

// `prefix` followed by 16 random hex digits from the OS's CSPRNG, e.g. "cmd-3f9a...".
std::string RandomId(absl::string_view prefix);
// This machine's host name, or "localhost" when it cannot be read.
std::string Hostname();
// Hex encoding of raw bytes.
std::string HexEncode(absl::string_view bytes);

}  // namespace vigil
