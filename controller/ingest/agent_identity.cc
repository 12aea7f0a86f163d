#include "controller/ingest/agent_identity.h"

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"

namespace vigil::controller {
namespace {

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// A workload name as Kubernetes allows it in a pod name's first part: a DNS label of lowercase
// letters, digits and inner dashes.
bool IsWorkloadName(absl::string_view name) {
  if (name.empty() || name.size() > 63 || name.front() == '-' || name.back() == '-') {
    return false;
  }
  for (char c : name) {
    if (!IsLowerAlnum(c) && c != '-') {
      return false;
    }
  }
  return true;
}

// One or two dash-separated parts of 4 to 10 lowercase letters or digits.
bool IsGeneratedSuffix(absl::string_view suffix) {
  std::vector<absl::string_view> parts = absl::StrSplit(suffix, '-');
  if (parts.empty() || parts.size() > 2) {
    return false;
  }
  for (absl::string_view part : parts) {
    if (part.size() < 4 || part.size() > 10) {
      return false;
    }
    for (char c : part) {
      if (!IsLowerAlnum(c)) {
        return false;
      }
    }
  }
  return true;
}

}  // namespace

bool CertificateNameAdmits(absl::string_view dns_name, absl::string_view agent_id) {
  if (agent_id.empty()) {
    return false;
  }
  // Names in the pod domain follow the pod rule only: not even their own text is an id, so
  // "pods.vigil" and "*.pods.vigil" admit nothing at all.
  if (dns_name == kPodDomain.substr(1)) {
    return false;
  }
  if (!absl::ConsumeSuffix(&dns_name, kPodDomain)) {
    return dns_name == agent_id;
  }
  if (!IsWorkloadName(dns_name)) {
    return false;
  }
  // The id is NAME, a dash, then the generated suffix; NAME may hold dashes itself, so the
  // suffix is what follows exactly NAME and one dash.
  if (!absl::ConsumePrefix(&agent_id, dns_name) || !absl::ConsumePrefix(&agent_id, "-")) {
    return false;
  }
  return IsGeneratedSuffix(agent_id);
}

}  // namespace vigil::controller
