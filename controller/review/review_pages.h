// The review page's HTML, rendered from plain values: the sign-in form, the incident list with
// its filters, one incident (timeline, diagnostics, actions, audit status, exports) and error
// pages. Everything that comes from incidents, agents or people is HTML-escaped; pages carry no
// inline script or style (the Content-Security-Policy forbids them): the little JavaScript and
// the style sheet are served as files (kReviewScript, kReviewStyle), and every page reads fully
// without JavaScript. Stateless; thread-safe.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "vigil/v1/control_service.pb.h"

namespace vigil::controller::review {

// Paths, all under kReviewRoot.
inline constexpr char kReviewRoot[] = "/review";
inline constexpr char kLoginPath[] = "/review/login";
inline constexpr char kLogoutPath[] = "/review/logout";
inline constexpr char kIncidentPath[] = "/review/incident";
inline constexpr char kExportPath[] = "/review/export";
inline constexpr char kScriptPath[] = "/review/static/review.js";
inline constexpr char kStylePath[] = "/review/static/review.css";

inline constexpr size_t kMaxListedIncidents = 500;     // newest first; the filters narrow further
inline constexpr size_t kMaxShownDetailBytes = 16384;  // of one event's details_json
inline constexpr size_t kMaxShownDiagnosticRows = 200;

// Who is looking and how the page is served, for the header of every page.
struct PageContext {
  std::string user;
  std::string role;
  bool plain_http = false;  // served without TLS (allowed on loopback only): the page says so
};

// The list page's GET form. `state` is one of ListIncidents' states ("" means active).
struct ListFilters {
  std::string state;
  std::string service;  // matches one of the incident's services, case-insensitively
  std::string text;     // a substring of id, title, hosts, alerts or probable cause (any case)
};

// The sign-in form; `message` (may be empty) says why it is shown again.
std::string RenderLoginPage(absl::string_view message, bool plain_http);

// The incidents among `incidents` that pass the service and text filters, newest first.
std::vector<const v1::Incident*> FilterIncidents(const std::vector<v1::Incident>& incidents,
                                                 const ListFilters& filters);

std::string RenderIncidentList(const PageContext& context, const ListFilters& filters,
                               const std::vector<v1::Incident>& incidents);

// One incident page: `page` is a GetIncident page (alerts and actions with the first one);
// `audit` is the verification status, or why there is none.
std::string RenderIncidentPage(const PageContext& context, const v1::GetIncidentResponse& page,
                               const absl::StatusOr<v1::VerifyAuditResponse>& audit);

// A short page for a refusal or a failure: `title` as heading, `text` below it. Without a
// context (not signed in) the header shows no user.
std::string RenderMessagePage(const PageContext* context, absl::string_view title,
                              absl::string_view text);

extern const char kReviewScript[];
extern const char kReviewStyle[];

}  // namespace vigil::controller::review
