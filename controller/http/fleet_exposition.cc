#include "controller/http/fleet_exposition.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace vigil::controller {
namespace {

bool IsLabelChar(char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// One family of the page: the samples of every agent under one exposed name.
struct Family {
  absl::string_view vigil_name;  // as the agents send it (for its help)
  bool histogram = false;
  std::vector<std::pair<uint32_t, uint32_t>> samples;  // (agent, series) indexes
};

// `agent="ID",role="api",...`: what every sample of one agent starts with, and the names used.
struct AgentLabels {
  std::string text;
  std::vector<std::string> names;
};

AgentLabels MakeAgentLabels(const FleetState::ExposedAgent& agent) {
  AgentLabels out;
  out.text = "agent=\"";
  AppendLabelValue(agent.agent_id, &out.text);
  out.text.push_back('"');
  out.names.push_back("agent");
  for (const auto& [name, value] : agent.labels) {
    std::string clean = SanitizeLabelName(name);
    if (std::find(out.names.begin(), out.names.end(), clean) != out.names.end()) {
      continue;  // two names sanitised alike (or one called "agent"): the first one stays
    }
    absl::StrAppend(&out.text, ",", clean, "=\"");
    AppendLabelValue(value, &out.text);
    out.text.push_back('"');
    out.names.push_back(std::move(clean));
  }
  return out;
}

// The agent's labels followed by the series' own, without the braces.
size_t AppendSeriesLabels(const AgentLabels& agent, const Labels& labels, std::string* out) {
  out->append(agent.text);
  if (labels.empty()) {
    return 0;
  }
  size_t dropped = 0;
  std::vector<std::string> used;
  for (const auto& [name, value] : labels) {
    std::string clean = SanitizeLabelName(name);
    auto taken = [&](const std::string& n) {
      return std::find(agent.names.begin(), agent.names.end(), n) != agent.names.end() ||
             std::find(used.begin(), used.end(), n) != used.end();
    };
    if (taken(clean)) {
      clean = absl::StrCat("exported_", clean);
      if (taken(clean)) {
        ++dropped;
        continue;
      }
    }
    absl::StrAppend(out, ",", clean, "=\"");
    AppendLabelValue(value, out);
    out->push_back('"');
    used.push_back(std::move(clean));
  }
  return dropped;
}

}  // namespace

std::string SanitizeMetricName(absl::string_view name) {
  std::string out;
  out.reserve(name.size() + 1);
  if (name.empty() || absl::ascii_isdigit(static_cast<unsigned char>(name[0]))) {
    out.push_back('_');
  }
  for (const char c : name) {
    out.push_back(IsLabelChar(c) || c == ':' ? c : '_');
  }
  return out;
}

std::string SanitizeLabelName(absl::string_view name) {
  std::string out;
  out.reserve(name.size() + 6);
  for (const char c : name) {
    out.push_back(IsLabelChar(c) ? c : '_');
  }
  if (out.empty() || absl::ascii_isdigit(static_cast<unsigned char>(out[0])) ||
      absl::StartsWith(out, "__")) {
    out.insert(0, "label_");
  }
  return out;
}

void AppendLabelValue(absl::string_view value, std::string* out) {
  for (const char c : value) {
    switch (c) {
      case '\\':
        out->append("\\\\");
        break;
      case '"':
        out->append("\\\"");
        break;
      case '\n':
        out->append("\\n");
        break;
      default:
        out->push_back(c);
    }
  }
}

void AppendHelpText(absl::string_view help, std::string* out) {
  for (const char c : help) {
    if (c == '\\') {
      out->append("\\\\");
    } else if (c == '\n') {
      out->append("\\n");
    } else {
      out->push_back(c);
    }
  }
}

void AppendSampleValue(double value, std::string* out) {
  if (std::isnan(value)) {
    out->append("NaN");
    return;
  }
  if (std::isinf(value)) {
    out->append(value > 0 ? "+Inf" : "-Inf");
    return;
  }
  char buffer[32];
  const std::to_chars_result r = std::to_chars(buffer, buffer + sizeof(buffer), value);
  out->append(buffer, r.ptr);
}

absl::StatusOr<ExpositionStats> RenderFleetExposition(
    const std::vector<FleetState::ExposedAgent>& agents, const FamilyHelp& help, size_t max_bytes,
    std::string* out) {
  ExpositionStats stats;
  stats.agents = agents.size();
  // Families by exposed name; interned keys share one name string, hence the lookup by pointer
  // before the one by name.
  std::map<std::string, Family> families;
  absl::flat_hash_map<const SeriesKey*, Family*> by_key;
  for (uint32_t a = 0; a < agents.size(); ++a) {
    const FleetState::ExposedAgent& agent = agents[a];
    for (uint32_t s = 0; s < agent.series.size(); ++s) {
      const FleetState::ExposedAgent::Series& series = agent.series[s];
      Family*& family = by_key[series.key.get()];
      if (family == nullptr) {
        family = &families[SanitizeMetricName(series.key->name)];
        if (family->vigil_name.empty()) {
          family->vigil_name = series.key->name;
        }
      }
      family->histogram |= series.histogram >= 0;
      family->samples.emplace_back(a, s);
    }
  }
  std::vector<AgentLabels> agent_labels;
  agent_labels.reserve(agents.size());
  for (const FleetState::ExposedAgent& agent : agents) {
    agent_labels.push_back(MakeAgentLabels(agent));
  }
  // `le="0.001"` ... `le="+Inf"`, formatted once.
  const auto& bounds = CumulativeHistogram::Bounds();
  std::vector<std::string> le(bounds.size() + 1);
  for (size_t i = 0; i < bounds.size(); ++i) {
    le[i] = ",le=\"";
    AppendSampleValue(bounds[i], &le[i]);
    le[i].push_back('"');
  }
  le.back() = ",le=\"+Inf\"";

  std::string labels;
  for (const auto& [name, family] : families) {
    ++stats.families;
    absl::StrAppend(out, "# HELP ", name, " ");
    AppendHelpText(help ? help(family.vigil_name) : "", out);
    absl::StrAppend(out, "\n# TYPE ", name, family.histogram ? " histogram\n" : " gauge\n");
    for (const auto& [a, s] : family.samples) {
      const FleetState::ExposedAgent& agent = agents[a];
      const FleetState::ExposedAgent::Series& series = agent.series[s];
      if (family.histogram && series.histogram < 0) {
        ++stats.conflicts;  // one family, one type: the histograms win
        continue;
      }
      labels.clear();
      stats.conflicts += AppendSeriesLabels(agent_labels[a], series.key->labels, &labels);
      ++stats.series;
      if (!family.histogram) {
        absl::StrAppend(out, name, "{", labels, "} ");
        AppendSampleValue(series.value, out);
        out->push_back('\n');
      } else {
        const CumulativeHistogram& h = agent.histograms[static_cast<size_t>(series.histogram)];
        uint64_t cumulative = 0;
        for (size_t i = 0; i < le.size(); ++i) {
          cumulative += h.counts()[i];
          absl::StrAppend(out, name, "_bucket{", labels, le[i], "} ", cumulative, "\n");
        }
        absl::StrAppend(out, name, "_sum{", labels, "} ");
        AppendSampleValue(h.sum(), out);
        absl::StrAppend(out, "\n", name, "_count{", labels, "} ", h.count(), "\n");
      }
      if (out->size() > max_bytes) {
        return absl::ResourceExhaustedError(
            absl::StrCat("the fleet page passed its limit of ", max_bytes, " bytes at agent '",
                         agent.agent_id, "', family ", name, " (", stats.series,
                         " series written of ", agents.size(), " agents)"));
      }
    }
  }
  return stats;
}

bool BearerTokenMatches(absl::string_view authorization, absl::string_view token) {
  if (token.empty() || authorization.size() < 7 ||
      !absl::EqualsIgnoreCase(authorization.substr(0, 7), "bearer ")) {
    return false;
  }
  const absl::string_view given = authorization.substr(7);
  unsigned char want[SHA256_DIGEST_LENGTH];
  unsigned char got[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), want);
  SHA256(reinterpret_cast<const unsigned char*>(given.data()), given.size(), got);
  return CRYPTO_memcmp(want, got, SHA256_DIGEST_LENGTH) == 0;
}

}  // namespace vigil::controller
