#include "agent/collectors/http_json_collector.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/metric_schema.h"
#include "common/redact.h"
#include "common/status.h"
#include "common/yaml_util.h"

namespace vigil::agent {
namespace {

constexpr absl::string_view kEndpointsTable = "http_json_endpoints";

absl::Status Invalid(absl::string_view file, const YAML::Node& node, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(YamlWhere(file, node), ": ", what));
}

absl::StatusOr<std::vector<std::string>> ReadPointer(const YAML::Node& node, absl::string_view key,
                                                     absl::string_view file,
                                                     absl::string_view context, bool required) {
  ASSIGN_OR_RETURN(std::string text, YamlString(node, key, file, required));
  absl::StatusOr<std::vector<std::string>> tokens = ParseJsonPointer(text);
  if (!tokens.ok()) {
    return Invalid(file, node[std::string(key)],
                   absl::StrCat(context, ".", key, ": ", tokens.status().message()));
  }
  return tokens;
}

absl::StatusOr<JsonGaugeSpec> ReadGauge(const YAML::Node& node, absl::string_view file,
                                        const std::string& context,
                                        std::map<std::string, v1::MetricDeclaration>* declared) {
  RETURN_IF_ERROR(YamlCheckKeys(node, file, context,
                                {"metric", "pointer", "each", "label", "key", "max_elements",
                                 "scale", "labels", "unit", "help"}));
  if (!node.IsMap()) {
    return Invalid(file, node, absl::StrCat(context, " must be a map"));
  }
  JsonGaugeSpec spec;
  ASSIGN_OR_RETURN(spec.metric, YamlString(node, "metric", file, true));
  if (!IsMetricName(spec.metric)) {
    return Invalid(file, node["metric"],
                   absl::StrCat(context, ".metric '", spec.metric,
                                "' must match [a-zA-Z_:][a-zA-Z0-9_:]*"));
  }
  if (FindMetric(spec.metric) != nullptr) {
    return Invalid(file, node["metric"],
                   absl::StrCat(context, ".metric '", spec.metric,
                                "' is a name of the built-in schema; choose another"));
  }
  ASSIGN_OR_RETURN(spec.pointer, ReadPointer(node, "pointer", file, context, false));
  spec.each = node["each"].IsDefined() && !node["each"].IsNull();
  if (spec.each) {
    ASSIGN_OR_RETURN(spec.each_pointer, ReadPointer(node, "each", file, context, true));
    ASSIGN_OR_RETURN(spec.label, YamlString(node, "label", file, true));
    if (!IsIdentifier(spec.label) || spec.label == "endpoint") {
      return Invalid(file, node["label"],
                     absl::StrCat(context, ".label '", spec.label,
                                  "' must match [a-zA-Z_][a-zA-Z0-9_]* and not be 'endpoint'"));
    }
    spec.key_is_name = !node["key"].IsDefined() || node["key"].IsNull();
    if (!spec.key_is_name) {
      ASSIGN_OR_RETURN(spec.key, ReadPointer(node, "key", file, context, true));
    }
    ASSIGN_OR_RETURN(int64_t max, YamlInt(node, "max_elements", file, 100, 1, kMaxJsonElements));
    spec.max_elements = static_cast<size_t>(max);
  } else {
    for (const char* key : {"label", "key", "max_elements"}) {
      if (node[key].IsDefined()) {
        return Invalid(file, node[key],
                       absl::StrCat(context, ".", key, " needs 'each' (a pointer to an array or "
                                                       "object)"));
      }
    }
  }
  ASSIGN_OR_RETURN(spec.scale, YamlDouble(node, "scale", file, 1));
  if (spec.scale == 0) {
    return Invalid(file, node["scale"], absl::StrCat(context, ".scale must not be 0"));
  }
  const YAML::Node labels = node["labels"];
  if (labels.IsDefined() && !labels.IsNull()) {
    if (!labels.IsMap() || labels.size() > 16) {
      return Invalid(file, labels,
                     absl::StrCat(context, ".labels must be a map of at most 16 labels"));
    }
    for (const auto& kv : labels) {
      ASSIGN_OR_RETURN(std::string name, YamlKey(kv.first, file, context + ".labels"));
      if (!IsIdentifier(name) || name == "endpoint" || name == spec.label) {
        return Invalid(file, kv.first,
                       absl::StrCat(context, ".labels: '", name,
                                    "' must match [a-zA-Z_][a-zA-Z0-9_]* and not be 'endpoint' "
                                    "or the element label"));
      }
      if (!kv.second.IsScalar()) {
        return Invalid(file, kv.second,
                       absl::StrCat(context, ".labels.", name, " must be a string"));
      }
      spec.labels[name] = kv.second.Scalar();
    }
  }
  ASSIGN_OR_RETURN(std::string unit, YamlString(node, "unit", file));
  ASSIGN_OR_RETURN(std::string help, YamlString(node, "help", file));
  v1::MetricDeclaration& declaration = (*declared)[spec.metric];
  declaration.set_name(spec.metric);
  declaration.set_kind(v1::MetricDeclaration::GAUGE);
  if (!unit.empty()) declaration.set_unit(unit);
  if (!help.empty()) declaration.set_help(help);
  if (declaration.help().empty()) {
    declaration.set_help("http_json gauge");
  }
  declaration.set_collector("http_json");
  return spec;
}

absl::StatusOr<JsonTableSpec> ReadTable(const YAML::Node& node, absl::string_view file,
                                        const std::string& context) {
  RETURN_IF_ERROR(YamlCheckKeys(node, file, context,
                                {"name", "rows", "max_rows", "max_cell_bytes", "columns"}));
  if (!node.IsMap()) {
    return Invalid(file, node, absl::StrCat(context, " must be a map"));
  }
  JsonTableSpec spec;
  ASSIGN_OR_RETURN(spec.name, YamlString(node, "name", file, true));
  if (!IsIdentifier(spec.name) || spec.name == kEndpointsTable) {
    return Invalid(file, node["name"],
                   absl::StrCat(context, ".name '", spec.name,
                                "' must match [a-zA-Z_][a-zA-Z0-9_]* and not be ",
                                kEndpointsTable));
  }
  ASSIGN_OR_RETURN(spec.rows, ReadPointer(node, "rows", file, context, true));
  ASSIGN_OR_RETURN(int64_t max_rows, YamlInt(node, "max_rows", file, 20, 1, kMaxJsonRows));
  spec.max_rows = static_cast<size_t>(max_rows);
  ASSIGN_OR_RETURN(int64_t cell, YamlInt(node, "max_cell_bytes", file, 256, 16, 4096));
  spec.max_cell_bytes = static_cast<size_t>(cell);
  const YAML::Node columns = node["columns"];
  if (!columns.IsSequence() || columns.size() == 0 || columns.size() > kMaxJsonColumns) {
    return Invalid(file, columns.IsDefined() ? columns : node,
                   absl::StrCat(context, ".columns must be a list of 1 to ", kMaxJsonColumns,
                                " columns"));
  }
  std::set<std::string> names;
  for (size_t i = 0; i < columns.size(); ++i) {
    const YAML::Node c = columns[i];
    const std::string where = absl::StrCat(context, ".columns[", i, "]");
    RETURN_IF_ERROR(YamlCheckKeys(c, file, where, {"name", "pointer", "count", "scale"}));
    if (!c.IsMap()) {
      return Invalid(file, c, absl::StrCat(where, " must be a map"));
    }
    JsonColumnSpec column;
    ASSIGN_OR_RETURN(column.name, YamlString(c, "name", file, true));
    if (column.name.empty() || column.name.size() > 64 || !names.insert(column.name).second) {
      return Invalid(file, c["name"],
                     absl::StrCat(where, ".name '", column.name,
                                  "' must be 1 to 64 bytes and unique in the table"));
    }
    ASSIGN_OR_RETURN(column.pointer, ReadPointer(c, "pointer", file, where, true));
    ASSIGN_OR_RETURN(column.count, YamlBool(c, "count", file, false));
    ASSIGN_OR_RETURN(column.scale, YamlDouble(c, "scale", file, 1));
    spec.columns.push_back(std::move(column));
  }
  return spec;
}

}  // namespace

absl::StatusOr<HttpJsonOptions> ParseHttpJsonConfig(const YAML::Node& config,
                                                    absl::string_view file) {
  RETURN_IF_ERROR(YamlCheckKeys(config, file, "collectors.http_json", {"endpoints"}));
  const YAML::Node endpoints = config.IsMap() ? config["endpoints"] : YAML::Node();
  if (!endpoints.IsSequence() || endpoints.size() == 0 || endpoints.size() > kMaxJsonEndpoints) {
    return Invalid(file, endpoints.IsDefined() ? endpoints : config,
                   absl::StrCat("collectors.http_json.endpoints must be a list of 1 to ",
                                kMaxJsonEndpoints, " endpoints"));
  }
  HttpJsonOptions options;
  std::map<std::string, v1::MetricDeclaration> declared;
  std::set<std::string> endpoint_names, table_names;
  for (size_t i = 0; i < endpoints.size(); ++i) {
    const YAML::Node e = endpoints[i];
    const std::string context = absl::StrCat("collectors.http_json.endpoints[", i, "]");
    RETURN_IF_ERROR(YamlCheckKeys(e, file, context,
                                  {"name", VIGIL_HTTP_SOURCE_KEYS, "gauges", "tables"}));
    if (!e.IsMap()) {
      return Invalid(file, e, absl::StrCat(context, " must be a map"));
    }
    JsonEndpoint endpoint;
    ASSIGN_OR_RETURN(endpoint.name, YamlString(e, "name", file, true));
    if (!IsIdentifier(endpoint.name) || !endpoint_names.insert(endpoint.name).second) {
      return Invalid(file, e["name"],
                     absl::StrCat(context, ".name '", endpoint.name,
                                  "' must match [a-zA-Z_][a-zA-Z0-9_]* and be unique"));
    }
    ASSIGN_OR_RETURN(endpoint.source,
                     ReadHttpSource(e, file, context, absl::Seconds(2), 1 << 20));
    const YAML::Node gauges = e["gauges"];
    if (gauges.IsDefined() && !gauges.IsNull()) {
      if (!gauges.IsSequence() || gauges.size() > kMaxJsonGaugesPerEndpoint) {
        return Invalid(file, gauges,
                       absl::StrCat(context, ".gauges must be a list of at most ",
                                    kMaxJsonGaugesPerEndpoint));
      }
      for (size_t g = 0; g < gauges.size(); ++g) {
        ASSIGN_OR_RETURN(JsonGaugeSpec spec,
                         ReadGauge(gauges[g], file, absl::StrCat(context, ".gauges[", g, "]"),
                                   &declared));
        endpoint.gauges.push_back(std::move(spec));
      }
    }
    const YAML::Node tables = e["tables"];
    if (tables.IsDefined() && !tables.IsNull()) {
      if (!tables.IsSequence() || tables.size() > kMaxJsonTablesPerEndpoint) {
        return Invalid(file, tables,
                       absl::StrCat(context, ".tables must be a list of at most ",
                                    kMaxJsonTablesPerEndpoint));
      }
      for (size_t t = 0; t < tables.size(); ++t) {
        const std::string where = absl::StrCat(context, ".tables[", t, "]");
        ASSIGN_OR_RETURN(JsonTableSpec spec, ReadTable(tables[t], file, where));
        if (!table_names.insert(spec.name).second) {
          return Invalid(file, tables[t]["name"],
                         absl::StrCat(where, ".name '", spec.name,
                                      "' is already the name of another table"));
        }
        endpoint.tables.push_back(std::move(spec));
      }
    }
    if (endpoint.gauges.empty() && endpoint.tables.empty()) {
      return Invalid(file, e, absl::StrCat(context, " has neither gauges nor tables"));
    }
    options.endpoints.push_back(std::move(endpoint));
  }
  for (auto& [name, declaration] : declared) {
    options.declarations.push_back(std::move(declaration));
  }
  return options;
}

HttpJsonCollector::HttpJsonCollector(HttpJsonOptions options)
    : options_(std::move(options)), last_(options_.endpoints.size()) {
  for (const JsonEndpoint& e : options_.endpoints) {
    up_.emplace_back(absl::StrCat("http_json endpoint ", e.name, " at ", Redact(e.source.url)));
  }
}

absl::StatusOr<google::protobuf::Value> HttpJsonCollector::Fetch(const JsonEndpoint& endpoint,
                                                                 LastRound* round) {
  HttpOutcome outcome = TimedHttpGet(endpoint.source);
  round->elapsed = outcome.elapsed;
  round->status = outcome.response.ok() ? outcome.response->status : 0;
  if (!outcome.response.ok()) {
    return outcome.response.status();
  }
  if (outcome.response->status < 200 || outcome.response->status > 299) {
    return absl::UnavailableError(absl::StrCat(Redact(endpoint.source.url), " answered HTTP ",
                                               outcome.response->status));
  }
  return ParseJsonDocument(outcome.response->body, Redact(endpoint.source.url),
                           endpoint.source.options.max_response_bytes);
}

void HttpJsonCollector::Collect(absl::Time now, Collection& out) {
  for (size_t i = 0; i < options_.endpoints.size(); ++i) {
    const JsonEndpoint& endpoint = options_.endpoints[i];
    LastRound round;
    const Labels labels = {{"endpoint", endpoint.name}};
    absl::StatusOr<google::protobuf::Value> document = Fetch(endpoint, &round);
    if (!document.ok()) {
      round.error = Redact(document.status().message());
      up_[i].Down(round.error);
      out.Gauge("http_json_up", 0, labels);
      last_[i] = std::move(round);
      continue;
    }
    round.up = true;
    up_[i].Up();
    out.Gauge("http_json_up", 1, labels);
    std::vector<std::string> missing;
    for (const JsonGaugeSpec& spec : endpoint.gauges) {
      for (std::string& m : ExtractJsonGauges(*document, spec, labels, out)) {
        if (missing.size() < 10) missing.push_back(std::move(m));
      }
    }
    round.error = Redact(absl::StrJoin(missing, "; "));
    last_[i] = std::move(round);
  }
}

std::vector<std::string> HttpJsonCollector::DiagnosticNames() const {
  std::vector<std::string> names = {std::string(kEndpointsTable)};
  for (const JsonEndpoint& e : options_.endpoints) {
    for (const JsonTableSpec& t : e.tables) {
      names.push_back(t.name);
    }
  }
  return names;
}

std::vector<v1::DiagnosticTable> HttpJsonCollector::Diagnose(
    absl::Time now, const std::vector<std::string>& names) {
  auto wanted = [&](absl::string_view table) {
    for (const std::string& n : names) {
      if (DiagnosticNameMatches(n, table)) return true;
    }
    return false;
  };
  std::vector<v1::DiagnosticTable> tables;
  if (wanted(kEndpointsTable)) {
    v1::DiagnosticTable& t = tables.emplace_back();
    t.set_name(std::string(kEndpointsTable));
    t.set_collected_unix_ms(absl::ToUnixMillis(now));
    for (const char* c : {"endpoint", "url", "up", "status", "seconds", "error"}) t.add_columns(c);
    for (size_t i = 0; i < options_.endpoints.size(); ++i) {
      auto* row = t.add_rows();
      row->add_cells(options_.endpoints[i].name);
      row->add_cells(Redact(options_.endpoints[i].source.url));
      row->add_cells(last_[i].up ? "1" : "0");
      row->add_cells(absl::StrCat(last_[i].status));
      row->add_cells(absl::StrFormat("%.3f", absl::ToDoubleSeconds(last_[i].elapsed)));
      row->add_cells(last_[i].error);
    }
  }
  for (const JsonEndpoint& endpoint : options_.endpoints) {
    std::vector<const JsonTableSpec*> specs;
    for (const JsonTableSpec& t : endpoint.tables) {
      if (wanted(t.name)) specs.push_back(&t);
    }
    if (specs.empty()) {
      continue;
    }
    LastRound round;
    absl::StatusOr<google::protobuf::Value> document = Fetch(endpoint, &round);
    for (const JsonTableSpec* spec : specs) {
      v1::DiagnosticTable t;
      if (document.ok()) {
        t = ExtractJsonTable(*document, *spec);
      } else {
        t.set_name(spec->name);
        for (const JsonColumnSpec& c : spec->columns) t.add_columns(c.name);
        t.set_error(Redact(document.status().message()));
      }
      t.set_collected_unix_ms(absl::ToUnixMillis(now));
      tables.push_back(std::move(t));
    }
  }
  return tables;
}

absl::StatusOr<std::unique_ptr<Collector>> NewHttpJsonCollector(const YAML::Node& config,
                                                                absl::string_view file) {
  ASSIGN_OR_RETURN(HttpJsonOptions options, ParseHttpJsonConfig(config, file));
  return std::make_unique<HttpJsonCollector>(std::move(options));
}

}  // namespace vigil::agent
