// HttpServer over real sockets on 127.0.0.1: routing, the status codes for bad requests, and that
// silent, idle and trickling clients, throwing or slow handlers and Stop() cannot wedge it; TLS
// with and without client certificates. The client is a raw socket (or OpenSSL over one) so that
// the tests can send exactly the bytes (and the silences) they mean to.
#include "common/http/http_server.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tests/support/process.h"

namespace vigil::http {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Connects to 127.0.0.1:port; -1 when refused.
int Connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

void SendAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) {
      return;  // the server may close early (e.g. 431); what it answered is still readable
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
}

// Everything the server sends until it closes (or 5 s of silence).
std::string ReadAll(int fd) {
  std::string out;
  char buf[4096];
  while (true) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) {
      return out;
    }
    out.append(buf, static_cast<size_t>(n));
  }
}

struct Reply {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

Reply ParseReply(const std::string& raw) {
  Reply reply;
  size_t head_end = raw.find("\r\n\r\n");
  if (head_end == std::string::npos) {
    return reply;
  }
  std::vector<std::string> lines = absl::StrSplit(raw.substr(0, head_end), "\r\n");
  std::vector<std::string> status_line = absl::StrSplit(lines[0], absl::MaxSplits(' ', 2));
  if (status_line.size() < 2 || status_line[0] != "HTTP/1.1" ||
      !absl::SimpleAtoi(status_line[1], &reply.status)) {
    return reply;
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    size_t colon = lines[i].find(':');
    reply.headers[absl::AsciiStrToLower(lines[i].substr(0, colon))] =
        std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
  }
  reply.body = raw.substr(head_end + 4);
  return reply;
}

// One request on a fresh connection; the reply after the server closed.
Reply Exchange(int port, absl::string_view request) {
  int fd = Connect(port);
  if (fd < 0) {
    return Reply{};
  }
  SendAll(fd, request);
  std::string raw = ReadAll(fd);
  close(fd);
  return ParseReply(raw);
}

class HttpServerTest : public ::testing::Test {
 protected:
  void StartServer(HttpServer::Options options = {}) {
    server_ = std::make_unique<HttpServer>(options);
    server_->Handle("GET", "/metrics", [this](const HttpRequest& request) {
      absl::MutexLock lock(&mu_);
      last_ = request;
      ++calls_;
      HttpResponse response;
      response.content_type = "text/plain; version=0.0.4";
      response.body = "vigil_up 1\n";
      return response;
    });
    server_->Handle("POST", "/echo", [this](const HttpRequest& request) {
      absl::MutexLock lock(&mu_);
      last_ = request;
      ++calls_;
      HttpResponse response;
      response.status = 202;
      response.content_type = "application/octet-stream";
      response.body = request.body;
      return response;
    });
    server_->Handle("GET", "/boom", [](const HttpRequest&) -> HttpResponse {
      throw std::runtime_error("handler failure");
    });
    ASSERT_TRUE(server_->Start("127.0.0.1:0").ok());
    port_ = server_->port();
    ASSERT_GT(port_, 0);
  }

  int calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  HttpRequest last() {
    absl::MutexLock lock(&mu_);
    return last_;
  }

  std::unique_ptr<HttpServer> server_;
  int port_ = 0;
  absl::Mutex mu_;
  int calls_ = 0;
  HttpRequest last_;
};

TEST_F(HttpServerTest, GetIsRoutedWithQueryAndLowerCaseHeaders) {
  StartServer();
  Reply reply = Exchange(port_,
                         "GET /metrics?name=cpu&x=1 HTTP/1.1\r\nHost: localhost\r\n"
                         "X-Scrape-Timeout: 10\r\nAccept: a\r\nAccept: b\r\n\r\n");
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.body, "vigil_up 1\n");
  EXPECT_EQ(reply.headers["content-type"], "text/plain; version=0.0.4");
  EXPECT_EQ(reply.headers["content-length"], "11");
  EXPECT_EQ(reply.headers["connection"], "close");
  HttpRequest request = last();
  EXPECT_EQ(request.method, "GET");
  EXPECT_EQ(request.path, "/metrics");
  EXPECT_EQ(request.query, "name=cpu&x=1");
  EXPECT_EQ(request.headers["host"], "localhost");
  EXPECT_EQ(request.headers["x-scrape-timeout"], "10");
  EXPECT_EQ(request.headers["accept"], "a, b");
  EXPECT_TRUE(request.body.empty());
}

TEST_F(HttpServerTest, PostBodyIsEchoedEvenWhenItArrivesLater) {
  StartServer();
  int fd = Connect(port_);
  ASSERT_GE(fd, 0);
  SendAll(fd, "POST /echo HTTP/1.1\r\nContent-Length: 11\r\nContent-Type: text/plain\r\n\r\nhello");
  absl::SleepFor(absl::Milliseconds(100));
  SendAll(fd, " world");
  Reply reply = ParseReply(ReadAll(fd));
  close(fd);
  EXPECT_EQ(reply.status, 202);
  EXPECT_EQ(reply.body, "hello world");
  EXPECT_EQ(reply.headers["content-type"], "application/octet-stream");
  EXPECT_EQ(last().headers["content-type"], "text/plain");
}

TEST_F(HttpServerTest, UnknownPathIs404) {
  StartServer();
  Reply reply = Exchange(port_, "GET /nowhere HTTP/1.1\r\n\r\n");
  EXPECT_EQ(reply.status, 404);
  EXPECT_THAT(reply.body, HasSubstr("/nowhere"));
  EXPECT_EQ(calls(), 0);
}

TEST_F(HttpServerTest, KnownPathWithOtherMethodIs405WithAllow) {
  StartServer();
  Reply reply = Exchange(port_, "DELETE /metrics HTTP/1.1\r\n\r\n");
  EXPECT_EQ(reply.status, 405);
  EXPECT_EQ(reply.headers["allow"], "GET");
  EXPECT_EQ(calls(), 0);
}

TEST_F(HttpServerTest, PostWithoutContentLengthIs411) {
  StartServer();
  EXPECT_EQ(Exchange(port_, "POST /echo HTTP/1.1\r\n\r\nhello").status, 411);
  EXPECT_EQ(
      Exchange(port_,
               "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
          .status,
      411);
  EXPECT_EQ(calls(), 0);
}

TEST_F(HttpServerTest, BodyOverLimitIs413WithoutReadingIt) {
  StartServer();
  Reply reply = Exchange(
      port_,
      absl::StrCat("POST /echo HTTP/1.1\r\nContent-Length: ", 4 * 1024 * 1024 + 1, "\r\n\r\n"));
  EXPECT_EQ(reply.status, 413);
  EXPECT_EQ(calls(), 0);
  // Exactly the limit is accepted.
  std::string body(4 * 1024 * 1024, 'x');
  reply = Exchange(port_, absl::StrCat("POST /echo HTTP/1.1\r\nContent-Length: ", body.size(),
                                       "\r\n\r\n", body));
  EXPECT_EQ(reply.status, 202);
  EXPECT_EQ(reply.body.size(), body.size());
}

TEST_F(HttpServerTest, HeadersOverLimitAre431) {
  StartServer();
  std::string request = "GET /metrics HTTP/1.1\r\n";
  for (int i = 0; i < 200; ++i) {
    absl::StrAppend(&request, "X-Filler-", i, ": ", std::string(100, 'a'), "\r\n");
  }
  absl::StrAppend(&request, "\r\n");
  ASSERT_GT(request.size(), 16u * 1024);
  EXPECT_EQ(Exchange(port_, request).status, 431);
  EXPECT_EQ(calls(), 0);
}

TEST_F(HttpServerTest, MalformedRequestsAre400) {
  StartServer();
  for (const char* garbage :
       {"garbage\r\n\r\n", "GET /metrics\r\n\r\n", "GET metrics HTTP/1.1\r\n\r\n",
        "GET /metrics HTTP/1.1 extra\r\n\r\n", "GET /metrics FTP/1.0\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nBad Name: x\r\n\r\n",
        "POST /echo HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        "POST /echo HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\nhello"}) {
    EXPECT_EQ(Exchange(port_, garbage).status, 400) << garbage;
  }
  EXPECT_EQ(calls(), 0);
}

TEST_F(HttpServerTest, HandlerExceptionIs500AndServerGoesOn) {
  StartServer();
  Reply reply = Exchange(port_, "GET /boom HTTP/1.1\r\n\r\n");
  EXPECT_EQ(reply.status, 500);
  EXPECT_THAT(reply.body, Not(HasSubstr("handler failure")));
  EXPECT_EQ(Exchange(port_, "GET /metrics HTTP/1.1\r\n\r\n").status, 200);
}

TEST_F(HttpServerTest, SilentClientDoesNotDelayOthers) {
  StartServer();  // default 10 s header timeout
  int silent = Connect(port_);
  ASSERT_GE(silent, 0);
  absl::SleepFor(absl::Milliseconds(50));  // let the server accept it
  absl::Time start = absl::Now();
  EXPECT_EQ(Exchange(port_, "GET /metrics HTTP/1.1\r\n\r\n").status, 200);
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  close(silent);
}

TEST_F(HttpServerTest, SilentClientsTimeOutWith408WhileOthersAreServed) {
  HttpServer::Options options;
  options.header_timeout = absl::Milliseconds(1500);
  options.worker_threads = 2;
  StartServer(options);
  int silent1 = Connect(port_);
  int silent2 = Connect(port_);
  ASSERT_GE(silent1, 0);
  ASSERT_GE(silent2, 0);
  absl::SleepFor(absl::Milliseconds(50));
  // Silent clients hold no worker: this request is served before their deadline.
  absl::Time start = absl::Now();
  EXPECT_EQ(Exchange(port_, "GET /metrics HTTP/1.1\r\n\r\n").status, 200);
  // Well before the silent ones' 1.5 s deadline, with room for a loaded machine.
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  EXPECT_EQ(ParseReply(ReadAll(silent1)).status, 408);
  EXPECT_EQ(ParseReply(ReadAll(silent2)).status, 408);
  close(silent1);
  close(silent2);
}

TEST_F(HttpServerTest, TricklingClientIsCutOffAtTheRequestDeadline) {
  HttpServer::Options options;
  options.header_timeout = absl::Seconds(2);
  options.request_timeout = absl::Milliseconds(300);
  StartServer(options);
  int fd = Connect(port_);
  ASSERT_GE(fd, 0);
  absl::Time start = absl::Now();
  // One byte every 50 ms never trips the read timeout; the request deadline ends it. The client
  // stops before the server closes, so its late bytes cannot turn the close into a reset.
  SendAll(fd, "GET /metrics HTTP/1.1\r\nX-Slow: ");
  for (int i = 0; i < 8; ++i) {
    absl::SleepFor(absl::Milliseconds(50));
    SendAll(fd, "a");
  }
  Reply reply = ParseReply(ReadAll(fd));
  close(fd);
  EXPECT_EQ(reply.status, 408);
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  EXPECT_EQ(calls(), 0);
}

TEST_F(HttpServerTest, StopReturnsPromptlyWithAClientMidRequest) {
  StartServer();  // 10 s header timeout: Stop must not wait for it
  int fd = Connect(port_);
  ASSERT_GE(fd, 0);
  SendAll(fd, "GET /metrics HTTP/1.1\r\n");
  absl::SleepFor(absl::Milliseconds(50));
  absl::Time start = absl::Now();
  server_->Stop();
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  EXPECT_EQ(server_->port(), 0);
  EXPECT_EQ(Connect(port_), -1);  // nothing listens any more
  close(fd);
  server_->Stop();  // idempotent
}

TEST_F(HttpServerTest, StopWithoutStartAndRestart) {
  HttpServer server;
  server.Stop();
  server.Handle("GET", "/x", [](const HttpRequest&) {
    return HttpResponse{200, "text/plain", "x", {}};
  });
  ASSERT_TRUE(server.Start("127.0.0.1:0").ok());
  absl::Status again = server.Start("127.0.0.1:0");
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition);
  server.Stop();
  ASSERT_TRUE(server.Start("127.0.0.1:0").ok());
  EXPECT_EQ(Exchange(server.port(), "GET /x HTTP/1.1\r\n\r\n").body, "x");
}

TEST(HttpServerStartTest, TakenPortIsAnErrorNamingTheAddress) {
  HttpServer first;
  ASSERT_TRUE(first.Start("127.0.0.1:0").ok());
  std::string address = absl::StrCat("127.0.0.1:", first.port());
  HttpServer second;
  absl::Status status = second.Start(address);
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), HasSubstr(address));
  EXPECT_THAT(std::string(status.message()), HasSubstr("in use"));
  EXPECT_EQ(second.port(), 0);
}

TEST(HttpServerStartTest, MalformedListenAddressIsInvalidArgument) {
  for (const char* listen : {"nonsense", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:70000"}) {
    HttpServer server;
    absl::Status status = server.Start(listen);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << listen;
    EXPECT_THAT(std::string(status.message()), HasSubstr(listen));
  }
}

// Lets this process hold `wanted` descriptors (clients and server share it); false when the hard
// limit is lower.
bool RaiseFileLimit(rlim_t wanted) {
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  if (limit.rlim_cur >= wanted) {
    return true;
  }
  if (limit.rlim_max < wanted) {
    return false;
  }
  limit.rlim_cur = wanted;
  return setrlimit(RLIMIT_NOFILE, &limit) == 0;
}

TEST_F(HttpServerTest, TwoThousandIdleConnectionsDoNotStarveMetrics) {
  ASSERT_TRUE(RaiseFileLimit(8192)) << "needs 8192 file descriptors";
  StartServer();  // default cap: 1024 connections
  std::vector<int> idle;
  for (int i = 0; i < 2000; ++i) {
    int fd = Connect(port_);
    ASSERT_GE(fd, 0) << "connection " << i;
    idle.push_back(fd);
  }
  ASSERT_TRUE(testing::WaitUntil([&] { return server_->stats().connections_accepted >= 2000; },
                                 absl::Seconds(10)));
  for (int i = 0; i < 5; ++i) {
    absl::Time start = absl::Now();
    Reply reply = Exchange(port_, "GET /metrics HTTP/1.1\r\n\r\n");
    EXPECT_EQ(reply.status, 200) << "attempt " << i;
    EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  }
  // Room was made by closing the idle connections that waited longest, not by refusing.
  HttpServer::Stats stats = server_->stats();
  EXPECT_GE(stats.connections_evicted, 2000u - 1024u);
  EXPECT_EQ(stats.connections_refused, 0u);
  // The first connection was among the evicted: the server closed it without a word.
  EXPECT_EQ(ReadAll(idle.front()), "");
  for (int fd : idle) {
    close(fd);
  }
}

TEST_F(HttpServerTest, AtTheCapWithEveryConnectionBusyANewcomerGets503) {
  HttpServer::Options options;
  options.max_connections = 2;
  options.stop_timeout = absl::Milliseconds(200);
  auto release = std::make_shared<absl::Notification>();
  std::atomic<int> entered{0};
  server_ = std::make_unique<HttpServer>(options);
  server_->Handle("GET", "/slow", [release, &entered](const HttpRequest&) {
    entered.fetch_add(1);
    release->WaitForNotificationWithTimeout(absl::Seconds(10));
    return TextResponse(200, "slow");
  });
  ASSERT_TRUE(server_->Start("127.0.0.1:0").ok());
  int a = Connect(server_->port());
  int b = Connect(server_->port());
  SendAll(a, "GET /slow HTTP/1.1\r\n\r\n");
  SendAll(b, "GET /slow HTTP/1.1\r\n\r\n");
  ASSERT_TRUE(testing::WaitUntil([&] { return entered.load() == 2; }, absl::Seconds(5)));
  Reply reply = Exchange(server_->port(), "GET /slow HTTP/1.1\r\n\r\n");
  EXPECT_EQ(reply.status, 503);
  EXPECT_EQ(server_->stats().connections_refused, 1u);
  release->Notify();
  EXPECT_EQ(ParseReply(ReadAll(a)).body, "slow\n");
  EXPECT_EQ(ParseReply(ReadAll(b)).body, "slow\n");
  close(a);
  close(b);
}

TEST_F(HttpServerTest, HundredSlowLorisClientsDoNotStarveMetrics) {
  StartServer();  // 10 s to send a head: these never finish within the test
  std::vector<int> slow;
  for (int i = 0; i < 100; ++i) {
    int fd = Connect(port_);
    ASSERT_GE(fd, 0);
    SendAll(fd, "GET /metrics HTTP/1.1\r\nX-Slow: ");
    slow.push_back(fd);
  }
  std::atomic<bool> done{false};
  std::thread trickle([&] {
    while (!done.load()) {
      for (int fd : slow) {
        SendAll(fd, "a");
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
  });
  absl::SleepFor(absl::Milliseconds(100));
  for (int i = 0; i < 10; ++i) {
    absl::Time start = absl::Now();
    EXPECT_EQ(Exchange(port_, "GET /metrics HTTP/1.1\r\n\r\n").status, 200) << "attempt " << i;
    EXPECT_LT(absl::Now() - start, absl::Seconds(3)) << "not held until the 10 s head timeout";
    absl::SleepFor(absl::Milliseconds(30));
  }
  done.store(true);
  trickle.join();
  EXPECT_EQ(calls(), 10);  // only the complete requests reached the handler
  for (int fd : slow) {
    close(fd);
  }
}

TEST_F(HttpServerTest, TricklingBodyIsCutOffAtTheRequestDeadline) {
  HttpServer::Options options;
  options.request_timeout = absl::Milliseconds(300);
  StartServer(options);
  int fd = Connect(port_);
  ASSERT_GE(fd, 0);
  absl::Time start = absl::Now();
  SendAll(fd, "POST /echo HTTP/1.1\r\nContent-Length: 100\r\n\r\nab");
  for (int i = 0; i < 8; ++i) {
    absl::SleepFor(absl::Milliseconds(50));
    SendAll(fd, "c");
  }
  Reply reply = ParseReply(ReadAll(fd));
  close(fd);
  EXPECT_EQ(reply.status, 408);
  EXPECT_THAT(reply.body, HasSubstr("body"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  EXPECT_EQ(calls(), 0);
  EXPECT_GE(server_->stats().timeouts, 1u);
}

TEST_F(HttpServerTest, HeadWithoutEndOverLimitIs431) {
  StartServer();
  // No empty line ever comes: the limit, not the deadline, ends it.
  std::string request = absl::StrCat("GET /metrics HTTP/1.1\r\nX-Long: ", std::string(20000, 'a'));
  absl::Time start = absl::Now();
  EXPECT_EQ(Exchange(port_, request).status, 431);
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
}

TEST(HttpServerStopTest, StopReturnsWithinItsDeadlineWithClientsAndASlowHandler) {
  HttpServer::Options options;
  options.stop_timeout = absl::Milliseconds(300);
  // Owned jointly with the handler: a handler left running by Stop must find it alive.
  auto release = std::make_shared<absl::Notification>();
  auto entered = std::make_shared<absl::Notification>();
  auto server = std::make_unique<HttpServer>(options);
  server->Handle("GET", "/slow", [release, entered](const HttpRequest&) {
    entered->Notify();
    release->WaitForNotificationWithTimeout(absl::Seconds(30));
    return TextResponse(200, "late");
  });
  ASSERT_TRUE(server->Start("127.0.0.1:0").ok());
  const int port = server->port();
  int busy = Connect(port);
  ASSERT_GE(busy, 0);
  SendAll(busy, "GET /slow HTTP/1.1\r\n\r\n");
  std::vector<int> others;
  for (int i = 0; i < 50; ++i) {
    int fd = Connect(port);
    ASSERT_GE(fd, 0);
    SendAll(fd, i % 2 == 0 ? "GET /slow HTTP/1.1\r\nX-Half: " : "");
    others.push_back(fd);
  }
  ASSERT_TRUE(entered->WaitForNotificationWithTimeout(absl::Seconds(5)));
  absl::Time start = absl::Now();
  server->Stop();
  absl::Duration took = absl::Now() - start;
  EXPECT_GE(took, absl::Milliseconds(250));  // it did wait for the handler, up to its deadline
  EXPECT_LT(took, absl::Seconds(1));
  EXPECT_EQ(Connect(port), -1);
  // The busy client's connection was closed without an answer.
  EXPECT_EQ(ReadAll(busy), "");
  server.reset();     // the handler outlives the server
  release->Notify();  // and then finishes, its answer dropped
  close(busy);
  for (int fd : others) {
    close(fd);
  }
}

// ---- TLS ----

// A development CA, a server certificate for 127.0.0.1 and client certificates, made once.
class HttpsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    testing::CommandResult r =
        testing::RunCommand({std::string(VIGIL_TEST_SOURCE_DIR) + "/scripts/dev-ca.sh",
                             dir_->path(), "--user", "alice"},
                            absl::Seconds(60));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    // A second CA and a client certificate from it, which the server must not trust.
    r = testing::RunCommand({std::string(VIGIL_TEST_SOURCE_DIR) + "/scripts/dev-ca.sh",
                             dir_->File("other"), "--user", "mallory"},
                            absl::Seconds(60));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  void StartTls(bool with_ca) {
    HttpServer::Options options;
    options.tls_cert_file = dir_->File("controller.pem");
    options.tls_key_file = dir_->File("controller.key");
    if (with_ca) {
      options.tls_ca_file = dir_->File("ca.pem");
    }
    options.header_timeout = absl::Seconds(2);
    server_ = std::make_unique<HttpServer>(options);
    server_->Handle("GET", "/whoami", [](const HttpRequest& request) {
      return TextResponse(200, absl::StrCat("cn=", request.client_cn));
    });
    absl::Status s = server_->Start("127.0.0.1:0");
    ASSERT_TRUE(s.ok()) << s;
  }

  // One HTTPS request; the reply, or status 0 when the handshake or the exchange failed.
  Reply Https(absl::string_view request, const std::string& cert = "",
              const std::string& key = "") {
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_load_verify_locations(ctx, dir_->File("ca.pem").c_str(), nullptr);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    if (!cert.empty()) {
      SSL_CTX_use_certificate_chain_file(ctx, cert.c_str());
      SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM);
    }
    Reply reply;
    int fd = Connect(server_->port());
    SSL* ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set1_host(ssl, "127.0.0.1");
    if (SSL_connect(ssl) == 1) {
      std::string raw;
      if (SSL_write(ssl, request.data(), static_cast<int>(request.size())) > 0) {
        char buf[4096];
        int n;
        while ((n = SSL_read(ssl, buf, sizeof(buf))) > 0) {
          raw.append(buf, static_cast<size_t>(n));
        }
      }
      reply = ParseReply(raw);
    }
    ERR_clear_error();
    SSL_free(ssl);
    close(fd);
    SSL_CTX_free(ctx);
    return reply;
  }

  static testing::TempDir* dir_;
  std::unique_ptr<HttpServer> server_;
};
testing::TempDir* HttpsTest::dir_ = nullptr;

TEST_F(HttpsTest, VerifiedClientCertificateShowsItsCommonName) {
  StartTls(/*with_ca=*/true);
  Reply reply = Https("GET /whoami HTTP/1.1\r\n\r\n", dir_->File("user-alice.pem"),
                      dir_->File("user-alice.key"));
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.body, "cn=alice\n");
}

TEST_F(HttpsTest, ClientWithoutCertificateGetsNoCommonName) {
  StartTls(/*with_ca=*/true);
  Reply reply = Https("GET /whoami HTTP/1.1\r\n\r\n");
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.body, "cn=\n");
}

TEST_F(HttpsTest, CertificateFromAnotherCaIsRefused) {
  StartTls(/*with_ca=*/true);
  Reply reply = Https("GET /whoami HTTP/1.1\r\n\r\n", dir_->File("other/user-mallory.pem"),
                      dir_->File("other/user-mallory.key"));
  EXPECT_EQ(reply.status, 0);
  EXPECT_TRUE(testing::WaitUntil([&] { return server_->stats().tls_handshake_failures >= 1; },
                                 absl::Seconds(2)));
  // And the server goes on.
  EXPECT_EQ(Https("GET /whoami HTTP/1.1\r\n\r\n").status, 200);
}

TEST_F(HttpsTest, WithoutACaNoCertificateIsAskedForOrShown) {
  StartTls(/*with_ca=*/false);
  Reply reply = Https("GET /whoami HTTP/1.1\r\n\r\n", dir_->File("user-alice.pem"),
                      dir_->File("user-alice.key"));
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.body, "cn=\n");
}

TEST_F(HttpsTest, PlainHttpOnTheTlsPortAndSilenceDoNotHurt) {
  StartTls(/*with_ca=*/true);
  EXPECT_EQ(Exchange(server_->port(), "GET /whoami HTTP/1.1\r\n\r\n").status, 0);
  int silent = Connect(server_->port());  // never starts a handshake
  ASSERT_GE(silent, 0);
  EXPECT_EQ(Https("GET /whoami HTTP/1.1\r\n\r\n").status, 200);
  close(silent);
}

TEST(HttpsStartTest, BadTlsFilesAreErrorsNamingTheFile) {
  HttpServer::Options options;
  options.tls_cert_file = "/nonexistent/cert.pem";
  options.tls_key_file = "/nonexistent/key.pem";
  HttpServer server(options);
  absl::Status status = server.Start("127.0.0.1:0");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("/nonexistent/cert.pem"));
  EXPECT_EQ(server.port(), 0);

  HttpServer::Options only_ca;
  only_ca.tls_ca_file = "/etc/ssl/certs/ca-certificates.crt";
  HttpServer no_cert(only_ca);
  status = no_cert.Start("127.0.0.1:0");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("needs a certificate"));
}

}  // namespace
}  // namespace vigil::http
