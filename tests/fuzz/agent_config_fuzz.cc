// Fuzzes the agent's YAML config (agent/agent_config.h, ParseAgentConfig) with the built-in
// collector factories, which parse their own options (and compile nginx's log_format).
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "agent/agent_config.h"
#include "agent/collector.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const vigil::agent::CollectorRegistry* registry = [] {
    auto* r = new vigil::agent::CollectorRegistry();
    vigil::agent::RegisterBuiltinCollectors(*r);
    return r;
  }();
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = vigil::agent::ParseAgentConfig(text, "fuzz.yaml", *registry);
  if (!config.ok()) {
    FUZZ_CHECK(!config.status().message().empty());
    return 0;
  }
  FUZZ_CHECK(!config->id.empty());
  FUZZ_CHECK(config->interval >= absl::Milliseconds(100));
  for (const auto& collector : config->collectors) {
    FUZZ_CHECK(collector != nullptr);
  }
  return 0;
}
