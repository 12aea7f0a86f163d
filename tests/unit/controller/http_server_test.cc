// HttpServer over real sockets on 127.0.0.1: routing, the status codes for bad requests, and that
// silent clients, throwing handlers and Stop() cannot wedge it. The client is a raw socket so that
// the tests can send exactly the bytes (and the silences) they mean to.
#include "controller/http/http_server.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace vigil::controller {
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
  StartServer();  // default 5 s read timeout, two workers
  int silent = Connect(port_);
  ASSERT_GE(silent, 0);
  absl::SleepFor(absl::Milliseconds(50));  // let a worker pick it up
  absl::Time start = absl::Now();
  EXPECT_EQ(Exchange(port_, "GET /metrics HTTP/1.1\r\n\r\n").status, 200);
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  close(silent);
}

TEST_F(HttpServerTest, SilentClientsOnEveryWorkerTimeOutWith408) {
  HttpServer::Options options;
  options.read_timeout = absl::Milliseconds(300);
  options.worker_threads = 2;
  StartServer(options);
  int silent1 = Connect(port_);
  int silent2 = Connect(port_);
  ASSERT_GE(silent1, 0);
  ASSERT_GE(silent2, 0);
  absl::SleepFor(absl::Milliseconds(50));
  // Both workers wait on a silent client: this request is served once their reads time out.
  absl::Time start = absl::Now();
  EXPECT_EQ(Exchange(port_, "GET /metrics HTTP/1.1\r\n\r\n").status, 200);
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  EXPECT_EQ(ParseReply(ReadAll(silent1)).status, 408);
  EXPECT_EQ(ParseReply(ReadAll(silent2)).status, 408);
  close(silent1);
  close(silent2);
}

TEST_F(HttpServerTest, TricklingClientIsCutOffAtTheRequestDeadline) {
  HttpServer::Options options;
  options.read_timeout = absl::Seconds(2);
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
  StartServer();  // 5 s read timeout: Stop must not wait for it
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
    return HttpResponse{200, "text/plain", "x"};
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

}  // namespace
}  // namespace vigil::controller
