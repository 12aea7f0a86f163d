// Ed25519 keys for everything the controller signs (commands for agents, audit checkpoints for
// auditors). Keys are PEM (OpenSSL's PKCS#8 / SubjectPublicKeyInfo). Immutable after
// construction; thread-safe.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace vigil {

class Ed25519PrivateKey {
 public:
  // Reads the private key at `key_path`; when the file does not exist, creates a new key there
  // (mode 0600) and its public key at `public_path` (0644). A key file others can read is
  // tightened to 0600. Errors name the file.
  static absl::StatusOr<std::unique_ptr<Ed25519PrivateKey>> LoadOrCreate(
      const std::string& key_path, const std::string& public_path);
  static absl::StatusOr<std::unique_ptr<Ed25519PrivateKey>> FromPem(absl::string_view pem);
  // A new random key, kept in memory only (tests, benchmarks).
  static absl::StatusOr<std::unique_ptr<Ed25519PrivateKey>> Generate();
  ~Ed25519PrivateKey();
  Ed25519PrivateKey(const Ed25519PrivateKey&) = delete;
  Ed25519PrivateKey& operator=(const Ed25519PrivateKey&) = delete;

  // The 64-byte signature of `message`.
  absl::StatusOr<std::string> Sign(absl::string_view message) const;
  const std::string& public_key_pem() const { return public_pem_; }
  std::string PrivatePem() const;

 private:
  Ed25519PrivateKey(EVP_PKEY* key, std::string public_pem)
      : key_(key), public_pem_(std::move(public_pem)) {}
  EVP_PKEY* key_;
  std::string public_pem_;
};

class Ed25519PublicKey {
 public:
  static absl::StatusOr<std::unique_ptr<Ed25519PublicKey>> FromPem(absl::string_view pem);
  ~Ed25519PublicKey();
  Ed25519PublicKey(const Ed25519PublicKey&) = delete;
  Ed25519PublicKey& operator=(const Ed25519PublicKey&) = delete;

  bool Verify(absl::string_view message, absl::string_view signature) const;
  // The first 16 hex digits of SHA-256 over the key's DER encoding: names the key in records.
  const std::string& key_id() const { return key_id_; }

 private:
  Ed25519PublicKey(EVP_PKEY* key, std::string key_id) : key_(key), key_id_(std::move(key_id)) {}
  EVP_PKEY* key_;
  std::string key_id_;
};

}  // namespace vigil
