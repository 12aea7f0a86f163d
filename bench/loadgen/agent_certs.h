// Client certificates for simulated agents, issued in memory by a CA whose key is given (the
// one scripts/dev-ca.sh makes): EC P-256, CN and DNS subjectAltName = the agent id (the identity
// the controller checks), client authentication only, valid for a week. Thousands in a second,
// where openssl(1) per agent would take minutes. Not thread-safe: one per process.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

typedef struct x509_st X509;
typedef struct evp_pkey_st EVP_PKEY;

namespace vigil::loadgen {

struct AgentCertificate {
  std::string cert_pem;
  std::string key_pem;
};

class AgentCertificateAuthority {
 public:
  // Reads the CA's certificate and key (PEM files); errors name the file and what is wrong.
  static absl::StatusOr<std::unique_ptr<AgentCertificateAuthority>> Load(
      const std::string& ca_cert_file, const std::string& ca_key_file);
  ~AgentCertificateAuthority();

  // A fresh key and a certificate for `agent_id`; Internal naming the step that failed.
  absl::StatusOr<AgentCertificate> Issue(const std::string& agent_id);
  const std::string& ca_pem() const { return ca_pem_; }

 private:
  AgentCertificateAuthority() = default;
  std::string ca_pem_;
  X509* ca_ = nullptr;
  EVP_PKEY* key_ = nullptr;
  uint64_t serial_ = 0;
};

}  // namespace vigil::loadgen
