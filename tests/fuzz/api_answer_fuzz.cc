// Fuzzes the parsers of what the Kubernetes and Docker Engine APIs answer the k8s_* and
// docker_prune actions (agent/actions/api_answers.h): JSON from a peer on the network.
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "agent/actions/api_answers.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view body(reinterpret_cast<const char*>(data), size);
  auto spec = vigil::agent::ParseK8sSpec(body, {"replicas", "minReplicas", "maxReplicas"});
  if (spec.ok()) {
    FUZZ_CHECK(spec->size() <= 3);
    for (const auto& [name, value] : *spec) {
      FUZZ_CHECK(value >= 0 && value <= 1000000000);
    }
  } else {
    FUZZ_CHECK(!spec.status().message().empty());
  }
  FUZZ_CHECK(vigil::agent::JsonErrorMessage(body).size() <= 303);
  auto pruned = vigil::agent::ParseDockerPrune(body);
  if (pruned.ok()) {
    FUZZ_CHECK(pruned->deleted >= 0);
    FUZZ_CHECK(pruned->space_reclaimed >= 0);
  }
  return 0;
}
