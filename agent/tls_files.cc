#include "agent/tls_files.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cstdio>
#include <memory>

#include "absl/strings/str_cat.h"

namespace vigil::agent {
namespace {

struct FileCloser {
  void operator()(FILE* f) const { fclose(f); }
};
using File = std::unique_ptr<FILE, FileCloser>;

absl::StatusOr<File> Open(const std::string& flag, const std::string& path) {
  File f(fopen(path.c_str(), "r"));
  if (f == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(flag, "=", path, ": cannot read"));
  }
  return f;
}

}  // namespace

absl::Status CheckTlsFiles(const TransportFlags& flags) {
  if (!flags.ca.empty()) {
    absl::StatusOr<File> f = Open("--tls-ca", flags.ca);
    if (!f.ok()) {
      return f.status();
    }
    X509* ca = PEM_read_X509(f->get(), nullptr, nullptr, nullptr);
    if (ca == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tls-ca=", flags.ca, ": no certificate in it"));
    }
    X509_free(ca);
  }
  if (flags.cert.empty() && flags.key.empty()) {
    return absl::OkStatus();
  }
  absl::StatusOr<File> cert_file = Open("--tls-cert", flags.cert);
  if (!cert_file.ok()) {
    return cert_file.status();
  }
  std::unique_ptr<X509, void (*)(X509*)> cert(
      PEM_read_X509(cert_file->get(), nullptr, nullptr, nullptr), X509_free);
  if (cert == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls-cert=", flags.cert, ": not a PEM certificate"));
  }
  absl::StatusOr<File> key_file = Open("--tls-key", flags.key);
  if (!key_file.ok()) {
    return key_file.status();
  }
  std::unique_ptr<EVP_PKEY, void (*)(EVP_PKEY*)> key(
      PEM_read_PrivateKey(key_file->get(), nullptr, nullptr, nullptr), EVP_PKEY_free);
  if (key == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls-key=", flags.key, ": not a PEM private key"));
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls-key=", flags.key, " is not the key of --tls-cert=", flags.cert));
  }
  return absl::OkStatus();
}

}  // namespace vigil::agent
