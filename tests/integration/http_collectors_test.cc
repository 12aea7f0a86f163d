// The HTTP collectors against real servers on loopback: nginx's stub_status (real nginx), health
// probes through nginx to an upstream that is up, failing or gone (the runbook's 502), http_json
// on recorded Qdrant and Jaeger answers served by the project's HTTP server, hostile servers
// (silent, trickling, oversized, garbage, not JSON), and the Redis key diagnostics on real Redis.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "agent/collectors/http_json_collector.h"
#include "agent/collectors/http_probe_collector.h"
#include "agent/collectors/nginx_status_collector.h"
#include "agent/collectors/redis_collector.h"
#include "common/http/http_server.h"
#include "common/yaml_util.h"
#include "tests/support/servers.h"

namespace vigil::agent {
namespace {

using GaugeKey = std::pair<std::string, Labels>;

std::map<GaugeKey, double> Round(Collector& collector, absl::Time now = absl::Now()) {
  Collection c;
  collector.Collect(now, c);
  std::map<GaugeKey, double> values;
  for (const auto& g : c.gauges) values[{g.name, g.labels}] = g.value;
  return values;
}

double Get(const std::map<GaugeKey, double>& v, const std::string& name, Labels labels = {}) {
  auto it = v.find({name, labels});
  return it == v.end() ? -1 : it->second;
}

bool Has(const std::map<GaugeKey, double>& v, const std::string& name) {
  for (const auto& [key, value] : v) {
    if (key.first == name) return true;
  }
  return false;
}

std::unique_ptr<Collector> Make(CollectorFactory factory, const std::string& yaml) {
  absl::StatusOr<YAML::Node> node = LoadYamlString(yaml, "agent.yaml");
  EXPECT_TRUE(node.ok()) << node.status();
  absl::StatusOr<std::unique_ptr<Collector>> c = factory(*node, "agent.yaml");
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *std::move(c) : nullptr;
}

v1::DiagnosticTable Table(Collector& c, const std::string& name) {
  for (v1::DiagnosticTable& t : c.Diagnose(absl::Now(), {name})) {
    if (t.name() == name) return t;
  }
  ADD_FAILURE() << "no table " << name;
  return {};
}

// A keep-alive connection to nginx left idle after one request: nginx counts it as waiting.
int IdleKeepAlive(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  const std::string request = "GET /static HTTP/1.1\r\nHost: x\r\n\r\n";
  (void)!write(fd, request.data(), request.size());
  char buffer[512];
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, 5000) == 1) {
    (void)!read(fd, buffer, sizeof(buffer));
  }
  return fd;
}

class NginxStatusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(nginx_.ok()) << testing::ReadFileOrEmpty(dir_.File("nginx.log"));
  }
  std::string StubUrl() const {
    return absl::StrCat("http://127.0.0.1:", nginx_.port(), "/stub_status");
  }
  testing::TempDir dir_;
  testing::HttpUpstream upstream_;
  testing::NginxServer nginx_{dir_.path(), upstream_.port()};
};

TEST_F(NginxStatusTest, ConnectionsAndRatesFromRealNginx) {
  auto c = Make(NewNginxStatusCollector, absl::StrCat("url: ", StubUrl(), "\ntimeout: 2s\n"));
  ASSERT_NE(c, nullptr);
  const absl::Time t0 = absl::Now();
  auto first = Round(*c, t0);
  EXPECT_EQ(Get(first, "nginx_status_up"), 1);
  EXPECT_EQ(Get(first, "nginx_status_active_connections"), 0) << "the agent's own is not counted";
  EXPECT_EQ(Get(first, "nginx_status_writing"), 0);
  EXPECT_FALSE(Has(first, "nginx_status_requests_per_second")) << "no rate on the first round";

  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(testing::HttpGet(nginx_.port(), "/static"), 200);
  }
  const int idle = IdleKeepAlive(nginx_.port());
  ASSERT_GE(idle, 0);
  // Rates over a 10 s interval, as Collect is told: 21 requests (20 + the idle connection's one)
  // and 21 connections in 10 s, the agent's own taken out.
  auto second = Round(*c, t0 + absl::Seconds(10));
  EXPECT_EQ(Get(second, "nginx_status_up"), 1);
  EXPECT_DOUBLE_EQ(Get(second, "nginx_status_requests_per_second"), 2.1);
  EXPECT_DOUBLE_EQ(Get(second, "nginx_status_accepts_per_second"), 2.1);
  EXPECT_DOUBLE_EQ(Get(second, "nginx_status_handled_per_second"), 2.1);
  EXPECT_EQ(Get(second, "nginx_status_waiting"), 1);
  EXPECT_EQ(Get(second, "nginx_status_active_connections"), 1);
  close(idle);

  v1::DiagnosticTable table = Table(*c, "nginx_status");
  EXPECT_EQ(table.error(), "");
  ASSERT_GE(table.rows_size(), 8);
  EXPECT_EQ(table.rows(0).cells(0), "active_connections");

  nginx_.Stop();
  auto down = Round(*c, t0 + absl::Seconds(20));
  EXPECT_EQ(Get(down, "nginx_status_up"), 0);
  EXPECT_FALSE(Has(down, "nginx_status_active_connections"));
  EXPECT_NE(Table(*c, "nginx_status").error(), "");
}

TEST_F(NginxStatusTest, AProxiedPageIsNotStubStatus) {
  upstream_.SetRoute("/", absl::ZeroDuration(), 200);
  auto c = Make(NewNginxStatusCollector,
                absl::StrCat("url: http://127.0.0.1:", nginx_.port(), "/\n"));
  EXPECT_EQ(Get(Round(*c), "nginx_status_up"), 0);
  EXPECT_TRUE(absl::StrContains(Table(*c, "nginx_status").error(), "not an nginx stub_status"));
}

// The runbook's 502: nginx answers for an application that is not there.
TEST_F(NginxStatusTest, HealthProbeThroughNginxSeesThe502) {
  upstream_.SetRoute("/health", absl::ZeroDuration(), 200);
  testing::TempDir dead_dir;
  testing::NginxServer dead_nginx(dead_dir.path(), testing::FreeLoopbackPort());
  ASSERT_TRUE(dead_nginx.ok());
  auto c = Make(NewHttpProbeCollector,
                absl::StrCat("targets:\n"
                             "  - {name: api, url: 'http://127.0.0.1:",
                             nginx_.port(), "/health', expect_status: 2xx, timeout: 2s}\n",
                             "  - {name: api-2, url: 'http://127.0.0.1:", dead_nginx.port(),
                             "/health'}\n"));
  auto v = Round(*c);
  EXPECT_EQ(Get(v, "http_probe_up", {{"target", "api"}}), 1);
  EXPECT_EQ(Get(v, "http_probe_status_code", {{"target", "api"}}), 200);
  EXPECT_GT(Get(v, "http_probe_duration_seconds", {{"target", "api"}}), 0);
  EXPECT_LT(Get(v, "http_probe_duration_seconds", {{"target", "api"}}), 2);
  EXPECT_EQ(Get(v, "http_probe_up", {{"target", "api-2"}}), 0);
  EXPECT_EQ(Get(v, "http_probe_status_code", {{"target", "api-2"}}), 502);

  upstream_.SetRoute("/health", absl::ZeroDuration(), 503);
  v = Round(*c);
  EXPECT_EQ(Get(v, "http_probe_up", {{"target", "api"}}), 0);
  EXPECT_EQ(Get(v, "http_probe_status_code", {{"target", "api"}}), 503);

  v1::DiagnosticTable failures = Table(*c, "http_probe_failures");
  ASSERT_EQ(failures.rows_size(), 3) << failures.DebugString();
  // Newest first: this round's api-2 (502 again), this round's api (503), the first api-2.
  EXPECT_EQ(failures.rows(0).cells(1), "api-2");
  EXPECT_EQ(failures.rows(0).cells(3), "502");
  EXPECT_EQ(failures.rows(1).cells(1), "api");
  EXPECT_EQ(failures.rows(1).cells(3), "503");
  EXPECT_TRUE(absl::StrContains(failures.rows(1).cells(4), "expected 200-299"));

  // A target nobody listens on: no status, an error, well within its timeout.
  auto closed = Make(NewHttpProbeCollector,
                     absl::StrCat("targets:\n  - {name: gone, url: 'http://127.0.0.1:",
                                  testing::FreeLoopbackPort(), "/health'}\n"));
  v = Round(*closed);
  EXPECT_EQ(Get(v, "http_probe_up", {{"target", "gone"}}), 0);
  EXPECT_EQ(Get(v, "http_probe_status_code", {{"target", "gone"}}), 0);
  failures = Table(*closed, "http_probe_failures");
  ASSERT_EQ(failures.rows_size(), 1);
  EXPECT_NE(failures.rows(0).cells(4), "");
}

TEST(HttpProbeRingTest, FailuresAreBounded) {
  auto c = Make(NewHttpProbeCollector,
                absl::StrCat("failures_kept: 3\ntargets:\n  - {name: gone, url: "
                             "'http://127.0.0.1:",
                             testing::FreeLoopbackPort(), "/'}\n"));
  for (int i = 0; i < 5; ++i) Round(*c);
  EXPECT_EQ(Table(*c, "http_probe_failures").rows_size(), 3);
}

std::string Fixture(const std::string& name) {
  std::ifstream in(testing::SourcePath("tests/fixtures/http_json/" + name));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Qdrant and Jaeger answer with their recorded bodies (tests/fixtures/http_json/README.md).
class FixtureServer {
 public:
  FixtureServer() {
    Serve("/collections", "qdrant_collections.json");
    Serve("/collections/docs", "qdrant_collection_docs.json");
    server_.Handle("GET", "/api/traces", [](const http::HttpRequest& r) {
      queries_seen.fetch_add(1);
      // Jaeger's query: the service and the duration floor travel in the query string.
      if (!absl::StrContains(r.query, "service=rag-api") ||
          !absl::StrContains(r.query, "minDuration=2s")) {
        return http::TextResponse(400, "bad query");
      }
      http::HttpResponse response;
      response.content_type = "application/json";
      response.body = Fixture("jaeger_traces.json");
      return response;
    });
    EXPECT_TRUE(server_.Start("127.0.0.1:0").ok());
  }
  int port() const { return server_.port(); }
  static inline std::atomic<int> queries_seen{0};

 private:
  void Serve(const std::string& path, const std::string& file) {
    const std::string body = Fixture(file);
    EXPECT_FALSE(body.empty()) << file;
    server_.Handle("GET", path, [body](const http::HttpRequest&) {
      http::HttpResponse response;
      response.content_type = "application/json";
      response.body = body;
      return response;
    });
  }
  http::HttpServer server_;
};

TEST(HttpJsonTest, QdrantAndJaegerFromRecordedAnswers) {
  FixtureServer server;
  const std::string base = absl::StrCat("http://127.0.0.1:", server.port());
  auto c = Make(NewHttpJsonCollector, absl::StrCat(R"(endpoints:
  - name: qdrant
    url: )", base, R"(/collections
    gauges:
      - {metric: qdrant_collections, pointer: /result/collections}
    tables:
      - name: qdrant_collections
        rows: /result/collections
        columns: [{name: name, pointer: /name}]
  - name: qdrant_docs
    url: )", base, R"(/collections/docs
    gauges:
      - {metric: qdrant_points, pointer: /result/points_count, labels: {collection: docs}}
      - {metric: qdrant_indexed_vectors, pointer: /result/indexed_vectors_count,
         labels: {collection: docs}}
      - {metric: qdrant_segments, pointer: /result/segments_count, labels: {collection: docs}}
  - name: jaeger
    url: ')", base, R"(/api/traces?service=rag-api&minDuration=2s&limit=20'
    gauges:
      - {metric: jaeger_slow_traces, pointer: /data}
      - {metric: jaeger_trace_seconds, each: /data, label: trace, key: /traceID,
         pointer: /spans/0/duration, scale: 0.000001}
    tables:
      - name: jaeger_slow_traces
        rows: /data
        max_rows: 20
        columns:
          - {name: trace_id, pointer: /traceID}
          - {name: operation, pointer: /spans/0/operationName}
          - {name: seconds, pointer: /spans/0/duration, scale: 0.000001}
          - {name: spans, pointer: /spans, count: true}
)"));
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->DeclaredMetrics().size(), 6u);
  auto v = Round(*c);
  EXPECT_EQ(Get(v, "http_json_up", {{"endpoint", "qdrant"}}), 1);
  EXPECT_EQ(Get(v, "http_json_up", {{"endpoint", "qdrant_docs"}}), 1);
  EXPECT_EQ(Get(v, "http_json_up", {{"endpoint", "jaeger"}}), 1);
  EXPECT_EQ(Get(v, "qdrant_collections", {{"endpoint", "qdrant"}}), 3);
  const Labels docs = {{"endpoint", "qdrant_docs"}, {"collection", "docs"}};
  EXPECT_EQ(Get(v, "qdrant_points", docs), 1068786);
  EXPECT_EQ(Get(v, "qdrant_indexed_vectors", docs), 1024232);
  EXPECT_EQ(Get(v, "qdrant_segments", docs), 31);
  EXPECT_EQ(Get(v, "jaeger_slow_traces", {{"endpoint", "jaeger"}}), 2);
  EXPECT_DOUBLE_EQ(Get(v, "jaeger_trace_seconds",
                       {{"endpoint", "jaeger"}, {"trace", "5b8aa5a2d2c872e8321cf37308d69df2"}}),
                   3.25);

  v1::DiagnosticTable traces = Table(*c, "jaeger_slow_traces");
  EXPECT_EQ(traces.error(), "");
  ASSERT_EQ(traces.rows_size(), 2);
  EXPECT_EQ(traces.rows(0).cells(1), "POST /api/v1/query");
  EXPECT_EQ(traces.rows(0).cells(2), "3.25");
  EXPECT_EQ(traces.rows(0).cells(3), "2");
  v1::DiagnosticTable collections = Table(*c, "qdrant_collections");
  ASSERT_EQ(collections.rows_size(), 3);
  v1::DiagnosticTable endpoints = Table(*c, "http_json_endpoints");
  ASSERT_EQ(endpoints.rows_size(), 3);
  EXPECT_EQ(endpoints.rows(2).cells(2), "1");
  EXPECT_EQ(endpoints.rows(2).cells(5), "");
}

// A server that misbehaves in one chosen way on every connection.
class HostileServer {
 public:
  enum Mode { kSilent, kTrickle, kHuge, kGarbage, kNotJson };
  explicit HostileServer(Mode mode) : mode_(mode) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    listen(listen_fd_, 16);
    socklen_t len = sizeof(addr);
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] {
      while (!stopping_) {
        pollfd p{listen_fd_, POLLIN, 0};
        if (poll(&p, 1, 50) != 1) continue;
        int fd = accept(listen_fd_, nullptr, nullptr);
        if (fd < 0) continue;
        absl::MutexLock lock(&mu_);
        workers_.emplace_back([this, fd] { Misbehave(fd); });
      }
    });
  }
  ~HostileServer() {
    stopping_ = true;
    acceptor_.join();
    absl::MutexLock lock(&mu_);
    for (std::thread& t : workers_) t.join();
    close(listen_fd_);
  }
  uint16_t port() const { return port_; }

 private:
  void Misbehave(int fd) {
    char buffer[4096];
    (void)!read(fd, buffer, sizeof(buffer));
    auto send_all = [&](absl::string_view data) {
      return send(fd, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(data.size());
    };
    switch (mode_) {
      case kSilent:
        while (!stopping_) absl::SleepFor(absl::Milliseconds(20));
        break;
      case kTrickle:
        send_all("HTTP/1.1 200 OK\r\n");
        while (!stopping_ && send_all("X")) absl::SleepFor(absl::Milliseconds(50));
        break;
      case kHuge: {
        send_all("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n[");
        const std::string block(64 * 1024, '1');
        while (!stopping_ && send_all(block)) {
        }
        break;
      }
      case kGarbage: {
        std::string noise;
        for (int i = 0; i < 3000; ++i) noise += static_cast<char>((i * 131 + 7) % 256);
        send_all(noise);
        break;
      }
      case kNotJson: {
        const std::string body = "<html><body>502 Bad Gateway</body></html>\n";
        send_all(absl::StrCat("HTTP/1.1 200 OK\r\nContent-Length: ", body.size(), "\r\n\r\n",
                              body));
        break;
      }
    }
    close(fd);
  }
  Mode mode_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  absl::Mutex mu_;
  std::vector<std::thread> workers_ ABSL_GUARDED_BY(mu_);
};

// Every hostile answer ends as _up = 0 with an error in the diagnostic, within the timeout.
TEST(HostileHttpTest, EveryCollectorStaysBoundedAndDown) {
  for (HostileServer::Mode mode : {HostileServer::kSilent, HostileServer::kTrickle,
                                   HostileServer::kHuge, HostileServer::kGarbage,
                                   HostileServer::kNotJson}) {
    SCOPED_TRACE(absl::StrCat("mode ", static_cast<int>(mode)));
    HostileServer server(mode);
    const std::string url = absl::StrCat("http://127.0.0.1:", server.port(), "/x");
    auto probe = Make(NewHttpProbeCollector,
                      absl::StrCat("targets:\n  - {name: h, url: '", url, "', timeout: 400ms}\n"));
    auto status = Make(NewNginxStatusCollector, absl::StrCat("url: ", url, "\ntimeout: 400ms\n"));
    auto json = Make(NewHttpJsonCollector,
                     absl::StrCat("endpoints:\n  - {name: h, url: '", url,
                                  "', timeout: 400ms, gauges: [{metric: h_x, pointer: /x}]}\n"));
    ASSERT_TRUE(probe && status && json);
    for (Collector* c : {probe.get(), status.get(), json.get()}) {
      const absl::Time start = absl::Now();
      auto v = Round(*c);
      const absl::Duration took = absl::Now() - start;
      EXPECT_LT(took, absl::Milliseconds(1400)) << c->name();
      double up = -1;
      for (const auto& [key, value] : v) {
        if (absl::EndsWith(key.first, "_up")) up = value;
      }
      // An HTML page with 200 is a live server to a probe, but neither stub_status nor JSON.
      const bool live = mode == HostileServer::kNotJson && c == probe.get();
      EXPECT_EQ(up, live ? 1 : 0) << c->name();
    }
    v1::DiagnosticTable failures = Table(*probe, "http_probe_failures");
    ASSERT_EQ(failures.rows_size(), mode == HostileServer::kNotJson ? 0 : 1) << "an HTML 200 is up";
    if (failures.rows_size() == 1) {
      EXPECT_NE(failures.rows(0).cells(4), "");
    }
    EXPECT_NE(Table(*status, "nginx_status").error(), "");
    v1::DiagnosticTable endpoints = Table(*json, "http_json_endpoints");
    ASSERT_EQ(endpoints.rows_size(), 1);
    EXPECT_NE(endpoints.rows(0).cells(5), "");
  }
}

class RedisKeysTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.ok()); }
  std::unique_ptr<Collector> Redis(const std::string& extra) {
    return Make(NewRedisCollector,
                absl::StrCat("address: 127.0.0.1:", server_.port(), "\n", extra));
  }
  void Cli(std::vector<std::string> args) {
    testing::CommandResult r = server_.Cli(std::move(args));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  testing::TempDir dir_;
  testing::RedisServer server_{dir_.path()};
};

TEST_F(RedisKeysTest, MemoryDetailAndCeleryQueues) {
  Cli({"RPUSH", "celery", "a", "b", "c"});
  Cli({"RPUSH", "priority", "x"});
  Cli({"SET", "notalist", "1"});
  Cli({"CONFIG", "SET", "maxmemory", "104857600"});
  Cli({"CONFIG", "SET", "maxmemory-policy", "allkeys-lru"});
  auto c = Redis("celery_queues: [celery, priority, empty, notalist]\n");
  const absl::Time t0 = absl::Now();
  auto v = Round(*c, t0);
  EXPECT_EQ(Get(v, "celery_queue_length", {{"queue", "celery"}}), 3);
  EXPECT_EQ(Get(v, "celery_queue_length", {{"queue", "priority"}}), 1);
  EXPECT_EQ(Get(v, "celery_queue_length", {{"queue", "empty"}}), 0) << "a drained queue";
  EXPECT_EQ(Get(v, "celery_queue_length", {{"queue", "notalist"}}), -1) << "WRONGTYPE: no gauge";
  EXPECT_EQ(Get(v, "redis_maxmemory_bytes"), 104857600);
  EXPECT_GT(Get(v, "redis_used_memory_rss_bytes"), 0);
  EXPECT_GT(Get(v, "redis_used_memory_peak_bytes"), 0);
  EXPECT_GT(Get(v, "redis_mem_fragmentation_ratio"), 0);
  EXPECT_FALSE(Has(v, "redis_evicted_keys_per_second")) << "no rate on the first round";
  v = Round(*c, t0 + absl::Seconds(10));
  EXPECT_EQ(Get(v, "redis_evicted_keys_per_second"), 0);
  EXPECT_EQ(Get(v, "redis_ops_per_second"), 0) << "our INFO and LLENs are not traffic";

  v1::DiagnosticTable memory = Table(*c, "redis_memory");
  std::map<std::string, std::string> fields;
  for (const auto& row : memory.rows()) fields[row.cells(0)] = row.cells(1);
  EXPECT_EQ(fields["maxmemory_policy"], "allkeys-lru");
  EXPECT_EQ(fields["maxmemory"], "104857600");
}

TEST_F(RedisKeysTest, TtlSampleIsBoundedAndBucketed) {
  // 30 keys without a TTL, 20 expiring within a minute, 10 within an hour.
  std::vector<std::string> mset = {"MSET"};
  for (int i = 0; i < 60; ++i) {
    mset.push_back(absl::StrCat("k", i));
    mset.push_back("v");
  }
  Cli(mset);
  Cli({"EVAL",
       "for i = 30, 49 do redis.call('EXPIRE', 'k' .. i, 30) end "
       "for i = 50, 59 do redis.call('EXPIRE', 'k' .. i, 600) end",
       "0"});
  auto c = Redis("ttl_sample_keys: 1000\n");
  v1::DiagnosticTable table = Table(*c, "redis_ttl_sample");
  ASSERT_EQ(table.error(), "");
  std::map<std::string, std::string> counts;
  for (const auto& row : table.rows()) counts[row.cells(0)] = row.cells(1);
  EXPECT_EQ(counts["no_ttl"], "30");
  EXPECT_EQ(counts["<1m"], "20");
  EXPECT_EQ(counts["1m-1h"], "10");
  EXPECT_EQ(counts["sampled"], "60");
  EXPECT_EQ(table.rows(table.rows_size() - 1).cells(3), "whole keyspace");

  auto bounded = Redis("ttl_sample_keys: 25\n");
  table = Table(*bounded, "redis_ttl_sample");
  counts.clear();
  for (const auto& row : table.rows()) counts[row.cells(0)] = row.cells(1);
  EXPECT_EQ(counts["sampled"], "25");
  EXPECT_EQ(table.rows(table.rows_size() - 1).cells(3), "stopped at 25 keys");
}

TEST_F(RedisKeysTest, RateLimitKeysWithValuesTruncatedAndRedacted) {
  Cli({"SET", "azals:ratelimit:platform:10.0.0.7", "57", "EX", "60"});
  Cli({"SET", "azals:ratelimit:platform:10.0.0.8", std::string(300, '9')});
  Cli({"SET", "azals:ratelimit:platform:leak", "token=s3cr3t-value"});
  Cli({"HSET", "azals:ratelimit:platform:h", "a", "1", "b", "2"});
  Cli({"SET", "azals:session:1", "other"});
  auto c = Redis(
      "key_patterns: ['azals:ratelimit:platform:*']\nmax_value_bytes: 32\nttl_sample_keys: 0\n");
  std::vector<std::string> names = c->DiagnosticNames();
  EXPECT_EQ(std::count(names.begin(), names.end(), "redis_ttl_sample"), 0);
  v1::DiagnosticTable table = Table(*c, "redis_keys");
  ASSERT_EQ(table.error(), "");
  std::map<std::string, std::vector<std::string>> rows;
  for (const auto& row : table.rows()) {
    rows[row.cells(1)] = {row.cells().begin(), row.cells().end()};
  }
  ASSERT_EQ(rows.size(), 4u) << table.DebugString();
  EXPECT_EQ(rows["azals:ratelimit:platform:10.0.0.7"][2], "string");
  EXPECT_EQ(rows["azals:ratelimit:platform:10.0.0.7"][4], "57");
  EXPECT_GT(std::stod(rows["azals:ratelimit:platform:10.0.0.7"][3]), 50);
  EXPECT_EQ(rows["azals:ratelimit:platform:10.0.0.8"][3], "none");
  EXPECT_LE(rows["azals:ratelimit:platform:10.0.0.8"][4].size(), 32u);
  EXPECT_TRUE(absl::EndsWith(rows["azals:ratelimit:platform:10.0.0.8"][4], "..."));
  EXPECT_FALSE(absl::StrContains(rows["azals:ratelimit:platform:leak"][4], "s3cr3t"));
  EXPECT_EQ(rows["azals:ratelimit:platform:h"][2], "hash");
  EXPECT_EQ(rows["azals:ratelimit:platform:h"][4], "length 2");

  auto few = Redis("key_patterns: ['azals:ratelimit:platform:*']\nmax_pattern_keys: 2\n");
  table = Table(*few, "redis_keys");
  ASSERT_EQ(table.rows_size(), 3) << "two keys and a row saying more were not shown";
  EXPECT_EQ(table.rows(2).cells(1), "(more keys not shown)");
}

TEST_F(RedisKeysTest, StoppedServerGivesErrorsNotHangs) {
  auto c = Redis("key_patterns: ['x:*']\ncelery_queues: [celery]\n");
  EXPECT_EQ(Get(Round(*c), "redis_up"), 1);
  server_.Stop();
  EXPECT_EQ(Get(Round(*c), "redis_up"), 0);
  for (const auto& t : c->Diagnose(absl::Now(), {"redis_keys", "redis_ttl_sample", "redis_memory"})) {
    EXPECT_NE(t.error(), "") << t.name();
  }
}

}  // namespace
}  // namespace vigil::agent
