// Fuzzes the controller's settings file (controller/config/controller_config.h,
// ApplyControllerConfig). Whatever the text, an error names the file on every line, and settings
// that load stay within the bounds the flags enforce; with every flag given, nothing is applied
// but the sections that have no flag.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <set>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "controller/config/controller_config.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

bool Finite(absl::Duration d) {
  return d >= absl::ZeroDuration() && d < absl::InfiniteDuration();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using vigil::controller::ControllerSettings;
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  ControllerSettings settings;
  const absl::Status status = vigil::controller::ApplyControllerConfig(
      text, "fuzz.yaml", [](absl::string_view) { return false; }, settings);
  if (!status.ok()) {
    FUZZ_CHECK(!status.message().empty());
    for (absl::string_view line : absl::StrSplit(status.message(), '\n')) {
      if (!absl::StartsWith(line, "fuzz.yaml")) {
        std::fprintf(stderr, "a line of the error names no file:\n%s\n",
                     std::string(status.message()).c_str());
      }
      FUZZ_CHECK(absl::StartsWith(line, "fuzz.yaml"));
    }
    return 0;
  }
  const auto& o = settings.options;
  FUZZ_CHECK(o.admission_queue >= 1 && o.admission_queue <= 1'000'000);
  FUZZ_CHECK(o.webhook.max_alerts_per_request >= 1);
  FUZZ_CHECK(o.webhook.max_alerts_per_minute >= 1);
  FUZZ_CHECK(Finite(o.ingest_limits.max_future_skew) && Finite(o.ingest_limits.max_age));
  FUZZ_CHECK(Finite(o.evict_after) && Finite(o.admission_max_delay));
  FUZZ_CHECK(Finite(o.incidents.correlation_window) && Finite(o.remediation.result_patience));
  FUZZ_CHECK(o.http_listen != "off");
  static const std::set<std::string> kLevels = {"trace", "debug", "info",    "warn",
                                                "error", "critical", "off"};
  FUZZ_CHECK(kLevels.count(settings.log_level) == 1);
  const auto& keys = vigil::controller::ControllerConfigKeys();
  for (const auto& [key, origin] : settings.origins) {
    FUZZ_CHECK(std::find(keys.begin(), keys.end(), key) != keys.end());
    FUZZ_CHECK(absl::StartsWith(origin, "fuzz.yaml"));
  }

  // The same text with every flag on the command line: valid still, and nothing taken from it.
  ControllerSettings flags_win;
  const ControllerSettings defaults;
  FUZZ_CHECK(vigil::controller::ApplyControllerConfig(
                 text, "fuzz.yaml", [](absl::string_view) { return true; }, flags_win)
                 .ok());
  // Sections with no flag (notifications, webhook_self_alerts) are the file's whatever the flags.
  for (const auto& [key, origin] : flags_win.origins) {
    FUZZ_CHECK(key == "notifications" || key == "webhook_self_alerts");
  }
  FUZZ_CHECK(flags_win.options.listen == defaults.options.listen);
  FUZZ_CHECK(flags_win.options.db_path == defaults.options.db_path);
  FUZZ_CHECK(flags_win.options.admission_queue == defaults.options.admission_queue);
  FUZZ_CHECK(flags_win.log_level == defaults.log_level);
  return 0;
}
