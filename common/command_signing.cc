#include "common/command_signing.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace vigil {
namespace {

void AppendField(std::string* out, absl::string_view value) {
  absl::StrAppend(out, value.size(), ":", value, ";");
}

std::string OpenSslError() {
  unsigned long code = ERR_get_error();
  if (code == 0) {
    return "unknown OpenSSL error";
  }
  char buffer[256];
  ERR_error_string_n(code, buffer, sizeof(buffer));
  return buffer;
}

std::string PublicPem(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(bio, key);
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  std::string pem(data, size);
  BIO_free(bio);
  return pem;
}

absl::Status WriteFileMode(const std::string& path, absl::string_view content, mode_t mode) {
  const std::string tmp = path + ".tmp";
  // Created with its final mode (never readable by others, not even while empty: a descriptor
  // opened in that moment would read the key later), then set exactly, whatever the umask.
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
  FILE* f = fd < 0 ? nullptr : fdopen(fd, "w");
  if (f == nullptr) {
    const std::string why = std::strerror(errno);
    if (fd >= 0) {
      close(fd);
      unlink(tmp.c_str());
    }
    return absl::PermissionDeniedError(absl::StrCat("cannot create ", tmp, ": ", why));
  }
  fchmod(fd, mode);
  const bool ok = fwrite(content.data(), 1, content.size(), f) == content.size() &&
                  fflush(f) == 0 && fsync(fileno(f)) == 0;
  fclose(f);
  if (!ok || rename(tmp.c_str(), path.c_str()) != 0) {
    unlink(tmp.c_str());
    return absl::DataLossError(absl::StrCat("cannot write ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
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
  BIO* bio = BIO_new_mem_buf(private_pem.data(), static_cast<int>(private_pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("not a PEM private key: ", OpenSslError()));
  }
  if (EVP_PKEY_id(key) != EVP_PKEY_ED25519) {
    EVP_PKEY_free(key);
    return absl::InvalidArgumentError("the signing key must be an Ed25519 key");
  }
  return std::unique_ptr<CommandSigner>(new CommandSigner(key, PublicPem(key)));
}

absl::StatusOr<std::unique_ptr<CommandSigner>> CommandSigner::LoadOrCreate(
    const std::string& key_path, const std::string& public_path) {
  std::ifstream in(key_path);
  if (in) {
    // A key others can read is tightened (one from an older version, or copied by hand).
    if (struct stat st; stat(key_path.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
      if (chmod(key_path.c_str(), st.st_mode & 0700) == 0) {
        spdlog::warn("{} was readable by others (mode {:o}); now {:o}", key_path, st.st_mode & 0777,
                     st.st_mode & 0700);
      } else {
        spdlog::warn("{} is readable by others (mode {:o}) and cannot be restricted: {}", key_path,
                     st.st_mode & 0777, std::strerror(errno));
      }
    }
    std::stringstream buffer;
    buffer << in.rdbuf();
    absl::StatusOr<std::unique_ptr<CommandSigner>> signer = FromPem(buffer.str());
    if (!signer.ok()) {
      return absl::Status(signer.status().code(),
                          absl::StrCat(key_path, ": ", signer.status().message()));
    }
    return signer;
  }
  if (errno != ENOENT) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot read ", key_path, ": ", std::strerror(errno)));
  }
  EVP_PKEY* key = nullptr;
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr);
  if (ctx == nullptr || EVP_PKEY_keygen_init(ctx) <= 0 || EVP_PKEY_keygen(ctx, &key) <= 0) {
    EVP_PKEY_CTX_free(ctx);
    return absl::InternalError(absl::StrCat("cannot make an Ed25519 key: ", OpenSslError()));
  }
  EVP_PKEY_CTX_free(ctx);
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  const std::string private_pem(data, size);
  BIO_free(bio);
  std::unique_ptr<CommandSigner> signer(new CommandSigner(key, PublicPem(key)));
  if (absl::Status s = WriteFileMode(key_path, private_pem, 0600); !s.ok()) {
    return s;
  }
  if (absl::Status s = WriteFileMode(public_path, signer->public_key_pem(), 0644); !s.ok()) {
    return s;
  }
  return signer;
}

CommandSigner::~CommandSigner() { EVP_PKEY_free(key_); }

absl::Status CommandSigner::Sign(v1::Command& command) const {
  const std::string message = CanonicalCommand(command);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  size_t size = 64;
  std::string signature(size, '\0');
  const bool ok =
      EVP_DigestSignInit(ctx, nullptr, nullptr, nullptr, key_) == 1 &&
      EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(signature.data()), &size,
                     reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok) {
    return absl::InternalError(
        absl::StrCat("cannot sign command ", command.id(), ": ", OpenSslError()));
  }
  signature.resize(size);
  command.set_signature(std::move(signature));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<CommandVerifier>> CommandVerifier::FromPem(
    absl::string_view public_pem) {
  BIO* bio = BIO_new_mem_buf(public_pem.data(), static_cast<int>(public_pem.size()));
  EVP_PKEY* key = PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("not a PEM public key: ", OpenSslError()));
  }
  if (EVP_PKEY_id(key) != EVP_PKEY_ED25519) {
    EVP_PKEY_free(key);
    return absl::InvalidArgumentError("the controller's public key must be an Ed25519 key");
  }
  return std::unique_ptr<CommandVerifier>(new CommandVerifier(key));
}

CommandVerifier::~CommandVerifier() { EVP_PKEY_free(key_); }

absl::Status CommandVerifier::Verify(const v1::Command& command) const {
  const std::string message = CanonicalCommand(command);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const bool ok =
      EVP_DigestVerifyInit(ctx, nullptr, nullptr, nullptr, key_) == 1 &&
      EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(command.signature().data()),
                       command.signature().size(),
                       reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1;
  EVP_MD_CTX_free(ctx);
  ERR_clear_error();
  if (!ok) {
    return absl::PermissionDeniedError(
        "bad signature: the command was not signed by this agent's controller key, or was changed");
  }
  return absl::OkStatus();
}

}  // namespace vigil
