// The pure parsers of what the Kubernetes and Docker Engine APIs answer the k8s_* and
// docker_prune actions (JSON from the network, so fuzzed: tests/fuzz/api_answer_fuzz.cc).
// Stateless; thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace vigil::agent {

// The integer fields `names` of the "spec" object of a Kubernetes API answer. A missing field is
// left out (the API omits zero values). InvalidArgument when the answer is not a JSON object
// with a spec object, or a listed field is not a whole number from 0 to 1e9.
absl::StatusOr<std::map<std::string, int64_t>> ParseK8sSpec(
    absl::string_view json, const std::vector<absl::string_view>& names);

// The "message" of a JSON error answer (Kubernetes' Status, Docker's error), at most 300 bytes;
// "" when there is none.
std::string JsonErrorMessage(absl::string_view json);

// What one Docker prune answer says: how many objects it deleted (the lengths of its *Deleted
// lists) and SpaceReclaimed (0 when absent). InvalidArgument when it is not a JSON object or the
// fields have other types.
struct DockerPruned {
  int64_t deleted = 0;
  int64_t space_reclaimed = 0;
};
absl::StatusOr<DockerPruned> ParseDockerPrune(absl::string_view json);

}  // namespace vigil::agent
