// Ed25519 signatures over commands: the controller signs what people approved, the agent runs
// only what verifies against the controller's public key from its config. The signed bytes are a
// length-prefixed encoding of Command fields 1-7 (parameters sorted), so no two different
// commands share an encoding. Keys are PEM (OpenSSL's PKCS#8 / SubjectPublicKeyInfo).
// Signer and Verifier are immutable after construction; thread-safe.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "vigil/v1/agent_service.pb.h"

namespace vigil {

class Ed25519PrivateKey;
class Ed25519PublicKey;

// The exact bytes that are signed.
std::string CanonicalCommand(const v1::Command& command);

class CommandSigner {
 public:
  // Reads the private key at `key_path`; when the file does not exist, creates a new key there
  // (mode 0600) and its public key at `public_path`. Errors name the file.
  static absl::StatusOr<std::unique_ptr<CommandSigner>> LoadOrCreate(
      const std::string& key_path, const std::string& public_path);
  static absl::StatusOr<std::unique_ptr<CommandSigner>> FromPem(absl::string_view private_pem);
  ~CommandSigner();

  // Sets command.signature.
  absl::Status Sign(v1::Command& command) const;
  const std::string& public_key_pem() const;

 private:
  explicit CommandSigner(std::unique_ptr<Ed25519PrivateKey> key);
  std::unique_ptr<Ed25519PrivateKey> key_;
};

class CommandVerifier {
 public:
  static absl::StatusOr<std::unique_ptr<CommandVerifier>> FromPem(absl::string_view public_pem);
  ~CommandVerifier();
  // PermissionDenied "bad signature" when the command was not signed by this key or was changed.
  absl::Status Verify(const v1::Command& command) const;

 private:
  explicit CommandVerifier(std::unique_ptr<Ed25519PublicKey> key);
  std::unique_ptr<Ed25519PublicKey> key_;
};

}  // namespace vigil
