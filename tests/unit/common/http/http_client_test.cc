// The blocking client: its pure URL, response and chunked parsers on canned text, and whole calls
// against HttpServer on loopback (plain and TLS, deadlines, the size cap, a refused port).
#include "common/http/http_client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/http/http_server.h"
#include "tests/support/process.h"
#include "tests/support/unix_http_server.h"

namespace vigil::http {
namespace {

using ::testing::HasSubstr;

TEST(ParseHttpUrlTest, SchemesHostsPortsAndTargets) {
  absl::StatusOr<ParsedUrl> url = ParseHttpUrl("http://127.0.0.1:9464/metrics?x=1");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_FALSE(url->tls);
  EXPECT_EQ(url->host, "127.0.0.1");
  EXPECT_EQ(url->port, 9464);
  EXPECT_EQ(url->target, "/metrics?x=1");
  url = ParseHttpUrl("https://[::1]/");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_TRUE(url->tls);
  EXPECT_EQ(url->host, "::1");
  EXPECT_EQ(url->port, 443);
  EXPECT_EQ(ParseHttpUrl("http://example.net")->target, "/");
  EXPECT_EQ(ParseHttpUrl("http://example.net")->port, 80);
  for (const char* bad :
       {"ftp://x/", "example.net", "http://", "http://:80/", "http://x:0/", "http://x:99999/",
        "http://x:8o/", "http://u@x/", "http://x/a b", "http://[::1/"}) {
    absl::StatusOr<ParsedUrl> parsed = ParseHttpUrl(bad);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(ParseHttpResponseTest, LengthChunkedAndToTheClose) {
  absl::StatusOr<HttpClientResponse> r =
      ParseHttpResponse("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\nx-a: 2\r\n\r\nhixx");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "hi");
  EXPECT_EQ(r->headers["x-a"], "1, 2");
  r = ParseHttpResponse(
      "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n"
      "A\r\n0123456789\r\n0\r\n\r\n");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->body, "abc0123456789");
  EXPECT_EQ(ParseHttpResponse("HTTP/1.0 404 Not Found\r\n\r\nall of it")->body, "all of it");
  EXPECT_FALSE(ParseHttpResponse("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").ok());
  EXPECT_FALSE(ParseHttpResponse("SSH-2.0-OpenSSH\r\n\r\n").ok());
  EXPECT_FALSE(ParseHttpResponse("HTTP/1.1 200 OK\r\nContent-Length: 2").ok());
}

TEST(DecodeChunkedTest, MalformedChunksAreErrors) {
  EXPECT_EQ(*DecodeChunked("0\r\n\r\n"), "");
  EXPECT_THAT(std::string(DecodeChunked("zz\r\nab\r\n0\r\n\r\n").status().message()),
              HasSubstr("not hexadecimal"));
  EXPECT_THAT(std::string(DecodeChunked("5\r\nab\r\n").status().message()), HasSubstr("truncated"));
  EXPECT_FALSE(DecodeChunked("ffffffffffffffffff\r\n").ok());
  EXPECT_FALSE(DecodeChunked("3\r\nabc").ok());
}

class HttpClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HttpServer::Options options;
    options.stop_timeout = absl::Milliseconds(100);
    server_ = std::make_unique<HttpServer>(options);
    server_->Handle("GET", "/metrics",
                    [](const HttpRequest&) { return TextResponse(200, "vigil_up 1"); });
    server_->Handle("POST", "/echo", [](const HttpRequest& request) {
      HttpResponse response;
      response.status = 202;
      response.content_type = request.Header("content-type");
      response.body = absl::StrCat(request.Header("x-token"), ":", request.body);
      return response;
    });
    server_->Handle("GET", "/big",
                    [](const HttpRequest&) { return TextResponse(200, std::string(100000, 'x')); });
    auto release = release_;
    server_->Handle("GET", "/slow", [release](const HttpRequest&) {
      release->WaitForNotificationWithTimeout(absl::Seconds(10));
      return TextResponse(200, "late");
    });
    ASSERT_TRUE(server_->Start("127.0.0.1:0").ok());
    base_ = absl::StrCat("http://127.0.0.1:", server_->port());
  }
  void TearDown() override {
    release_->Notify();
    server_->Stop();
  }

  std::shared_ptr<absl::Notification> release_ = std::make_shared<absl::Notification>();
  std::unique_ptr<HttpServer> server_;
  std::string base_;
};

TEST_F(HttpClientTest, GetAndPost) {
  absl::StatusOr<HttpClientResponse> r = HttpGet(base_ + "/metrics");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "vigil_up 1\n");
  HttpClientOptions options;
  options.headers = {{"X-Token", "t1"}};
  r = HttpPost(base_ + "/echo", "{\"a\":1}", "application/json", options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 202);
  EXPECT_EQ(r->body, "t1:{\"a\":1}");
  EXPECT_EQ(r->headers["content-type"], "application/json");
  // An error status is a successful call.
  r = HttpGet(base_ + "/nowhere");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 404);
}

TEST_F(HttpClientTest, SlowServerIsDeadlineExceededWithinTheTimeout) {
  HttpClientOptions options;
  options.timeout = absl::Milliseconds(300);
  absl::Time start = absl::Now();
  absl::StatusOr<HttpClientResponse> r = HttpGet(base_ + "/slow", options);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("/slow"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
}

TEST_F(HttpClientTest, AnswerOverTheCapIsResourceExhausted) {
  HttpClientOptions options;
  options.max_response_bytes = 10000;
  absl::StatusOr<HttpClientResponse> r = HttpGet(base_ + "/big", options);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  options.max_response_bytes = 200000;
  r = HttpGet(base_ + "/big", options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->body.size(), 100001u);
}

TEST_F(HttpClientTest, PatchSendsItsBodyWithALength) {
  server_->Handle("PATCH", "/echo", [](const HttpRequest& request) {
    return TextResponse(200, absl::StrCat(request.Header("content-type"), " ",
                                          request.Header("content-length"), " ", request.body));
  });
  absl::StatusOr<HttpClientResponse> r =
      HttpFetch("PATCH", base_ + "/echo", "{\"b\":2}", "application/merge-patch+json", {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->body, "application/merge-patch+json 7 {\"b\":2}\n");
}

// The `unix_socket` option: the same request over a unix socket, the URL naming only the Host.
TEST(HttpClientUnixSocketTest, RequestGoesToTheSocket) {
  testing::TempDir dir;
  testing::UnixHttpServer server(dir.File("api.sock"), [](const HttpRequest& request) {
    HttpResponse response;
    response.content_type = "application/json";
    response.body =
        absl::StrCat("{\"path\":\"", request.path, "\",\"query\":\"", request.query, "\"}");
    return response;
  });
  ASSERT_TRUE(server.ok());
  HttpClientOptions options;
  options.unix_socket = server.path();
  absl::StatusOr<HttpClientResponse> r =
      HttpFetch("POST", "http://docker/containers/prune?x=1", "", "", options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "{\"path\":\"/containers/prune\",\"query\":\"x=1\"}");
  ASSERT_EQ(server.requests().size(), 1u);
  EXPECT_EQ(server.requests()[0].method, "POST");
  EXPECT_EQ(server.requests()[0].Header("host"), "docker:80");
  EXPECT_EQ(server.requests()[0].Header("content-length"), "0");

  // No socket there: Unavailable, naming it.
  options.unix_socket = dir.File("missing.sock");
  r = HttpGet("http://docker/_ping", options);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("unix:" + dir.File("missing.sock")));
  // https cannot go over it.
  options.unix_socket = server.path();
  EXPECT_EQ(HttpGet("https://docker/_ping", options).status().code(),
            absl::StatusCode::kInvalidArgument);
  // A path too long for sockaddr_un.
  options.unix_socket = "/" + std::string(200, 'x');
  EXPECT_EQ(HttpGet("http://docker/_ping", options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// A resolver that never answers must not hold the call past its connect deadline. The stand-in
// resolver blocks until the test releases it, after the call returned: had the call waited for
// it, the test would hang instead of passing.
TEST(HttpClientConnectTest, UnansweredNameLookupEndsAtTheConnectDeadline) {
  auto release = std::make_shared<absl::Notification>();
  auto calls = std::make_shared<std::atomic<int>>(0);
  HttpClientOptions options;
  options.connect_timeout = absl::Milliseconds(200);
  options.address_lookup = [release, calls](const char* host, const char* service,
                                            const addrinfo* hints, addrinfo** result) {
    calls->fetch_add(1);
    release->WaitForNotification();
    return getaddrinfo("127.0.0.1", service, hints, result);
  };
  absl::StatusOr<HttpClientResponse> r = HttpGet("http://metrics.example.internal:9/", options);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("name lookup of metrics.example.internal timed out"));
  EXPECT_EQ(calls->load(), 1);
  // A literal address is never looked up.
  HttpServer server;
  server.Handle("GET", "/", [](const HttpRequest&) { return TextResponse(200, "ok"); });
  ASSERT_TRUE(server.Start("127.0.0.1:0").ok());
  r = HttpGet(absl::StrCat("http://127.0.0.1:", server.port(), "/"), options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(calls->load(), 1);
  release->Notify();
}

TEST(HttpClientConnectTest, NothingListeningIsUnavailable) {
  HttpServer server;
  ASSERT_TRUE(server.Start("127.0.0.1:0").ok());
  const std::string url = absl::StrCat("http://127.0.0.1:", server.port(), "/");
  server.Stop();
  absl::StatusOr<HttpClientResponse> r = HttpGet(url);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr(url));
}

class HttpsClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    for (const std::string& out : {dir_->path(), dir_->File("other")}) {
      testing::CommandResult r = testing::RunCommand(
          {std::string(VIGIL_TEST_SOURCE_DIR) + "/scripts/dev-ca.sh", out, "--user", "prober"},
          absl::Seconds(60));
      ASSERT_EQ(r.exit_code, 0) << r.output;
    }
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    HttpServer::Options options;
    options.tls_cert_file = dir_->File("controller.pem");
    options.tls_key_file = dir_->File("controller.key");
    options.tls_ca_file = dir_->File("ca.pem");
    server_ = std::make_unique<HttpServer>(options);
    server_->Handle("GET", "/whoami", [](const HttpRequest& request) {
      return TextResponse(200, absl::StrCat("cn=", request.client_cn));
    });
    ASSERT_TRUE(server_->Start("127.0.0.1:0").ok());
    url_ = absl::StrCat("https://127.0.0.1:", server_->port(), "/whoami");
  }

  static testing::TempDir* dir_;
  std::unique_ptr<HttpServer> server_;
  std::string url_;
};
testing::TempDir* HttpsClientTest::dir_ = nullptr;

TEST_F(HttpsClientTest, ClientCertificateReachesTheHandler) {
  HttpClientOptions options;
  options.tls_ca_file = dir_->File("ca.pem");
  options.tls_cert_file = dir_->File("user-prober.pem");
  options.tls_key_file = dir_->File("user-prober.key");
  absl::StatusOr<HttpClientResponse> r = HttpGet(url_, options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->body, "cn=prober\n");
  options.tls_cert_file.clear();
  options.tls_key_file.clear();
  r = HttpGet(url_, options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->body, "cn=\n");
}

TEST_F(HttpsClientTest, ServerFromAnotherCaIsUnauthenticated) {
  HttpClientOptions options;
  options.tls_ca_file = dir_->File("other/ca.pem");
  absl::StatusOr<HttpClientResponse> r = HttpGet(url_, options);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated) << r.status();
  // Plain HTTP against the TLS port is no answer, not a crash.
  r = HttpGet(absl::StrCat("http://127.0.0.1:", server_->port(), "/whoami"));
  EXPECT_FALSE(r.ok());
}

}  // namespace
}  // namespace vigil::http
