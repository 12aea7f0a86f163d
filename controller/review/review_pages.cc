#include "controller/review/review_pages.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/model_names.h"
#include "controller/review/web_forms.h"
#include "vigil/v1/agent_service.pb.h"

namespace vigil::controller::review {
namespace {

std::string Esc(absl::string_view text) { return HtmlEscape(text); }

std::string Time(int64_t unix_ms) {
  if (unix_ms == 0) {
    return "-";
  }
  return absl::FormatTime("%Y-%m-%d %H:%M:%SZ", absl::FromUnixMillis(unix_ms), absl::UTCTimeZone());
}

// " (after 1h2m)": how long from `from_ms` to `to_ms`; empty unless both are set.
std::string After(int64_t from_ms, int64_t to_ms) {
  if (from_ms == 0 || to_ms == 0 || to_ms < from_ms) {
    return "";
  }
  const int64_t seconds = (to_ms - from_ms) / 1000;
  return absl::StrCat(" <small>(after ",
                      seconds == 0 ? "0s" : absl::FormatDuration(absl::Seconds(seconds)),
                      ")</small>");
}

std::string Head(absl::string_view title) {
  return absl::StrCat(
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
      "<title>",
      Esc(title),
      " - Vigil review</title>"
      "<link rel=\"stylesheet\" href=\"",
      kStylePath, "\"><script src=\"", kScriptPath, "\" defer></script></head>\n<body>\n");
}

std::string PlainHttpBanner(bool plain_http) {
  if (!plain_http) {
    return "";
  }
  return "<p class=\"banner\" id=\"plain-http\">Served over plain HTTP on a loopback address: for "
         "this machine only. Give the controller's HTTP port a certificate (--http-tls-cert, "
         "--http-tls-key) to review from elsewhere.</p>\n";
}

std::string Header(const PageContext* context, bool plain_http) {
  std::string html = absl::StrCat("<header><a class=\"brand\" href=\"", kReviewRoot,
                                  "\">Vigil review</a><span class=\"readonly\">read-only</span>");
  if (context != nullptr) {
    absl::StrAppend(&html, "<span class=\"who\">signed in as <b id=\"user\">", Esc(context->user),
                    "</b> (", Esc(context->role),
                    ")</span><form class=\"logout\" method=\"post\" "
                    "action=\"",
                    kLogoutPath, "\"><button type=\"submit\">Sign out</button></form>");
  }
  absl::StrAppend(&html, "</header>\n", PlainHttpBanner(plain_http), "<main>\n");
  return html;
}

constexpr char kFoot[] = "</main>\n</body></html>\n";

std::string Lower(absl::string_view text) { return absl::AsciiStrToLower(text); }

bool Contains(absl::string_view haystack, const std::string& lowered_needle) {
  return absl::StrContains(Lower(haystack), lowered_needle);
}

std::string IncidentLink(absl::string_view id) {
  return absl::StrCat("<a href=\"", kIncidentPath, "?id=", Esc(UrlEncode(id)), "\">", Esc(id),
                      "</a>");
}

std::string StateClass(v1::IncidentState state) { return Esc(Lower(IncidentStateName(state))); }

void AppendAudit(std::string& html, const absl::StatusOr<v1::VerifyAuditResponse>& audit) {
  absl::StrAppend(&html, "<section id=\"audit\"><h2>Audit trail</h2>\n");
  if (!audit.ok()) {
    absl::StrAppend(&html,
                    "<p class=\"mark unknown\" id=\"audit-status\" data-status=\"unknown\">"
                    "&#9888; Not verified: the check could not run: ",
                    Esc(audit.status().message()), "</p>\n</section>\n");
    return;
  }
  const v1::VerifyAuditResponse& a = *audit;
  if (a.ok()) {
    absl::StrAppend(&html,
                    "<p class=\"mark verified\" id=\"audit-status\" data-status=\"verified\">"
                    "&#10004; Verified</p>\n<p>",
                    a.events_checked(), " event(s) checked");
    if (a.verified_from_seq() > 1) {
      absl::StrAppend(&html, " from #", a.verified_from_seq());
    }
    absl::StrAppend(&html, ".</p>\n");
  } else {
    absl::StrAppend(
        &html,
        "<p class=\"mark failed\" id=\"audit-status\" data-status=\"failed\">"
        "&#10008; Verification failed</p>\n<p id=\"audit-problem\">",
        a.first_bad_seq() != 0 ? absl::StrCat("First bad event: #", a.first_bad_seq(), ". ") : "",
        "Problem: ", Esc(a.problem()), "</p>\n");
  }
  if (a.rollback_detected()) {
    absl::StrAppend(&html,
                    "<p class=\"mark failed\" id=\"audit-rollback\">&#9888; Rollback detected: a "
                    "witness holds a checkpoint this database lacks.</p>\n");
  }
  absl::StrAppend(&html, "<table class=\"facts\">\n");
  if (a.head_seq() != 0 || !a.head_hash().empty()) {
    absl::StrAppend(&html, "<tr><th>Chain head</th><td>",
                    a.head_seq() != 0 ? absl::StrCat("#", a.head_seq(), " ") : "", "<code>",
                    Esc(a.head_hash()), "</code></td></tr>\n");
  }
  if (a.has_latest_checkpoint()) {
    const v1::AuditCheckpoint& c = a.latest_checkpoint();
    absl::StrAppend(&html, "<tr><th>Latest checkpoint</th><td id=\"checkpoint\">#", c.seq(),
                    ", signed ", Time(c.time_unix_ms()),
                    c.key_id().empty() ? "" : absl::StrCat(" with key ", Esc(c.key_id())),
                    a.ok() ? " (verified)" : "", "<br><code>", Esc(c.hash()),
                    "</code></td></tr>\n");
  } else {
    absl::StrAppend(&html,
                    "<tr><th>Latest checkpoint</th><td id=\"checkpoint\">none: the chain is "
                    "checked on its own hashes only</td></tr>\n");
  }
  if (a.checkpoints_checked() != 0) {
    absl::StrAppend(&html, "<tr><th>Checkpoints checked</th><td>", a.checkpoints_checked(),
                    "</td></tr>\n");
  }
  absl::StrAppend(&html, "</table>\n</section>\n");
}

void AppendDiagnostics(std::string& html, const v1::GetIncidentResponse& page) {
  absl::StrAppend(&html, "<section id=\"diagnostics\"><h2>Diagnostics</h2>\n");
  bool any = false;
  for (const v1::TimelineEvent& e : page.timeline()) {
    if (e.kind() != "diagnostics") {
      continue;
    }
    any = true;
    v1::Diagnostics diagnostics;
    google::protobuf::util::JsonParseOptions options;
    options.ignore_unknown_fields = true;
    if (!google::protobuf::util::JsonStringToMessage(e.details_json(), &diagnostics, options)
             .ok() ||
        diagnostics.tables().empty()) {
      // No tables (the agent could not be asked, or answered none): the event says why.
      absl::StrAppend(&html, "<p>Event #", e.seq(), " (", Esc(e.actor()), "): ", Esc(e.summary()),
                      "</p>\n");
      continue;
    }
    for (const v1::DiagnosticTable& table : diagnostics.tables()) {
      absl::StrAppend(
          &html, "<h3>", Esc(table.name()), " <small>from ", Esc(e.actor()), ", event #", e.seq(),
          ", ", Time(table.collected_unix_ms() != 0 ? table.collected_unix_ms() : e.time_unix_ms()),
          "</small></h3>\n");
      if (!table.error().empty()) {
        absl::StrAppend(&html, "<p class=\"error\">Not collected: ", Esc(table.error()), "</p>\n");
        continue;
      }
      absl::StrAppend(&html, "<div class=\"scroll\"><table class=\"grid\"><thead><tr>");
      for (const std::string& column : table.columns()) {
        absl::StrAppend(&html, "<th>", Esc(column), "</th>");
      }
      absl::StrAppend(&html, "</tr></thead><tbody>\n");
      size_t shown = 0;
      for (const v1::DiagnosticRow& row : table.rows()) {
        if (shown++ == kMaxShownDiagnosticRows) {
          break;
        }
        absl::StrAppend(&html, "<tr>");
        for (const std::string& cell : row.cells()) {
          absl::StrAppend(&html, "<td>", Esc(cell), "</td>");
        }
        absl::StrAppend(&html, "</tr>\n");
      }
      absl::StrAppend(&html, "</tbody></table></div>\n");
      if (static_cast<size_t>(table.rows_size()) > kMaxShownDiagnosticRows) {
        absl::StrAppend(&html, "<p>", table.rows_size() - kMaxShownDiagnosticRows,
                        " more row(s) in the exports.</p>\n");
      }
    }
  }
  if (!any) {
    absl::StrAppend(&html, "<p>No diagnostics on this page of the timeline.</p>\n");
  }
  absl::StrAppend(&html, "</section>\n");
}

void AppendActions(std::string& html, const v1::GetIncidentResponse& page) {
  absl::StrAppend(&html, "<section id=\"actions\"><h2>Actions</h2>\n");
  if (page.actions().empty()) {
    absl::StrAppend(&html, "<p>No actions were proposed.</p>\n</section>\n");
    return;
  }
  absl::StrAppend(&html,
                  "<div class=\"scroll\"><table class=\"grid\"><thead><tr><th>Id</th><th>Action"
                  "</th><th>Parameters</th><th>Hosts</th><th>State</th><th>Proposed by</th>"
                  "<th>Approved by</th><th>Rejected by</th><th>Runs</th></tr></thead><tbody>\n");
  for (const v1::ActionProposal& p : page.actions()) {
    std::vector<std::string> params;
    std::vector<std::pair<std::string, std::string>> sorted(p.params().begin(), p.params().end());
    std::sort(sorted.begin(), sorted.end());
    for (const auto& [k, v] : sorted) {
      params.push_back(absl::StrCat(Esc(k), "=", Esc(v)));
    }
    std::vector<std::string> runs;
    for (const v1::ActionRun& run : p.runs()) {
      std::string line = absl::StrCat(Esc(run.agent_id()), ": ", Esc(run.state()));
      if (run.state() == "finished") {
        absl::StrAppend(&line, " (exit ", run.exit_code(), ")");
      }
      if (!run.reason().empty()) {
        absl::StrAppend(&line, " - ", Esc(run.reason()));
      }
      if (!run.output_tail().empty()) {
        absl::StrAppend(&line, "<details><summary>output</summary><pre>", Esc(run.output_tail()),
                        "</pre></details>");
      }
      runs.push_back(std::move(line));
    }
    std::vector<std::string> approvers;
    for (const std::string& a : p.approved_by()) {
      approvers.push_back(Esc(a));
    }
    absl::StrAppend(
        &html, "<tr><td>", Esc(p.id()), "</td><td>", Esc(p.action()),
        p.reason().empty() ? "" : absl::StrCat("<br><small>", Esc(p.reason()), "</small>"),
        "</td><td>", absl::StrJoin(params, "<br>"), "</td><td>",
        Esc(absl::StrJoin(p.agents(), ", ")), "</td><td>", Esc(ProposalStateName(p.state())),
        "</td><td>", Esc(p.proposed_by()), "<br><small>", Time(p.proposed_unix_ms()),
        "</small></td><td>", approvers.empty() ? "-" : absl::StrJoin(approvers, ", "),
        p.approvals_required() > 0 ? absl::StrCat(" <small>(", p.approved_by_size(), " of ",
                                                  p.approvals_required(), ")</small>")
                                   : "",
        "</td><td>", p.rejected_by().empty() ? "-" : Esc(p.rejected_by()), "</td><td>",
        runs.empty() ? "-" : absl::StrJoin(runs, "<br>"), "</td></tr>\n");
  }
  absl::StrAppend(&html, "</tbody></table></div>\n</section>\n");
}

void AppendTimeline(std::string& html, const v1::GetIncidentResponse& page,
                    absl::string_view incident_id) {
  absl::StrAppend(&html,
                  "<section id=\"timeline-section\"><h2>Timeline</h2>\n<div class=\"scroll\">"
                  "<table class=\"grid\" id=\"timeline\"><thead><tr><th>#</th><th>Time</th>"
                  "<th>Kind</th><th>Actor</th><th>Summary</th><th>Details</th></tr></thead>"
                  "<tbody>\n");
  for (const v1::TimelineEvent& e : page.timeline()) {
    std::string details = "-";
    if (!e.details_json().empty()) {
      absl::string_view shown = e.details_json();
      std::string more;
      if (shown.size() > kMaxShownDetailBytes) {
        more = absl::StrCat("\n... ", shown.size() - kMaxShownDetailBytes,
                            " more byte(s) in the exports");
        shown = shown.substr(0, kMaxShownDetailBytes);
      }
      details = absl::StrCat("<details><summary>", e.details_json().size(), " bytes</summary><pre>",
                             Esc(shown), Esc(more), "</pre></details>");
    }
    absl::StrAppend(&html, "<tr id=\"event-", e.seq(), "\"><td>", e.seq(), "</td><td>",
                    Time(e.time_unix_ms()), "</td><td>", Esc(e.kind()), "</td><td>", Esc(e.actor()),
                    "</td><td>", Esc(e.summary()), "</td><td>", details, "</td></tr>\n");
  }
  absl::StrAppend(&html, "</tbody></table></div>\n");
  if (page.timeline().empty()) {
    absl::StrAppend(&html, "<p>No events on this page.</p>\n");
  }
  if (page.has_next_after_seq()) {
    absl::StrAppend(&html, "<p><a id=\"next-page\" href=\"", kIncidentPath,
                    "?id=", Esc(UrlEncode(incident_id)), "&amp;after=", page.next_after_seq(),
                    "\">Later events &rarr;</a></p>\n");
  }
  absl::StrAppend(&html, "</section>\n");
}

}  // namespace

std::string RenderLoginPage(absl::string_view message, bool plain_http) {
  std::string html = absl::StrCat(Head("Sign in"), Header(nullptr, plain_http));
  absl::StrAppend(&html, "<h1>Sign in</h1>\n");
  if (!message.empty()) {
    absl::StrAppend(&html, "<p class=\"error\" id=\"login-error\">", Esc(message), "</p>\n");
  }
  absl::StrAppend(
      &html, "<form class=\"login\" method=\"post\" action=\"", kLoginPath,
      "\"><label for=\"token\">Bearer token</label>"
      "<input type=\"password\" id=\"token\" name=\"token\" autocomplete=\"off\" required "
      "maxlength=\"256\" autofocus><button type=\"submit\">Sign in</button></form>\n"
      "<p class=\"hint\">A token of any role (viewer or above) reads incidents here; an admin "
      "makes one with <code>vigil-controller users add NAME --role viewer</code>. The page "
      "changes nothing.</p>\n",
      kFoot);
  return html;
}

std::vector<const v1::Incident*> FilterIncidents(const std::vector<v1::Incident>& incidents,
                                                 const ListFilters& filters) {
  const std::string service = Lower(filters.service);
  const std::string text = Lower(filters.text);
  std::vector<const v1::Incident*> out;
  for (const v1::Incident& incident : incidents) {
    if (!service.empty() &&
        std::none_of(incident.services().begin(), incident.services().end(),
                     [&](const std::string& s) { return Lower(s) == service; })) {
      continue;
    }
    if (!text.empty()) {
      bool found = Contains(incident.id(), text) || Contains(incident.title(), text) ||
                   Contains(incident.probable_cause(), text);
      for (const auto* list : {&incident.agents(), &incident.alert_rules(), &incident.services()}) {
        for (const std::string& item : *list) {
          found = found || Contains(item, text);
        }
      }
      if (!found) {
        continue;
      }
    }
    out.push_back(&incident);
  }
  std::stable_sort(out.begin(), out.end(), [](const v1::Incident* a, const v1::Incident* b) {
    return a->opened_unix_ms() > b->opened_unix_ms();
  });
  return out;
}

std::string RenderIncidentList(const PageContext& context, const ListFilters& filters,
                               const std::vector<v1::Incident>& incidents) {
  std::string html = absl::StrCat(Head("Incidents"), Header(&context, context.plain_http));
  absl::StrAppend(&html, "<h1>Incidents</h1>\n<form class=\"filters\" method=\"get\" action=\"",
                  kReviewRoot, "\"><label>State <select name=\"state\">");
  for (const auto& [value, label] :
       std::vector<std::pair<std::string, std::string>>{{"active", "active (not resolved)"},
                                                        {"all", "all"},
                                                        {"open", "open"},
                                                        {"acknowledged", "acknowledged"},
                                                        {"mitigated", "mitigated"},
                                                        {"resolved", "resolved"}}) {
    const bool selected = filters.state == value || (filters.state.empty() && value == "active");
    absl::StrAppend(&html, "<option value=\"", value, "\"", selected ? " selected" : "", ">", label,
                    "</option>");
  }
  absl::StrAppend(&html,
                  "</select></label> <label>Service <input type=\"text\" name=\"service\" "
                  "maxlength=\"200\" value=\"",
                  Esc(filters.service),
                  "\"></label> <label>Text <input type=\"search\" name=\"text\" maxlength=\"200\" "
                  "value=\"",
                  Esc(filters.text),
                  "\"></label> <button type=\"submit\">Filter</button></form>\n");
  const std::vector<const v1::Incident*> shown = FilterIncidents(incidents, filters);
  absl::StrAppend(&html, "<p class=\"count\" id=\"count\">", shown.size(), " incident(s)",
                  shown.size() > kMaxListedIncidents
                      ? absl::StrCat(", the newest ", kMaxListedIncidents,
                                     " shown: narrow the filters to see the others")
                      : "",
                  ".</p>\n");
  absl::StrAppend(&html,
                  "<div class=\"scroll\"><table class=\"grid\" id=\"incidents\"><thead><tr>"
                  "<th>Incident</th><th>Severity</th><th>State</th><th>Title</th><th>Services"
                  "</th><th>Hosts</th><th>Opened</th><th>Resolved</th></tr></thead><tbody>\n");
  size_t count = 0;
  for (const v1::Incident* incident : shown) {
    if (count++ == kMaxListedIncidents) {
      break;
    }
    absl::StrAppend(&html, "<tr><td>", IncidentLink(incident->id()), "</td><td>",
                    Esc(SeverityName(incident->severity())), "</td><td><span class=\"state ",
                    StateClass(incident->state()), "\">", Esc(IncidentStateName(incident->state())),
                    "</span></td><td>", Esc(incident->title()), "</td><td>",
                    Esc(absl::StrJoin(incident->services(), ", ")), "</td><td>",
                    Esc(absl::StrJoin(incident->agents(), ", ")), "</td><td>",
                    Time(incident->opened_unix_ms()), "</td><td>",
                    Time(incident->resolved_unix_ms()), "</td></tr>\n");
  }
  absl::StrAppend(&html, "</tbody></table></div>\n", kFoot);
  return html;
}

std::string RenderIncidentPage(const PageContext& context, const v1::GetIncidentResponse& page,
                               const absl::StatusOr<v1::VerifyAuditResponse>& audit) {
  const v1::Incident& incident = page.incident();
  std::string html =
      absl::StrCat(Head(incident.id()), Header(&context, context.plain_http),
                   "<p class=\"crumbs\"><a href=\"", kReviewRoot, "\">&larr; Incidents</a></p>\n",
                   "<h1><span id=\"incident-id\">", Esc(incident.id()),
                   "</span>: <span "
                   "id=\"incident-title\">",
                   Esc(incident.title()), "</span></h1>\n");
  const std::string id = Esc(UrlEncode(incident.id()));
  absl::StrAppend(&html,
                  "<p class=\"exports\">Export: <a class=\"button\" id=\"export-markdown\" "
                  "href=\"",
                  kExportPath, "?id=", id,
                  "&amp;format=markdown\" download>Markdown</a> <a "
                  "class=\"button\" id=\"export-json\" href=\"",
                  kExportPath, "?id=", id, "&amp;format=json\" download>JSON</a></p>\n");
  absl::StrAppend(
      &html, "<table class=\"facts\" id=\"summary\">\n<tr><th>Severity</th><td>",
      Esc(SeverityName(incident.severity())),
      "</td></tr>\n<tr><th>State</th><td><span "
      "class=\"state ",
      StateClass(incident.state()), "\">", Esc(IncidentStateName(incident.state())),
      "</span></td></tr>\n<tr><th>Opened</th><td>", Time(incident.opened_unix_ms()),
      "</td></tr>\n<tr><th>Acknowledged</th><td>", Time(incident.acknowledged_unix_ms()),
      incident.acknowledged_by().empty() ? ""
                                         : absl::StrCat(" by ", Esc(incident.acknowledged_by())),
      After(incident.opened_unix_ms(), incident.acknowledged_unix_ms()),
      "</td></tr>\n<tr><th>Mitigated</th><td>", Time(incident.mitigated_unix_ms()),
      After(incident.opened_unix_ms(), incident.mitigated_unix_ms()),
      "</td></tr>\n<tr><th>Resolved</th><td>", Time(incident.resolved_unix_ms()),
      After(incident.opened_unix_ms(), incident.resolved_unix_ms()),
      "</td></tr>\n<tr><th>Hosts</th><td>", Esc(absl::StrJoin(incident.agents(), ", ")),
      "</td></tr>\n<tr><th>Services</th><td>", Esc(absl::StrJoin(incident.services(), ", ")),
      "</td></tr>\n<tr><th>Alerts</th><td>", Esc(absl::StrJoin(incident.alert_rules(), ", ")),
      "</td></tr>\n<tr><th>Probable cause</th><td>", Esc(incident.probable_cause()),
      incident.probable_cause_reason().empty()
          ? ""
          : absl::StrCat("<br><small>", Esc(incident.probable_cause_reason()), "</small>"),
      "</td></tr>\n</table>\n");
  AppendAudit(html, audit);
  if (!page.alerts().empty()) {
    absl::StrAppend(&html,
                    "<section id=\"alerts\"><h2>Alerts</h2>\n<div class=\"scroll\"><table "
                    "class=\"grid\"><thead><tr><th>Alert</th><th>Host</th><th>Severity</th>"
                    "<th>State</th><th>Value</th><th>Summary</th><th>Fired</th><th>Resolved</th>"
                    "</tr></thead><tbody>\n");
    for (const v1::Alert& a : page.alerts()) {
      absl::StrAppend(&html, "<tr><td>", Esc(a.rule()), "</td><td>",
                      Esc(a.agent_id().empty() ? "fleet" : a.agent_id()), "</td><td>",
                      Esc(SeverityName(a.severity())), "</td><td>", Esc(AlertStateName(a.state())),
                      "</td><td>", a.value(), "</td><td>", Esc(a.summary()), "</td><td>",
                      Time(a.fired_unix_ms()), "</td><td>", Time(a.resolved_unix_ms()),
                      "</td></tr>\n");
    }
    absl::StrAppend(&html, "</tbody></table></div>\n</section>\n");
  }
  AppendActions(html, page);
  AppendDiagnostics(html, page);
  AppendTimeline(html, page, incident.id());
  if (!incident.checklist().empty()) {
    absl::StrAppend(&html, "<section id=\"checklist\"><h2>Post-incident checklist</h2><ul>\n");
    for (const v1::ChecklistItem& item : incident.checklist()) {
      absl::StrAppend(&html, "<li>", item.done() ? "&#9745; " : "&#9744; ", Esc(item.name()),
                      item.done() ? absl::StrCat(" <small>(", Esc(item.done_by()), ", ",
                                                 Time(item.done_unix_ms()), ")</small>")
                                  : "",
                      "</li>\n");
    }
    absl::StrAppend(&html, "</ul></section>\n");
  }
  absl::StrAppend(&html, kFoot);
  return html;
}

std::string RenderMessagePage(const PageContext* context, absl::string_view title,
                              absl::string_view text) {
  return absl::StrCat(Head(title), Header(context, context != nullptr && context->plain_http),
                      "<h1>", Esc(title), "</h1>\n<p id=\"message\">", Esc(text),
                      "</p>\n<p><a href=\"", kReviewRoot, "\">Incidents</a></p>\n", kFoot);
}

const char kReviewScript[] =
    R"js(// Vigil review page: small conveniences only; every page reads fully without this file.
'use strict';
document.addEventListener('DOMContentLoaded', function () {
  document.documentElement.classList.add('js');
  // The list's state filter applies as soon as it changes.
  var state = document.querySelector('form.filters select[name=state]');
  if (state) {
    state.addEventListener('change', function () { state.form.submit(); });
  }
  // A quick filter over the rows of the incident's timeline, in the browser.
  var table = document.getElementById('timeline');
  if (table && table.tBodies.length > 0) {
    var input = document.createElement('input');
    input.type = 'search';
    input.id = 'timeline-filter';
    input.placeholder = 'Filter these events';
    input.setAttribute('aria-label', 'Filter these events');
    table.parentNode.parentNode.insertBefore(input, table.parentNode);
    input.addEventListener('input', function () {
      var q = input.value.toLowerCase();
      var rows = table.tBodies[0].rows;
      for (var i = 0; i < rows.length; i++) {
        rows[i].hidden = q !== '' && rows[i].textContent.toLowerCase().indexOf(q) < 0;
      }
    });
  }
});
)js";

const char kReviewStyle[] = R"css(/* Vigil review page */
body { font: 14px/1.45 system-ui, -apple-system, "DejaVu Sans", sans-serif; margin: 0; color: #1d2433; background: #f6f7f9; }
header { display: flex; align-items: center; gap: 1em; padding: .6em 1.2em; background: #1d2433; color: #fff; }
header a.brand { color: #fff; font-weight: 600; text-decoration: none; font-size: 1.1em; }
header .readonly { font-size: .8em; border: 1px solid #8891a5; border-radius: 3px; padding: 0 .4em; color: #c8cede; }
header .who { margin-left: auto; color: #c8cede; }
header form.logout { margin: 0; }
main { padding: .5em 1.2em 2em; }
h1 { font-size: 1.4em; margin: .6em 0; }
h2 { font-size: 1.15em; margin: 1.2em 0 .4em; border-bottom: 1px solid #d5d9e0; }
h3 { font-size: 1em; margin: .8em 0 .3em; }
small { color: #5b6477; }
.banner { margin: 0; padding: .5em 1.2em; background: #fff3cd; border-bottom: 1px solid #e6d08a; }
.error { color: #a1131a; font-weight: 600; }
.scroll { overflow-x: auto; }
table.grid { border-collapse: collapse; background: #fff; width: 100%; }
table.grid th, table.grid td { border: 1px solid #d5d9e0; padding: .25em .5em; text-align: left; vertical-align: top; }
table.grid th { background: #eceef2; }
table.facts th { text-align: left; padding-right: 1em; color: #5b6477; font-weight: 500; }
pre { white-space: pre-wrap; word-break: break-all; margin: .3em 0; font-size: .9em; }
.mark { display: inline-block; font-weight: 700; padding: .3em .8em; border-radius: 4px; margin: .2em 0; }
.mark.verified { background: #dff5e3; color: #11632a; border: 1px solid #8fd19e; }
.mark.failed { background: #fde2e2; color: #a1131a; border: 1px solid #f09a9a; }
.mark.unknown { background: #fff3cd; color: #6b5200; border: 1px solid #e6d08a; }
.state { padding: 0 .4em; border-radius: 3px; background: #eceef2; }
.state.open { background: #fde2e2; }
.state.acknowledged { background: #fff3cd; }
.state.mitigated { background: #e0ecff; }
.state.resolved { background: #dff5e3; }
a.button, button { display: inline-block; padding: .25em .8em; border: 1px solid #8891a5; border-radius: 4px; background: #fff; color: #1d2433; text-decoration: none; font: inherit; cursor: pointer; }
form.filters, form.login { display: flex; flex-wrap: wrap; gap: .8em; align-items: center; margin: .5em 0 1em; }
input[type=text], input[type=search], input[type=password], select { font: inherit; padding: .2em .4em; }
#timeline-filter { margin: .3em 0 .5em; min-width: 20em; }
)css";

}  // namespace vigil::controller::review
