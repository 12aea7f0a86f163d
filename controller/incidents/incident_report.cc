#include "controller/incidents/incident_report.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <functional>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/model_names.h"
#include "common/status.h"
#include "common/utf8.h"
#include "vigil/v1/agent_service.pb.h"

namespace vigil::controller {
namespace {

// How much of an agent's output the report shows per run.
constexpr size_t kOutputTailLines = 20;
constexpr size_t kOutputTailBytes = 4096;

// ---------------------------------------------------------------------------------------------
// Text safety: everything below that came from outside is passed through one of these.

// Walks `text` as UTF-8: `visible` gets each printable code point's bytes, and every hidden
// control and malformed byte is written as a visible escape (\xNN, \uNNNN) unless `keep`
// accepts it.
template <typename Keep, typename Visible>
void WalkText(absl::string_view text, std::string* out, Keep keep, Visible visible) {
  size_t i = 0;
  while (i < text.size()) {
    char32_t c = 0;
    const size_t length = DecodeUtf8(text.substr(i), &c);
    if (length == 0) {
      absl::StrAppendFormat(out, "\\x%02x", static_cast<unsigned char>(text[i]));
      ++i;
      continue;
    }
    if (IsHiddenControl(c) && !keep(c)) {
      if (c < 0x80) {
        absl::StrAppendFormat(out, "\\x%02x", static_cast<uint32_t>(c));
      } else {
        absl::StrAppendFormat(out, "\\u%04x", static_cast<uint32_t>(c));
      }
    } else {
      visible(c, text.substr(i, length));
    }
    i += length;
  }
}

// Inline markdown text (a table cell, a heading, a list item): stays on its line and in its
// cell, and carries no live markdown or HTML. The characters that open code spans, emphasis,
// links, images, HTML, entities or strikethrough, or end a table cell, are backslash-escaped;
// a line break becomes <br>.
std::string Inline(absl::string_view text) {
  std::string out;
  out.reserve(text.size() + 8);
  WalkText(
      text, &out, [](char32_t c) { return c == '\n' || c == '\r' || c == '\t'; },
      [&out](char32_t c, absl::string_view bytes) {
        switch (c) {
          case '\r':
            return;  // a CRLF line break is one break; a lone CR none
          case '\n':
            out += "<br>";
            return;
          case '\t':
            out += ' ';
            return;
          case '\\':
          case '`':
          case '*':
          case '_':
          case '[':
          case ']':
          case '<':
          case '>':
          case '|':
          case '~':
          case '&':
          case '#':
            out += '\\';
            out += static_cast<char>(c);
            return;
          default:
            out.append(bytes.data(), bytes.size());
        }
      });
  return out;
}

// A table cell: Inline(), and "-" for nothing, so an empty value reads as such.
std::string Cell(absl::string_view text) { return text.empty() ? "-" : Inline(text); }

// A fenced code block holding `text` verbatim but inert: controls shown as escapes (line breaks
// and tabs kept), and a fence longer than any run of backticks inside, so nothing can close it.
std::string CodeBlock(absl::string_view text) {
  std::string body;
  body.reserve(text.size());
  WalkText(
      text, &body, [](char32_t c) { return c == '\n' || c == '\t'; },
      [&body](char32_t, absl::string_view bytes) { body.append(bytes.data(), bytes.size()); });
  size_t longest = 0;
  size_t run = 0;
  for (char c : body) {
    run = c == '`' ? run + 1 : 0;
    longest = std::max(longest, run);
  }
  const std::string fence(std::max<size_t>(3, longest + 1), '`');
  if (!body.empty() && body.back() != '\n') {
    body += '\n';
  }
  return absl::StrCat(fence, "text\n", body, fence, "\n");
}

// A JSON string literal. Malformed UTF-8 becomes U+FFFD, so the document always parses.
std::string JsonQuote(absl::string_view text) {
  std::string out = "\"";
  size_t i = 0;
  while (i < text.size()) {
    char32_t c = 0;
    const size_t length = DecodeUtf8(text.substr(i), &c);
    if (length == 0) {
      out += "\\ufffd";
      ++i;
      continue;
    }
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c == 0x7F || c == 0x2028 || c == 0x2029) {
      absl::StrAppendFormat(&out, "\\u%04x", static_cast<uint32_t>(c));
    } else {
      out.append(text.data() + i, length);
    }
    i += length;
  }
  out += '"';
  return out;
}

std::string JsonNumberOrNull(std::optional<int64_t> value) {
  return value.has_value() ? absl::StrCat(*value) : "null";
}

// A message in protobuf's JSON mapping with the proto field names; null if it cannot be printed.
std::string Json(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.add_whitespace = true;
  // Every field, zeros and empty strings too: a reader need not know proto3's defaults to tell
  // "not done" or "exit 0" from a missing field.
  options.always_print_primitive_fields = true;
  if (!google::protobuf::util::MessageToJsonString(message, &json, options).ok()) {
    return "null";
  }
  while (!json.empty() && json.back() == '\n') {
    json.pop_back();
  }
  return json;
}

// ---------------------------------------------------------------------------------------------
// What the report derives from the incident, its timeline and its actions.

std::string Time(int64_t ms) {
  if (ms == 0) {
    return "-";
  }
  return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", absl::FromUnixMillis(ms), absl::UTCTimeZone());
}

// Milliseconds as seconds for people: "125", "125.5", "-3.25".
std::string Seconds(int64_t ms) {
  const bool negative = ms < 0;
  const uint64_t magnitude =
      negative ? static_cast<uint64_t>(-(ms + 1)) + 1 : static_cast<uint64_t>(ms);
  std::string out = absl::StrCat(negative ? "-" : "", magnitude / 1000);
  if (const uint64_t fraction = magnitude % 1000; fraction != 0) {
    std::string digits = absl::StrFormat("%03d", static_cast<int>(fraction));
    while (digits.back() == '0') {
      digits.pop_back();
    }
    absl::StrAppend(&out, ".", digits);
  }
  return out;
}

struct Milestone {
  const char* name;        // "acknowledge"
  const char* kind;        // the timeline event that records it
  int64_t at_unix_ms = 0;  // 0: not reached
  std::optional<int64_t> from_opened_ms;
};

// Time to acknowledge, mitigate and resolve, each from opened: the incident's own times, or
// for an incident that lacks one, the first timeline event that records it.
std::vector<Milestone> Milestones(const v1::GetIncidentResponse& report) {
  const v1::Incident& incident = report.incident();
  std::vector<Milestone> out = {
      {"acknowledge", "acknowledged", incident.acknowledged_unix_ms(), std::nullopt},
      {"mitigate", "mitigated", incident.mitigated_unix_ms(), std::nullopt},
      {"resolve", "resolved", incident.resolved_unix_ms(), std::nullopt},
  };
  for (Milestone& m : out) {
    if (m.at_unix_ms == 0) {
      for (const v1::TimelineEvent& e : report.timeline()) {
        if (e.kind() == m.kind) {
          m.at_unix_ms = e.time_unix_ms();
          break;
        }
      }
    }
    if (m.at_unix_ms != 0 && incident.opened_unix_ms() != 0) {
      m.from_opened_ms = m.at_unix_ms - incident.opened_unix_ms();
    }
  }
  return out;
}

// One "diagnostics" event: the tables an agent sent, or a note (no agent to ask).
struct DiagnosticsEntry {
  const v1::TimelineEvent* event;
  std::optional<v1::Diagnostics> diagnostics;
};

std::vector<DiagnosticsEntry> DiagnosticsOf(const v1::GetIncidentResponse& report) {
  std::vector<DiagnosticsEntry> out;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  for (const v1::TimelineEvent& e : report.timeline()) {
    if (e.kind() != "diagnostics") {
      continue;
    }
    DiagnosticsEntry entry{&e, std::nullopt};
    v1::Diagnostics diagnostics;
    if (!e.details_json().empty() &&
        google::protobuf::util::JsonStringToMessage(e.details_json(), &diagnostics, options).ok()) {
      entry.diagnostics = std::move(diagnostics);
    }
    out.push_back(std::move(entry));
  }
  return out;
}

// The remediation events of the timeline by proposal id: their summaries start "ID: ". Points
// into the report, which outlives it.
using ActionEvents = std::map<std::string, std::vector<const v1::TimelineEvent*>, std::less<>>;

ActionEvents IndexActionEvents(const v1::GetIncidentResponse& report) {
  ActionEvents out;
  for (const v1::TimelineEvent& e : report.timeline()) {
    if (!absl::StartsWith(e.kind(), "action_")) {
      continue;
    }
    if (const size_t colon = e.summary().find(':'); colon != std::string::npos && colon > 0) {
      out[e.summary().substr(0, colon)].push_back(&e);
    }
  }
  return out;
}

const std::vector<const v1::TimelineEvent*>& EventsOf(const ActionEvents& index,
                                                      absl::string_view proposal_id) {
  static const std::vector<const v1::TimelineEvent*> kNone;
  auto it = index.find(proposal_id);
  return it == index.end() ? kNone : it->second;
}

struct Review {
  std::string decision;  // approved | rejected
  std::string by;
  const v1::TimelineEvent* event = nullptr;  // null: named by the proposal, not on the timeline
};

// Who approved or rejected `p`, and when, from its events; anyone the proposal names who has
// no event (an older store) is listed without a time.
std::vector<Review> ReviewsOf(const v1::ActionProposal& p,
                              const std::vector<const v1::TimelineEvent*>& events) {
  std::vector<Review> out;
  for (const v1::TimelineEvent* e : events) {
    if (e->kind() == "action_approved" || e->kind() == "action_rejected") {
      out.push_back({e->kind() == "action_approved" ? "approved" : "rejected", e->actor(), e});
    }
  }
  auto listed = [&out](absl::string_view decision, absl::string_view by) {
    return std::any_of(out.begin(), out.end(),
                       [&](const Review& r) { return r.decision == decision && r.by == by; });
  };
  for (const std::string& by : p.approved_by()) {
    if (!listed("approved", by)) {
      out.push_back({"approved", by, nullptr});
    }
  }
  if (!p.rejected_by().empty() && !listed("rejected", p.rejected_by())) {
    out.push_back({"rejected", p.rejected_by(), nullptr});
  }
  return out;
}

// When the agent's result for `run` landed on the timeline (the last one: a late result after
// an unknown outcome counts); 0 when none did.
int64_t ResultTime(const v1::ActionRun& run, const std::vector<const v1::TimelineEvent*>& events) {
  int64_t at = 0;
  for (const v1::TimelineEvent* e : events) {
    if ((e->kind() == "action_finished" || e->kind() == "action_refused") &&
        e->actor() == run.agent_id()) {
      at = e->time_unix_ms();
    }
  }
  return at;
}

// What an auditor needs to know of one run: did it run, and how did it end.
std::string Outcome(const v1::ActionRun& run) {
  const std::string& state = run.state();
  if (state == "finished") {
    return absl::StrCat("exit ", run.exit_code());
  }
  if (state == "unknown") {
    return "outcome unknown";
  }
  if (state == "refused") {
    return "refused by the agent";
  }
  if (state == "skipped") {
    return "skipped";
  }
  if (state == "pending") {
    return "not sent";
  }
  if (state == "dispatched") {
    return "sent, no result yet";
  }
  if (state == "started") {
    return "started, no result yet";
  }
  return state.empty() ? "-" : state;
}

struct Tail {
  std::string text;
  bool truncated = false;
  size_t lines_total = 0;
};

// The last kOutputTailLines lines and at most kOutputTailBytes of `output`, cut on a character.
Tail TailOf(absl::string_view output) {
  Tail tail;
  absl::string_view body = output;
  while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) {
    body.remove_suffix(1);
  }
  if (body.empty()) {
    return tail;
  }
  tail.lines_total = std::count(body.begin(), body.end(), '\n') + 1;
  size_t start = 0;
  if (tail.lines_total > kOutputTailLines) {
    size_t newlines = 0;
    for (size_t i = body.size(); i-- > 0;) {
      if (body[i] == '\n' && ++newlines == kOutputTailLines) {
        start = i + 1;
        break;
      }
    }
  }
  if (body.size() - start > kOutputTailBytes) {
    start = body.size() - kOutputTailBytes;
    while (start < body.size() && (static_cast<unsigned char>(body[start]) & 0xC0) == 0x80) {
      ++start;  // not inside a character
    }
  }
  tail.truncated = start > 0;
  tail.text = std::string(body.substr(start));
  return tail;
}

uint64_t LastEventSeq(const v1::GetIncidentResponse& report) {
  uint64_t last = report.incident().last_event_seq() > 0
                      ? static_cast<uint64_t>(report.incident().last_event_seq())
                      : 0;
  for (const v1::TimelineEvent& e : report.timeline()) {
    last = std::max(last, e.seq());
  }
  return last;
}

bool HasCheckpoint(const v1::VerifyAuditResponse& audit) {
  return audit.has_latest_checkpoint() && audit.latest_checkpoint().seq() > 0;
}

bool Covered(const v1::GetIncidentResponse& report, const v1::VerifyAuditResponse& audit) {
  const uint64_t last = LastEventSeq(report);
  return HasCheckpoint(audit) && last > 0 && audit.latest_checkpoint().seq() >= last;
}

// ---------------------------------------------------------------------------------------------
// Markdown.

void AppendTableHeader(std::string* md, const std::vector<std::string>& columns) {
  std::vector<std::string> cells;
  for (const std::string& c : columns) {
    cells.push_back(Cell(c));
  }
  absl::StrAppend(md, "| ", absl::StrJoin(cells, " | "), " |\n|",
                  absl::StrJoin(std::vector<std::string>(columns.size(), "---"), "|"), "|\n");
}

// `cells` already escaped.
void AppendTableRow(std::string* md, const std::vector<std::string>& cells) {
  absl::StrAppend(md, "| ", absl::StrJoin(cells, " | "), " |\n");
}

void AppendDiagnosticTable(std::string* md, const v1::DiagnosticTable& table) {
  if (!table.error().empty()) {
    absl::StrAppend(md, "Not collected: ", Inline(table.error()), "\n\n");
    return;
  }
  size_t width = static_cast<size_t>(table.columns_size());
  for (const v1::DiagnosticRow& row : table.rows()) {
    width = std::max(width, static_cast<size_t>(row.cells_size()));
  }
  if (table.rows_size() == 0 || width == 0) {
    absl::StrAppend(md, "No rows.\n\n");
    return;
  }
  std::vector<std::string> columns;
  for (size_t i = 0; i < width; ++i) {
    columns.push_back(i < static_cast<size_t>(table.columns_size()) && !table.columns(i).empty()
                          ? table.columns(i)
                          : absl::StrCat("column ", i + 1));
  }
  AppendTableHeader(md, columns);
  for (const v1::DiagnosticRow& row : table.rows()) {
    std::vector<std::string> cells;
    for (size_t i = 0; i < width; ++i) {
      cells.push_back(i < static_cast<size_t>(row.cells_size()) ? Cell(row.cells(i)) : "");
    }
    AppendTableRow(md, cells);
  }
  absl::StrAppend(md, "\n");
}

void AppendDiagnostics(std::string* md, const v1::GetIncidentResponse& report) {
  absl::StrAppend(md, "\n## Diagnostics\n\n");
  const std::vector<DiagnosticsEntry> entries = DiagnosticsOf(report);
  if (entries.empty()) {
    absl::StrAppend(md, "No diagnostics were collected.\n");
    return;
  }
  for (const DiagnosticsEntry& entry : entries) {
    const v1::TimelineEvent& e = *entry.event;
    if (!entry.diagnostics.has_value()) {
      absl::StrAppend(md, "Event #", e.seq(), ", ", Time(e.time_unix_ms()), ", ", Inline(e.actor()),
                      ": ", Inline(e.summary()), "\n\n");
      continue;
    }
    if (entry.diagnostics->tables().empty()) {
      absl::StrAppend(md, "Event #", e.seq(), ", ", Time(e.time_unix_ms()), ": ", Inline(e.actor()),
                      " sent none of the requested tables.\n\n");
      continue;
    }
    for (const v1::DiagnosticTable& table : entry.diagnostics->tables()) {
      absl::StrAppend(md, "### ", Inline(table.name()), " from ", Inline(e.actor()), "\n\n",
                      "Event #", e.seq(), ", received ", Time(e.time_unix_ms()),
                      table.collected_unix_ms() != 0
                          ? absl::StrCat(", collected ", Time(table.collected_unix_ms()))
                          : "",
                      table.error().empty() ? absl::StrCat(", ", table.rows_size(), " rows") : "",
                      ".\n\n");
      AppendDiagnosticTable(md, table);
    }
  }
}

void AppendAction(std::string* md, const v1::ActionProposal& p,
                  const std::vector<const v1::TimelineEvent*>& events) {
  absl::StrAppend(md, "### ", Inline(p.id()), ": ", Inline(p.action()), " (",
                  ProposalStateName(p.state()), ")\n\n| | |\n|---|---|\n");
  std::vector<std::pair<std::string, std::string>> params;
  for (const auto& [key, value] : p.params()) {
    params.emplace_back(key, value);
  }
  std::sort(params.begin(), params.end());
  std::vector<std::string> shown;
  for (const auto& [key, value] : params) {
    shown.push_back(absl::StrCat(Inline(key), "=", Inline(value)));
  }
  absl::StrAppend(md, "| Parameters | ", shown.empty() ? "none" : absl::StrJoin(shown, ", "),
                  " |\n");
  absl::StrAppend(md, "| Agents | ", Cell(absl::StrJoin(p.agents(), ", ")), " |\n");
  absl::StrAppend(md, "| Proposed | ", Time(p.proposed_unix_ms()), " by ", Cell(p.proposed_by()),
                  " |\n");
  if (!p.reason().empty()) {
    absl::StrAppend(md, "| Reason | ", Cell(p.reason()), " |\n");
  }
  if (!p.suggested_by_rule().empty()) {
    absl::StrAppend(md, "| Suggested by | rule ", Cell(p.suggested_by_rule()), ": ",
                    Cell(p.suggestion_evidence()), " |\n");
  }
  absl::StrAppend(md, "| Approvals required | ", p.approvals_required(), " |\n");
  absl::StrAppend(md, "| Expires | ", Time(p.expires_unix_ms()), " |\n\n");

  const std::vector<Review> reviews = ReviewsOf(p, events);
  if (reviews.empty()) {
    absl::StrAppend(md, "Nobody approved or rejected it.\n\n");
  } else {
    AppendTableHeader(md, {"Decision", "By", "At", "Event"});
    for (const Review& r : reviews) {
      AppendTableRow(
          md, {r.decision, Cell(r.by), r.event != nullptr ? Time(r.event->time_unix_ms()) : "-",
               r.event != nullptr ? absl::StrCat("#", r.event->seq()) : "-"});
    }
    absl::StrAppend(md, "\n");
  }

  if (p.runs().empty()) {
    absl::StrAppend(md, "It never ran.\n\n");
    return;
  }
  AppendTableHeader(
      md, {"Agent", "Wave", "State", "Outcome", "Duration", "Sent", "Result at", "Reason"});
  for (const v1::ActionRun& run : p.runs()) {
    AppendTableRow(
        md, {Cell(run.agent_id()), absl::StrCat(run.wave()), Cell(run.state()), Cell(Outcome(run)),
             run.state() == "finished" ? absl::StrCat(run.duration_ms(), " ms") : "-",
             Time(run.sent_unix_ms()), Time(ResultTime(run, events)), Cell(run.reason())});
  }
  absl::StrAppend(md, "\n");
  for (const v1::ActionRun& run : p.runs()) {
    if (run.output_tail().empty()) {
      continue;
    }
    const Tail tail = TailOf(run.output_tail());
    absl::StrAppend(md, "Output of ", Inline(run.agent_id()),
                    tail.truncated
                        ? absl::StrCat(" (its end: the last ", kOutputTailLines, " lines, at most ",
                                       kOutputTailBytes, " bytes, of ", tail.lines_total, " lines)")
                        : "",
                    ":\n\n", CodeBlock(tail.text), "\n");
  }
}

std::string Markdown(const v1::GetIncidentResponse& report, const v1::VerifyAuditResponse& audit) {
  const v1::Incident& incident = report.incident();
  std::string md;
  absl::StrAppend(&md, "# ", Inline(incident.id()), ": ", Inline(incident.title()), "\n\n");
  absl::StrAppend(&md, "| | |\n|---|---|\n");
  absl::StrAppend(&md, "| Severity | ", SeverityName(incident.severity()), " |\n");
  absl::StrAppend(&md, "| State | ", IncidentStateName(incident.state()), " |\n");
  absl::StrAppend(&md, "| Opened | ", Time(incident.opened_unix_ms()), " |\n");
  absl::StrAppend(
      &md, "| Acknowledged | ", Time(incident.acknowledged_unix_ms()),
      incident.acknowledged_by().empty() ? "" : " by " + Inline(incident.acknowledged_by()),
      " |\n");
  absl::StrAppend(&md, "| Mitigated | ", Time(incident.mitigated_unix_ms()), " |\n");
  absl::StrAppend(&md, "| Resolved | ", Time(incident.resolved_unix_ms()), " |\n");
  absl::StrAppend(&md, "| Hosts | ", Cell(absl::StrJoin(incident.agents(), ", ")), " |\n");
  absl::StrAppend(&md, "| Services | ", Cell(absl::StrJoin(incident.services(), ", ")), " |\n");
  absl::StrAppend(&md, "| Alerts | ", Cell(absl::StrJoin(incident.alert_rules(), ", ")), " |\n");
  absl::StrAppend(&md, "| Probable cause | ", Cell(incident.probable_cause()), " |\n");
  absl::StrAppend(&md, "| Why | ", Cell(incident.probable_cause_reason()), " |\n\n");

  absl::StrAppend(&md, "## Response times\n\n");
  AppendTableHeader(&md, {"Time to", "Seconds from opened", "Duration", "At"});
  const bool resolved = incident.state() == v1::INCIDENT_RESOLVED;
  for (const Milestone& m : Milestones(report)) {
    if (m.from_opened_ms.has_value()) {
      AppendTableRow(
          &md, {m.name, Seconds(*m.from_opened_ms),
                absl::FormatDuration(absl::Milliseconds(*m.from_opened_ms)), Time(m.at_unix_ms)});
    } else {
      // Resolved without this step: it will never come.
      const char* absent = resolved ? "never" : "not yet";
      AppendTableRow(&md, {m.name, absent, absent, "-"});
    }
  }

  absl::StrAppend(&md,
                  "\n## Alerts\n\n| Alert | Host | Severity | State | Value | Fired | Resolved |\n",
                  "|---|---|---|---|---|---|---|\n");
  for (const v1::Alert& a : report.alerts()) {
    absl::StrAppend(&md, "| ", Cell(a.rule()), " | ",
                    Cell(a.agent_id().empty() ? "fleet" : a.agent_id()), " | ",
                    SeverityName(a.severity()), " | ", AlertStateName(a.state()), " | ", a.value(),
                    " | ", Time(a.fired_unix_ms()), " | ", Time(a.resolved_unix_ms()), " |\n");
  }

  AppendDiagnostics(&md, report);

  absl::StrAppend(&md, "\n## Remediation\n\n");
  if (report.actions().empty()) {
    absl::StrAppend(&md, "No actions were proposed.\n");
  }
  const ActionEvents action_events = IndexActionEvents(report);
  for (const v1::ActionProposal& p : report.actions()) {
    AppendAction(&md, p, EventsOf(action_events, p.id()));
  }

  absl::StrAppend(&md, "\n## Post-incident checklist\n\n");
  if (incident.checklist().empty()) {
    absl::StrAppend(&md, "The incident has no checklist.\n");
  }
  for (const v1::ChecklistItem& item : incident.checklist()) {
    absl::StrAppend(&md, "- [", item.done() ? "x" : " ", "] ", Inline(item.name()),
                    item.done() ? absl::StrCat(" (", Inline(item.done_by()), ", ",
                                               Time(item.done_unix_ms()), ")")
                                : "",
                    "\n");
  }

  absl::StrAppend(&md,
                  "\n## Timeline\n\n| # | Time | Event | By | What | Hash |\n"
                  "|---|---|---|---|---|---|\n");
  for (const v1::TimelineEvent& e : report.timeline()) {
    absl::StrAppend(&md, "| ", e.seq(), " | ", Time(e.time_unix_ms()), " | ", Cell(e.kind()), " | ",
                    Cell(e.actor()), " | ", Cell(e.summary()), " | ", Cell(e.hash()), " |\n");
  }

  absl::StrAppend(&md, "\n## Audit\n\n");
  if (audit.ok()) {
    absl::StrAppend(&md, "The audit chain verifies: ", audit.events_checked(), " events checked",
                    audit.verified_from_seq() > 1
                        ? absl::StrCat(" from event #", audit.verified_from_seq())
                        : "",
                    ".\n\n");
  } else {
    absl::StrAppend(&md, "**The audit chain does NOT verify**: event #", audit.first_bad_seq(),
                    ": ", Inline(audit.problem()), "\n\n");
  }
  absl::StrAppend(&md, "| | |\n|---|---|\n");
  const uint64_t last = LastEventSeq(report);
  std::string last_hash;
  for (const v1::TimelineEvent& e : report.timeline()) {
    if (e.seq() == last) {
      last_hash = e.hash();
    }
  }
  absl::StrAppend(
      &md, "| Incident's last event | ",
      last == 0 ? "-" : absl::StrCat("#", last, last_hash.empty() ? "" : " ", Inline(last_hash)),
      " |\n");
  absl::StrAppend(&md, "| Chain head | ",
                  audit.head_seq() == 0 && audit.head_hash().empty()
                      ? "not reported by the verification"
                      : absl::StrCat("#", audit.head_seq(), " ", Cell(audit.head_hash())),
                  " |\n");
  if (audit.rollback_detected()) {
    absl::StrAppend(&md,
                    "| Rollback | **detected**: a witness holds a checkpoint this database "
                    "lacks |\n");
  }
  if (HasCheckpoint(audit)) {
    const v1::AuditCheckpoint& c = audit.latest_checkpoint();
    absl::StrAppend(&md, "| Latest signed checkpoint | #", c.seq(), " ", Cell(c.hash()),
                    ", signed ", Time(c.time_unix_ms()), " with key ", Cell(c.key_id()),
                    audit.ok() ? "" : " (not verified: the chain does not verify)", " |\n");
    absl::StrAppend(&md, "| Covers this incident | ",
                    Covered(report, audit) ? absl::StrCat("yes: checkpoint #", c.seq(),
                                                          " is at or after the incident's last "
                                                          "event #",
                                                          last)
                                           : absl::StrCat("**no**: the incident's last event #",
                                                          last, " is after checkpoint #", c.seq()),
                    " |\n");
  } else {
    absl::StrAppend(&md, "| Latest signed checkpoint | none |\n",
                    "| Covers this incident | **no**: no signed checkpoint covers it yet |\n");
  }
  return md;
}

// ---------------------------------------------------------------------------------------------
// JSON.

std::string JsonDocument(const v1::GetIncidentResponse& report,
                         const v1::VerifyAuditResponse& audit) {
  const v1::Incident& incident = report.incident();
  std::string json = "{\n";
  absl::StrAppend(&json, "\"export_version\": 2,\n");
  absl::StrAppend(&json, "\"incident_id\": ", JsonQuote(incident.id()), ",\n");
  absl::StrAppend(&json, "\"report\": ", Json(report), ",\n");

  absl::StrAppend(&json, "\"response_times\": {\"opened_unix_ms\": ", incident.opened_unix_ms());
  for (const Milestone& m : Milestones(report)) {
    absl::StrAppend(&json, ", \"time_to_", m.name, "_ms\": ", JsonNumberOrNull(m.from_opened_ms));
  }
  absl::StrAppend(&json, "},\n");

  std::vector<std::string> diagnostics;
  for (const DiagnosticsEntry& entry : DiagnosticsOf(report)) {
    const v1::TimelineEvent& e = *entry.event;
    diagnostics.push_back(absl::StrCat(
        "{\"seq\": ", e.seq(), ", \"time_unix_ms\": ", e.time_unix_ms(),
        ", \"agent_id\": ", JsonQuote(e.actor()), ", \"summary\": ", JsonQuote(e.summary()),
        ", \"diagnostics\": ", entry.diagnostics.has_value() ? Json(*entry.diagnostics) : "null",
        "}"));
  }
  absl::StrAppend(&json, "\"diagnostics\": [", absl::StrJoin(diagnostics, ",\n"), "],\n");

  std::vector<std::string> actions;
  const ActionEvents action_events = IndexActionEvents(report);
  for (const v1::ActionProposal& p : report.actions()) {
    const std::vector<const v1::TimelineEvent*>& events = EventsOf(action_events, p.id());
    std::vector<std::string> reviews;
    for (const Review& r : ReviewsOf(p, events)) {
      reviews.push_back(absl::StrCat(
          "{\"decision\": ", JsonQuote(r.decision), ", \"by\": ", JsonQuote(r.by),
          ", \"time_unix_ms\": ",
          r.event != nullptr ? absl::StrCat(r.event->time_unix_ms()) : "null",
          ", \"seq\": ", r.event != nullptr ? absl::StrCat(r.event->seq()) : "null", "}"));
    }
    std::vector<std::string> outcomes;
    for (const v1::ActionRun& run : p.runs()) {
      const Tail tail = TailOf(run.output_tail());
      const int64_t result_at = ResultTime(run, events);
      outcomes.push_back(absl::StrCat(
          "{\"agent_id\": ", JsonQuote(run.agent_id()), ", \"wave\": ", run.wave(),
          ", \"state\": ", JsonQuote(run.state()), ", \"outcome\": ", JsonQuote(Outcome(run)),
          ", \"exit_code\": ", run.state() == "finished" ? absl::StrCat(run.exit_code()) : "null",
          ", \"duration_ms\": ", run.duration_ms(), ", \"sent_unix_ms\": ",
          JsonNumberOrNull(run.sent_unix_ms() != 0 ? std::optional<int64_t>(run.sent_unix_ms())
                                                   : std::nullopt),
          ", \"result_unix_ms\": ",
          JsonNumberOrNull(result_at != 0 ? std::optional<int64_t>(result_at) : std::nullopt),
          ", \"reason\": ", JsonQuote(run.reason()), ", \"output_tail\": ", JsonQuote(tail.text),
          ", \"output_tail_truncated\": ", tail.truncated ? "true" : "false", "}"));
    }
    actions.push_back(absl::StrCat("{\"id\": ", JsonQuote(p.id()), ", \"reviews\": [",
                                   absl::StrJoin(reviews, ", "), "], \"outcomes\": [",
                                   absl::StrJoin(outcomes, ",\n  "), "]}"));
  }
  absl::StrAppend(&json, "\"actions\": [", absl::StrJoin(actions, ",\n"), "],\n");

  std::vector<std::string> checklist;
  for (const v1::ChecklistItem& item : incident.checklist()) {
    checklist.push_back(Json(item));
  }
  absl::StrAppend(&json, "\"checklist\": [", absl::StrJoin(checklist, ", "), "],\n");

  absl::StrAppend(&json, "\"audit\": ", Json(audit), ",\n");
  absl::StrAppend(&json, "\"coverage\": {\"last_event_seq\": ", LastEventSeq(report),
                  ", \"checkpoint_seq\": ",
                  HasCheckpoint(audit) ? absl::StrCat(audit.latest_checkpoint().seq()) : "null",
                  ", \"covered\": ", Covered(report, audit) ? "true" : "false", "}\n}\n");
  return json;
}

}  // namespace

absl::StatusOr<v1::GetIncidentResponse> LoadIncident(storage::Store& store,
                                                     absl::string_view incident_id) {
  ASSIGN_OR_RETURN(std::optional<v1::Incident> incident, store.GetIncident(incident_id));
  if (!incident.has_value()) {
    return absl::NotFoundError(absl::StrCat("no incident '", incident_id, "'"));
  }
  v1::GetIncidentResponse response;
  *response.mutable_incident() = std::move(*incident);
  ASSIGN_OR_RETURN(std::vector<v1::TimelineEvent> events,
                   store.ListEvents(incident_id, 0, 100'000));
  for (v1::TimelineEvent& e : events) {
    *response.add_timeline() = std::move(e);
  }
  ASSIGN_OR_RETURN(std::vector<v1::Alert> alerts, store.ListIncidentAlerts(incident_id));
  for (v1::Alert& a : alerts) {
    *response.add_alerts() = std::move(a);
  }
  ASSIGN_OR_RETURN(std::vector<v1::ActionProposal> actions, store.ListProposals(incident_id));
  for (v1::ActionProposal& p : actions) {
    *response.add_actions() = std::move(p);
  }
  return response;
}

absl::StatusOr<std::string> ExportIncident(storage::Store& store, absl::string_view incident_id,
                                           absl::string_view format,
                                           const v1::VerifyAuditResponse& audit) {
  if (format != "markdown" && format != "json") {
    return absl::InvalidArgumentError(
        absl::StrCat("export format '", format, "' is not one of: markdown, json"));
  }
  ASSIGN_OR_RETURN(v1::GetIncidentResponse report, LoadIncident(store, incident_id));
  if (format == "markdown") {
    return Markdown(report, audit);
  }
  return JsonDocument(report, audit);
}

}  // namespace vigil::controller
