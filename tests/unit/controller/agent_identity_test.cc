// Which agent ids a certificate's DNS name admits: the exact id, or NAME.pods.vigil for the pods
// of workload NAME, and nothing else.
#include "controller/ingest/agent_identity.h"

#include <gtest/gtest.h>

#include <ostream>
#include <string>

namespace vigil::controller {
namespace {

struct Case {
  std::string dns_name;
  std::string agent_id;
  bool admitted;
};

// The test's name in ctest (gtest_discover_tests prints the parameter): the case itself, rather
// than the bytes of the struct.
void PrintTo(const Case& c, std::ostream* os) {
  *os << "'" << c.dns_name << "' " << (c.admitted ? "admits" : "refuses") << " '" << c.agent_id
      << "'";
}

class CertificateNameAdmitsTest : public ::testing::TestWithParam<Case> {};

TEST_P(CertificateNameAdmitsTest, Decides) {
  const Case& c = GetParam();
  EXPECT_EQ(CertificateNameAdmits(c.dns_name, c.agent_id), c.admitted)
      << "name '" << c.dns_name << "', id '" << c.agent_id << "'";
}

INSTANTIATE_TEST_SUITE_P(
    Table, CertificateNameAdmitsTest,
    ::testing::Values(
        // A host's certificate names the host.
        Case{"db-1", "db-1", true}, Case{"db-1", "db-2", false}, Case{"db-1", "db-1-abcd", false},
        Case{"", "", false},
        // Pods of a Deployment (template hash + random part) and of a DaemonSet (random part).
        Case{"web.pods.vigil", "web-7d9f8c6b5-x2k4p", true},
        Case{"web.pods.vigil", "web-abcd", true},
        Case{"web.pods.vigil", "web-abcdefghij", true},       // 10 characters
        Case{"web.pods.vigil", "web-abcd-abcdefghij", true},  // two parts
        Case{"vigil-agent.pods.vigil", "vigil-agent-x2k4p", true},
        // No suffix, an empty one, another workload's name, upper case, too short or too long,
        // three parts.
        Case{"web.pods.vigil", "web", false}, Case{"web.pods.vigil", "web-", false},
        Case{"web.pods.vigil", "webx-abcd", false}, Case{"web.pods.vigil", "web-ABCD", false},
        Case{"web.pods.vigil", "web-abc", false}, Case{"web.pods.vigil", "web-abcdefghijk", false},
        Case{"web.pods.vigil", "web-abcd-efgh-ijkl", false},
        Case{"web.pods.vigil", "other-abcd", false}, Case{"web.pods.vigil", "xweb-abcd", false},
        Case{"web.pods.vigil", "web-abcd-", false}, Case{"web.pods.vigil", "web--abcd", false},
        Case{"web.pods.vigil", "web-abcd--efgh", false}, Case{"web.pods.vigil", "web-ab_d", false},
        // Dots: neither in the suffix nor standing for the domain.
        Case{"web.pods.vigil", "web-abcd.efgh", false},
        Case{"web.pods.vigil", "web.pods.vigil-abcd", false},
        Case{"web.pods.vigil", "web-abcd.pods.vigil", false},
        Case{"web.pods.vigil", "web.abcd", false},
        // In the pod domain the pod rule alone applies: a name there is no id of its own.
        Case{"web.pods.vigil", "web.pods.vigil", false}, Case{"pods.vigil", "pods.vigil", false},
        Case{"*.pods.vigil", "*.pods.vigil", false},
        // A wildcard, the bare domain, or a name that is not a single label admit no pod.
        Case{"*.pods.vigil", "web-abcd", false}, Case{"*.pods.vigil", "-abcd", false},
        Case{"*.pods.vigil", "*-abcd", false}, Case{"pods.vigil", "-abcd", false},
        Case{"pods.vigil", "pods-abcd", false}, Case{".pods.vigil", "-abcd", false},
        Case{"a.web.pods.vigil", "a.web-abcd", false}, Case{"-web.pods.vigil", "-web-abcd", false},
        Case{"Web.pods.vigil", "Web-abcd", false}, Case{"web.pods.vigil.evil", "web-abcd", false},
        Case{"web.PODS.vigil", "web-abcd", false}));

}  // namespace
}  // namespace vigil::controller
