// Fuzzes the Alertmanager webhook body parser (controller/http/alertmanager_webhook.h), which
// reads whatever anyone who reaches the HTTP port sends.
#include <cstddef>
#include <cstdint>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "controller/http/alertmanager_webhook.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view body(reinterpret_cast<const char*>(data), size);
  auto alerts = vigil::controller::ParseAlertmanagerWebhook(body);
  if (!alerts.ok()) {
    FUZZ_CHECK(!alerts.status().message().empty());
    return 0;
  }
  for (const vigil::v1::Alert& alert : *alerts) {
    FUZZ_CHECK(absl::StartsWith(alert.id(), "am-"));
    FUZZ_CHECK(!alert.rule().empty());
    FUZZ_CHECK(vigil::v1::Severity_IsValid(alert.severity()));
  }
  return 0;
}
