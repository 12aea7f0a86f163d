#include "storage/timeline_hash.h"

#include <openssl/evp.h>

#include <cstdint>

#include "common/ids.h"

namespace vigil::storage {
namespace {

void AppendU64(std::string& out, uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
}

// Length-prefixed, so "ab"+"c" and "a"+"bc" differ.
void AppendField(std::string& out, absl::string_view s) {
  AppendU64(out, s.size());
  out.append(s.data(), s.size());
}

}  // namespace

std::string TimelineEventHash(const v1::TimelineEvent& event) {
  std::string canonical = "vigil.timeline.v1";
  AppendField(canonical, event.prev_hash());
  AppendU64(canonical, event.seq());
  AppendField(canonical, event.incident_id());
  AppendU64(canonical, static_cast<uint64_t>(event.time_unix_ms()));
  AppendField(canonical, event.kind());
  AppendField(canonical, event.actor());
  AppendField(canonical, event.summary());
  AppendField(canonical, event.details_json());
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(canonical.data(), canonical.size(), digest, &length, EVP_sha256(), nullptr);
  return HexEncode(absl::string_view(reinterpret_cast<const char*>(digest), length));
}

}  // namespace vigil::storage
