#include "agent/collectors/app_log_collector.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "agent/collectors/utf8.h"
#include "common/redact.h"
#include "common/status.h"
#include "common/yaml_util.h"

namespace vigil::agent {
namespace {

constexpr size_t kMaxPatterns = 64;
constexpr size_t kMaxPatternChars = 4096;
constexpr size_t kMaxFiles = 64;
// RE2's memory budget per pattern (its default is 8 MiB): a pattern that needs more is refused
// at load time rather than slowing every line.
constexpr int64_t kPatternMaxMem = int64_t{2} << 20;

}  // namespace

absl::StatusOr<AppLogMatcher> AppLogMatcher::Compile(const std::vector<AppLogPattern>& patterns) {
  if (patterns.size() > kMaxPatterns) {
    return absl::InvalidArgumentError(
        absl::StrCat("patterns: ", patterns.size(), " patterns, at most ", kMaxPatterns));
  }
  AppLogMatcher matcher;
  for (size_t i = 0; i < patterns.size(); ++i) {
    const AppLogPattern& p = patterns[i];
    const std::string where = absl::StrCat("patterns[", i, "]");
    if (p.regex.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": the regex is empty"));
    }
    if (p.regex.size() > kMaxPatternChars) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": the regex is ", p.regex.size(),
                                                     " characters, at most ", kMaxPatternChars));
    }
    re2::RE2::Options options;
    options.set_log_errors(false);
    options.set_max_mem(kPatternMaxMem);
    auto re = std::make_shared<const re2::RE2>(p.regex, options);
    if (!re->ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": bad regex '", p.regex, "': ", re->error()));
    }
    Compiled c{re, 0};
    const auto& names = re->NamedCapturingGroups();
    if (p.module_group > 0) {
      if (p.module_group > re->NumberOfCapturingGroups()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": module group ", p.module_group, " but the regex has ",
                         re->NumberOfCapturingGroups(), " capture group(s)"));
      }
      c.group = p.module_group;
    } else if (!p.module_name.empty()) {
      auto it = names.find(p.module_name);
      if (it == names.end()) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": the regex has no group named '",
                                                       p.module_name, "' (write (?P<",
                                                       p.module_name, ">...))"));
      }
      c.group = it->second;
    } else if (auto it = names.find("module"); it != names.end()) {
      c.group = it->second;
    }
    matcher.patterns_.push_back(std::move(c));
  }
  return matcher;
}

std::optional<std::string> AppLogMatcher::Match(absl::string_view line) const {
  const re2::StringPiece text(line.data(), line.size());
  for (const Compiled& c : patterns_) {
    if (c.group == 0) {
      if (c.re->Match(text, 0, text.size(), re2::RE2::UNANCHORED, nullptr, 0)) {
        return std::string();
      }
      continue;
    }
    // Match fills submatches 0..n-1; only the module's is wanted, so ask for group+1.
    std::vector<re2::StringPiece> sub(static_cast<size_t>(c.group) + 1);
    if (c.re->Match(text, 0, text.size(), re2::RE2::UNANCHORED, sub.data(),
                    static_cast<int>(sub.size()))) {
      const re2::StringPiece& m = sub[static_cast<size_t>(c.group)];
      return m.data() == nullptr ? std::string() : std::string(m.data(), m.size());
    }
  }
  return std::nullopt;
}

std::string AppLogModuleLabel(absl::string_view captured) {
  std::string out;
  for (char ch : captured.substr(0, kAppLogMaxModuleChars)) {
    const auto u = static_cast<unsigned char>(ch);
    out.push_back(u >= 0x20 && u < 0x7f ? ch : '_');
  }
  if (out.empty()) {
    return std::string(kAppLogNoModule);
  }
  return out;
}

AppLogCollector::AppLogCollector(AppLogCollectorOptions options, AppLogMatcher matcher)
    : options_(std::move(options)), matcher_(std::move(matcher)) {
  for (const std::string& path : options_.files) {
    files_.push_back(
        File{path, std::make_unique<LogTailer>(path, options_.from_start, options_.max_line_bytes),
             std::make_unique<UpState>(absl::StrCat("application log ", path))});
  }
}

const std::string& AppLogCollector::ModuleSlot(const std::string& module) {
  auto it = interval_counts_.find(module);
  if (it != interval_counts_.end()) {
    return it->first;
  }
  // "other" is not one of the max_modules: it always has room.
  size_t known = interval_counts_.size() -
                 (interval_counts_.count(std::string(kAppLogOtherModule)) > 0 ? 1 : 0);
  if (known >= options_.max_modules) {
    return interval_counts_.try_emplace(std::string(kAppLogOtherModule), 0).first->first;
  }
  return interval_counts_.emplace(module, 0).first->first;
}

void AppLogCollector::Observe(absl::Time now, const std::string& file, absl::string_view line) {
  std::optional<std::string> captured = matcher_.Match(line);
  if (!captured) {
    return;
  }
  const std::string& module = ModuleSlot(AppLogModuleLabel(*captured));
  ++interval_counts_[module];
  // Minute buckets for the top modules.
  const absl::Time minute =
      absl::FromUnixSeconds(absl::ToUnixSeconds(now) - absl::ToUnixSeconds(now) % 60);
  if (buckets_.empty() || buckets_.back().start < minute) {
    buckets_.push_back(Bucket{minute, {}});
  }
  ++buckets_.back().counts[module];
  if (options_.last_errors > 0) {
    if (kept_.size() >= options_.last_errors) {
      kept_.pop_front();
    }
    // Cut before redaction so the kept memory is bounded; redaction runs when the table is
    // read. A cut secret keeps only its prefix, which redaction still masks.
    kept_.push_back(
        Kept{now, file, module, std::string(line.substr(0, options_.max_line_chars * 2))});
  }
}

void AppLogCollector::ExpireBuckets(absl::Time now) {
  while (!buckets_.empty() &&
         buckets_.front().start + absl::Minutes(1) <= now - options_.top_window) {
    buckets_.pop_front();
  }
}

void AppLogCollector::Poll(absl::Time now, bool* all_up) {
  for (File& f : files_) {
    const std::string& path = f.path;
    absl::Status s =
        f.tailer->Poll([this, now, &path](absl::string_view line) { Observe(now, path, line); },
                       options_.max_bytes_per_round);
    if (!s.ok()) {
      f.up->Down(s.message());
      if (all_up != nullptr) {
        *all_up = false;
      }
    } else {
      f.up->Up();
    }
  }
}

void AppLogCollector::Collect(absl::Time now, Collection& out) {
  bool all_up = true;
  Poll(now, &all_up);
  out.Gauge("app_log_up", all_up ? 1 : 0);
  if (last_collect_ != absl::InfinitePast()) {
    const double seconds = std::max(absl::ToDoubleSeconds(now - last_collect_), 1e-3);
    // Every module seen so far, zeros included: an alert on one must be able to resolve.
    for (const auto& [module, count] : interval_counts_) {
      out.Gauge("app_log_errors_per_second", static_cast<double>(count) / seconds,
                {{"module", module}});
    }
  }
  for (auto& [module, count] : interval_counts_) {
    count = 0;
  }
  last_collect_ = now;
  ExpireBuckets(now);
}

std::vector<v1::DiagnosticTable> AppLogCollector::Diagnose(absl::Time now,
                                                           const std::vector<std::string>& names) {
  // Fold in what arrived since the last round so the tables are current. The counts stay in
  // this interval's totals, so the next round still reports them.
  Poll(now, nullptr);
  ExpireBuckets(now);
  std::vector<v1::DiagnosticTable> tables;
  for (const std::string& name : names) {
    v1::DiagnosticTable t;
    t.set_name(name);
    t.set_collected_unix_ms(absl::ToUnixMillis(now));
    if (name == "app_log_last_errors") {
      for (const char* c : {"read_at", "file", "module", "line"}) {
        t.add_columns(c);
      }
      // Newest first, like `tail` read from the bottom.
      for (auto it = kept_.rbegin(); it != kept_.rend(); ++it) {
        auto* row = t.add_rows();
        row->add_cells(absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", it->time, absl::UTCTimeZone()));
        row->add_cells(ValidUtf8(it->file));
        row->add_cells(it->module);
        std::string text = Redact(it->line);
        if (text.size() > options_.max_line_chars) {
          text.resize(options_.max_line_chars);
          text += "...";
        }
        row->add_cells(ValidUtf8(text));  // a cut, or a log's own bytes, may not be UTF-8
      }
    } else if (name == "app_log_top_modules") {
      for (const char* c : {"module", "errors", "errors_per_minute", "window_minutes"}) {
        t.add_columns(c);
      }
      std::map<std::string, uint64_t> totals;
      for (const Bucket& b : buckets_) {
        for (const auto& [module, count] : b.counts) {
          totals[module] += count;
        }
      }
      std::vector<std::pair<std::string, uint64_t>> ranked(totals.begin(), totals.end());
      std::stable_sort(ranked.begin(), ranked.end(),
                       [](const auto& a, const auto& b) { return a.second > b.second; });
      const double minutes = std::max(1.0, absl::ToDoubleMinutes(options_.top_window));
      for (const auto& [module, count] : ranked) {
        auto* row = t.add_rows();
        row->add_cells(module);
        row->add_cells(absl::StrCat(count));
        row->add_cells(absl::StrFormat("%.2f", static_cast<double>(count) / minutes));
        row->add_cells(absl::StrFormat("%.0f", minutes));
      }
    } else {
      continue;
    }
    tables.push_back(std::move(t));
  }
  return tables;
}

namespace {

absl::StatusOr<AppLogPattern> ReadPattern(const YAML::Node& node, absl::string_view file,
                                          size_t index) {
  const std::string where = absl::StrCat("collectors.app_log.patterns[", index, "]");
  AppLogPattern p;
  if (node.IsScalar()) {
    p.regex = node.Scalar();
    return p;
  }
  if (!node.IsMap()) {
    return absl::InvalidArgumentError(
        absl::StrCat(YamlWhere(file, node), ": ", where,
                     " must be a regex or a map {regex: ..., module: GROUP}"));
  }
  RETURN_IF_ERROR(YamlCheckKeys(node, file, where, {"regex", "module"}));
  ASSIGN_OR_RETURN(p.regex, YamlString(node, "regex", file, true));
  if (const YAML::Node m = node["module"]; m.IsDefined() && !m.IsNull()) {
    if (!m.IsScalar() || m.Scalar().empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          YamlWhere(file, m), ": ", where, ".module must be a group number or a group name"));
    }
    int group = 0;
    if (absl::SimpleAtoi(m.Scalar(), &group)) {
      if (group < 1 || group > 100) {
        return absl::InvalidArgumentError(
            absl::StrCat(YamlWhere(file, m), ": ", where, ".module group number must be 1 to 100"));
      }
      p.module_group = group;
    } else {
      p.module_name = m.Scalar();
    }
  }
  return p;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Collector>> NewAppLogCollector(const YAML::Node& config,
                                                              absl::string_view file) {
  RETURN_IF_ERROR(
      YamlCheckKeys(config, file, "collectors.app_log",
                    {"files", "patterns", "max_modules", "last_errors", "max_line_chars",
                     "max_line_bytes", "max_bytes_per_round", "top_window"}));
  AppLogCollectorOptions options;
  ASSIGN_OR_RETURN(options.files, YamlStringList(config, "files", file));
  if (options.files.empty() || options.files.size() > kMaxFiles) {
    return absl::InvalidArgumentError(
        absl::StrCat(YamlWhere(file, config["files"].IsDefined() ? config["files"] : config),
                     ": collectors.app_log.files must list 1 to ", kMaxFiles, " log files"));
  }
  for (const std::string& f : options.files) {
    if (f.empty() || f.front() != '/') {
      return absl::InvalidArgumentError(absl::StrCat(YamlWhere(file, config["files"]),
                                                     ": collectors.app_log.files: '", f,
                                                     "' must be an absolute path"));
    }
  }
  const YAML::Node patterns = config["patterns"];
  if (!patterns.IsDefined() || patterns.IsNull()) {
    // The runbook's grep.
    options.patterns.push_back({R"(ERROR|Exception|Traceback)", 0, ""});
  } else if (!patterns.IsSequence() || patterns.size() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        YamlWhere(file, patterns), ": collectors.app_log.patterns must be a non-empty list"));
  } else {
    if (patterns.size() > kMaxPatterns) {
      return absl::InvalidArgumentError(absl::StrCat(YamlWhere(file, patterns),
                                                     ": collectors.app_log.patterns: at most ",
                                                     kMaxPatterns, " patterns"));
    }
    for (size_t i = 0; i < patterns.size(); ++i) {
      ASSIGN_OR_RETURN(AppLogPattern p, ReadPattern(patterns[i], file, i));
      options.patterns.push_back(std::move(p));
    }
  }
  ASSIGN_OR_RETURN(
      int64_t max_modules,
      YamlInt(config, "max_modules", file, static_cast<int64_t>(options.max_modules), 1, 1000));
  options.max_modules = static_cast<size_t>(max_modules);
  // The controller takes cells up to 4 KiB and messages up to 2 MiB: 200 lines of 4000
  // characters fit.
  ASSIGN_OR_RETURN(int64_t last_errors, YamlInt(config, "last_errors", file,
                                                static_cast<int64_t>(options.last_errors), 0, 200));
  options.last_errors = static_cast<size_t>(last_errors);
  ASSIGN_OR_RETURN(int64_t line_chars,
                   YamlInt(config, "max_line_chars", file,
                           static_cast<int64_t>(options.max_line_chars), 16, 4000));
  options.max_line_chars = static_cast<size_t>(line_chars);
  ASSIGN_OR_RETURN(int64_t line_bytes,
                   YamlInt(config, "max_line_bytes", file,
                           static_cast<int64_t>(options.max_line_bytes), 256, 1 << 20));
  options.max_line_bytes = static_cast<size_t>(line_bytes);
  ASSIGN_OR_RETURN(int64_t round_bytes, YamlInt(config, "max_bytes_per_round", file,
                                                static_cast<int64_t>(options.max_bytes_per_round),
                                                4096, int64_t{1} << 30));
  options.max_bytes_per_round = static_cast<uint64_t>(round_bytes);
  ASSIGN_OR_RETURN(options.top_window,
                   YamlDuration(config, "top_window", file, options.top_window));
  if (options.top_window < absl::Minutes(1) || options.top_window > absl::Hours(24)) {
    return absl::InvalidArgumentError(
        absl::StrCat(YamlWhere(file, config["top_window"]),
                     ": collectors.app_log.top_window must be 1m to 24h"));
  }
  absl::StatusOr<AppLogMatcher> matcher = AppLogMatcher::Compile(options.patterns);
  if (!matcher.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(YamlWhere(file, patterns.IsDefined() ? patterns : config),
                     ": collectors.app_log.", matcher.status().message()));
  }
  return std::make_unique<AppLogCollector>(std::move(options), std::move(*matcher));
}

}  // namespace vigil::agent
