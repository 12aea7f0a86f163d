#include "common/ed25519.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/ids.h"

namespace vigil {
namespace {

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

absl::StatusOr<std::unique_ptr<Ed25519PrivateKey>> Ed25519PrivateKey::FromPem(
    absl::string_view pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("not a PEM private key: ", OpenSslError()));
  }
  if (EVP_PKEY_id(key) != EVP_PKEY_ED25519) {
    EVP_PKEY_free(key);
    return absl::InvalidArgumentError("not an Ed25519 key");
  }
  return std::unique_ptr<Ed25519PrivateKey>(new Ed25519PrivateKey(key, PublicPem(key)));
}

absl::StatusOr<std::unique_ptr<Ed25519PrivateKey>> Ed25519PrivateKey::Generate() {
  EVP_PKEY* key = nullptr;
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr);
  if (ctx == nullptr || EVP_PKEY_keygen_init(ctx) <= 0 || EVP_PKEY_keygen(ctx, &key) <= 0) {
    EVP_PKEY_CTX_free(ctx);
    return absl::InternalError(absl::StrCat("cannot make an Ed25519 key: ", OpenSslError()));
  }
  EVP_PKEY_CTX_free(ctx);
  return std::unique_ptr<Ed25519PrivateKey>(new Ed25519PrivateKey(key, PublicPem(key)));
}

absl::StatusOr<std::unique_ptr<Ed25519PrivateKey>> Ed25519PrivateKey::LoadOrCreate(
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
    absl::StatusOr<std::unique_ptr<Ed25519PrivateKey>> key = FromPem(buffer.str());
    if (!key.ok()) {
      return absl::Status(key.status().code(),
                          absl::StrCat(key_path, ": ", key.status().message()));
    }
    return key;
  }
  if (errno != ENOENT) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot read ", key_path, ": ", std::strerror(errno)));
  }
  absl::StatusOr<std::unique_ptr<Ed25519PrivateKey>> key = Generate();
  if (!key.ok()) {
    return key.status();
  }
  if (absl::Status s = WriteFileMode(key_path, (*key)->PrivatePem(), 0600); !s.ok()) {
    return s;
  }
  if (absl::Status s = WriteFileMode(public_path, (*key)->public_key_pem(), 0644); !s.ok()) {
    return s;
  }
  return key;
}

Ed25519PrivateKey::~Ed25519PrivateKey() { EVP_PKEY_free(key_); }

std::string Ed25519PrivateKey::PrivatePem() const {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key_, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  std::string pem(data, size);
  BIO_free(bio);
  return pem;
}

absl::StatusOr<std::string> Ed25519PrivateKey::Sign(absl::string_view message) const {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  size_t size = 64;
  std::string signature(size, '\0');
  const bool ok =
      ctx != nullptr && EVP_DigestSignInit(ctx, nullptr, nullptr, nullptr, key_) == 1 &&
      EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(signature.data()), &size,
                     reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok) {
    return absl::InternalError(absl::StrCat("cannot sign: ", OpenSslError()));
  }
  signature.resize(size);
  return signature;
}

absl::StatusOr<std::unique_ptr<Ed25519PublicKey>> Ed25519PublicKey::FromPem(absl::string_view pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* key = PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("not a PEM public key: ", OpenSslError()));
  }
  if (EVP_PKEY_id(key) != EVP_PKEY_ED25519) {
    EVP_PKEY_free(key);
    return absl::InvalidArgumentError("not an Ed25519 key");
  }
  unsigned char* der = nullptr;
  const int der_size = i2d_PUBKEY(key, &der);
  std::string key_id;
  if (der_size > 0) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    EVP_Digest(der, static_cast<size_t>(der_size), digest, &length, EVP_sha256(), nullptr);
    key_id =
        HexEncode(absl::string_view(reinterpret_cast<const char*>(digest), length)).substr(0, 16);
  }
  OPENSSL_free(der);
  return std::unique_ptr<Ed25519PublicKey>(new Ed25519PublicKey(key, std::move(key_id)));
}

Ed25519PublicKey::~Ed25519PublicKey() { EVP_PKEY_free(key_); }

bool Ed25519PublicKey::Verify(absl::string_view message, absl::string_view signature) const {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const bool ok =
      ctx != nullptr && EVP_DigestVerifyInit(ctx, nullptr, nullptr, nullptr, key_) == 1 &&
      EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(signature.data()),
                       signature.size(), reinterpret_cast<const unsigned char*>(message.data()),
                       message.size()) == 1;
  EVP_MD_CTX_free(ctx);
  ERR_clear_error();
  return ok;
}

}  // namespace vigil
