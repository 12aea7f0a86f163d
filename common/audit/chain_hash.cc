#include "common/audit/chain_hash.h"

#include <endian.h>
#include <openssl/evp.h>

#include <cstdint>

#include "common/ids.h"

namespace vigil::audit {
void AppendU64(std::string& out, uint64_t v) {
  const uint64_t big_endian = htobe64(v);
  out.append(reinterpret_cast<const char*>(&big_endian), sizeof(big_endian));
}

namespace {

// Length-prefixed, so "ab"+"c" and "a"+"bc" differ.
void AppendField(std::string& out, absl::string_view s) {
  AppendU64(out, s.size());
  out.append(s.data(), s.size());
}

void AppendContent(std::string& out, const v1::TimelineEvent& event) {
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

}  // namespace

struct TimelineHasher::Context {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~Context() { EVP_MD_CTX_free(ctx); }
};

TimelineHasher::TimelineHasher() : context_(std::make_unique<Context>()) {}
TimelineHasher::~TimelineHasher() = default;

std::string TimelineHasher::Digest() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_MD_CTX* ctx = context_->ctx;
  if (ctx == nullptr || EVP_DigestInit_ex(ctx, Sha256(), nullptr) != 1 ||
      EVP_DigestUpdate(ctx, canonical_.data(), canonical_.size()) != 1 ||
      EVP_DigestFinal_ex(ctx, digest, &length) != 1) {
    // Out of memory inside OpenSSL: the one-shot form allocates what it needs itself.
    EVP_Digest(canonical_.data(), canonical_.size(), digest, &length, EVP_sha256(), nullptr);
  }
  return HexEncode(absl::string_view(reinterpret_cast<const char*>(digest), length));
}

std::string TimelineHasher::Hash(const v1::TimelineEvent& event) {
  if (event.chain_format() == 2) {
    return Link(event.prev_hash(), event.seq(), ContentHash(event));
  }
  canonical_.assign("vigil.timeline.v1");
  AppendField(canonical_, event.prev_hash());
  AppendU64(canonical_, event.seq());
  AppendContent(canonical_, event);
  return Digest();
}

std::string TimelineHasher::ContentHash(const v1::TimelineEvent& event) {
  canonical_.assign("vigil.content.v2");
  AppendContent(canonical_, event);
  return Digest();
}

std::string TimelineHasher::Link(absl::string_view prev_hash, uint64_t seq,
                                 absl::string_view content_hash) {
  canonical_.assign("vigil.timeline.v2");
  AppendField(canonical_, prev_hash);
  AppendU64(canonical_, seq);
  AppendField(canonical_, content_hash);
  return Digest();
}

std::string TimelineEventHash(const v1::TimelineEvent& event) {
  TimelineHasher hasher;
  return hasher.Hash(event);
}

std::string TimelineContentHash(const v1::TimelineEvent& event) {
  TimelineHasher hasher;
  return hasher.ContentHash(event);
}

bool IsHexHash(absl::string_view s) {
  if (s.size() != 64) {
    return false;
  }
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

}  // namespace vigil::audit
