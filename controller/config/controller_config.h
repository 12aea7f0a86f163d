// The controller's settings file (packaged: /etc/vigil/controller.yaml). Every key mirrors a long
// flag, named as the flag in snake_case (--http-listen is `http_listen`, --tls-ca is `tls_ca`);
// a flag given on the command line wins over the file. Loading is strict: unknown or repeated
// keys, wrong types and values out of range are refused with file, line and key, all of them at
// once. Stateless functions; thread-safe.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "controller/controller.h"

namespace vigil::controller {

inline constexpr char kDefaultControllerConfigPath[] = "/etc/vigil/controller.yaml";

// What the command line and the file decide together.
struct ControllerSettings {
  ControllerOptions options;
  std::string log_level = "info";
  // Where each setting the file gave came from, by key: "FILE:LINE: key 'tls_ca'". A key not
  // here came from a flag or is the default; messages then name the flag.
  std::map<std::string, std::string> origins;
};

// The keys a file may hold, in the order the README lists them.
const std::vector<std::string>& ControllerConfigKeys();
// "--http-listen" for "http_listen".
std::string FlagForKey(absl::string_view key);

// True when the flag (e.g. "--listen") was given on the command line.
using GivenOnCommandLine = std::function<bool(absl::string_view flag)>;

// Applies config text to `settings`: each key the file sets replaces the value there, unless
// `given(FlagForKey(key))` says the command line set it (the value is still checked). A null
// document is an empty config. On error nothing is guaranteed about `settings`; the message lists
// every problem, one a line, each "FILE:LINE: key 'K': why". Never throws.
absl::Status ApplyControllerConfig(absl::string_view text, absl::string_view file,
                                   const GivenOnCommandLine& given, ControllerSettings& settings);
// Reads `path` and applies it; a missing or unreadable file is an error naming it.
absl::Status LoadControllerConfig(const std::string& path, const GivenOnCommandLine& given,
                                  ControllerSettings& settings);

// The file to read: `path` when --config was given (it must then exist: NotFound otherwise;
// an empty `path` means no file), else `default_path` when it exists, else none ("").
absl::StatusOr<std::string> ChooseControllerConfig(bool given, const std::string& path,
                                                   const std::string& default_path =
                                                       kDefaultControllerConfigPath);

}  // namespace vigil::controller
