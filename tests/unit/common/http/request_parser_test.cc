// ParseRequestHead and RequestBodyLength on canned heads: what they fill in, and the error
// response for each kind of malformed input.
#include "common/http/request_parser.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace vigil::http {
namespace {

using ::testing::HasSubstr;

// The status of the error response; 0 when the head parsed.
int HeadStatus(absl::string_view head) {
  HttpRequest request;
  std::optional<HttpResponse> error = ParseRequestHead(head, &request);
  return error.has_value() ? error->status : 0;
}

TEST(ParseRequestHeadTest, FillsMethodPathQueryAndHeaders) {
  HttpRequest request;
  ASSERT_EQ(ParseRequestHead("POST /api/v1/alertmanager?x=1&y HTTP/1.1\r\nHost: a\r\n"
                             "Content-Type:  application/json \r\nX-A: 1\r\nx-a: 2",
                             &request),
            std::nullopt);
  EXPECT_EQ(request.method, "POST");
  EXPECT_EQ(request.path, "/api/v1/alertmanager");
  EXPECT_EQ(request.query, "x=1&y");
  EXPECT_EQ(request.Header("host"), "a");
  EXPECT_EQ(request.Header("content-type"), "application/json");
  EXPECT_EQ(request.Header("x-a"), "1, 2");
  EXPECT_EQ(request.Header("absent"), "");
}

TEST(ParseRequestHeadTest, MalformedHeadsAre400Or505) {
  EXPECT_EQ(HeadStatus("GET / HTTP/1.0"), 0);
  EXPECT_EQ(HeadStatus(""), 400);
  EXPECT_EQ(HeadStatus("GET /"), 400);
  EXPECT_EQ(HeadStatus("GET  / HTTP/1.1"), 400);
  EXPECT_EQ(HeadStatus("GET http://x/ HTTP/1.1"), 400);
  EXPECT_EQ(HeadStatus(std::string("GET /a\0b HTTP/1.1", 17)), 400);
  EXPECT_EQ(HeadStatus("G(T / HTTP/1.1"), 400);
  EXPECT_EQ(HeadStatus("GET / HTTP/2.0"), 505);
  EXPECT_EQ(HeadStatus("GET / HTTP/1.1\r\n folded: x"), 400);
  EXPECT_EQ(HeadStatus("GET / HTTP/1.1\r\n: empty name"), 400);
  EXPECT_EQ(HeadStatus("GET / HTTP/1.1\r\nX: a\x01"
                       "b"),
            400);
  HttpRequest request;
  std::optional<HttpResponse> error =
      ParseRequestHead("GET / HTTP/1.1\r\nA: b\r\nno colon", &request);
  ASSERT_TRUE(error.has_value());
  EXPECT_THAT(error->body, HasSubstr("header line 3"));
}

TEST(RequestBodyLengthTest, ContentLengthRules) {
  auto length_of = [](const std::string& method, const std::map<std::string, std::string>& headers,
                      uint64_t* length) {
    HttpRequest request;
    request.method = method;
    request.headers = headers;
    std::optional<HttpResponse> error = RequestBodyLength(request, 1000, length);
    return error.has_value() ? error->status : 0;
  };
  uint64_t length = 99;
  EXPECT_EQ(length_of("GET", {}, &length), 0);
  EXPECT_EQ(length, 0u);
  EXPECT_EQ(length_of("POST", {{"content-length", "1000"}}, &length), 0);
  EXPECT_EQ(length, 1000u);
  EXPECT_EQ(length_of("POST", {{"content-length", "1001"}}, &length), 413);
  EXPECT_EQ(length_of("POST", {}, &length), 411);
  EXPECT_EQ(length_of("POST", {{"transfer-encoding", "chunked"}}, &length), 411);
  EXPECT_EQ(length_of("POST", {{"content-length", "-1"}}, &length), 400);
  EXPECT_EQ(length_of("POST", {{"content-length", "1, 1"}}, &length), 400);
  EXPECT_EQ(length_of("POST", {{"content-length", "99999999999999999999"}}, &length), 400);
  EXPECT_EQ(length, 0u);
}

}  // namespace
}  // namespace vigil::http
