// Masks secrets in free text (query texts, command output, error messages) before it leaves the
// agent: the secret becomes *** and the rest stays readable. Covered forms: key=value and
// key: value for keys naming a password, passwd, pwd, secret, token, api key, access or private
// key or credentials (quoted or not, also "key": "value"); SQL `PASSWORD 'x'` (CREATE/ALTER
// ROLE) and `IDENTIFIED BY 'x'`; --password VALUE flags; credentials in URIs
// (scheme://user:pass@host); Authorization headers and Bearer tokens.
// Pure and thread-safe.
#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace vigil {

inline constexpr absl::string_view kRedacted = "***";

std::string Redact(absl::string_view text);

}  // namespace vigil
