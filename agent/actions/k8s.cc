#include "agent/actions/k8s.h"

#include <cstdlib>
#include <optional>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "agent/actions/action_util.h"
#include "agent/actions/api_answers.h"
#include "common/action_schema.h"
#include "common/http/http_client.h"
#include "common/status.h"
#include "common/yaml_util.h"
#include "spdlog/spdlog.h"

namespace vigil::agent {
namespace {

constexpr char kScale[] = "k8s_scale";
constexpr char kPatchHpa[] = "k8s_patch_hpa";
constexpr char kDefaultTokenFile[] = "/var/run/secrets/kubernetes.io/serviceaccount/token";
constexpr char kDefaultCaFile[] = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
constexpr char kMergePatch[] = "application/merge-patch+json";
constexpr size_t kMaxTokenBytes = 64 * 1024;
constexpr size_t kMaxK8sAnswerBytes = 1024 * 1024;
constexpr int64_t kMaxReplicas = 10000;

// RFC 1123 label: what a namespace must be.
bool DnsLabel(absl::string_view s) {
  if (s.empty() || s.size() > 63 || s.front() == '-' || s.back() == '-') {
    return false;
  }
  for (char c : s) {
    if (!absl::ascii_islower(c) && !absl::ascii_isdigit(c) && c != '-') {
      return false;
    }
  }
  return true;
}

// RFC 1123 subdomain: what a deployment or HPA name must be.
bool DnsSubdomain(absl::string_view s) {
  if (s.empty() || s.size() > 253) {
    return false;
  }
  for (absl::string_view label : absl::StrSplit(s, '.')) {
    if (!DnsLabel(label)) {
      return false;
    }
  }
  return true;
}

struct Bounds {
  int64_t min = 0;
  int64_t max = 0;
};

struct Endpoint {
  std::string api_server;  // https://HOST:PORT, no trailing slash
  std::string token_file;
  std::string ca_file;
};

enum class Kind { kScale, kPatchHpa };

class K8sAction final : public Action {
 public:
  K8sAction(Kind kind, Endpoint endpoint, std::map<std::string, Bounds> bounds)
      : kind_(kind), endpoint_(std::move(endpoint)), bounds_(std::move(bounds)) {}

  absl::string_view name() const override { return kind_ == Kind::kScale ? kScale : kPatchHpa; }

  absl::Status Check(const ActionParams& params) const override {
    RETURN_IF_ERROR(CheckActionParams(name(), params));
    const std::string& ns = params.at("namespace");
    const std::string& object = params.at(std::string(ObjectParam()));
    if (!DnsLabel(ns)) {
      return absl::InvalidArgumentError(absl::StrCat(
          name(), ": namespace '", ns, "' is not a DNS label (a-z, 0-9, '-', at most 63)"));
    }
    if (!DnsSubdomain(object)) {
      return absl::InvalidArgumentError(absl::StrCat(name(), ": ", ObjectParam(), " '", object,
                                                     "' is not a DNS subdomain name (a-z, 0-9, "
                                                     "'-', '.', at most 253)"));
    }
    const std::string key = absl::StrCat(ns, "/", object);
    auto it = bounds_.find(key);
    if (it == bounds_.end()) {
      std::vector<std::string> listed;
      for (const auto& [k, b] : bounds_) {
        listed.push_back(k);
      }
      return absl::PermissionDeniedError(absl::StrCat(name(), ": ", ObjectParam(), " ", key,
                                                      " is not allowed (", ListKey(), ": ",
                                                      absl::StrJoin(listed, ", "), ")"));
    }
    const Bounds& b = it->second;
    auto within = [&](absl::string_view param) -> absl::Status {
      int64_t n = 0;
      if (!absl::SimpleAtoi(params.at(std::string(param)), &n) || n > kMaxReplicas) {
        return absl::InvalidArgumentError(absl::StrCat(
            name(), ": ", param, " '", params.at(std::string(param)), "' is not a replica count"));
      }
      if (n < b.min || n > b.max) {
        return absl::PermissionDeniedError(
            absl::StrCat(name(), ": ", param, " ", n, " is ", n < b.min ? "below" : "above",
                         " the limit ", n < b.min ? b.min : b.max, " for ", key, " (", ListKey(),
                         ".", key, ".", n < b.min ? "min" : "max", ")"));
      }
      return absl::OkStatus();
    };
    if (kind_ == Kind::kScale) {
      return within("replicas");
    }
    RETURN_IF_ERROR(within("min"));
    RETURN_IF_ERROR(within("max"));
    if (std::stoll(params.at("min")) > std::stoll(params.at("max"))) {
      return absl::InvalidArgumentError(
          absl::StrCat(name(), ": min ", params.at("min"), " is above max ", params.at("max")));
    }
    return absl::OkStatus();
  }

  ActionResult Run(const ActionParams& params, absl::Duration timeout) override {
    if (absl::Status s = Check(params); !s.ok()) {
      return Failure(std::string(s.message()));
    }
    StepRunner steps(name(), nullptr, timeout);
    const std::string& ns = params.at("namespace");
    const std::string& object = params.at(std::string(ObjectParam()));
    const std::string url =
        kind_ == Kind::kScale
            ? absl::StrCat(endpoint_.api_server, "/apis/apps/v1/namespaces/", ns, "/deployments/",
                           object, "/scale")
            : absl::StrCat(endpoint_.api_server, "/apis/autoscaling/v2/namespaces/", ns,
                           "/horizontalpodautoscalers/", object);
    absl::StatusOr<std::string> token = ReadWholeFile(endpoint_.token_file);
    if (!token.ok() || token->size() > kMaxTokenBytes ||
        absl::StripAsciiWhitespace(*token).empty()) {
      steps.Fail(absl::StrCat("no service account token in ", endpoint_.token_file, " (token_file)",
                              token.ok() ? "" : absl::StrCat(": ", token.status().message())));
      return Finish(steps);
    }
    const std::string bearer = std::string(absl::StripAsciiWhitespace(*token));
    const std::vector<absl::string_view> fields =
        kind_ == Kind::kScale ? std::vector<absl::string_view>{"replicas"}
                              : std::vector<absl::string_view>{"minReplicas", "maxReplicas"};

    std::optional<std::map<std::string, int64_t>> before =
        Call(steps, "GET", url, "", bearer, fields);
    if (!before) {
      return Finish(steps);
    }
    std::string patch;
    std::map<std::string, int64_t> wanted;
    if (kind_ == Kind::kScale) {
      wanted["replicas"] = std::stoll(params.at("replicas"));
      patch = absl::StrCat("{\"spec\":{\"replicas\":", wanted["replicas"], "}}");
    } else {
      wanted["minReplicas"] = std::stoll(params.at("min"));
      wanted["maxReplicas"] = std::stoll(params.at("max"));
      patch = absl::StrCat("{\"spec\":{\"minReplicas\":", wanted["minReplicas"],
                           ",\"maxReplicas\":", wanted["maxReplicas"], "}}");
    }
    std::optional<std::map<std::string, int64_t>> after =
        Call(steps, "PATCH", url, patch, bearer, fields);
    if (!after) {
      return Finish(steps);
    }
    std::vector<std::string> changes;
    for (const auto& [field, value] : wanted) {
      // The API leaves zero values out; a missing minReplicas means its default, 1.
      const int64_t fallback = field == "minReplicas" ? 1 : 0;
      const int64_t old_value = before->count(field) ? before->at(field) : fallback;
      const int64_t new_value = after->count(field) ? after->at(field) : fallback;
      changes.push_back(absl::StrCat(field, " ", old_value, " -> ", new_value));
      if (new_value != value) {
        steps.Fail(
            absl::StrCat("the API answered ", field, " ", new_value, " after asking ", value));
      }
    }
    steps.Note(absl::StrCat(kind_ == Kind::kScale ? "deployment " : "hpa ", ns, "/", object, ": ",
                            absl::StrJoin(changes, ", ")));
    return Finish(steps);
  }

 private:
  absl::string_view ObjectParam() const { return kind_ == Kind::kScale ? "deployment" : "hpa"; }
  absl::string_view ListKey() const { return kind_ == Kind::kScale ? "deployments" : "hpas"; }

  ActionResult Finish(const StepRunner& steps) const {
    const ActionResult result = steps.Finish();
    if (result.exit_code == 0) {
      spdlog::info("{}: done", std::string(name()));
    } else {
      spdlog::warn("{}", result.reason);
    }
    return result;
  }

  // One request; the spec's `fields` of a 200 answer, or nullopt with the failure recorded.
  std::optional<std::map<std::string, int64_t>> Call(StepRunner& steps, absl::string_view method,
                                                     const std::string& url,
                                                     const std::string& body,
                                                     const std::string& bearer,
                                                     const std::vector<absl::string_view>& fields) {
    const absl::Duration left = steps.remaining();
    if (left <= absl::ZeroDuration()) {
      steps.Fail(absl::StrCat("timed out before ", method, " ", url), kExitKilled);
      return std::nullopt;
    }
    http::HttpClientOptions options;
    options.timeout = left;
    options.connect_timeout = std::min(left, absl::Seconds(5));
    options.max_response_bytes = kMaxK8sAnswerBytes;
    options.tls_ca_file = endpoint_.ca_file;
    options.headers = {{"Authorization", absl::StrCat("Bearer ", bearer)},
                       {"Accept", "application/json"},
                       {"User-Agent", "vigil-agent"}};
    steps.Note(absl::StrCat("> ", method, " ", url, body.empty() ? "" : " ", body));
    absl::StatusOr<http::HttpClientResponse> answer =
        http::HttpFetch(method, url, body, body.empty() ? "" : kMergePatch, options);
    if (!answer.ok()) {
      steps.Fail(std::string(answer.status().message()),
                 answer.status().code() == absl::StatusCode::kDeadlineExceeded ? kExitKilled
                                                                               : kExitFailed);
      return std::nullopt;
    }
    if (answer->status != 200) {
      const std::string message = JsonErrorMessage(answer->body);
      steps.Fail(absl::StrCat(method, " ", url, ": HTTP ", answer->status,
                              message.empty() ? "" : ": ", message));
      return std::nullopt;
    }
    absl::StatusOr<std::map<std::string, int64_t>> parsed = ParseK8sSpec(answer->body, fields);
    if (!parsed.ok()) {
      steps.Fail(absl::StrCat(method, " ", url, ": ", parsed.status().message()));
      return std::nullopt;
    }
    const std::map<std::string, int64_t>& out = *parsed;
    std::vector<std::string> read;
    for (const auto& [field, value] : out) {
      read.push_back(absl::StrCat(field, "=", value));
    }
    steps.Note(absl::StrCat("< HTTP 200, spec: ", read.empty() ? "{}" : absl::StrJoin(read, " ")));
    return *parsed;
  }

  Kind kind_;
  Endpoint endpoint_;
  std::map<std::string, Bounds> bounds_;
};

absl::StatusOr<std::unique_ptr<Action>> NewK8sAction(Kind kind, const YAML::Node& options,
                                                     absl::string_view file) {
  const absl::string_view name = kind == Kind::kScale ? kScale : kPatchHpa;
  const std::string list_key = kind == Kind::kScale ? "deployments" : "hpas";
  ActionOptions o(options, file, name);
  RETURN_IF_ERROR(o.CheckKeys({list_key, "api_server", "token_file", "ca_file"}));
  Endpoint endpoint;
  std::string from_env;
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (host != nullptr && *host != '\0') {
    const bool v6 = absl::StrContains(host, ":");
    from_env = absl::StrCat("https://", v6 ? "[" : "", host, v6 ? "]" : "", ":",
                            port != nullptr && *port != '\0' ? port : "443");
  }
  ASSIGN_OR_RETURN(endpoint.api_server, o.String("api_server", from_env));
  if (endpoint.api_server.empty()) {
    return o.Error("api_server", "is required outside a pod (KUBERNETES_SERVICE_HOST is not set)");
  }
  while (absl::EndsWith(endpoint.api_server, "/")) {
    endpoint.api_server.pop_back();
  }
  absl::StatusOr<http::ParsedUrl> url = http::ParseHttpUrl(endpoint.api_server);
  if (!url.ok() || !url->tls || url->target != "/") {
    return o.Error("api_server",
                   absl::StrCat("'", endpoint.api_server,
                                "' is not https://HOST[:PORT] (the API is TLS only)"));
  }
  ASSIGN_OR_RETURN(endpoint.token_file, o.Path("token_file", kDefaultTokenFile));
  ASSIGN_OR_RETURN(endpoint.ca_file, o.Path("ca_file", kDefaultCaFile));

  const YAML::Node listed = options.IsMap() ? options[list_key] : YAML::Node();
  if (!listed.IsDefined() || listed.IsNull()) {
    return o.Error(list_key, "is required (a map of NAMESPACE/NAME: {min: N, max: M})");
  }
  if (!listed.IsMap() || listed.size() == 0) {
    return o.Error(list_key, "must be a non-empty map of NAMESPACE/NAME: {min: N, max: M}");
  }
  std::map<std::string, Bounds> bounds;
  for (const auto& kv : listed) {
    const std::string context = absl::StrCat("actions.", name, ".", list_key);
    ASSIGN_OR_RETURN(const std::string key, YamlKey(kv.first, file, context));
    auto error = [&](const YAML::Node& at, absl::string_view what) {
      return absl::InvalidArgumentError(
          absl::StrCat(YamlWhere(file, at), ": ", context, ".", key, ": ", what));
    };
    const std::vector<std::string> parts = absl::StrSplit(key, absl::MaxSplits('/', 1));
    if (parts.size() != 2 || !DnsLabel(parts[0]) || !DnsSubdomain(parts[1])) {
      return error(kv.first, "must be NAMESPACE/NAME (lower-case DNS names)");
    }
    if (!kv.second.IsMap()) {
      return error(kv.second, "must be {min: N, max: M}");
    }
    RETURN_IF_ERROR(
        YamlCheckKeys(kv.second, file, absl::StrCat(context, ".", key), {"min", "max"}));
    Bounds b;
    for (auto [field, target] : {std::pair{"min", &b.min}, std::pair{"max", &b.max}}) {
      const YAML::Node value = kv.second[field];
      if (!value.IsDefined() || !value.IsScalar() || !absl::SimpleAtoi(value.Scalar(), target) ||
          *target < 0 || *target > kMaxReplicas) {
        return error(value.IsDefined() ? value : kv.second,
                     absl::StrCat(field, " must be a replica count from 0 to ", kMaxReplicas));
      }
    }
    if (b.min > b.max) {
      return error(kv.second, absl::StrCat("min ", b.min, " is above max ", b.max));
    }
    if (kind == Kind::kPatchHpa && b.min < 1) {
      return error(kv.second, "min must be at least 1 (an HPA's minReplicas)");
    }
    bounds[key] = b;
  }
  return std::make_unique<K8sAction>(kind, std::move(endpoint), std::move(bounds));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Action>> NewK8sScaleAction(const YAML::Node& options,
                                                          const ActionContext& context,
                                                          absl::string_view file) {
  return NewK8sAction(Kind::kScale, options, file);
}

absl::StatusOr<std::unique_ptr<Action>> NewK8sPatchHpaAction(const YAML::Node& options,
                                                             const ActionContext& context,
                                                             absl::string_view file) {
  return NewK8sAction(Kind::kPatchHpa, options, file);
}

}  // namespace vigil::agent
