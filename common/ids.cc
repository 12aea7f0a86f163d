#include "common/ids.h"

#include <openssl/rand.h>
#include <unistd.h>

#include <array>

#include "absl/strings/str_cat.h"

namespace vigil {

std::string HexEncode(absl::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

std::string RandomId(absl::string_view prefix) {
  std::array<unsigned char, 8> raw{};
  RAND_bytes(raw.data(), static_cast<int>(raw.size()));
  return absl::StrCat(prefix, HexEncode(absl::string_view(reinterpret_cast<char*>(raw.data()), raw.size())));
}

std::string Hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

}  // namespace vigil
