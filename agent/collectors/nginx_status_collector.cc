#include "agent/collectors/nginx_status_collector.h"

#include <algorithm>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/redact.h"
#include "common/status.h"
#include "common/yaml_util.h"

namespace vigil::agent {
namespace {

// stub_status is four short lines; anything much longer is not it.
constexpr size_t kMaxStubStatusBytes = 4096;

absl::Status Malformed(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("not an nginx stub_status page: ", what));
}

}  // namespace

absl::StatusOr<StubStatus> ParseStubStatus(absl::string_view text) {
  if (text.size() > kMaxStubStatusBytes) {
    return Malformed(absl::StrCat(text.size(), " bytes"));
  }
  std::vector<absl::string_view> lines;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (!line.empty()) lines.push_back(line);
  }
  if (lines.size() != 4) {
    return Malformed(absl::StrCat(lines.size(), " non-empty lines, expected 4"));
  }
  StubStatus s;
  if (!absl::ConsumePrefix(&lines[0], "Active connections:") ||
      !absl::SimpleAtoi(absl::StripAsciiWhitespace(lines[0]), &s.active)) {
    return Malformed("no 'Active connections: N' line");
  }
  if (lines[1] != "server accepts handled requests") {
    return Malformed("no 'server accepts handled requests' line");
  }
  std::vector<absl::string_view> counters =
      absl::StrSplit(lines[2], ' ', absl::SkipWhitespace());
  if (counters.size() != 3 || !absl::SimpleAtoi(counters[0], &s.accepts) ||
      !absl::SimpleAtoi(counters[1], &s.handled) || !absl::SimpleAtoi(counters[2], &s.requests)) {
    return Malformed("the counters line is not three numbers");
  }
  std::vector<absl::string_view> words = absl::StrSplit(lines[3], ' ', absl::SkipWhitespace());
  if (words.size() != 6 || words[0] != "Reading:" || words[2] != "Writing:" ||
      words[4] != "Waiting:" || !absl::SimpleAtoi(words[1], &s.reading) ||
      !absl::SimpleAtoi(words[3], &s.writing) || !absl::SimpleAtoi(words[5], &s.waiting)) {
    return Malformed("no 'Reading: N Writing: N Waiting: N' line");
  }
  return s;
}

NginxStatusCollector::NginxStatusCollector(HttpSource source)
    : source_(std::move(source)), up_(absl::StrCat("nginx stub_status at ", Redact(source_.url))) {}

absl::StatusOr<StubStatus> NginxStatusCollector::Fetch() {
  absl::StatusOr<http::HttpClientResponse> response = http::HttpGet(source_.url, source_.options);
  if (!response.ok()) {
    return response.status();
  }
  if (response->status != 200) {
    return absl::UnavailableError(
        absl::StrCat(Redact(source_.url), " answered HTTP ", response->status));
  }
  absl::StatusOr<StubStatus> status = ParseStubStatus(response->body);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Redact(source_.url), ": ", status.status().message()));
  }
  // The agent's own connection is active and writing while nginx renders the page.
  status->active -= std::min<uint64_t>(status->active, 1);
  status->writing -= std::min<uint64_t>(status->writing, 1);
  return status;
}

void NginxStatusCollector::Collect(absl::Time now, Collection& out) {
  absl::StatusOr<StubStatus> s = Fetch();
  if (!s.ok()) {
    up_.Down(s.status().message());
    down_ = true;
    out.Gauge("nginx_status_up", 0);
    last_.reset();
    return;
  }
  up_.Up();
  down_ = false;
  out.Gauge("nginx_status_up", 1);
  out.Gauge("nginx_status_active_connections", static_cast<double>(s->active));
  out.Gauge("nginx_status_reading", static_cast<double>(s->reading));
  out.Gauge("nginx_status_writing", static_cast<double>(s->writing));
  out.Gauge("nginx_status_waiting", static_cast<double>(s->waiting));
  if (last_ && s->accepts >= last_->accepts && s->handled >= last_->handled &&
      s->requests >= last_->requests) {
    const double seconds = std::max(absl::ToDoubleSeconds(now - last_time_), 1e-3);
    // This round's GET and those between rounds are one connection and one request each.
    const uint64_t own = 1 + own_requests_;
    auto rate = [&](uint64_t now_count, uint64_t then) {
      const uint64_t d = now_count - then;
      return static_cast<double>(d > own ? d - own : 0) / seconds;
    };
    out.Gauge("nginx_status_accepts_per_second", rate(s->accepts, last_->accepts));
    out.Gauge("nginx_status_handled_per_second", rate(s->handled, last_->handled));
    out.Gauge("nginx_status_requests_per_second", rate(s->requests, last_->requests));
  }
  last_ = *s;
  last_time_ = now;
  own_requests_ = 0;
}

void NginxStatusCollector::Sense(absl::Time now, const std::vector<std::string>& names,
                                 Collection& out) {
  if (down_ || names.empty()) {
    return;
  }
  absl::StatusOr<StubStatus> s = Fetch();
  ++own_requests_;
  if (s.ok()) {
    out.Gauge("nginx_status_active_connections", static_cast<double>(s->active));
  }
}

std::vector<v1::DiagnosticTable> NginxStatusCollector::Diagnose(
    absl::Time now, const std::vector<std::string>& names) {
  v1::DiagnosticTable table;
  table.set_name("nginx_status");
  table.add_columns("field");
  table.add_columns("value");
  table.set_collected_unix_ms(absl::ToUnixMillis(now));
  absl::StatusOr<StubStatus> s = Fetch();
  ++own_requests_;
  if (!s.ok()) {
    table.set_error(Redact(s.status().message()));
    return {table};
  }
  for (const auto& [field, value] :
       std::vector<std::pair<const char*, uint64_t>>{{"active_connections", s->active},
                                                     {"reading", s->reading},
                                                     {"writing", s->writing},
                                                     {"waiting", s->waiting},
                                                     {"accepts", s->accepts},
                                                     {"handled", s->handled},
                                                     {"dropped", s->accepts - std::min(s->accepts, s->handled)},
                                                     {"requests", s->requests}}) {
    auto* row = table.add_rows();
    row->add_cells(field);
    row->add_cells(absl::StrCat(value));
  }
  return {table};
}

absl::StatusOr<std::unique_ptr<Collector>> NewNginxStatusCollector(const YAML::Node& config,
                                                                   absl::string_view file) {
  RETURN_IF_ERROR(YamlCheckKeys(config, file, "collectors.nginx_status", {VIGIL_HTTP_SOURCE_KEYS}));
  if (!config.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat(
        YamlWhere(file, config), ": collectors.nginx_status needs a url (the stub_status page)"));
  }
  ASSIGN_OR_RETURN(HttpSource source,
                   ReadHttpSource(config, file, "collectors.nginx_status", absl::Seconds(1), 16 << 10));
  return std::make_unique<NginxStatusCollector>(std::move(source));
}

}  // namespace vigil::agent
