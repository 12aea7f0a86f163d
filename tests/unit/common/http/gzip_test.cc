// gzip for responses: what Accept-Encoding values mean, a round trip through zlib's own inflate
// (small, empty, and larger than the first output guess), and when a response is left alone.
#include "common/http/gzip.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"

namespace vigil::http {
namespace {

std::string Gunzip(const std::string& data) {
  z_stream stream{};
  EXPECT_EQ(inflateInit2(&stream, 15 + 16), Z_OK);
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  stream.avail_in = static_cast<uInt>(data.size());
  std::string out;
  char buffer[65536];
  int rc = Z_OK;
  while (rc == Z_OK) {
    stream.next_out = reinterpret_cast<Bytef*>(buffer);
    stream.avail_out = sizeof(buffer);
    rc = inflate(&stream, Z_NO_FLUSH);
    out.append(buffer, sizeof(buffer) - stream.avail_out);
  }
  EXPECT_EQ(rc, Z_STREAM_END) << "not one whole gzip member";
  EXPECT_EQ(stream.avail_in, 0u) << "bytes after the gzip member";
  inflateEnd(&stream);
  return out;
}

TEST(GzipTest, AcceptEncodingValues) {
  EXPECT_TRUE(AcceptsGzip("gzip"));
  EXPECT_TRUE(AcceptsGzip("deflate, GZIP;q=0.5"));
  EXPECT_TRUE(AcceptsGzip("br, *"));
  EXPECT_FALSE(AcceptsGzip(""));
  EXPECT_FALSE(AcceptsGzip("identity"));
  EXPECT_FALSE(AcceptsGzip("gzip;q=0"));
  EXPECT_FALSE(AcceptsGzip("gzip; q=0.0, deflate"));
  EXPECT_FALSE(AcceptsGzip("x-gzip2"));
}

TEST(GzipTest, RoundTripsSmallEmptyAndPagesBeyondTheFirstGuess) {
  // Random bytes do not compress: the output outgrows the first guess (an eighth) many times.
  std::mt19937 rng(3);
  std::string random(3 << 20, '\0');
  for (char& c : random) {
    c = static_cast<char>(rng());
  }
  std::string page;
  for (int i = 0; i < 100'000; ++i) {
    absl::StrAppend(&page, "host_cpu_usage_ratio{agent=\"web-", i, "\",role=\"api\"} 0.", i % 97,
                    "\n");
  }
  for (const std::string& input : {std::string(), std::string("x"), random, page}) {
    absl::StatusOr<std::string> compressed = GzipCompress(input);
    ASSERT_TRUE(compressed.ok()) << compressed.status();
    EXPECT_EQ(Gunzip(*compressed), input) << input.size() << " bytes";
  }
  absl::StatusOr<std::string> compressed = GzipCompress(page);
  ASSERT_TRUE(compressed.ok());
  EXPECT_LT(compressed->size() * 5, page.size()) << "a page of series is repetitive text";
}

TEST(GzipTest, OnlyLargeOkResponsesToClientsThatTakeIt) {
  HttpRequest takes;
  takes.headers["accept-encoding"] = "gzip";
  HttpRequest plain;
  const std::string body(4096, 'a');

  HttpResponse ok{.status = 200, .body = body};
  MaybeGzip(takes, ok);
  EXPECT_EQ(Gunzip(ok.body), body);
  EXPECT_NE(std::find(ok.headers.begin(), ok.headers.end(),
                      std::pair<std::string, std::string>("Content-Encoding", "gzip")),
            ok.headers.end());

  for (auto [request, response] :
       {std::pair{plain, HttpResponse{.status = 200, .body = body}},
        std::pair{takes, HttpResponse{.status = 503, .body = body}},
        std::pair{takes, HttpResponse{.status = 200, .body = "short"}}}) {
    const std::string before = response.body;
    MaybeGzip(request, response);
    EXPECT_EQ(response.body, before);
    for (const auto& [name, value] : response.headers) {
      EXPECT_NE(name, "Content-Encoding");
    }
  }
}

}  // namespace
}  // namespace vigil::http
