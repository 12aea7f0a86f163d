// The review page's requests: sign-in with the API's own Authenticator over a real store (wrong,
// disabled, rotated tokens), the session cookie's attributes, the per-peer limit, sign-out,
// methods that would change something, and pages that hostile incident text cannot inject
// markup into; the verification status and the exports as the options give them.
#include "controller/review/review_page.h"

#include <gmock/gmock.h>
#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "controller/auth/auth.h"
#include "controller/review/review_pages.h"
#include "storage/sqlite/sqlite_store.h"
#include "tests/support/process.h"

namespace vigil::controller::review {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kHostile[] = "<script>alert(1)</script>\"><img src=x onerror=alert(2)>";

std::string Header(const http::HttpResponse& r, absl::string_view name) {
  for (const auto& [key, value] : r.headers) {
    if (absl::EqualsIgnoreCase(key, name)) {
      return value;
    }
  }
  return "";
}

size_t Count(absl::string_view haystack, absl::string_view needle) {
  size_t n = 0;
  for (size_t at = haystack.find(needle); at != absl::string_view::npos;
       at = haystack.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

v1::GetIncidentResponse HostileIncident() {
  v1::GetIncidentResponse page;
  v1::Incident* incident = page.mutable_incident();
  incident->set_id("INC-7");
  incident->set_title(kHostile);
  incident->set_state(v1::OPEN);
  incident->set_severity(v1::SEV2);
  incident->add_agents(kHostile);
  incident->add_services("rag-api");
  incident->set_probable_cause(kHostile);
  incident->set_opened_unix_ms(1'700'000'000'000);
  v1::TimelineEvent* fired = page.add_timeline();
  fired->set_seq(3);
  fired->set_incident_id("INC-7");
  fired->set_kind("alert_fired");
  fired->set_actor(kHostile);
  fired->set_summary(kHostile);
  fired->set_details_json(absl::StrCat("{\"x\":\"</pre>", kHostile, "\"}"));
  v1::TimelineEvent* diagnostics = page.add_timeline();
  diagnostics->set_seq(4);
  diagnostics->set_kind("diagnostics");
  diagnostics->set_actor("web-1");
  diagnostics->set_summary("diagnostics from web-1");
  diagnostics->set_details_json(R"({"tables":[{"name":"top_processes","columns":["pid","command"],)"
                                R"("rows":[{"cells":["42","<script>alert(3)</script>"]}]}]})");
  v1::ActionProposal* action = page.add_actions();
  action->set_id("ACT-1");
  action->set_action("restart_service");
  (*action->mutable_params())["unit"] = kHostile;
  action->add_agents("web-1");
  action->set_proposed_by("carol");
  action->add_approved_by("dave");
  action->set_rejected_by("");
  action->set_state(v1::SUCCEEDED);
  v1::ActionRun* run = action->add_runs();
  run->set_agent_id("web-1");
  run->set_state("finished");
  run->set_output_tail(kHostile);
  v1::Alert* alert = page.add_alerts();
  alert->set_rule("HighAPILatency");
  alert->set_summary(kHostile);
  return page;
}

class ReviewPageTest : public ::testing::Test {
 protected:
  ReviewPageTest() {
    auto store = storage::OpenSqliteStore(dir_.File("vigil.db"));
    EXPECT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    auth_ = std::make_unique<Authenticator>(store_.get(), absl::Seconds(30), &clock_);
    viewer_token_ = AddUser(*store_, "victor", "viewer", 1).value();
    audit_.set_ok(true);
    audit_.set_events_checked(4);
    audit_.set_head_seq(4);
    audit_.set_head_hash("abc123");
    audit_.mutable_latest_checkpoint()->set_seq(4);
    audit_.mutable_latest_checkpoint()->set_key_id("0011223344556677");
    audit_.mutable_latest_checkpoint()->set_time_unix_ms(1'700'000'000'000);
    Make(/*tls=*/true, /*loopback=*/false);
  }

  void Make(bool tls, bool loopback) {
    ReviewPage::Options options;
    options.tls = tls;
    options.loopback = loopback;
    options.clock = &clock_;
    options.sign_in = {.max_failures = 3, .window = absl::Minutes(1)};
    options.authenticate = [this](absl::string_view hash) {
      return auth_->AuthenticateTokenHash(hash);
    };
    options.list_incidents = [this](const v1::ListIncidentsRequest& request) {
      listed_state_ = request.state();
      v1::ListIncidentsResponse response;
      *response.add_incidents() = HostileIncident().incident();
      v1::Incident* other = response.add_incidents();
      other->set_id("INC-8");
      other->set_title("Disk almost full");
      other->add_services("postgres");
      return absl::StatusOr<v1::ListIncidentsResponse>(response);
    };
    options.get_incident =
        [this](const v1::GetIncidentRequest& request) -> absl::StatusOr<v1::GetIncidentResponse> {
      if (request.incident_id() != "INC-7") {
        return absl::NotFoundError(absl::StrCat("no incident '", request.incident_id(), "'"));
      }
      return HostileIncident();
    };
    options.verify_audit = [this] {
      ++verifications_;
      return absl::StatusOr<v1::VerifyAuditResponse>(audit_);
    };
    options.export_incident = [this](absl::string_view id, absl::string_view format) {
      exported_ = absl::StrCat(id, "/", format);
      return absl::StatusOr<std::string>(absl::StrCat("# ", id, "\n"));
    };
    page_ = std::make_unique<ReviewPage>(std::move(options));
  }

  http::HttpResponse Request(std::string method, std::string target, std::string body = "",
                             std::string cookie = "", std::string peer = "10.0.0.9:40000") {
    http::HttpRequest request;
    request.method = std::move(method);
    const size_t q = target.find('?');
    request.path = target.substr(0, q);
    request.query = q == std::string::npos ? "" : target.substr(q + 1);
    request.body = std::move(body);
    request.peer = std::move(peer);
    request.headers["host"] = "vigil.example:9464";
    if (!cookie.empty()) {
      request.headers["cookie"] = cookie;
    }
    return page_->Handle(request);
  }

  // Signs in with `token`; the cookie ("vigil_review=ID") on success, else "".
  std::string SignIn(const std::string& token, http::HttpResponse* out = nullptr) {
    http::HttpResponse r = Request("POST", "/review/login", "token=" + token);
    if (out != nullptr) {
      *out = r;
    }
    const std::string set_cookie = Header(r, "Set-Cookie");
    return r.status == 303 ? set_cookie.substr(0, set_cookie.find(';')) : "";
  }

  SimulatedClock clock_;
  testing::TempDir dir_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<Authenticator> auth_;
  std::string viewer_token_;
  v1::VerifyAuditResponse audit_;
  std::unique_ptr<ReviewPage> page_;
  std::string listed_state_;
  std::string exported_;
  int verifications_ = 0;
};

TEST_F(ReviewPageTest, SignInSetsAStrictHttpOnlySecureCookieAndShowsTheList) {
  http::HttpResponse login = Request("GET", "/review/login");
  EXPECT_EQ(login.status, 200);
  EXPECT_THAT(login.body, HasSubstr("name=\"token\""));
  EXPECT_EQ(Request("GET", "/review").status, 303);  // not signed in: to the form
  EXPECT_EQ(Header(Request("GET", "/review"), "Location"), "/review/login");

  http::HttpResponse r;
  const std::string cookie = SignIn(viewer_token_, &r);
  ASSERT_FALSE(cookie.empty()) << r.status << r.body;
  EXPECT_EQ(Header(r, "Location"), "/review");
  const std::string set_cookie = Header(r, "Set-Cookie");
  EXPECT_THAT(set_cookie, HasSubstr("; HttpOnly"));
  EXPECT_THAT(set_cookie, HasSubstr("; SameSite=Strict"));
  EXPECT_THAT(set_cookie, HasSubstr("; Secure"));
  EXPECT_THAT(set_cookie, HasSubstr("; Path=/review"));
  EXPECT_EQ(cookie.size(), std::string("vigil_review=").size() + 64);
  EXPECT_EQ(page_->sessions(), 1u);

  http::HttpResponse list = Request("GET", "/review", "", cookie);
  EXPECT_EQ(list.status, 200);
  EXPECT_EQ(listed_state_, "active");
  EXPECT_THAT(list.body, HasSubstr("victor"));
  EXPECT_THAT(list.body, HasSubstr("INC-8"));
  EXPECT_THAT(Header(list, "Content-Security-Policy"), HasSubstr("script-src 'self'"));
  EXPECT_THAT(Header(list, "Content-Security-Policy"), Not(HasSubstr("unsafe-inline")));
  EXPECT_EQ(Header(list, "Cache-Control"), "no-store");

  // Filters: state goes to the store, service and text narrow the list.
  list = Request("GET", "/review?state=all&service=POSTGRES&text=", "", cookie);
  EXPECT_EQ(listed_state_, "all");
  EXPECT_THAT(list.body, HasSubstr("INC-8"));
  EXPECT_THAT(list.body, Not(HasSubstr("INC-7")));
  list = Request("GET", "/review?state=all&text=disk+ALMOST", "", cookie);
  EXPECT_THAT(list.body, HasSubstr("INC-8"));
  EXPECT_THAT(list.body, Not(HasSubstr("INC-7")));
  EXPECT_EQ(Request("GET", "/review?state=bogus", "", cookie).status, 400);
  EXPECT_EQ(Request("GET", "/review?text=" + std::string(300, 'a'), "", cookie).status, 400);
}

TEST_F(ReviewPageTest, PlainHttpOnLoopbackHasNoSecureCookieAndSaysSo) {
  Make(/*tls=*/false, /*loopback=*/true);
  http::HttpResponse r;
  const std::string cookie = SignIn(viewer_token_, &r);
  ASSERT_FALSE(cookie.empty());
  EXPECT_THAT(Header(r, "Set-Cookie"), Not(HasSubstr("Secure")));
  EXPECT_THAT(Request("GET", "/review", "", cookie).body, HasSubstr("id=\"plain-http\""));
}

TEST_F(ReviewPageTest, PlainHttpElsewhereThanLoopbackIsNotServed) {
  Make(/*tls=*/false, /*loopback=*/false);
  EXPECT_FALSE(page_->served());
  EXPECT_EQ(Request("GET", "/review/login").status, 403);
  http::HttpResponse r = Request("POST", "/review/login", "token=" + viewer_token_);
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(Header(r, "Set-Cookie"), "");
}

TEST_F(ReviewPageTest, WrongTokensGet401WithTheFormAndThePeerIsLimited) {
  http::HttpResponse r;
  EXPECT_EQ(SignIn("vgt_wrong", &r), "");
  EXPECT_EQ(r.status, 401);
  EXPECT_THAT(r.body, HasSubstr("unknown token"));
  EXPECT_THAT(r.body, HasSubstr("name=\"token\""));
  EXPECT_EQ(Header(r, "Set-Cookie"), "");
  EXPECT_EQ(Request("POST", "/review/login", "").status, 401);           // no token at all
  EXPECT_EQ(Request("POST", "/review/login", "token=%zz").status, 401);  // malformed form
  // Three failures within the minute: the peer waits, even with a good token.
  r = Request("POST", "/review/login", "token=" + viewer_token_);
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(Header(r, "Retry-After"), "60");
  EXPECT_THAT(r.body, HasSubstr("Too many failed sign-ins"));
  EXPECT_EQ(page_->sessions(), 0u);
  // Another peer is not affected; the first one may try again after the window.
  EXPECT_EQ(Request("POST", "/review/login", "token=" + viewer_token_, "", "10.0.0.10:1").status,
            303);
  clock_.Advance(absl::Minutes(1));
  EXPECT_EQ(Request("POST", "/review/login", "token=" + viewer_token_).status, 303);
  EXPECT_EQ(Request("POST", "/review/login", "token=" + std::string(300, 'a')).status, 401);
}

TEST_F(ReviewPageTest, DisabledUsersAndRotatedTokensLoseTheirSessionOnTheNextRequest) {
  const std::string cookie = SignIn(viewer_token_);
  ASSERT_FALSE(cookie.empty());
  ASSERT_EQ(Request("GET", "/review", "", cookie).status, 200);
  ASSERT_TRUE(store_->SetUserDisabled("victor", 2).ok());
  auth_->Forget();  // what the API or the housekeeping's Refresh() does on a users change
  http::HttpResponse r = Request("GET", "/review", "", cookie);
  EXPECT_EQ(r.status, 401);
  EXPECT_THAT(r.body, HasSubstr("disabled"));
  EXPECT_THAT(Header(r, "Set-Cookie"), HasSubstr("Max-Age=0"));
  EXPECT_EQ(page_->sessions(), 0u);
  // Enabled again, the session stays gone: a new sign-in is needed.
  ASSERT_TRUE(store_->SetUserDisabled("victor", 0).ok());
  auth_->Forget();
  EXPECT_EQ(Request("GET", "/review", "", cookie).status, 303);

  const std::string again = SignIn(viewer_token_);
  ASSERT_FALSE(again.empty());
  ASSERT_TRUE(store_->ReplaceUserToken("victor", TokenHash("vgt_new"), 0, 3).ok());
  auth_->Forget();
  r = Request("GET", "/review/incident?id=INC-7", "", again);
  EXPECT_EQ(r.status, 401);
  EXPECT_THAT(r.body, HasSubstr("unknown token"));
  EXPECT_EQ(page_->sessions(), 0u);
}

TEST_F(ReviewPageTest, SessionsExpireWhenIdle) {
  const std::string cookie = SignIn(viewer_token_);
  clock_.Advance(absl::Minutes(29));
  EXPECT_EQ(Request("GET", "/review", "", cookie).status, 200);
  clock_.Advance(absl::Minutes(31));
  http::HttpResponse r = Request("GET", "/review", "", cookie);
  EXPECT_EQ(r.status, 303);
  EXPECT_THAT(Header(r, "Set-Cookie"), HasSubstr("Max-Age=0"));
  EXPECT_EQ(Request("GET", "/review", "", "vigil_review=" + std::string(64, 'a')).status, 303);
}

TEST_F(ReviewPageTest, SignOutEndsTheSession) {
  const std::string cookie = SignIn(viewer_token_);
  http::HttpResponse r = Request("POST", "/review/logout", "", cookie);
  EXPECT_EQ(r.status, 303);
  EXPECT_EQ(Header(r, "Location"), "/review/login");
  EXPECT_THAT(Header(r, "Set-Cookie"), HasSubstr("Max-Age=0"));
  EXPECT_EQ(page_->sessions(), 0u);
  EXPECT_EQ(Request("GET", "/review", "", cookie).status, 303);
}

TEST_F(ReviewPageTest, NothingButReadingSigningInAndOutIsAllowed) {
  const std::string cookie = SignIn(viewer_token_);
  for (const char* method : {"POST", "PUT", "DELETE", "PATCH"}) {
    for (const char* path : {"/review", "/review/incident", "/review/export"}) {
      http::HttpResponse r = Request(method, path, "", cookie);
      EXPECT_EQ(r.status, 405) << method << " " << path;
      EXPECT_EQ(Header(r, "Allow"), "GET, HEAD") << method << " " << path;
    }
  }
  EXPECT_EQ(Request("GET", "/review/logout", "", cookie).status, 405);
  EXPECT_EQ(Request("DELETE", "/review/login", "", cookie).status, 405);
  EXPECT_EQ(Request("GET", "/review/nothing", "", cookie).status, 404);
  http::HttpResponse head = Request("HEAD", "/review", "", cookie);
  EXPECT_EQ(head.status, 200);
  EXPECT_TRUE(head.body.empty());
}

TEST_F(ReviewPageTest, PostsFromAnotherSiteAreRefused) {
  http::HttpRequest request;
  request.method = "POST";
  request.path = "/review/login";
  request.body = "token=" + viewer_token_;
  request.peer = "10.0.0.9:1";
  request.headers["host"] = "vigil.example:9464";
  request.headers["origin"] = "https://evil.example";
  EXPECT_EQ(page_->Handle(request).status, 403);
  request.headers["origin"] = "http://vigil.example:9464";  // the page is HTTPS
  EXPECT_EQ(page_->Handle(request).status, 403);
  request.headers["origin"] = "https://vigil.example:9464";
  EXPECT_EQ(page_->Handle(request).status, 303);
}

TEST_F(ReviewPageTest, HostileIncidentTextCannotInjectMarkup) {
  const std::string cookie = SignIn(viewer_token_);
  for (const std::string target : {"/review?state=all", "/review/incident?id=INC-7"}) {
    http::HttpResponse r = Request("GET", target, "", cookie);
    ASSERT_EQ(r.status, 200) << target << r.body;
    EXPECT_EQ(Count(r.body, "<script"), 1u) << target;  // ours, in the head, with src
    EXPECT_THAT(r.body, HasSubstr("<script src=\"/review/static/review.js\" defer></script>"));
    EXPECT_EQ(Count(r.body, "<img"), 0u) << target;
    EXPECT_EQ(Count(r.body, "onerror=alert"), Count(r.body, "onerror=alert(2)&gt;")) << target;
    EXPECT_THAT(r.body, HasSubstr("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;img"));
    EXPECT_THAT(r.body, Not(HasSubstr(" style=")));  // no inline style either
  }
}

TEST_F(ReviewPageTest, TheIncidentPageShowsTimelineDiagnosticsActionsAndTheVerifiedMark) {
  const std::string cookie = SignIn(viewer_token_);
  http::HttpResponse r = Request("GET", "/review/incident?id=INC-7", "", cookie);
  ASSERT_EQ(r.status, 200);
  EXPECT_THAT(r.body, HasSubstr("data-status=\"verified\""));
  EXPECT_THAT(r.body, HasSubstr("Latest checkpoint</th><td id=\"checkpoint\">#4"));
  EXPECT_THAT(r.body, HasSubstr("0011223344556677"));
  EXPECT_THAT(r.body, HasSubstr("id=\"event-3\""));
  EXPECT_THAT(r.body, HasSubstr("top_processes"));
  EXPECT_THAT(r.body, HasSubstr("&lt;script&gt;alert(3)&lt;/script&gt;"));  // a diagnostic cell
  EXPECT_THAT(r.body, HasSubstr("restart_service"));
  EXPECT_THAT(r.body, HasSubstr("carol"));
  EXPECT_THAT(r.body, HasSubstr("dave"));
  EXPECT_THAT(r.body, HasSubstr("/review/export?id=INC-7&amp;format=markdown"));
  EXPECT_THAT(r.body, HasSubstr("/review/export?id=INC-7&amp;format=json"));

  audit_.set_ok(false);
  audit_.set_first_bad_seq(3);
  audit_.set_problem("hash mismatch <b>");
  r = Request("GET", "/review/incident?id=INC-7", "", cookie);
  EXPECT_THAT(r.body, HasSubstr("data-status=\"failed\""));
  EXPECT_THAT(r.body, HasSubstr("First bad event: #3"));
  EXPECT_THAT(r.body, HasSubstr("hash mismatch &lt;b&gt;"));
  EXPECT_THAT(r.body, Not(HasSubstr("data-status=\"verified\"")));

  // Each page load after a change sees it: nothing older than the request is reused.
  audit_.set_ok(true);
  EXPECT_THAT(Request("GET", "/review/incident?id=INC-7", "", cookie).body,
              HasSubstr("data-status=\"verified\""));
  EXPECT_EQ(verifications_, 3);

  EXPECT_EQ(Request("GET", "/review/incident?id=INC-9", "", cookie).status, 404);
  EXPECT_EQ(Request("GET", "/review/incident?id=", "", cookie).status, 400);
  EXPECT_EQ(Request("GET", "/review/incident?id=INC-7&after=x", "", cookie).status, 400);
  EXPECT_EQ(Request("GET", "/review/incident?id=" + std::string(200, 'a'), "", cookie).status, 400);
}

TEST_F(ReviewPageTest, ExportsDownloadThroughTheOption) {
  const std::string cookie = SignIn(viewer_token_);
  http::HttpResponse r = Request("GET", "/review/export?id=INC-7&format=markdown", "", cookie);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(exported_, "INC-7/markdown");
  EXPECT_EQ(r.body, "# INC-7\n");
  EXPECT_EQ(Header(r, "Content-Disposition"), "attachment; filename=\"INC-7.md\"");
  r = Request("GET", "/review/export?id=INC-7&format=json", "", cookie);
  EXPECT_EQ(Header(r, "Content-Disposition"), "attachment; filename=\"INC-7.json\"");
  EXPECT_THAT(r.content_type, HasSubstr("application/json"));
  EXPECT_EQ(Request("GET", "/review/export?id=INC-7&format=pdf", "", cookie).status, 400);
  EXPECT_EQ(Request("GET", "/review/export?id=INC-7&format=json").status, 303);  // signed out
}

TEST_F(ReviewPageTest, CountsSignInsAndSessions) {
  SignIn("vgt_wrong");
  SignIn(viewer_token_);
  std::string metrics;
  page_->AppendMetrics(&metrics);
  EXPECT_THAT(metrics, HasSubstr("vigil_review_sessions 1\n"));
  EXPECT_THAT(metrics, HasSubstr("vigil_review_sign_ins_total{result=\"accepted\"} 1\n"));
  EXPECT_THAT(metrics, HasSubstr("vigil_review_sign_ins_total{result=\"refused\"} 1\n"));
}

}  // namespace
}  // namespace vigil::controller::review
