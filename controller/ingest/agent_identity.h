// Which agent ids a certificate's DNS name vouches for. Pure; thread-safe.
#pragma once

#include "absl/strings/string_view.h"

namespace vigil::controller {

// The DNS name suffix of pod certificates: NAME.pods.vigil speaks for the pods of workload NAME.
inline constexpr absl::string_view kPodDomain = ".pods.vigil";

// True when a certificate carrying DNS name `dns_name` may speak for agent `agent_id`:
//  - the name is the id itself (a host's certificate), or
//  - the name is NAME.pods.vigil and the id is NAME-SUFFIX, SUFFIX being what Kubernetes appends
//    to a workload's pod names: one or two dash-separated parts of 4 to 10 lowercase letters or
//    digits ("web-7d9f8c6b5-x2k4p" from a Deployment, "agent-x2k4p" from a DaemonSet).
// Names in the pod domain follow the pod rule alone, and NAME must be a plain DNS label
// ([a-z0-9-], no dots, no wildcard): "*.pods.vigil" and "pods.vigil" admit nothing at all.
bool CertificateNameAdmits(absl::string_view dns_name, absl::string_view agent_id);

}  // namespace vigil::controller
