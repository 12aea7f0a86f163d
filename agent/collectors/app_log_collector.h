// Application log errors, the runbook's `grep "ERROR\|Exception\|Traceback" app.log` and its
// per-module counts: tails files with the rotation-safe LogTailer (a bounded number of bytes per
// file and round), matches each line against RE2 patterns (linear time, no backtracking), and
// counts matches per module, the module taken from a capture group. Produces
// app_log_errors_per_second{module}, app_log_up, and the diagnostics app_log_last_errors (the
// last matching lines, redacted) and app_log_top_modules (counts over a window).
// Used by its collector thread only.
#pragma once

#include <re2/re2.h>

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/collector.h"
#include "agent/collectors/backoff.h"
#include "agent/collectors/log_tailer.h"

namespace vigil::agent {

// One error pattern: a line matches when `regex` is found anywhere in it. The module is the
// capture group `module_group` (a number, 1-based) or named `module_name`; with neither, a group
// named "module" when the regex has one, else no module.
struct AppLogPattern {
  std::string regex;
  int module_group = 0;     // 0: none by number
  std::string module_name;  // "": none by name
};

struct AppLogCollectorOptions {
  std::vector<std::string> files;
  std::vector<AppLogPattern> patterns;
  size_t max_modules = 50;                 // distinct modules; the rest count as "other"
  size_t last_errors = 50;                 // lines kept for app_log_last_errors (at most 200)
  size_t max_line_chars = 500;             // of each kept line, after redaction (at most 4000)
  size_t max_line_bytes = 16 * 1024;       // longer lines are skipped and counted by the tailer
  uint64_t max_bytes_per_round = 4 << 20;  // per file; the rest is read in the next rounds
  absl::Duration top_window = absl::Minutes(10);
  bool from_start = false;  // tests: read what is already in the files
};

// The module label given to matches without a module, and to modules beyond max_modules.
inline constexpr absl::string_view kAppLogNoModule = "unknown";
inline constexpr absl::string_view kAppLogOtherModule = "other";
// Longest module label kept (longer captures are cut).
inline constexpr size_t kAppLogMaxModuleChars = 64;

// Patterns compiled once. Pure and thread-compatible: Match is const.
class AppLogMatcher {
 public:
  // Errors name the pattern by index ("patterns[2]") and say why (RE2's message, a group that
  // does not exist). Bounded: at most 64 patterns of at most 4096 characters.
  static absl::StatusOr<AppLogMatcher> Compile(const std::vector<AppLogPattern>& patterns);

  // nullopt when no pattern matches; else the module (possibly empty) of the first that does.
  std::optional<std::string> Match(absl::string_view line) const;

 private:
  struct Compiled {
    std::shared_ptr<const re2::RE2> re;
    int group = 0;  // 0: no module
  };
  std::vector<Compiled> patterns_;
};

// A captured module as a label value: printable ASCII only (others become '_'), at most
// kAppLogMaxModuleChars, kAppLogNoModule when empty.
std::string AppLogModuleLabel(absl::string_view captured);

class AppLogCollector final : public Collector {
 public:
  AppLogCollector(AppLogCollectorOptions options, AppLogMatcher matcher);

  absl::string_view name() const override { return "app_log"; }
  void Collect(absl::Time now, Collection& out) override;
  std::vector<std::string> DiagnosticNames() const override {
    return {"app_log_last_errors", "app_log_top_modules"};
  }
  std::vector<v1::DiagnosticTable> Diagnose(absl::Time now,
                                            const std::vector<std::string>& names) override;

  // One line of `file` read at `now` (public for tests and benchmarks).
  void Observe(absl::Time now, const std::string& file, absl::string_view line);

 private:
  struct File {
    std::string path;
    std::unique_ptr<LogTailer> tailer;
    std::unique_ptr<UpState> up;
  };
  struct Kept {
    absl::Time time;
    std::string file;
    std::string module;
    std::string line;  // cut to max_line_chars, not yet redacted
  };
  // Counts per module over one minute, for app_log_top_modules.
  struct Bucket {
    absl::Time start;
    std::map<std::string, uint64_t> counts;
  };
  void Poll(absl::Time now, bool* all_up);
  const std::string& ModuleSlot(const std::string& module);
  void ExpireBuckets(absl::Time now);

  const AppLogCollectorOptions options_;
  const AppLogMatcher matcher_;
  std::vector<File> files_;
  absl::Time last_collect_ = absl::InfinitePast();
  // Modules seen since start (at most max_modules, plus "other"), and this interval's counts.
  std::map<std::string, uint64_t> interval_counts_;
  std::deque<Kept> kept_;
  std::deque<Bucket> buckets_;
};

absl::StatusOr<std::unique_ptr<Collector>> NewAppLogCollector(const YAML::Node& config,
                                                              absl::string_view file);

}  // namespace vigil::agent
