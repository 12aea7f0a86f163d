#include "common/tls_files.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace vigil {
namespace {

struct FileCloser {
  void operator()(FILE* f) const { fclose(f); }
};
using File = std::unique_ptr<FILE, FileCloser>;

absl::StatusOr<File> Open(const std::string& name, const std::string& path) {
  File f(fopen(path.c_str(), "re"));
  if (f == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(DescribeFile(name, path), ": cannot read: ", std::strerror(errno)));
  }
  return f;
}

}  // namespace

std::string DescribeFile(const std::string& name, const std::string& path) {
  return absl::StartsWith(name, "--") ? absl::StrCat(name, "=", path)
                                      : absl::StrCat(name, ": ", path);
}

absl::Status CheckPlainText(const TransportFlags& files, absl::string_view address) {
  if (!files.insecure) {
    return absl::InvalidArgumentError(
        "no transport security: name the CA, certificate and key (--tls-ca, --tls-cert and "
        "--tls-key, or in the config file; scripts/dev-ca.sh makes a development set), or "
        "--insecure for plain text on loopback");
  }
  if (!IsLoopbackAddress(address)) {
    return absl::InvalidArgumentError(absl::StrCat("--insecure is refused for ", address,
                                                   ": plain text is allowed on loopback only"));
  }
  return absl::OkStatus();
}

namespace {

bool NoFiles(const TransportFlags& files) {
  return files.ca.empty() && files.cert.empty() && files.key.empty();
}

}  // namespace

absl::Status CheckClientTransport(const TransportFlags& files, const TlsFileNames& names,
                                  absl::string_view address) {
  if (NoFiles(files)) {
    return CheckPlainText(files, address);
  }
  if (files.ca.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(names.ca, " is required with TLS"));
  }
  return CheckTlsFiles(files, names);
}

absl::Status CheckServerTransport(const TransportFlags& files, const TlsFileNames& names,
                                  absl::string_view address) {
  if (NoFiles(files)) {
    return CheckPlainText(files, address);
  }
  if (files.ca.empty() || files.cert.empty() || files.key.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("the controller needs all of ", names.ca, ", ",
                                                   names.cert, " and ", names.key));
  }
  return CheckTlsFiles(files, names);
}

absl::Status CheckTlsFiles(const TransportFlags& files, const TlsFileNames& names) {
  if (!files.ca.empty()) {
    absl::StatusOr<File> f = Open(names.ca, files.ca);
    if (!f.ok()) {
      return f.status();
    }
    X509* ca = PEM_read_X509(f->get(), nullptr, nullptr, nullptr);
    if (ca == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(DescribeFile(names.ca, files.ca), ": no certificate in it"));
    }
    X509_free(ca);
  }
  if (files.cert.empty() && files.key.empty()) {
    return absl::OkStatus();
  }
  if (files.cert.empty() || files.key.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(names.cert, " and ", names.key, " go together: give both or neither"));
  }
  absl::StatusOr<File> cert_file = Open(names.cert, files.cert);
  if (!cert_file.ok()) {
    return cert_file.status();
  }
  std::unique_ptr<X509, void (*)(X509*)> cert(
      PEM_read_X509(cert_file->get(), nullptr, nullptr, nullptr), X509_free);
  if (cert == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(DescribeFile(names.cert, files.cert), ": not a PEM certificate"));
  }
  absl::StatusOr<File> key_file = Open(names.key, files.key);
  if (!key_file.ok()) {
    return key_file.status();
  }
  std::unique_ptr<EVP_PKEY, void (*)(EVP_PKEY*)> key(
      PEM_read_PrivateKey(key_file->get(), nullptr, nullptr, nullptr), EVP_PKEY_free);
  if (key == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(DescribeFile(names.key, files.key), ": not a PEM private key"));
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(DescribeFile(names.key, files.key),
                                                   " is not the key of ",
                                                   DescribeFile(names.cert, files.cert)));
  }
  return absl::OkStatus();
}

}  // namespace vigil
