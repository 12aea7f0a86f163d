#include "bench/loadgen/agent_certs.h"

#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace vigil::loadgen {
namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read ", path));
  }
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string BioText(BIO* bio) {
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(size));
}

bool AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) {
    return false;
  }
  const bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

}  // namespace

absl::StatusOr<std::unique_ptr<AgentCertificateAuthority>> AgentCertificateAuthority::Load(
    const std::string& ca_cert_file, const std::string& ca_key_file) {
  absl::StatusOr<std::string> cert_pem = ReadPem(ca_cert_file);
  if (!cert_pem.ok()) {
    return cert_pem.status();
  }
  absl::StatusOr<std::string> key_pem = ReadPem(ca_key_file);
  if (!key_pem.ok()) {
    return key_pem.status();
  }
  std::unique_ptr<AgentCertificateAuthority> ca(new AgentCertificateAuthority());
  ca->ca_pem_ = *cert_pem;
  BIO* bio = BIO_new_mem_buf(cert_pem->data(), static_cast<int>(cert_pem->size()));
  ca->ca_ = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (ca->ca_ == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(ca_cert_file, ": not a PEM certificate"));
  }
  bio = BIO_new_mem_buf(key_pem->data(), static_cast<int>(key_pem->size()));
  ca->key_ = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (ca->key_ == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(ca_key_file, ": not an unencrypted PEM key"));
  }
  if (X509_check_private_key(ca->ca_, ca->key_) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(ca_key_file, " is not the key of the certificate in ", ca_cert_file));
  }
  RAND_bytes(reinterpret_cast<unsigned char*>(&ca->serial_), sizeof(ca->serial_));
  ca->serial_ >>= 2;  // positive, with room to count up
  return ca;
}

AgentCertificateAuthority::~AgentCertificateAuthority() {
  X509_free(ca_);
  EVP_PKEY_free(key_);
}

absl::StatusOr<AgentCertificate> AgentCertificateAuthority::Issue(const std::string& agent_id) {
  auto fail = [&](const char* step) {
    return absl::InternalError(absl::StrCat("certificate for agent '", agent_id, "': ", step,
                                            " failed"));
  };
  EVP_PKEY* key = EVP_EC_gen("P-256");
  if (key == nullptr) {
    return fail("EC P-256 key generation");
  }
  X509* cert = X509_new();
  AgentCertificate out;
  bool ok = cert != nullptr && X509_set_version(cert, 2) == 1 &&
            ASN1_INTEGER_set_uint64(X509_get_serialNumber(cert), ++serial_) == 1 &&
            X509_gmtime_adj(X509_getm_notBefore(cert), -3600) != nullptr &&
            X509_gmtime_adj(X509_getm_notAfter(cert), 7 * 24 * 3600) != nullptr &&
            X509_set_pubkey(cert, key) == 1 &&
            X509_set_issuer_name(cert, X509_get_subject_name(ca_)) == 1;
  if (ok) {
    X509_NAME* name = X509_get_subject_name(cert);
    ok = X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                    reinterpret_cast<const unsigned char*>(agent_id.c_str()), -1,
                                    -1, 0) == 1 &&
         AddExtension(cert, ca_, NID_basic_constraints, "critical,CA:FALSE") &&
         AddExtension(cert, ca_, NID_key_usage, "critical,digitalSignature") &&
         AddExtension(cert, ca_, NID_ext_key_usage, "clientAuth") &&
         AddExtension(cert, ca_, NID_subject_alt_name, absl::StrCat("DNS:", agent_id)) &&
         X509_sign(cert, key_, EVP_sha256()) > 0;
  }
  if (ok) {
    BIO* bio = BIO_new(BIO_s_mem());
    ok = PEM_write_bio_X509(bio, cert) == 1;
    out.cert_pem = BioText(bio);
    BIO_free(bio);
    bio = BIO_new(BIO_s_mem());
    ok = ok && PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
    out.key_pem = BioText(bio);
    BIO_free(bio);
  }
  X509_free(cert);
  EVP_PKEY_free(key);
  if (!ok) {
    return fail("building or signing the certificate");
  }
  return out;
}

}  // namespace vigil::loadgen
