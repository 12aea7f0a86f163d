#include "controller/review/review_page.h"

#include <spdlog/spdlog.h>

#include <iterator>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "controller/review/review_pages.h"
#include "controller/review/web_forms.h"

namespace vigil::controller::review {
namespace {

// Scripts and styles only from this origin's files; nothing inline, no frames, forms only here.
constexpr char kContentSecurityPolicy[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

void AddSecurityHeaders(http::HttpResponse& response) {
  response.headers.emplace_back("Content-Security-Policy", kContentSecurityPolicy);
  response.headers.emplace_back("X-Content-Type-Options", "nosniff");
  response.headers.emplace_back("X-Frame-Options", "DENY");
  // same-origin, not no-referrer: with no-referrer, browsers send "Origin: null" on the
  // page's own form posts, which SameOrigin() would refuse.
  response.headers.emplace_back("Referrer-Policy", "same-origin");
  response.headers.emplace_back("Cache-Control", "no-store");
}

http::HttpResponse Redirect(absl::string_view location) {
  http::HttpResponse response;
  response.status = 303;
  response.headers.emplace_back("Location", std::string(location));
  response.body = absl::StrCat("See ", location, "\n");
  return response;
}

int HttpStatusOf(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
      return 400;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kUnavailable:
      return 503;
    default:
      return 500;
  }
}

// An incident id as the pages and links carry it: printable ASCII without spaces, bounded.
absl::Status CheckIncidentId(absl::string_view id) {
  if (id.empty() || id.size() > kMaxIncidentIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("id: an incident id has 1 to ", kMaxIncidentIdBytes, " characters"));
  }
  for (const char c : id) {
    if (!absl::ascii_isgraph(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError("id: an incident id is printable characters only");
    }
  }
  return absl::OkStatus();
}

std::string FileName(absl::string_view id) {
  std::string name;
  for (const char c : id) {
    name.push_back(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
                           c == '.'
                       ? c
                       : '_');
  }
  return name;
}

const std::set<std::string>& PagePaths() {
  static const auto* const kPaths =
      new std::set<std::string>{kReviewRoot, kIncidentPath, kExportPath, kScriptPath, kStylePath};
  return *kPaths;
}

}  // namespace

ReviewPage::ReviewPage(Options options)
    : options_(std::move(options)),
      sessions_(options_.sessions, options_.clock),
      limiter_(options_.sign_in, options_.clock) {}

void ReviewPage::Register(http::HttpServer& server) {
  auto handler = [this](const http::HttpRequest& request) { return Handle(request); };
  for (const std::string& path : PagePaths()) {
    server.Handle("GET", path, handler);
    server.Handle("HEAD", path, handler);
  }
  server.Handle("GET", kLoginPath, handler);
  server.Handle("HEAD", kLoginPath, handler);
  server.Handle("POST", kLoginPath, handler);
  server.Handle("POST", kLogoutPath, handler);
}

http::HttpResponse ReviewPage::Handle(const http::HttpRequest& request) {
  http::HttpResponse response = Route(request);
  AddSecurityHeaders(response);
  if (request.method == "HEAD") {
    response.body.clear();
  }
  return response;
}

http::HttpResponse ReviewPage::Route(const http::HttpRequest& request) {
  if (!served()) {
    return Html(
        403, RenderMessagePage(nullptr, "Review page not served here",
                               "This HTTP port is plain HTTP on an address other than loopback: "
                               "signing in here would send tokens and sessions in the clear. Give "
                               "the port a certificate (--http-tls-cert and --http-tls-key), or "
                               "listen on 127.0.0.1 and reach it through an SSH tunnel."));
  }
  const bool read = request.method == "GET" || request.method == "HEAD";
  const bool post = request.method == "POST";
  const bool page = PagePaths().contains(request.path);
  if (!(page && read) && !(request.path == kLoginPath && (read || post)) &&
      !(request.path == kLogoutPath && post)) {
    if (!page && request.path != kLoginPath && request.path != kLogoutPath) {
      return Html(404, RenderMessagePage(nullptr, "Not found",
                                         absl::StrCat("No page at ", request.path, ".")));
    }
    http::HttpResponse response =
        http::TextResponse(405, absl::StrCat(request.method, " is not allowed on ", request.path,
                                             ": the review page changes nothing"));
    response.headers.emplace_back("Allow", request.path == kLogoutPath  ? "POST"
                                           : request.path == kLoginPath ? "GET, HEAD, POST"
                                                                        : "GET, HEAD");
    return response;
  }
  if (request.path == kScriptPath || request.path == kStylePath) {
    http::HttpResponse response;
    const bool script = request.path == kScriptPath;
    response.content_type = script ? "text/javascript; charset=utf-8" : "text/css; charset=utf-8";
    response.body = script ? kReviewScript : kReviewStyle;
    return response;
  }
  if (request.path == kLoginPath) {
    return post ? SignIn(request) : LoginForm(200, "");
  }
  if (request.path == kLogoutPath) {
    return SignOut(request);
  }
  http::HttpResponse refusal;
  absl::StatusOr<Visitor> visitor = Authenticated(request, &refusal);
  if (!visitor.ok()) {
    return refusal;
  }
  if (request.path == kIncidentPath) {
    return IncidentPage(request, *visitor);
  }
  if (request.path == kExportPath) {
    return Export(request);
  }
  return ListPage(request, *visitor);
}

http::HttpResponse ReviewPage::Html(int status, std::string body) const {
  http::HttpResponse response;
  response.status = status;
  response.content_type = "text/html; charset=utf-8";
  response.body = std::move(body);
  return response;
}

http::HttpResponse ReviewPage::LoginForm(int status, absl::string_view message) const {
  return Html(status, RenderLoginPage(message, !options_.tls));
}

std::string ReviewPage::SessionCookie(const std::string& value, bool expire) const {
  return absl::StrCat(kSessionCookie, "=", value, "; Path=", kReviewRoot,
                      "; HttpOnly; SameSite=Strict", options_.tls ? "; Secure" : "",
                      expire ? "; Max-Age=0" : "");
}

bool ReviewPage::SameOrigin(const http::HttpRequest& request) const {
  // Browsers send Origin with every form POST; a POST from another site is refused even though
  // SameSite=Strict already keeps the cookie from it (sign-in needs no cookie).
  const std::string& origin = request.Header("origin");
  if (origin.empty()) {
    return true;  // not a browser's cross-site form: a script holding the token anyway
  }
  const std::string& host = request.Header("host");
  return !host.empty() && origin == absl::StrCat(options_.tls ? "https://" : "http://", host);
}

http::HttpResponse ReviewPage::SignIn(const http::HttpRequest& request) {
  const std::string peer = PeerAddress(request.peer);
  if (!SameOrigin(request)) {
    ++sign_ins_refused_;
    return Html(403, RenderMessagePage(nullptr, "Sign-in refused",
                                       "The form was posted from another site."));
  }
  if (const absl::Duration wait = limiter_.RetryAfter(peer); wait > absl::ZeroDuration()) {
    ++sign_ins_limited_;
    const int64_t seconds = absl::ToInt64Seconds(absl::Ceil(wait, absl::Seconds(1)));
    http::HttpResponse response = LoginForm(
        429,
        absl::StrCat("Too many failed sign-ins from ", peer, ": try again in ", seconds, " s."));
    response.headers.emplace_back("Retry-After", absl::StrCat(seconds));
    return response;
  }
  auto refuse = [&](absl::string_view why) {
    ++sign_ins_refused_;
    limiter_.RecordFailure(peer);
    spdlog::warn("review page: sign-in from {} refused: {}", peer, std::string(why));
    return LoginForm(401, absl::StrCat("Sign-in refused: ", why));
  };
  absl::StatusOr<std::map<std::string, std::string>> form = ParseForm(request.body);
  if (!form.ok()) {
    return refuse(form.status().message());
  }
  auto token = form->find("token");
  if (token == form->end() || token->second.empty()) {
    return refuse("no token given");
  }
  if (token->second.size() > kMaxTokenBytes) {
    return refuse(absl::StrCat("the token is longer than ", kMaxTokenBytes, " characters"));
  }
  const std::string hash = TokenHash(absl::StripAsciiWhitespace(token->second));
  absl::StatusOr<Caller> caller = options_.authenticate(hash);
  if (!caller.ok()) {
    if (caller.status().code() != absl::StatusCode::kUnauthenticated) {
      // The store failed: not the visitor's fault, not counted against them.
      spdlog::error("review page: sign-in from {} failed: {}", peer,
                    std::string(caller.status().message()));
      return LoginForm(503, absl::StrCat("Sign-in failed: ", caller.status().message()));
    }
    return refuse(caller.status().message());
  }
  if (absl::Status allowed = Authenticator::Require(*caller, Role::kViewer, "the review page");
      !allowed.ok()) {
    return refuse(allowed.message());
  }
  const Session session = sessions_.Create(caller->name, std::string(RoleName(caller->role)), hash);
  ++sign_ins_accepted_;
  spdlog::info("review page: {} ({}) signed in from {}", caller->name,
               std::string(RoleName(caller->role)), peer);
  http::HttpResponse response = Redirect(kReviewRoot);
  response.headers.emplace_back("Set-Cookie", SessionCookie(session.id, /*expire=*/false));
  return response;
}

http::HttpResponse ReviewPage::SignOut(const http::HttpRequest& request) {
  if (!SameOrigin(request)) {
    return Html(403, RenderMessagePage(nullptr, "Sign-out refused",
                                       "The form was posted from another site."));
  }
  if (std::optional<std::string> id = CookieValue(request.Header("cookie"), kSessionCookie)) {
    sessions_.Remove(*id);
  }
  http::HttpResponse response = Redirect(kLoginPath);
  response.headers.emplace_back("Set-Cookie", SessionCookie("", /*expire=*/true));
  return response;
}

absl::StatusOr<ReviewPage::Visitor> ReviewPage::Authenticated(const http::HttpRequest& request,
                                                              http::HttpResponse* refusal) {
  std::optional<std::string> id = CookieValue(request.Header("cookie"), kSessionCookie);
  std::optional<Session> session;
  if (id.has_value()) {
    session = sessions_.Use(*id);
  }
  if (!session.has_value()) {
    *refusal = Redirect(kLoginPath);
    if (id.has_value()) {
      refusal->headers.emplace_back("Set-Cookie", SessionCookie("", /*expire=*/true));
    }
    return absl::UnauthenticatedError("no session");
  }
  // The user again, as the API would see them now: disabled, expired or rotated ends it here.
  absl::StatusOr<Caller> caller = options_.authenticate(session->token_hash);
  if (!caller.ok()) {
    if (caller.status().code() != absl::StatusCode::kUnauthenticated) {
      *refusal = Html(503, RenderMessagePage(nullptr, "Unavailable",
                                             absl::StrCat("The user could not be checked: ",
                                                          caller.status().message())));
      return caller.status();
    }
    sessions_.Remove(session->id);
    ++sessions_revoked_;
    spdlog::info("review page: session of {} ended: {}", session->user,
                 std::string(caller.status().message()));
    *refusal = LoginForm(401, absl::StrCat("Signed out: ", caller.status().message()));
    refusal->headers.emplace_back("Set-Cookie", SessionCookie("", /*expire=*/true));
    return caller.status();
  }
  return Visitor{*std::move(session), *std::move(caller)};
}

http::HttpResponse ReviewPage::ListPage(const http::HttpRequest& request, const Visitor& visitor) {
  const PageContext context{visitor.caller.name, std::string(RoleName(visitor.caller.role)),
                            !options_.tls};
  absl::StatusOr<std::map<std::string, std::string>> query = ParseForm(request.query);
  if (!query.ok()) {
    return Html(400, RenderMessagePage(&context, "Bad request", query.status().message()));
  }
  ListFilters filters{(*query)["state"], (*query)["service"], (*query)["text"]};
  static const std::set<std::string> kStates = {
      "", "active", "all", "open", "acknowledged", "mitigated", "resolved"};
  if (!kStates.contains(filters.state)) {
    return Html(400, RenderMessagePage(
                         &context, "Bad request",
                         "state: one of active, all, open, acknowledged, mitigated, resolved"));
  }
  if (filters.service.size() > kMaxFilterBytes || filters.text.size() > kMaxFilterBytes) {
    return Html(400, RenderMessagePage(&context, "Bad request",
                                       absl::StrCat("service and text: at most ", kMaxFilterBytes,
                                                    " characters each")));
  }
  v1::ListIncidentsRequest list;
  list.set_state(filters.state.empty() ? "active" : filters.state);
  absl::StatusOr<v1::ListIncidentsResponse> incidents = options_.list_incidents(list);
  if (!incidents.ok()) {
    return Html(HttpStatusOf(incidents.status()),
                RenderMessagePage(&context, "Incidents unavailable", incidents.status().message()));
  }
  std::vector<v1::Incident> all(std::make_move_iterator(incidents->mutable_incidents()->begin()),
                                std::make_move_iterator(incidents->mutable_incidents()->end()));
  return Html(200, RenderIncidentList(context, filters, all));
}

http::HttpResponse ReviewPage::IncidentPage(const http::HttpRequest& request,
                                            const Visitor& visitor) {
  const PageContext context{visitor.caller.name, std::string(RoleName(visitor.caller.role)),
                            !options_.tls};
  absl::StatusOr<std::map<std::string, std::string>> query = ParseForm(request.query);
  if (!query.ok()) {
    return Html(400, RenderMessagePage(&context, "Bad request", query.status().message()));
  }
  const std::string& id = (*query)["id"];
  if (absl::Status s = CheckIncidentId(id); !s.ok()) {
    return Html(400, RenderMessagePage(&context, "Bad request", s.message()));
  }
  uint64_t after = 0;
  if (const std::string& text = (*query)["after"];
      !text.empty() && !absl::SimpleAtoi(text, &after)) {
    return Html(
        400, RenderMessagePage(&context, "Bad request", "after: a sequence number (digits only)"));
  }
  v1::GetIncidentRequest get;
  get.set_incident_id(id);
  get.set_after_seq(after);
  absl::StatusOr<v1::GetIncidentResponse> page = options_.get_incident(get);
  if (!page.ok()) {
    return Html(HttpStatusOf(page.status()),
                RenderMessagePage(&context,
                                  page.status().code() == absl::StatusCode::kNotFound
                                      ? "No such incident"
                                      : "Incident unavailable",
                                  page.status().message()));
  }
  return Html(200, RenderIncidentPage(context, *page, VerifyAudit()));
}

absl::StatusOr<v1::VerifyAuditResponse> ReviewPage::VerifyAudit() {
  const uint64_t arrived = verify_arrivals_.fetch_add(1) + 1;
  absl::MutexLock lock(&verify_mu_);
  if (verified_.has_value() && verify_started_ >= arrived) {
    return *verified_;  // began after this request arrived: as fresh as checking now
  }
  verify_started_ = verify_arrivals_.load();
  verified_ = options_.verify_audit();
  return *verified_;
}

http::HttpResponse ReviewPage::Export(const http::HttpRequest& request) {
  absl::StatusOr<std::map<std::string, std::string>> query = ParseForm(request.query);
  if (!query.ok()) {
    return http::TextResponse(400, query.status().message());
  }
  const std::string& id = (*query)["id"];
  const std::string& format = (*query)["format"];
  if (absl::Status s = CheckIncidentId(id); !s.ok()) {
    return http::TextResponse(400, s.message());
  }
  if (format != "markdown" && format != "json") {
    return http::TextResponse(400, "format: markdown or json");
  }
  absl::StatusOr<std::string> content = options_.export_incident(id, format);
  if (!content.ok()) {
    return http::TextResponse(HttpStatusOf(content.status()), content.status().message());
  }
  http::HttpResponse response;
  response.content_type =
      format == "json" ? "application/json; charset=utf-8" : "text/markdown; charset=utf-8";
  response.body = *std::move(content);
  response.headers.emplace_back("Content-Disposition",
                                absl::StrCat("attachment; filename=\"", FileName(id),
                                             format == "json" ? ".json" : ".md", "\""));
  return response;
}

void ReviewPage::AppendMetrics(std::string* page) const {
  absl::StrAppendFormat(
      page,
      "# HELP vigil_review_sessions Signed-in sessions of the review page.\n"
      "# TYPE vigil_review_sessions gauge\nvigil_review_sessions %d\n"
      "# HELP vigil_review_sign_ins_total Sign-ins on the review page, by result.\n"
      "# TYPE vigil_review_sign_ins_total counter\n"
      "vigil_review_sign_ins_total{result=\"accepted\"} %d\n"
      "vigil_review_sign_ins_total{result=\"refused\"} %d\n"
      "vigil_review_sign_ins_total{result=\"rate_limited\"} %d\n"
      "# HELP vigil_review_sessions_ended_total Review sessions ended early: the user no longer "
      "authenticates (revoked), or the cap made room (evicted).\n"
      "# TYPE vigil_review_sessions_ended_total counter\n"
      "vigil_review_sessions_ended_total{reason=\"revoked\"} %d\n"
      "vigil_review_sessions_ended_total{reason=\"evicted\"} %d\n",
      sessions_.size(), sign_ins_accepted_.load(), sign_ins_refused_.load(),
      sign_ins_limited_.load(), sessions_revoked_.load(), sessions_.evicted());
}

}  // namespace vigil::controller::review
