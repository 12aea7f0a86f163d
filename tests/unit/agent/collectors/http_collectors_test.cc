// Pure pieces of the HTTP collectors and the Redis key diagnostics: JSON pointers (RFC 6901),
// JSON to gauges and tables on recorded Qdrant and Jaeger answers, stub_status text, status
// ranges, TTL buckets, cells, and strict config errors naming file, line and key.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/collectors/cells.h"
#include "agent/collectors/http_json_collector.h"
#include "agent/collectors/http_probe_collector.h"
#include "agent/collectors/json_values.h"
#include "agent/collectors/nginx_status_collector.h"
#include "agent/collectors/redis_collector.h"
#include "common/yaml_util.h"

namespace vigil::agent {
namespace {

using google::protobuf::Value;

std::string Fixture(const std::string& name) {
  const char* dir = std::getenv("VIGIL_SOURCE_DIR");
  std::ifstream in(std::string(dir != nullptr ? dir : VIGIL_TEST_SOURCE_DIR) +
                   "/tests/fixtures/http_json/" + name);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

Value Json(absl::string_view text) {
  absl::StatusOr<Value> v = ParseJsonDocument(text, "test", 1 << 20);
  EXPECT_TRUE(v.ok()) << v.status();
  return v.ok() ? *v : Value();
}

const Value* At(const Value& root, absl::string_view pointer) {
  absl::StatusOr<std::vector<std::string>> tokens = ParseJsonPointer(pointer);
  EXPECT_TRUE(tokens.ok()) << tokens.status();
  return tokens.ok() ? EvaluateJsonPointer(root, *tokens) : nullptr;
}

// The example document and pointers of RFC 6901 section 5.
TEST(JsonPointerTest, Rfc6901Examples) {
  const Value doc = Json(R"({"foo": ["bar", "baz"], "": 0, "a/b": 1, "c%d": 2, "e^f": 3,
                             "g|h": 4, "i\\j": 5, "k\"l": 6, " ": 7, "m~n": 8})");
  ASSERT_NE(At(doc, ""), nullptr);
  EXPECT_EQ(At(doc, "")->struct_value().fields_size(), 10);
  EXPECT_EQ(At(doc, "/foo")->list_value().values_size(), 2);
  EXPECT_EQ(At(doc, "/foo/0")->string_value(), "bar");
  EXPECT_EQ(At(doc, "/foo/1")->string_value(), "baz");
  const std::vector<std::pair<std::string, double>> numbers = {
      {"/", 0},    {"/a~1b", 1}, {"/c%d", 2},    {"/e^f", 3}, {"/g|h", 4},
      {"/i\\j", 5}, {"/k\"l", 6}, {"/ ", 7},     {"/m~0n", 8}};
  for (const auto& [pointer, want] : numbers) {
    const Value* v = At(doc, pointer);
    ASSERT_NE(v, nullptr) << pointer;
    EXPECT_EQ(v->number_value(), want) << pointer;
  }
}

TEST(JsonPointerTest, WhatDoesNotExistIsNull) {
  const Value doc = Json(R"({"foo": ["bar", "baz"], "n": 1})");
  for (const char* pointer : {"/missing", "/foo/2", "/foo/-", "/foo/01", "/foo/-1", "/foo/+1",
                              "/foo/0/x", "/n/0", "/foo/99999999999999999999"}) {
    EXPECT_EQ(At(doc, pointer), nullptr) << pointer;
  }
}

TEST(JsonPointerTest, MalformedPointersAreRefused) {
  for (const char* pointer : {"foo", "/a~2", "/a~", "~1"}) {
    EXPECT_FALSE(ParseJsonPointer(pointer).ok()) << pointer;
  }
  std::string deep;
  for (size_t i = 0; i <= kMaxPointerTokens; ++i) deep += "/a";
  EXPECT_FALSE(ParseJsonPointer(deep).ok());
  EXPECT_EQ(*ParseJsonPointer("/a~01"), (std::vector<std::string>{"a~1"}))
      << "~01 is '~' then '1', not '/'";
}

TEST(JsonValuesTest, NumbersCellsAndBadDocuments) {
  const Value doc = Json(R"({"n": 2.5, "t": true, "s": "42", "x": "4x", "z": null,
                             "a": [1, 2, 3], "o": {"k": 1}, "u": "\u00e9\u00e9\u00e9\u00e9"})");
  EXPECT_EQ(*JsonValueAsNumber(*At(doc, "/n")), 2.5);
  EXPECT_EQ(*JsonValueAsNumber(*At(doc, "/t")), 1);
  EXPECT_EQ(*JsonValueAsNumber(*At(doc, "/s")), 42);
  EXPECT_EQ(*JsonValueAsNumber(*At(doc, "/a")), 3);
  EXPECT_EQ(*JsonValueAsNumber(*At(doc, "/o")), 1);
  EXPECT_FALSE(JsonValueAsNumber(*At(doc, "/x")).ok());
  EXPECT_FALSE(JsonValueAsNumber(*At(doc, "/z")).ok());
  EXPECT_EQ(JsonValueAsCell(*At(doc, "/a"), 100), "[1,2,3]");
  EXPECT_EQ(JsonValueAsCell(*At(doc, "/n"), 100), "2.5");
  EXPECT_EQ(JsonValueAsCell(*At(doc, "/z"), 100), "");
  // Cut on a character boundary, never inside "é" (2 bytes).
  EXPECT_EQ(JsonValueAsCell(*At(doc, "/u"), 6), "\xc3\xa9...");
  EXPECT_EQ(JsonValueAsCell(Json("1764540000000000"), 100), "1764540000000000");

  EXPECT_FALSE(ParseJsonDocument("{\"a\": ", "x", 100).ok());
  EXPECT_FALSE(ParseJsonDocument("<html>502 Bad Gateway</html>", "x", 100).ok());
  EXPECT_TRUE(absl::StrContains(ParseJsonDocument("[1, 2]", "src", 3).status().message(),
                                "over the limit"));
  // Nesting is refused before protobuf's transcoder, which takes time quadratic in the depth.
  auto nested = [](size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); };
  EXPECT_TRUE(ParseJsonDocument(nested(kMaxJsonNesting), "x", 1 << 20).ok());
  absl::StatusOr<Value> deep = ParseJsonDocument(nested(500000), "x", 1 << 20);
  ASSERT_FALSE(deep.ok());
  EXPECT_TRUE(absl::StrContains(deep.status().message(), "nests deeper than 48 levels at byte 48"))
      << deep.status();
  EXPECT_TRUE(ParseJsonDocument(absl::StrCat("[\"", std::string(100, '['), "\\\"{\"]"), "x", 1000)
                  .ok())
      << "brackets inside strings, after an escaped quote, are text";
}

TEST(JsonValuesTest, QdrantCollectionsGiveCountAndPointsGauges) {
  const Value list = Json(Fixture("qdrant_collections.json"));
  Collection out;
  JsonGaugeSpec count;
  count.metric = "qdrant_collections";
  count.pointer = *ParseJsonPointer("/result/collections");
  EXPECT_TRUE(ExtractJsonGauges(list, count, {{"endpoint", "qdrant"}}, out).empty());
  ASSERT_EQ(out.gauges.size(), 1u);
  EXPECT_EQ(out.gauges[0].value, 3);
  EXPECT_EQ(out.gauges[0].labels.at("endpoint"), "qdrant");

  // One gauge per element, labelled by a pointer into it (here the name's length stands in for
  // a per-collection number, to check the element pointer).
  JsonGaugeSpec each;
  each.metric = "qdrant_collection_name_bytes";
  each.each = true;
  each.each_pointer = *ParseJsonPointer("/result/collections");
  each.label = "collection";
  each.key_is_name = false;
  each.key = *ParseJsonPointer("/name");
  each.pointer = *ParseJsonPointer("/missing");
  each.max_elements = 2;
  out.gauges.clear();
  std::vector<std::string> errors = ExtractJsonGauges(list, each, {}, out);
  EXPECT_EQ(errors.size(), 2u) << "bounded to 2 elements, each missing its value";
  EXPECT_TRUE(out.gauges.empty());

  const Value info = Json(Fixture("qdrant_collection_docs.json"));
  JsonGaugeSpec points;
  points.metric = "qdrant_points";
  points.pointer = *ParseJsonPointer("/result/points_count");
  points.labels = {{"collection", "docs"}};
  out.gauges.clear();
  EXPECT_TRUE(ExtractJsonGauges(info, points, {}, out).empty());
  ASSERT_EQ(out.gauges.size(), 1u);
  EXPECT_EQ(out.gauges[0].value, 1068786);
  EXPECT_EQ(out.gauges[0].labels.at("collection"), "docs");

  // An object's members, keyed by member name: HNSW settings as gauges.
  JsonGaugeSpec members;
  members.metric = "qdrant_hnsw";
  members.each = true;
  members.each_pointer = *ParseJsonPointer("/result/config/hnsw_config");
  members.label = "setting";
  out.gauges.clear();
  EXPECT_TRUE(ExtractJsonGauges(info, members, {}, out).empty());
  ASSERT_EQ(out.gauges.size(), 4u);
  EXPECT_EQ(out.gauges[0].labels.at("setting"), "ef_construct") << "members in name order";
  EXPECT_EQ(out.gauges[0].value, 100);
}

TEST(JsonValuesTest, JaegerSlowTracesBecomeATable) {
  const Value traces = Json(Fixture("jaeger_traces.json"));
  JsonTableSpec spec;
  spec.name = "jaeger_slow_traces";
  spec.rows = *ParseJsonPointer("/data");
  spec.columns = {{"trace_id", *ParseJsonPointer("/traceID")},
                  {"operation", *ParseJsonPointer("/spans/0/operationName")},
                  {"seconds", *ParseJsonPointer("/spans/0/duration"), false, 1e-6},
                  {"spans", *ParseJsonPointer("/spans"), true},
                  {"service", *ParseJsonPointer("/processes/p1/serviceName")}};
  v1::DiagnosticTable table = ExtractJsonTable(traces, spec);
  EXPECT_EQ(table.error(), "");
  ASSERT_EQ(table.rows_size(), 2);
  EXPECT_EQ(table.rows(0).cells(0), "5b8aa5a2d2c872e8321cf37308d69df2");
  EXPECT_EQ(table.rows(0).cells(1), "POST /api/v1/query");
  EXPECT_EQ(table.rows(0).cells(2), "3.25");
  EXPECT_EQ(table.rows(0).cells(3), "2");
  EXPECT_EQ(table.rows(0).cells(4), "rag-api");
  EXPECT_EQ(table.rows(1).cells(2), "2.15");

  spec.max_rows = 1;
  EXPECT_EQ(ExtractJsonTable(traces, spec).rows_size(), 1);
  spec.rows = *ParseJsonPointer("/total");
  EXPECT_NE(ExtractJsonTable(traces, spec).error(), "");
}

TEST(JsonValuesTest, TableCellsAreRedacted) {
  const Value doc = Json(R"({"rows": [{"q": "postgres://app:hunter2@db/x"}]})");
  JsonTableSpec spec;
  spec.name = "t";
  spec.rows = {"rows"};
  spec.columns = {{"q", {"q"}}};
  v1::DiagnosticTable table = ExtractJsonTable(doc, spec);
  ASSERT_EQ(table.rows_size(), 1);
  EXPECT_FALSE(absl::StrContains(table.rows(0).cells(0), "hunter2")) << table.DebugString();
}

TEST(StubStatusTest, ParsesNginxPage) {
  absl::StatusOr<StubStatus> s = ParseStubStatus(
      "Active connections: 291 \nserver accepts handled requests\n 16630948 16630947 31070465 \n"
      "Reading: 6 Writing: 179 Waiting: 106 \n");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->active, 291u);
  EXPECT_EQ(s->accepts, 16630948u);
  EXPECT_EQ(s->handled, 16630947u);
  EXPECT_EQ(s->requests, 31070465u);
  EXPECT_EQ(s->reading, 6u);
  EXPECT_EQ(s->writing, 179u);
  EXPECT_EQ(s->waiting, 106u);
}

TEST(StubStatusTest, RefusesWhatIsNotStubStatus) {
  for (const char* text :
       {"", "<html><body>502 Bad Gateway</body></html>",
        "Active connections: x\nserver accepts handled requests\n 1 1 1\nReading: 0 Writing: 1 "
        "Waiting: 0\n",
        "Active connections: 1\nserver accepts handled requests\n 1 1\nReading: 0 Writing: 1 "
        "Waiting: 0\n",
        "Active connections: 1\nserver accepts handled requests\n 1 1 1\nReading: 0 Writing: 1\n",
        "Active connections: -1\nserver accepts handled requests\n 1 1 1\nReading: 0 Writing: 1 "
        "Waiting: 0\n"}) {
    EXPECT_FALSE(ParseStubStatus(text).ok()) << text;
  }
  EXPECT_FALSE(ParseStubStatus(std::string(5000, ' ')).ok());
}

TEST(HttpProbeTest, StatusRanges) {
  int lo = 0, hi = 0;
  ASSERT_TRUE(ParseStatusRange("200", &lo, &hi).ok());
  EXPECT_EQ(lo, 200);
  EXPECT_EQ(hi, 200);
  ASSERT_TRUE(ParseStatusRange("2xx", &lo, &hi).ok());
  EXPECT_EQ(lo, 200);
  EXPECT_EQ(hi, 299);
  ASSERT_TRUE(ParseStatusRange("200-399", &lo, &hi).ok());
  EXPECT_EQ(hi, 399);
  for (const char* bad : {"", "abc", "99", "600", "300-200", "200-", "-200", "6xx", "2x"}) {
    EXPECT_FALSE(ParseStatusRange(bad, &lo, &hi).ok()) << bad;
  }
}

TEST(RedisKeysTest, TtlBucketsAndCells) {
  EXPECT_STREQ(kRedisTtlBuckets[RedisTtlBucket(-1)], "no_ttl");
  EXPECT_STREQ(kRedisTtlBuckets[RedisTtlBucket(-2)], "gone");
  EXPECT_STREQ(kRedisTtlBuckets[RedisTtlBucket(59'999)], "<1m");
  EXPECT_STREQ(kRedisTtlBuckets[RedisTtlBucket(60'000)], "1m-1h");
  EXPECT_STREQ(kRedisTtlBuckets[RedisTtlBucket(3'600'000)], "1h-1d");
  EXPECT_STREQ(kRedisTtlBuckets[RedisTtlBucket(86'400'000)], ">=1d");
  EXPECT_EQ(PrintableCell(std::string("a\0b\xff", 4), 64), "a\\x00b\\xff");
  EXPECT_EQ(PrintableCell(std::string(100, 'x'), 10), "xxxxxxx...");
  EXPECT_FALSE(absl::StrContains(PrintableCell("token=s3cr3t", 64), "s3cr3t"));
}

// Config errors name the file, the line and the key.
std::string ConfigError(CollectorFactory factory, const std::string& yaml) {
  absl::StatusOr<YAML::Node> node = LoadYamlString(yaml, "agent.yaml");
  EXPECT_TRUE(node.ok());
  absl::StatusOr<std::unique_ptr<Collector>> c = factory(*node, "agent.yaml");
  return c.ok() ? "" : std::string(c.status().message());
}

TEST(HttpCollectorConfigTest, ErrorsNameFileLineAndKey) {
  struct Case {
    CollectorFactory factory;
    std::string yaml;
    std::vector<std::string> want;
  };
  const std::vector<Case> cases = {
      {NewHttpProbeCollector, "targets:\n  - {name: api, url: http://127.0.0.1:1/health, bogus: 1}\n",
       {"agent.yaml:2", "bogus"}},
      {NewHttpProbeCollector, "targets:\n  - name: api\n    url: ftp://x/\n", {"agent.yaml:3", "url"}},
      {NewHttpProbeCollector,
       "targets:\n  - name: api\n    url: http://127.0.0.1:1/\n    expect_status: 7xx\n",
       {"agent.yaml:4", "expect_status"}},
      {NewHttpProbeCollector,
       "targets:\n  - name: api\n    url: http://127.0.0.1:1/\n    timeout: 5m\n",
       {"agent.yaml:4", "timeout"}},
      {NewHttpProbeCollector, "targets: []\n", {"agent.yaml:1", "targets"}},
      {NewHttpProbeCollector,
       "targets:\n  - {name: a, url: 'http://127.0.0.1:1/'}\n  - {name: a, url: "
       "'http://127.0.0.1:1/'}\n",
       {"agent.yaml:3", "unique"}},
      {NewNginxStatusCollector, "{}\n", {"agent.yaml", "url"}},
      {NewNginxStatusCollector, "url: http://127.0.0.1:1/stub_status\nmax_response_bytes: 10\n",
       {"agent.yaml:2", "max_response_bytes"}},
      {NewNginxStatusCollector, "url: http://127.0.0.1:1/\ntls_ca: /etc/hostname\n",
       {"agent.yaml:2", "not https"}},
      {NewHttpJsonCollector,
       "endpoints:\n  - name: q\n    url: http://127.0.0.1:1/\n    gauges:\n      - metric: "
       "redis_up\n        pointer: /a\n",
       {"agent.yaml:5", "built-in schema"}},
      {NewHttpJsonCollector,
       "endpoints:\n  - name: q\n    url: http://127.0.0.1:1/\n    gauges:\n      - metric: "
       "q_x\n        pointer: a/b\n",
       {"agent.yaml:6", "pointer"}},
      {NewHttpJsonCollector,
       "endpoints:\n  - name: q\n    url: http://127.0.0.1:1/\n    gauges:\n      - metric: "
       "q_x\n        pointer: /a\n        label: name\n",
       {"agent.yaml:7", "each"}},
      {NewHttpJsonCollector,
       "endpoints:\n  - name: q\n    url: http://127.0.0.1:1/\n    tables:\n      - name: t\n   "
       "     rows: /data\n        max_rows: 100000\n        columns: [{name: a, pointer: /a}]\n",
       {"agent.yaml:7", "max_rows"}},
      {NewHttpJsonCollector, "endpoints:\n  - name: q\n    url: http://127.0.0.1:1/\n",
       {"agent.yaml:2", "neither gauges nor tables"}},
      {NewRedisCollector, "address: 127.0.0.1:6379\nttl_sample_keys: 20000\n",
       {"agent.yaml:2", "ttl_sample_keys"}},
      {NewRedisCollector, "address: 127.0.0.1:6379\nscan_time_budget: 1m\n",
       {"agent.yaml:2", "scan_time_budget"}},
      {NewRedisCollector, "address: 127.0.0.1:6379\ncelery_queues: ['']\n",
       {"agent.yaml:2", "celery_queues"}},
  };
  for (const Case& c : cases) {
    const std::string error = ConfigError(c.factory, c.yaml);
    for (const std::string& want : c.want) {
      EXPECT_TRUE(absl::StrContains(error, want)) << c.yaml << "\n-> " << error;
    }
  }
}

TEST(HttpCollectorConfigTest, HttpJsonDeclaresItsGauges) {
  absl::StatusOr<YAML::Node> node = LoadYamlString(R"(endpoints:
  - name: qdrant
    url: http://127.0.0.1:6333/collections
    gauges:
      - {metric: qdrant_collections, pointer: /result/collections, help: Collections}
      - {metric: qdrant_collection_points, each: /result/collections, label: collection,
         key: /name, pointer: /points_count, unit: points}
  - name: docs
    url: http://127.0.0.1:6333/collections/docs
    gauges:
      - {metric: qdrant_collection_points, pointer: /result/points_count,
         labels: {collection: docs}}
)",
                                                   "agent.yaml");
  ASSERT_TRUE(node.ok());
  absl::StatusOr<std::unique_ptr<Collector>> c = NewHttpJsonCollector(*node, "agent.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  std::vector<v1::MetricDeclaration> declared = (*c)->DeclaredMetrics();
  ASSERT_EQ(declared.size(), 2u) << "one declaration per metric name";
  EXPECT_EQ(declared[0].name(), "qdrant_collection_points");
  EXPECT_EQ(declared[0].unit(), "points");
  EXPECT_EQ(declared[0].collector(), "http_json");
  EXPECT_EQ(declared[0].kind(), v1::MetricDeclaration::GAUGE);
  EXPECT_FALSE(declared[0].per_second_rate());
  EXPECT_EQ(declared[1].name(), "qdrant_collections");
  EXPECT_EQ(declared[1].help(), "Collections");
}

TEST(HttpCollectorConfigTest, RegisteredByName) {
  CollectorRegistry registry;
  RegisterBuiltinCollectors(registry);
  for (const char* name : {"http_probe", "nginx_status", "http_json"}) {
    EXPECT_NE(registry.Find(name), nullptr) << name;
  }
}

}  // namespace
}  // namespace vigil::agent
