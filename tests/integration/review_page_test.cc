// The review page in a real headless Chromium against a real controller serving HTTPS: a wrong
// token is refused, a viewer signs in (the cookie HttpOnly, Secure, SameSite=Strict), opens an
// incident whose alert text is hostile markup, sees the verified mark and downloads an export;
// one timeline event is then edited in the database with sqlite3 and the reloaded page shows the
// failure with the edited event's number. Chromium is driven through its DevTools protocol by
// scripts/chromium_cdp.py; the test fails when Chromium or the page misbehaves (a page error, a
// Content-Security-Policy report, the script not running).
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "common/http/http_client.h"
#include "tests/support/process.h"
#include "tests/support/proto_json.h"
#include "vigil/v1/control_service.pb.h"

namespace vigil {
namespace {

using testing::BinaryPath;
using testing::CommandResult;
using testing::RunCommand;
using testing::Subprocess;
using testing::WaitUntil;

constexpr char kHostile[] = "<img src=x onerror=\"window.pwned=1\"><script>window.pwned=2</script>";

// What chromium_cdp.py prints for a page.
struct Page {
  int status = 0;
  std::string url;
  std::string text;
  bool js = false;
  std::string errors;  // JSON array; "[]" when the page loaded cleanly
  std::string raw;
};

class ReviewPageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (RunCommand({"sh", "-c", "command -v chromium"}).exit_code != 0) {
      FAIL() << "chromium is not installed (scripts/install-deps.sh installs it)";
    }
    const std::string tls = dir_.File("tls");
    CommandResult ca = RunCommand({testing::SourcePath("scripts/dev-ca.sh"), tls});
    ASSERT_EQ(ca.exit_code, 0) << ca.output;
    ca_file_ = tls + "/ca.pem";
    viewer_token_ = testing::AddVigilUser(db(), "victor", "viewer");
    webhook_token_ = testing::AddVigilUser(db(), "alertmanager", "responder");
    const uint16_t grpc_port = testing::FreeLoopbackPort();
    http_port_ = testing::FreeLoopbackPort();
    address_ = absl::StrCat("127.0.0.1:", grpc_port);
    base_ = absl::StrCat("https://127.0.0.1:", http_port_);
    controller_ = std::make_unique<Subprocess>(
        std::vector<std::string>{BinaryPath("vigil-controller"), "--listen=" + address_,
                                 "--db=" + db(), "--insecure",
                                 absl::StrCat("--http-listen=127.0.0.1:", http_port_),
                                 "--http-tls-cert=" + tls + "/controller.pem",
                                 "--http-tls-key=" + tls + "/controller.key"},
        std::map<std::string, std::string>{}, dir_.File("controller.log"));
    ASSERT_TRUE(WaitUntil(
        [&] {
          http::HttpClientOptions options;
          options.tls_ca_file = ca_file_;
          auto r = http::HttpGet(base_ + "/review/login", options);
          return r.ok() && r->status == 200;
        },
        absl::Seconds(10)))
        << controller_->Output();
    chromium_ = std::make_unique<Subprocess>(
        std::vector<std::string>{"/usr/bin/python3", Driver(), "launch", profile()},
        std::map<std::string, std::string>{}, dir_.File("chromium.log"));
  }

  std::string db() const { return dir_.File("vigil.db"); }
  std::string profile() const { return dir_.File("chromium"); }
  static std::string Driver() { return testing::SourcePath("scripts/chromium_cdp.py"); }

  CommandResult Drive(std::vector<std::string> args) {
    args.insert(args.begin(), {"/usr/bin/python3", Driver(), profile()});
    return RunCommand(args, absl::Seconds(30));
  }

  // A page step ("open URL" or "act JS"); fails the test when the driver does.
  Page Step(const std::string& command, const std::string& arg) {
    CommandResult r = Drive({command, arg});
    EXPECT_EQ(r.exit_code, 0) << command << " " << arg << ": " << r.output << ReadChromiumLog();
    Page page;
    page.raw = r.stdout_text;
    google::protobuf::Struct parsed;
    if (!google::protobuf::util::JsonStringToMessage(r.stdout_text, &parsed).ok()) {
      ADD_FAILURE() << "not a page: " << r.stdout_text;
      return page;
    }
    const auto& f = parsed.fields();
    if (f.contains("status") && f.at("status").has_number_value()) {
      page.status = static_cast<int>(f.at("status").number_value());
    }
    page.url = f.contains("url") ? f.at("url").string_value() : "";
    page.text = f.contains("text") ? f.at("text").string_value() : "";
    page.js = f.contains("js") && f.at("js").bool_value();
    std::string errors;
    // Errors the browser reported fail the test; ones that cannot be printed must too.
    if (f.contains("errors") &&
        !google::protobuf::util::MessageToJsonString(f.at("errors"), &errors).ok()) {
      errors = "<the browser's errors could not be read>";
    }
    page.errors = errors;
    return page;
  }

  std::string Eval(const std::string& js) {
    CommandResult r = Drive({"eval", js});
    EXPECT_EQ(r.exit_code, 0) << js << ": " << r.output;
    return std::string(absl::StripAsciiWhitespace(r.stdout_text));
  }

  std::string ReadChromiumLog() {
    return absl::StrCat("\n--- chromium ---\n",
                        testing::ReadFileOrEmpty(dir_.File("chromium.log")));
  }

  std::string PostAlert() {
    http::HttpClientOptions options;
    options.tls_ca_file = ca_file_;
    options.headers = {{"Authorization", "Bearer " + webhook_token_}};
    const std::string alert = absl::StrCat(
        R"({"version":"4","status":"firing","alerts":[{"status":"firing",)",
        R"("labels":{"alertname":"ReplicaLag","severity":"warning","instance":"db-2:9187",)",
        R"("service":"postgres"},"annotations":{"summary":)", "\"Replica lag ",
        absl::StrReplaceAll(kHostile, {{"\"", "\\\""}}), "\"},",
        R"("startsAt":"2024-03-01T00:00:00Z"}]})");
    auto r = http::HttpPost(base_ + "/api/v1/alertmanager", alert, "application/json", options);
    EXPECT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r.ok() ? r->status : 0, 200) << (r.ok() ? r->body : "");
    v1::ListIncidentsResponse incidents;
    EXPECT_TRUE(WaitUntil(
        [&] {
          CommandResult c =
              RunCommand({BinaryPath("vigil"), "--controller=" + address_, "--insecure",
                          "--token=" + viewer_token_, "incidents", "--state=all", "-o", "json"},
                         absl::Seconds(10), testing::CleanVigilEnvironment());
          return c.exit_code == 0 && testing::ParseJson(c.stdout_text, &incidents) &&
                 incidents.incidents_size() == 1;
        },
        absl::Seconds(10)))
        << controller_->Output();
    return incidents.incidents_size() == 1 ? incidents.incidents(0).id() : "";
  }

  testing::TempDir dir_;
  std::string ca_file_;
  std::string viewer_token_;
  std::string webhook_token_;
  uint16_t http_port_ = 0;
  std::string address_;
  std::string base_;
  std::unique_ptr<Subprocess> controller_;
  std::unique_ptr<Subprocess> chromium_;
};

TEST_F(ReviewPageTest, ViewerSignsInSeesTheVerifiedMarkAndThenTheTamperedEvent) {
  const std::string incident = PostAlert();
  ASSERT_FALSE(incident.empty());
  CommandResult waited = Drive({"wait"});
  ASSERT_EQ(waited.exit_code, 0) << waited.output << ReadChromiumLog();

  // Not signed in: the list sends the browser to the form.
  Page page = Step("open", base_ + "/review");
  EXPECT_EQ(page.status, 200) << page.raw;
  EXPECT_EQ(page.url, base_ + "/review/login");
  EXPECT_TRUE(page.js) << "the page's script did not run: " << page.raw;
  EXPECT_EQ(page.errors, "[]");

  // A wrong token: 401, the form again, no cookie.
  page = Step("act",
              "document.getElementById('token').value = 'vgt_wrong';"
              "document.querySelector('form.login').submit()");
  EXPECT_EQ(page.status, 401) << page.raw;
  EXPECT_TRUE(absl::StrContains(page.text, "Sign-in refused: unknown token")) << page.raw;
  EXPECT_EQ(Eval("document.querySelectorAll('input[name=token]').length"), "1");
  EXPECT_EQ(Drive({"cookies"}).stdout_text.find("vigil_review"), std::string::npos);

  // The viewer's token: the incident list, with the hostile alert text as text only.
  page = Step("act", absl::StrCat("document.getElementById('token').value = '", viewer_token_, "';",
                                  "document.querySelector('form.login').submit()"));
  EXPECT_EQ(page.status, 200) << page.raw;
  EXPECT_EQ(page.url, base_ + "/review");
  EXPECT_TRUE(absl::StrContains(page.text, "signed in as victor (viewer)")) << page.raw;
  EXPECT_TRUE(absl::StrContains(page.text, incident)) << page.raw;
  EXPECT_TRUE(absl::StrContains(page.text, kHostile)) << page.raw;
  EXPECT_EQ(page.errors, "[]");
  EXPECT_EQ(Eval("document.querySelectorAll('img').length"), "0");
  EXPECT_EQ(Eval("String(window.pwned)"), "\"undefined\"");
  EXPECT_EQ(Eval("document.cookie"), "\"\"");  // HttpOnly: no script reads the session
  const std::string cookies = Drive({"cookies"}).stdout_text;
  EXPECT_TRUE(absl::StrContains(cookies, "\"name\": \"vigil_review\"")) << cookies;
  EXPECT_TRUE(absl::StrContains(cookies, "\"httpOnly\": true")) << cookies;
  EXPECT_TRUE(absl::StrContains(cookies, "\"secure\": true")) << cookies;
  EXPECT_TRUE(absl::StrContains(cookies, "\"sameSite\": \"Strict\"")) << cookies;
  EXPECT_TRUE(absl::StrContains(cookies, "\"path\": \"/review\"")) << cookies;

  // The incident: its timeline and the verified mark; the export downloads.
  page = Step("act", "document.querySelector('#incidents a').click()");
  EXPECT_EQ(page.status, 200) << page.raw;
  EXPECT_TRUE(absl::StrContains(page.url, "/review/incident?id=")) << page.raw;
  EXPECT_TRUE(absl::StrContains(page.text, "incident_opened")) << page.raw;
  EXPECT_EQ(page.errors, "[]");
  EXPECT_EQ(Eval("document.getElementById('audit-status').dataset.status"), "\"verified\"")
      << page.raw;
  EXPECT_EQ(Eval("document.querySelectorAll('img').length"), "0");
  EXPECT_EQ(Eval("String(window.pwned)"), "\"undefined\"");
  EXPECT_EQ(Eval("fetch(document.getElementById('export-markdown').href)"
                 ".then(r => r.status + ' ' + r.headers.get('content-disposition'))"),
            absl::StrCat("\"200 attachment; filename=\\\"", incident, ".md\\\"\""));
  const std::string json = Eval(
      "fetch(document.getElementById('export-json').href).then(r => r.json())"
      ".then(j => j.report.incident.id)");
  EXPECT_EQ(json, absl::StrCat("\"", incident, "\""));

  // Someone with write access edits the first event's summary: the reload shows the failure.
  CommandResult edit =
      RunCommand({"sqlite3", "-cmd", ".timeout 5000", db(),
                  absl::StrCat("UPDATE timeline SET summary = 'nothing happened' WHERE seq = "
                               "(SELECT MIN(seq) FROM timeline WHERE incident_id = '",
                               incident, "'); SELECT MIN(seq) FROM timeline WHERE incident_id = '",
                               incident, "';")});
  ASSERT_EQ(edit.exit_code, 0) << edit.output;
  const std::string first_seq(absl::StripAsciiWhitespace(edit.stdout_text));
  page = Step("open", page.url);
  EXPECT_EQ(page.status, 200) << page.raw;
  EXPECT_EQ(Eval("document.getElementById('audit-status').dataset.status"), "\"failed\"")
      << page.raw;
  EXPECT_TRUE(absl::StrContains(page.text, "Verification failed")) << page.raw;
  EXPECT_TRUE(absl::StrContains(page.text, absl::StrCat("First bad event: #", first_seq)))
      << page.raw;
  EXPECT_TRUE(absl::StrContains(page.text, "nothing happened")) << page.raw;

  // Sign out: the session is gone.
  page = Step("act", "document.querySelector('form.logout button').click()");
  EXPECT_EQ(page.url, base_ + "/review/login") << page.raw;
  page = Step("open", base_ + "/review");
  EXPECT_EQ(page.url, base_ + "/review/login") << page.raw;
}

}  // namespace
}  // namespace vigil
