#include "common/ids.h"

#include <openssl/rand.h>
#include <unistd.h>

#include <array>

#include "absl/strings/str_cat.h"

namespace vigil {

std::string HexEncode(absl::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  // Sized once and written in place: two hashes of every timeline event go through here.
  std::string out(bytes.size() * 2, '\0');
  char* p = out.data();
  for (unsigned char c : bytes) {
    *p++ = kDigits[c >> 4];
    *p++ = kDigits[c & 15];
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
