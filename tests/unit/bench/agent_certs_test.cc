#include "bench/loadgen/agent_certs.h"

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"

namespace vigil::loadgen {
namespace {

class AgentCertsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/loadgen-certs-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    const std::string cmd = absl::StrCat("bash '", VIGIL_TEST_SOURCE_DIR, "/scripts/dev-ca.sh' '",
                                         dir_, "' >/dev/null 2>&1");
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(AgentCertsTest, IssuesACertificateNamingTheAgentSignedByTheCa) {
  absl::StatusOr<std::unique_ptr<AgentCertificateAuthority>> ca =
      AgentCertificateAuthority::Load(dir_ + "/ca.pem", dir_ + "/ca.key");
  ASSERT_TRUE(ca.ok()) << ca.status();
  absl::StatusOr<AgentCertificate> cert = (*ca)->Issue("sim-42");
  ASSERT_TRUE(cert.ok()) << cert.status();

  BIO* bio = BIO_new_mem_buf(cert->cert_pem.data(), static_cast<int>(cert->cert_pem.size()));
  X509* x = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  ASSERT_NE(x, nullptr);
  bio = BIO_new_mem_buf((*ca)->ca_pem().data(), static_cast<int>((*ca)->ca_pem().size()));
  X509* issuer = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  ASSERT_NE(issuer, nullptr);
  EXPECT_EQ(X509_verify(x, X509_get0_pubkey(issuer)), 1);
  EXPECT_EQ(X509_check_host(x, "sim-42", 0, 0, nullptr), 1);
  EXPECT_NE(X509_check_host(x, "sim-43", 0, 0, nullptr), 1);
  EXPECT_NE(X509_get_extended_key_usage(x) & XKU_SSL_CLIENT, 0u);
  // The key is the certificate's.
  bio = BIO_new_mem_buf(cert->key_pem.data(), static_cast<int>(cert->key_pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  ASSERT_NE(key, nullptr);
  EXPECT_EQ(X509_check_private_key(x, key), 1);
  EVP_PKEY_free(key);
  X509_free(issuer);
  X509_free(x);
}

TEST_F(AgentCertsTest, RefusesAKeyThatIsNotTheCas) {
  absl::StatusOr<std::unique_ptr<AgentCertificateAuthority>> ca =
      AgentCertificateAuthority::Load(dir_ + "/ca.pem", dir_ + "/controller.key");
  ASSERT_FALSE(ca.ok());
  EXPECT_NE(ca.status().message().find("controller.key"), std::string::npos) << ca.status();
  EXPECT_FALSE(AgentCertificateAuthority::Load(dir_ + "/missing.pem", dir_ + "/ca.key").ok());
}

}  // namespace
}  // namespace vigil::loadgen
