// Fuzzes the approval policy file (controller/remediation/policy.h, ParsePolicy). A policy that
// parses must hold what the remediation manager relies on.
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "controller/remediation/policy.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  auto policy = vigil::controller::ParsePolicy(text, "fuzz.yaml");
  if (!policy.ok()) {
    FUZZ_CHECK(!policy.status().message().empty());
    return 0;
  }
  FUZZ_CHECK(policy->wave_size >= 1);
  for (const char* action : {"restart_service", "pg_terminate_backend", "redis_flushdb",
                             "reload_nginx", "no_such_action"}) {
    const vigil::controller::ActionPolicy p = policy->For(action);
    FUZZ_CHECK(p.approvals >= 1 && p.approvals <= 10);
    FUZZ_CHECK(!p.roles.empty());
  }
  return 0;
}
