#include "common/command_signing.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "common/ed25519.h"

namespace vigil {
namespace {

void AppendField(std::string* out, absl::string_view value) {
  absl::StrAppend(out, value.size(), ":", value, ";");
}

}  // namespace

std::string CanonicalCommand(const v1::Command& command) {
  std::string out = "vigil.v1.Command;";
  AppendField(&out, command.id());
  AppendField(&out, command.agent_id());
  AppendField(&out, command.action());
  const std::map<std::string, std::string> params(command.params().begin(), command.params().end());
  AppendField(&out, absl::StrCat(params.size()));
  for (const auto& [k, v] : params) {
    AppendField(&out, k);
    AppendField(&out, v);
  }
  AppendField(&out, absl::StrCat(command.expires_unix_ms()));
  AppendField(&out, command.incident_id());
  AppendField(&out, absl::StrCat(command.timeout_ms()));
  return out;
}

absl::StatusOr<std::unique_ptr<CommandSigner>> CommandSigner::FromPem(
    absl::string_view private_pem) {
  absl::StatusOr<std::unique_ptr<Ed25519PrivateKey>> key = Ed25519PrivateKey::FromPem(private_pem);
  if (!key.ok()) {
    return absl::Status(key.status().code(),
                        absl::StrCat("the command-signing key: ", key.status().message()));
  }
  return std::unique_ptr<CommandSigner>(new CommandSigner(*std::move(key)));
}

absl::StatusOr<std::unique_ptr<CommandSigner>> CommandSigner::LoadOrCreate(
    const std::string& key_path, const std::string& public_path) {
  absl::StatusOr<std::unique_ptr<Ed25519PrivateKey>> key =
      Ed25519PrivateKey::LoadOrCreate(key_path, public_path);
  if (!key.ok()) return key.status();
  return std::unique_ptr<CommandSigner>(new CommandSigner(*std::move(key)));
}

CommandSigner::CommandSigner(std::unique_ptr<Ed25519PrivateKey> key) : key_(std::move(key)) {}
CommandSigner::~CommandSigner() = default;

const std::string& CommandSigner::public_key_pem() const { return key_->public_key_pem(); }

absl::Status CommandSigner::Sign(v1::Command& command) const {
  absl::StatusOr<std::string> signature = key_->Sign(CanonicalCommand(command));
  if (!signature.ok()) {
    return absl::InternalError(
        absl::StrCat("cannot sign command ", command.id(), ": ", signature.status().message()));
  }
  command.set_signature(*std::move(signature));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<CommandVerifier>> CommandVerifier::FromPem(
    absl::string_view public_pem) {
  absl::StatusOr<std::unique_ptr<Ed25519PublicKey>> key = Ed25519PublicKey::FromPem(public_pem);
  if (!key.ok()) {
    return absl::Status(key.status().code(),
                        absl::StrCat("the controller's public key: ", key.status().message()));
  }
  return std::unique_ptr<CommandVerifier>(new CommandVerifier(*std::move(key)));
}

CommandVerifier::CommandVerifier(std::unique_ptr<Ed25519PublicKey> key) : key_(std::move(key)) {}
CommandVerifier::~CommandVerifier() = default;

absl::Status CommandVerifier::Verify(const v1::Command& command) const {
  if (!key_->Verify(CanonicalCommand(command), command.signature())) {
    return absl::PermissionDeniedError(
        "bad signature: the command was not signed by this agent's controller key, or was changed");
  }
  return absl::OkStatus();
}

}  // namespace vigil
