// The text of a failed system call or TLS operation, for errors that say what failed and why.
#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace vigil::http {

// strerror(3)'s text for `err`, thread-safe.
std::string ErrnoText(int err);

// The first queued OpenSSL error as text, the queue cleared; `if_none` when nothing was queued.
std::string SslErrorText(absl::string_view if_none);

}  // namespace vigil::http
