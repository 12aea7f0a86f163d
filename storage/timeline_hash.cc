#include "storage/timeline_hash.h"

#include <openssl/evp.h>

#include <cstdint>

#include "common/ids.h"

namespace vigil::storage {
namespace {

void AppendU64(std::string& out, uint64_t v) {
  char bytes[8];
  for (int i = 7; i >= 0; --i) {
    bytes[7 - i] = static_cast<char>((v >> (8 * i)) & 0xff);
  }
  out.append(bytes, sizeof(bytes));
}

// Length-prefixed, so "ab"+"c" and "a"+"bc" differ.
void AppendField(std::string& out, absl::string_view s) {
  AppendU64(out, s.size());
  out.append(s.data(), s.size());
}

void Canonical(const v1::TimelineEvent& event, std::string& out) {
  out.assign("vigil.timeline.v1");
  AppendField(out, event.prev_hash());
  AppendU64(out, event.seq());
  AppendField(out, event.incident_id());
  AppendU64(out, static_cast<uint64_t>(event.time_unix_ms()));
  AppendField(out, event.kind());
  AppendField(out, event.actor());
  AppendField(out, event.summary());
  AppendField(out, event.details_json());
}

// Fetched once: EVP_sha256() makes every digest look the algorithm up again (OpenSSL 3).
const EVP_MD* Sha256() {
  static const EVP_MD* const md = [] {
    const EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    return fetched != nullptr ? fetched : EVP_sha256();
  }();
  return md;
}

std::string Digest(EVP_MD_CTX* ctx, const std::string& canonical) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (ctx == nullptr || EVP_DigestInit_ex(ctx, Sha256(), nullptr) != 1 ||
      EVP_DigestUpdate(ctx, canonical.data(), canonical.size()) != 1 ||
      EVP_DigestFinal_ex(ctx, digest, &length) != 1) {
    // Out of memory inside OpenSSL: the one-shot form allocates what it needs itself.
    EVP_Digest(canonical.data(), canonical.size(), digest, &length, EVP_sha256(), nullptr);
  }
  return HexEncode(absl::string_view(reinterpret_cast<const char*>(digest), length));
}

}  // namespace

struct TimelineHasher::Context {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~Context() { EVP_MD_CTX_free(ctx); }
};

TimelineHasher::TimelineHasher() : context_(std::make_unique<Context>()) {}
TimelineHasher::~TimelineHasher() = default;

std::string TimelineHasher::Hash(const v1::TimelineEvent& event) {
  Canonical(event, canonical_);
  return Digest(context_->ctx, canonical_);
}

std::string TimelineEventHash(const v1::TimelineEvent& event) {
  TimelineHasher hasher;
  return hasher.Hash(event);
}

}  // namespace vigil::storage
