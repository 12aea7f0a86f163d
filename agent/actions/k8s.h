// k8s_scale{namespace, deployment, replicas} and k8s_patch_hpa{namespace, hpa, min, max}: the
// runbook's `kubectl scale deployment ... --replicas=N` and `kubectl patch hpa ... -p
// '{"spec":{"minReplicas":..,"maxReplicas":..}}'`, through the Kubernetes API with the pod's
// service account, on the one HTTP client:
//
//   GET   /apis/apps/v1/namespaces/NS/deployments/NAME/scale                 (the replicas before)
//   PATCH the same, {"spec":{"replicas":N}}, application/merge-patch+json
//   GET   /apis/autoscaling/v2/namespaces/NS/horizontalpodautoscalers/NAME
//   PATCH the same, {"spec":{"minReplicas":A,"maxReplicas":B}}, application/merge-patch+json
//
// Only the deployments and HPAs the config lists, within their replica bounds:
//
//   actions:
//     k8s_scale:
//       deployments:                       # required: NAMESPACE/NAME: {min, max}
//         rag-production/rag-api: {min: 2, max: 10}
//       api_server: https://10.96.0.1:443  # optional; default from KUBERNETES_SERVICE_HOST/PORT
//       token_file: /var/run/secrets/kubernetes.io/serviceaccount/token   # optional, default
//       ca_file: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt     # optional, default
//     k8s_patch_hpa:
//       hpas: {rag-production/rag-api-hpa: {min: 2, max: 20}}   # min and max both within
//
// The token is read at each run (projected tokens rotate) and never logged; the server must be
// signed by ca_file. The replicas before and after go to the timeline. Used by the command
// executor's thread only.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "agent/actions/action.h"
#include "agent/actions/api_answers.h"

namespace vigil::agent {

absl::StatusOr<std::unique_ptr<Action>> NewK8sScaleAction(const YAML::Node& options,
                                                          const ActionContext& context,
                                                          absl::string_view file);
absl::StatusOr<std::unique_ptr<Action>> NewK8sPatchHpaAction(const YAML::Node& options,
                                                             const ActionContext& context,
                                                             absl::string_view file);

}  // namespace vigil::agent
