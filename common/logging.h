// Process-wide log set-up (spdlog to stderr) and a limiter for messages that could flood.
// SetupLogging is called once from main; RateLimitedLog is thread-safe.
#pragma once

#include <cstdint>
#include "absl/strings/string_view.h"

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "fmt/format.h"

// Debian's abseil has its own string_view; let spdlog/fmt print it.
template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<fmt::string_view> {
  template <typename Ctx>
  auto format(absl::string_view s, Ctx& ctx) const {
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(s.data(), s.size()), ctx);
  }
};

namespace vigil {

// level: trace|debug|info|warn|error. Unknown levels fall back to info.
void SetupLogging(absl::string_view program, absl::string_view level);

// Allows at most `burst` messages per `period`; counts what it suppressed so the next allowed
// message can say how many were dropped.
class RateLimitedLog {
 public:
  RateLimitedLog(int burst, absl::Duration period) : burst_(burst), period_(period) {}
  // True when the caller may log now; *suppressed receives the count dropped since the last one.
  bool Allow(absl::Time now, uint64_t* suppressed);

 private:
  const int burst_;
  const absl::Duration period_;
  absl::Mutex mu_;
  absl::Time window_start_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  int used_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t suppressed_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace vigil
