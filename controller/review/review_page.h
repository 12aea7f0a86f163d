// The review page: a read-only web view of incidents for auditors on the controller's HTTP port,
// under /review. People sign in with their bearer token (any role: viewer or above), which is
// resolved the way the gRPC API resolves it; a session cookie (HttpOnly, SameSite=Strict, Secure
// over TLS, Path=/review) then stands for them, and every request checks their user again, so a
// disabled user or a rotated token loses the session on the next request (the controller's
// Authenticator forgets a user changed through the API at once, and one changed by another
// process within its refresh, about a second). Failed sign-ins are limited per peer address.
// Nothing here changes anything: besides signing in and out, only GET and HEAD are served.
//
// What it shows comes through Options (the incidents, the audit verification, the exports), so
// this folder depends on no other controller module but auth's Caller.
// Over plain HTTP the page is served only when the port listens on loopback, and says so.
// Thread-safe: Handle may run on several of the HTTP server's workers at once.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/http/http_message.h"
#include "common/http/http_server.h"
#include "controller/auth/auth.h"
#include "controller/review/sessions.h"
#include "vigil/v1/control_service.pb.h"

namespace vigil::controller::review {

inline constexpr char kSessionCookie[] = "vigil_review";
inline constexpr size_t kMaxTokenBytes = 256;
inline constexpr size_t kMaxIncidentIdBytes = 128;
inline constexpr size_t kMaxFilterBytes = 200;

class ReviewPage {
 public:
  struct Options {
    // The caller a token stands for, given the token's TokenHash(); the API's refusals (unknown,
    // expired, disabled) as errors.
    std::function<absl::StatusOr<Caller>(absl::string_view token_hash)> authenticate;
    std::function<absl::StatusOr<v1::ListIncidentsResponse>(const v1::ListIncidentsRequest&)>
        list_incidents;
    // One page of an incident, as the API's GetIncident answers it.
    std::function<absl::StatusOr<v1::GetIncidentResponse>(const v1::GetIncidentRequest&)>
        get_incident;
    std::function<absl::StatusOr<v1::VerifyAuditResponse>()> verify_audit;
    // format: "markdown" or "json".
    std::function<absl::StatusOr<std::string>(absl::string_view incident_id,
                                              absl::string_view format)>
        export_incident;
    bool tls = false;       // the port serves HTTPS: cookies are Secure
    bool loopback = false;  // the port listens on loopback only: plain HTTP is allowed
    SessionStore::Options sessions;
    SignInLimiter::Options sign_in;
    const Clock* clock = RealClock::Get();
  };

  explicit ReviewPage(Options options);

  // Adds the page's routes (GET and HEAD of each page, POST of sign-in and sign-out).
  void Register(http::HttpServer& server);
  // Answers any request under /review; the server's router calls it for the registered routes.
  http::HttpResponse Handle(const http::HttpRequest& request);
  // True when served at all: over TLS, or plain HTTP on loopback.
  bool served() const { return options_.tls || options_.loopback; }
  // vigil_review_* counters and gauges in the Prometheus text format.
  void AppendMetrics(std::string* page) const;
  size_t sessions() const { return sessions_.size(); }

 private:
  struct Visitor {
    Session session;
    Caller caller;
  };
  http::HttpResponse Route(const http::HttpRequest& request);
  http::HttpResponse SignIn(const http::HttpRequest& request);
  http::HttpResponse SignOut(const http::HttpRequest& request);
  http::HttpResponse ListPage(const http::HttpRequest& request, const Visitor& visitor);
  http::HttpResponse IncidentPage(const http::HttpRequest& request, const Visitor& visitor);
  http::HttpResponse Export(const http::HttpRequest& request);
  // Options::verify_audit, one call at a time: a request that waited while another verification
  // ran takes the answer of one that started after the request arrived (never an older one), so
  // page loads at once cost one check of the chain, not one each.
  absl::StatusOr<v1::VerifyAuditResponse> VerifyAudit();
  // The signed-in visitor, or the response that sends them to sign in.
  absl::StatusOr<Visitor> Authenticated(const http::HttpRequest& request,
                                        http::HttpResponse* refusal);
  http::HttpResponse Html(int status, std::string body) const;
  http::HttpResponse LoginForm(int status, absl::string_view message) const;
  std::string SessionCookie(const std::string& value, bool expire) const;
  bool SameOrigin(const http::HttpRequest& request) const;

  const Options options_;
  SessionStore sessions_;
  SignInLimiter limiter_;
  std::atomic<uint64_t> verify_arrivals_{0};
  absl::Mutex verify_mu_;
  uint64_t verify_started_ ABSL_GUARDED_BY(verify_mu_) = 0;  // arrivals when the last one began
  std::optional<absl::StatusOr<v1::VerifyAuditResponse>> verified_ ABSL_GUARDED_BY(verify_mu_);
  std::atomic<uint64_t> sign_ins_accepted_{0};
  std::atomic<uint64_t> sign_ins_refused_{0};
  std::atomic<uint64_t> sign_ins_limited_{0};
  std::atomic<uint64_t> sessions_revoked_{0};  // ended because the user no longer authenticates
};

}  // namespace vigil::controller::review
