// The controller's `--check-config` verdict: everything a start would read, checked without
// creating, binding or connecting anything. Stateless; thread-safe.
#pragma once

#include <string>
#include <vector>

#include "controller/config/controller_config.h"

namespace vigil::controller {

// For --check-config: everything a start would read (the TLS files of both ports and whether
// they fit together, the rule file, the policy, the signing key when it exists, the database's
// evidence), without creating a file, opening one for writing, binding or connecting. Every
// problem, one an entry, naming the file and line or the flag; empty when all is well.
std::vector<std::string> CheckControllerSettings(const ControllerSettings& settings);

}  // namespace vigil::controller
