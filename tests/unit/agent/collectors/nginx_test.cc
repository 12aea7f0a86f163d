// The nginx log_format compiler against real formats, the tailer across real logrotate runs, and
// the collector's figures.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "agent/collectors/log_format.h"
#include "agent/collectors/log_tailer.h"
#include "agent/collectors/nginx_collector.h"

namespace vigil::agent {
namespace {

LogFormat Compile(absl::string_view format) {
  auto f = LogFormat::Compile(format);
  EXPECT_TRUE(f.ok()) << f.status();
  return *f;
}

TEST(LogFormat, TimedCombined) {
  LogFormat f = Compile(LogFormat::kTimedCombined);
  AccessLogEntry e;
  ASSERT_TRUE(
      f.Parse("127.0.0.1 - - [22/Nov/2026:10:00:00 +0000] \"GET /api/v1/search?q=a%20b HTTP/1.1\" "
              "200 512 \"-\" \"curl/7.88.1\" 0.250",
              &e));
  EXPECT_EQ(e.status, 200);
  EXPECT_DOUBLE_EQ(e.request_time, 0.25);
  EXPECT_EQ(e.method, "GET");
  EXPECT_EQ(e.path, "/api/v1/search");
}

TEST(LogFormat, UpstreamTimesListsAndDashes) {
  LogFormat f = Compile(
      "$remote_addr [$time_local] \"$request\" $status $request_time \"$upstream_response_time\" "
      "${http_x_request_id}");
  AccessLogEntry e;
  ASSERT_TRUE(f.Parse("10.0.0.1 [x] \"POST /pay HTTP/2.0\" 502 1.500 \"0.500, 1.000\" abc", &e));
  EXPECT_EQ(e.status, 502);
  EXPECT_DOUBLE_EQ(e.upstream_response_time, 1.5);
  ASSERT_TRUE(f.Parse("10.0.0.1 [x] \"GET / HTTP/1.1\" 499 0.001 \"-\" -", &e));
  EXPECT_EQ(e.upstream_response_time, -1);
  EXPECT_EQ(e.path, "/");
}

TEST(LogFormat, UpstreamOnlyLatency) {
  LogFormat f = Compile("$status $upstream_response_time");
  AccessLogEntry e;
  ASSERT_TRUE(f.Parse("200 0.2 : 0.3", &e));
  EXPECT_DOUBLE_EQ(e.request_time, 0.5);
}

TEST(LogFormat, OddQuotingInsideFields) {
  LogFormat f = Compile(LogFormat::kTimedCombined);
  AccessLogEntry e;
  // nginx escapes a quote in a header as \x22; a request line may be garbage.
  ASSERT_TRUE(f.Parse(
      "1.2.3.4 - bob [t] \"\\x16\\x03\\x01\" 400 157 \"-\" \"Mozilla \\x22x\\x22 (X11)\" 0.000",
      &e));
  EXPECT_EQ(e.status, 400);
  EXPECT_TRUE(e.path.empty());
  ASSERT_TRUE(f.Parse("1.2.3.4 - - [t] \"GET /a b/c HTTP/1.1\" 404 0 \"-\" \"-\" 0.002", &e));
  EXPECT_EQ(e.path, "/a b/c");
}

TEST(LogFormat, JsonEscapeFormat) {
  LogFormat f = Compile(
      "{\"time\":\"$time_iso8601\",\"request\":\"$request\",\"status\":$status,"
      "\"request_time\":$request_time,\"upstream\":\"$upstream_response_time\",\"ua\":\"$http_user_"
      "agent\"}");
  AccessLogEntry e;
  ASSERT_TRUE(f.Parse(
      "{\"time\":\"2026-11-22T10:00:00+00:00\",\"request\":\"GET /x?y=1 HTTP/1.1\",\"status\":503,"
      "\"request_time\":2.004,\"upstream\":\"2.003\",\"ua\":\"say \\\"hi\\\",\\\"status\\\":1\"}",
      &e));
  EXPECT_EQ(e.status, 503);
  EXPECT_DOUBLE_EQ(e.request_time, 2.004);
  EXPECT_EQ(e.path, "/x");
}

TEST(LogFormat, RefusesFormatsThatCannotServe) {
  EXPECT_FALSE(LogFormat::Compile("$remote_addr $request_time").ok());
  EXPECT_FALSE(LogFormat::Compile("$remote_addr $status").ok());
  EXPECT_FALSE(LogFormat::Compile("$status$request_time").ok());
  EXPECT_FALSE(LogFormat::Compile("${status $request_time").ok());
}

TEST(LogFormat, MalformedLinesDoNotMatch) {
  LogFormat f = Compile(LogFormat::kTimedCombined);
  AccessLogEntry e;
  EXPECT_FALSE(f.Parse("", &e));
  EXPECT_FALSE(f.Parse("garbage", &e));
  EXPECT_FALSE(f.Parse("1.2.3.4 - - [t] \"GET / HTTP/1.1\" abc 0 \"-\" \"-\" 0.1", &e));
  EXPECT_FALSE(f.Parse("1.2.3.4 - - [t] \"GET / HTTP/1.1\" 200 0 \"-\" \"-\"", &e));
}

class TailerTest : public ::testing::Test {
 protected:
  TailerTest() {
    char dir[] = "/tmp/vigil-tail-XXXXXX";
    dir_ = mkdtemp(dir);
    log_ = dir_ + "/access.log";
  }
  ~TailerTest() override { std::filesystem::remove_all(dir_); }
  void Append(const std::string& text) { std::ofstream(log_, std::ios::app) << text; }
  std::vector<std::string> Poll(LogTailer& t) {
    std::vector<std::string> lines;
    EXPECT_TRUE(t.Poll([&](absl::string_view l) { lines.emplace_back(l); }).ok());
    return lines;
  }
  void Logrotate(const std::string& mode) {
    const std::string conf = dir_ + "/logrotate.conf";
    std::ofstream(conf) << log_ << " {\n  rotate 3\n  " << mode << "\n  missingok\n}\n";
    const std::string cmd = absl::StrCat("logrotate -f -s ", dir_, "/state ", conf, " 2>&1");
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  std::string dir_, log_;
};

TEST_F(TailerTest, StartsAtTheEndAndKeepsPartialLines) {
  Append("old line\n");
  LogTailer t(log_);
  EXPECT_TRUE(Poll(t).empty());
  Append("first\nsec");
  EXPECT_EQ(Poll(t), std::vector<std::string>{"first"});
  Append("ond\r\n");
  EXPECT_EQ(Poll(t), std::vector<std::string>{"second"});
}

TEST_F(TailerTest, RealLogrotateRenameAndCreateLosesAndDoublesNothing) {
  Append("");
  LogTailer t(log_);
  Poll(t);
  Append("a1\na2\n");
  EXPECT_EQ(Poll(t).size(), 2u);
  Append("a3\n");  // written before the rotation, read after it
  Logrotate("create");
  ASSERT_TRUE(std::filesystem::exists(log_ + ".1"));
  Append("b1\nb2\n");
  std::vector<std::string> lines = Poll(t);
  EXPECT_EQ(lines, (std::vector<std::string>{"a3", "b1", "b2"}));
  Append("b3\n");
  EXPECT_EQ(Poll(t), std::vector<std::string>{"b3"});
}

TEST_F(TailerTest, RealLogrotateCopytruncateLosesAndDoublesNothing) {
  Append("");
  LogTailer t(log_);
  Poll(t);
  Append("a1\na2\n");
  EXPECT_EQ(Poll(t).size(), 2u);
  Logrotate("copytruncate");
  ASSERT_TRUE(std::filesystem::exists(log_ + ".1"));
  Append("b1\n");
  EXPECT_EQ(Poll(t), std::vector<std::string>{"b1"});
}

TEST_F(TailerTest, MissingFileIsAnErrorUntilItAppears) {
  LogTailer t(log_);
  EXPECT_FALSE(t.Poll([](absl::string_view) {}).ok());
  Append("x\n");
  EXPECT_TRUE(Poll(t).empty()) << "first open starts at the end";
  Append("y\n");
  EXPECT_EQ(Poll(t), std::vector<std::string>{"y"});
}

TEST_F(TailerTest, OverlongLineIsDroppedAndCounted) {
  Append("");
  LogTailer t(log_, false, 100);
  Poll(t);
  Append(std::string(500, 'x') + "\nshort\n");
  EXPECT_EQ(Poll(t), std::vector<std::string>{"short"});
  EXPECT_EQ(t.overlong_lines(), 1u);
}

TEST(NginxCollector, FiguresOfAKnownMix) {
  NginxCollectorOptions options;
  options.access_log = "/nonexistent";
  NginxCollector c(options, *LogFormat::Compile(LogFormat::kTimedCombined));
  Collection first;
  c.Collect(absl::FromUnixSeconds(100), first);
  // 1000 requests: 900 at 0.100 s, 100 at 2.000 s (on /slow), 50 of those 5xx; 7 garbage lines.
  for (int i = 0; i < 1000; ++i) {
    const bool slow = i % 10 == 0;
    c.Observe(absl::StrCat("1.1.1.1 - - [t] \"GET ", slow ? "/slow?x=1" : "/fast", " HTTP/1.1\" ",
                           slow && i % 20 == 0 ? 503 : 200, " 1 \"-\" \"-\" ",
                           slow ? "2.000" : "0.100"));
  }
  for (int i = 0; i < 7; ++i) c.Observe("not an access log line");
  Collection out;
  c.Collect(absl::FromUnixSeconds(102), out);
  std::map<std::string, double> g;
  for (const auto& p : out.gauges) g[p.name] = p.value;
  EXPECT_DOUBLE_EQ(g["nginx_requests_per_second"], 500);
  EXPECT_DOUBLE_EQ(g["nginx_error_ratio"], 0.05);
  EXPECT_DOUBLE_EQ(g["nginx_unparsed_lines"], 7);
  ASSERT_EQ(out.histograms.size(), 1u);
  const LogHistogram& h = out.histograms[0].histogram;
  EXPECT_EQ(h.count(), 1000u);
  EXPECT_NEAR(h.Quantile(0.95), 2.0, 2.0 * 0.01);
  EXPECT_NEAR(h.Quantile(0.50), 0.1, 0.1 * 0.01);
  auto tables = c.Diagnose(absl::FromUnixSeconds(102), {"nginx_slow_endpoints"});
  ASSERT_EQ(tables.size(), 1u);
  ASSERT_GE(tables[0].rows_size(), 2);
  EXPECT_EQ(tables[0].rows(0).cells(0), "/slow");
  EXPECT_EQ(tables[0].rows(0).cells(1), "100");
}

}  // namespace
}  // namespace vigil::agent
