#include "common/http/error_text.h"

#include <openssl/err.h>

#include <system_error>

namespace vigil::http {

std::string ErrnoText(int err) { return std::error_code(err, std::generic_category()).message(); }

std::string SslErrorText(absl::string_view if_none) {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) {
    return std::string(if_none);
  }
  char text[256];
  ERR_error_string_n(code, text, sizeof(text));
  return text;
}

}  // namespace vigil::http
