#include "controller/ingest/fleet_state.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace vigil::controller {
namespace {

std::string SeriesKey(const v1::SeriesDefinition& def) {
  std::string key = def.name();
  std::map<std::string, std::string> sorted(def.labels().begin(), def.labels().end());
  for (const auto& [k, v] : sorted) {
    absl::StrAppend(&key, "\0", k, "\0", v);
  }
  return key;
}

std::string FormatTime(int64_t ms) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixMillis(ms), absl::UTCTimeZone());
}

}  // namespace

void SeriesState::AddValue(int64_t ms, double value) {
  head = count == 0 ? 0 : (head + 1) % kWindowPoints;
  time_ms[head] = ms;
  values[head] = value;
  count = std::min(count + 1, kWindowPoints);
}

FleetState::Agent* FleetState::Find(const std::string& agent_id) const {
  absl::MutexLock lock(&mu_);
  auto it = agents_.find(agent_id);
  return it == agents_.end() ? nullptr : it->second.get();
}

FleetState::Agent& FleetState::FindOrAdd(const std::string& agent_id) {
  absl::MutexLock lock(&mu_);
  std::unique_ptr<Agent>& slot = agents_[agent_id];
  if (slot == nullptr) {
    slot = std::make_unique<Agent>();
  }
  return *slot;
}

void FleetState::Restore(const std::vector<v1::AgentInfo>& agents) {
  for (const v1::AgentInfo& stored : agents) {
    Agent& agent = FindOrAdd(stored.agent_id());
    absl::MutexLock lock(&agent.mu);
    agent.info = stored;
    agent.info.set_state(v1::DISCONNECTED);
  }
}

absl::StatusOr<uint64_t> FleetState::Connect(const v1::Hello& hello, const std::string& peer,
                                             uint64_t session, absl::Time now) {
  if (hello.agent_id().empty()) {
    return absl::InvalidArgumentError("Hello without an agent_id");
  }
  Agent& agent = FindOrAdd(hello.agent_id());
  absl::MutexLock lock(&agent.mu);
  if (agent.session != 0) {
    // No silent takeover: the first stream keeps the id until it ends or goes silent.
    return absl::AlreadyExistsError(absl::StrCat(
        "agent id '", hello.agent_id(), "' is already connected from ", agent.info.peer(),
        " (host ", agent.info.hostname(), ", last seen ",
        FormatTime(agent.info.last_seen_unix_ms()), "); refusing the second connection from ", peer,
        " (host ", hello.hostname(), "): give each agent a unique id"));
  }
  const int64_t now_ms = absl::ToUnixMillis(now);
  v1::AgentInfo& info = agent.info;
  info.set_agent_id(hello.agent_id());
  info.set_hostname(hello.hostname());
  info.set_version(hello.version());
  info.mutable_labels()->clear();
  for (const auto& [k, v] : hello.labels()) {
    (*info.mutable_labels())[k] = v;
  }
  info.clear_collectors();
  for (const std::string& c : hello.collectors()) {
    info.add_collectors(c);
  }
  info.clear_actions();
  for (const auto& a : hello.actions()) {
    info.add_actions(a.name());
  }
  info.set_peer(peer);
  info.set_state(v1::CONNECTED);
  if (info.first_seen_unix_ms() == 0) {
    info.set_first_seen_unix_ms(now_ms);
  }
  info.set_last_seen_unix_ms(now_ms);
  agent.session = session;
  agent.last_message_ms = now_ms;
  agent.dirty = true;
  return info.last_sequence();
}

void FleetState::Disconnect(const std::string& agent_id, uint64_t session, absl::Time now) {
  Agent* agent = Find(agent_id);
  if (agent == nullptr) {
    return;
  }
  absl::MutexLock lock(&agent->mu);
  if (agent->session != session) {
    return;
  }
  agent->session = 0;
  agent->info.set_state(v1::DISCONNECTED);
  agent->dirty = true;
}

std::vector<std::pair<std::string, uint64_t>> FleetState::SilentSince(absl::Time cutoff) {
  const int64_t cutoff_ms = absl::ToUnixMillis(cutoff);
  std::vector<std::pair<std::string, uint64_t>> silent;
  absl::MutexLock lock(&mu_);
  for (const auto& [id, agent] : agents_) {
    absl::MutexLock agent_lock(&agent->mu);
    if (agent->session != 0 && agent->last_message_ms < cutoff_ms) {
      silent.emplace_back(id, agent->session);
    }
  }
  return silent;
}

void FleetState::Touch(const std::string& agent_id, absl::Time now) {
  Agent* agent = Find(agent_id);
  if (agent == nullptr) {
    return;
  }
  absl::MutexLock lock(&agent->mu);
  agent->last_message_ms = absl::ToUnixMillis(now);
  agent->info.set_last_seen_unix_ms(agent->last_message_ms);
}

bool FleetState::Apply(const std::string& agent_id, const v1::TelemetryBatch& batch,
                       std::vector<SeriesState*>& dictionary, absl::Time now) {
  Agent* agent = Find(agent_id);
  if (agent == nullptr) {
    return false;
  }
  absl::MutexLock lock(&agent->mu);
  agent->last_message_ms = absl::ToUnixMillis(now);
  agent->info.set_last_seen_unix_ms(agent->last_message_ms);
  // Definitions are per stream: they must be learnt even from a batch that is a duplicate.
  for (const v1::SeriesDefinition& def : batch.new_series()) {
    std::unique_ptr<SeriesState>& slot = agent->series[SeriesKey(def)];
    if (slot == nullptr) {
      if (agent->series.size() > options_.max_series_per_agent) {
        agent->series.erase(SeriesKey(def));
        continue;  // a runaway label set must not eat the controller's memory
      }
      slot = std::make_unique<SeriesState>();
      slot->name = def.name();
      slot->labels = Labels(def.labels().begin(), def.labels().end());
    }
    if (def.id() >= dictionary.size()) {
      dictionary.resize(def.id() + 1, nullptr);
    }
    dictionary[def.id()] = slot.get();
  }
  if (batch.sequence() == 0) {
    return true;  // a heartbeat
  }
  if (batch.sequence() <= agent->info.last_sequence()) {
    return false;
  }
  agent->info.set_last_sequence(batch.sequence());
  agent->dirty = true;
  const int64_t window_ms = absl::ToInt64Milliseconds(options_.histogram_window);
  uint64_t samples = 0;
  auto lookup = [&dictionary](uint32_t id) -> SeriesState* {
    return id < dictionary.size() ? dictionary[id] : nullptr;
  };
  for (const v1::Snapshot& snapshot : batch.snapshots()) {
    const int n = std::min(snapshot.series_ids_size(), snapshot.values_size());
    for (int i = 0; i < n; ++i) {
      if (SeriesState* s = lookup(snapshot.series_ids(i))) {
        s->AddValue(snapshot.time_unix_ms(), snapshot.values(i));
        ++samples;
      }
    }
    for (const v1::HistogramPoint& point : snapshot.histograms()) {
      SeriesState* s = lookup(point.series_id());
      if (s == nullptr) {
        continue;
      }
      s->is_histogram = true;
      LogHistogram h;
      h.FromProto(point.histogram());
      s->AddValue(snapshot.time_unix_ms(), static_cast<double>(h.count()));
      s->histograms.emplace_back(snapshot.time_unix_ms(), std::move(h));
      while (!s->histograms.empty() &&
             s->histograms.front().first <= snapshot.time_unix_ms() - window_ms) {
        s->histograms.pop_front();
      }
      ++samples;
    }
  }
  samples_ += samples;
  return true;
}

std::optional<std::vector<std::string>> FleetState::AgentActions(
    const std::string& agent_id) const {
  Agent* agent = Find(agent_id);
  if (agent == nullptr) {
    return std::nullopt;
  }
  absl::MutexLock lock(&agent->mu);
  return std::vector<std::string>(agent->info.actions().begin(), agent->info.actions().end());
}

void FleetState::SetDiagnostics(const std::string& agent_id, const v1::Diagnostics& diagnostics) {
  Agent* agent = Find(agent_id);
  if (agent == nullptr) {
    return;
  }
  absl::MutexLock lock(&agent->mu);
  for (const v1::DiagnosticTable& table : diagnostics.tables()) {
    agent->diagnostics[table.name()] = table;
  }
}

void FleetState::FillLive(const Agent& agent, v1::AgentInfo& info) {
  double cpu = -1, memory = -1, disk = -1;
  for (const auto& [key, s] : agent.series) {
    if (s->count == 0) {
      continue;
    }
    if (s->name == "host_cpu_usage_ratio") {
      cpu = s->latest();
    }
    if (s->name == "host_memory_used_ratio") {
      memory = s->latest();
    }
    if (s->name == "host_disk_used_ratio") {
      disk = std::max(disk, s->latest());
    }
  }
  info.set_cpu_usage_ratio(cpu);
  info.set_memory_used_ratio(memory);
  info.set_disk_used_ratio(disk);
}

std::vector<v1::AgentInfo> FleetState::ListAgents() const {
  std::vector<v1::AgentInfo> out;
  absl::MutexLock lock(&mu_);
  out.reserve(agents_.size());
  for (const auto& [id, agent] : agents_) {
    absl::MutexLock agent_lock(&agent->mu);
    out.push_back(agent->info);
    FillLive(*agent, out.back());
  }
  return out;
}

absl::StatusOr<v1::GetMetricsResponse> FleetState::GetMetrics(const std::string& agent_id,
                                                              absl::string_view name_prefix) const {
  const Agent* agent = Find(agent_id);
  if (agent == nullptr) {
    return absl::NotFoundError(absl::StrCat("agent '", agent_id, "' not found"));
  }
  v1::GetMetricsResponse response;
  response.set_agent_id(agent_id);
  absl::MutexLock lock(&agent->mu);
  std::vector<const SeriesState*> sorted;
  for (const auto& [key, s] : agent->series) {
    if (absl::StartsWith(s->name, name_prefix) && s->count > 0) {
      sorted.push_back(s.get());
    }
  }
  std::sort(sorted.begin(), sorted.end(), [](const SeriesState* a, const SeriesState* b) {
    return std::tie(a->name, a->labels) < std::tie(b->name, b->labels);
  });
  for (const SeriesState* s : sorted) {
    v1::MetricValue* m = response.add_metrics();
    m->set_name(s->name);
    for (const auto& [k, v] : s->labels) {
      (*m->mutable_labels())[k] = v;
    }
    m->set_time_unix_ms(s->latest_ms());
    m->set_value(s->latest());
    m->set_is_histogram(s->is_histogram);
    const int oldest =
        (s->head - s->count + 1 + SeriesState::kWindowPoints) % SeriesState::kWindowPoints;
    m->set_window_ms(s->latest_ms() - s->time_ms[oldest]);
    m->set_window_count(s->count);
    if (s->is_histogram) {
      LogHistogram merged;
      for (const auto& [ms, h] : s->histograms) {
        merged.Merge(h);
      }
      m->set_p50(merged.Quantile(0.50));
      m->set_p95(merged.Quantile(0.95));
      m->set_p99(merged.Quantile(0.99));
      m->set_window_count(merged.count());
      m->set_window_ms(
          s->histograms.empty() ? 0 : s->histograms.back().first - s->histograms.front().first);
    }
  }
  for (const auto& [name, table] : agent->diagnostics) {
    *response.add_diagnostics() = table;
  }
  return response;
}

std::vector<v1::AgentInfo> FleetState::TakeDirty() {
  std::vector<v1::AgentInfo> out;
  absl::MutexLock lock(&mu_);
  for (const auto& [id, agent] : agents_) {
    absl::MutexLock agent_lock(&agent->mu);
    if (!agent->dirty) {
      continue;
    }
    agent->dirty = false;
    out.push_back(agent->info);
  }
  return out;
}

size_t FleetState::connected_count() const {
  size_t n = 0;
  absl::MutexLock lock(&mu_);
  for (const auto& [id, agent] : agents_) {
    absl::MutexLock agent_lock(&agent->mu);
    n += agent->session != 0 ? 1 : 0;
  }
  return n;
}

uint64_t FleetState::samples_ingested() const { return samples_.load(); }

}  // namespace vigil::controller
