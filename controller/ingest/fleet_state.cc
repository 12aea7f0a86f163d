#include "controller/ingest/fleet_state.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace vigil::controller {
namespace {

// What a series' identity may cost: the key, its strings and label nodes, and the table entry.
// Charged to the agent that brings a key nobody else has (shared keys cost it nothing).
size_t KeyBytes(const SeriesKey& key) {
  size_t bytes = sizeof(SeriesKey) + 32 /* shared_ptr block */ + 64 /* table entry */ +
                 2 * key.name.size() + 2 * key.encoded.size();
  for (const auto& [k, v] : key.labels) {
    bytes += k.size() + v.size() + 96;  // two strings and a map node
  }
  return bytes;
}

// The index slot of a series in its agent's map (flat hash map: key, pointer, control byte,
// load factor).
constexpr size_t kIndexSlotBytes = 24;

// An upper bound of what a histogram interval adds to `s` (null: a series not created yet).
size_t HistogramGrowthBound(const SeriesState* s, const v1::Histogram& h) {
  static const HistogramWindow kEmpty;
  const HistogramWindow* window = s == nullptr ? nullptr : s->histograms();
  return window == nullptr ? sizeof(HistogramWindow) + kEmpty.GrowthBound(h)
                           : window->GrowthBound(h);
}

void AppendVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

std::string FormatTime(int64_t ms) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixMillis(ms), absl::UTCTimeZone());
}

}  // namespace

FleetState::Agent* FleetState::Find(const std::string& agent_id) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = by_id_.find(agent_id);
  return it == by_id_.end() ? nullptr : it->second;
}

uint32_t RegistryFlushSpread(size_t connected_agents) {
  constexpr size_t kAgentsPerFlush = 2'000;
  constexpr uint32_t kMaxSpread = 5;
  const size_t spread = (connected_agents + kAgentsPerFlush - 1) / kAgentsPerFlush;
  return static_cast<uint32_t>(std::clamp<size_t>(spread, 1, kMaxSpread));
}

FleetState::Agent& FleetState::FindOrAdd(const std::string& agent_id) {
  absl::MutexLock lock(&mu_);
  auto [it, added] = agents_.try_emplace(agent_id);
  if (added) {
    it->second = std::make_unique<Agent>();
    it->second->flush_turn = agents_added_++;
    by_id_.emplace(it->first, it->second.get());
  }
  return *it->second;
}

void FleetState::Restore(const std::vector<v1::AgentInfo>& agents) {
  for (const v1::AgentInfo& stored : agents) {
    Agent& agent = FindOrAdd(stored.agent_id());
    absl::MutexLock lock(&agent.mu);
    agent.info = stored;
    agent.info.set_state(v1::DISCONNECTED);
    agent.stored_sequence = stored.last_sequence();
    SerializeFixedFields(agent);
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
  agent.declared.assign(hello.metrics().begin(), hello.metrics().end());
  info.set_peer(peer);
  info.set_state(v1::CONNECTED);
  if (info.first_seen_unix_ms() == 0) {
    info.set_first_seen_unix_ms(now_ms);
  }
  info.set_last_seen_unix_ms(now_ms);
  agent.session = session;
  agent.last_message_ms = now_ms;
  agent.dirty = true;
  agent.row_changed = true;
  SerializeFixedFields(agent);
  return options_.acknowledge_when_stored ? agent.stored_sequence : info.last_sequence();
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
  agent->row_changed = true;
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

absl::StatusOr<bool> FleetState::Apply(const std::string& agent_id, const v1::TelemetryBatch& batch,
                                       std::vector<SeriesState*>& dictionary, absl::Time now) {
  Agent* agent = Find(agent_id);
  if (agent == nullptr) {
    return false;
  }
  absl::MutexLock lock(&agent->mu);
  // Budget first, so a refused batch changes nothing: the series it would add, and the
  // histograms it would keep (pruning is not counted on: a replay may keep a whole window).
  std::vector<std::shared_ptr<const SeriesKey>> keys;
  keys.reserve(batch.new_series_size());
  size_t new_series = 0;
  size_t added_bytes = 0;
  for (const v1::SeriesDefinition& def : batch.new_series()) {
    keys.push_back(keys_.Intern(def));
    if (!agent->series.contains(keys.back().get())) {
      ++new_series;
      added_bytes += sizeof(SeriesState) + kIndexSlotBytes + KeyBytes(*keys.back());
    }
  }
  for (const v1::Snapshot& snapshot : batch.snapshots()) {
    for (const v1::HistogramPoint& point : snapshot.histograms()) {
      const uint32_t id = point.series_id();
      added_bytes += HistogramGrowthBound(id < dictionary.size() ? dictionary[id] : nullptr,
                                          point.histogram());
    }
  }
  if (agent->series.size() + new_series > options_.max_series_per_agent) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "telemetry.new_series: the agent would hold ", agent->series.size() + new_series,
        " series, more than the ", options_.max_series_per_agent, " allowed per agent"));
  }
  if (agent->bytes + added_bytes > options_.limits.max_agent_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "telemetry: the agent's series would take about ", agent->bytes + added_bytes,
        " bytes of controller memory, more than its budget of ", options_.limits.max_agent_bytes));
  }
  agent->last_message_ms = absl::ToUnixMillis(now);
  agent->info.set_last_seen_unix_ms(agent->last_message_ms);
  // Definitions are per stream: they must be learnt even from a batch that is a duplicate.
  for (int i = 0; i < batch.new_series_size(); ++i) {
    const v1::SeriesDefinition& def = batch.new_series(i);
    if (def.id() >= options_.limits.max_series_per_stream) {
      continue;  // ValidateBatch refuses these; kept safe for direct callers
    }
    std::unique_ptr<SeriesState>& slot = agent->series[keys[i].get()];
    if (slot == nullptr) {
      // Two holders (this batch and the new series) means no other agent has the key.
      const size_t key_bytes = keys[i].use_count() <= 1 ? KeyBytes(*keys[i]) : 0;
      slot = std::make_unique<SeriesState>(keys[i]);
      slot->accounted_bytes = static_cast<uint32_t>(slot->bytes());
      agent->bytes += slot->bytes() + kIndexSlotBytes + key_bytes;
      if (slot->name() == "host_cpu_usage_ratio") {
        agent->headline.emplace_back(Headline::kCpu, slot.get());
      } else if (slot->name() == "host_memory_used_ratio") {
        agent->headline.emplace_back(Headline::kMemory, slot.get());
      } else if (slot->name() == "host_disk_used_ratio") {
        agent->headline.emplace_back(Headline::kDisk, slot.get());
      }
    }
    // ValidateBatch keeps ids dense and below the stream cap: this grows by one at most.
    if (def.id() >= dictionary.size()) {
      dictionary.resize(static_cast<size_t>(def.id()) + 1, nullptr);
    }
    dictionary[def.id()] = slot.get();
  }
  if (batch.sequence() == 0) {
    return true;  // a heartbeat
  }
  if (batch.sequence() <= agent->info.last_sequence()) {
    return false;
  }
  const LostCounts lost = CountLostBatches(batch, agent->info.last_sequence());
  if (const uint64_t total = lost.agent_dropped + lost.corrupt + lost.sequence_gap; total > 0) {
    agent->info.set_lost_batches(agent->info.lost_batches() + total);
    lost_agent_dropped_ += lost.agent_dropped;
    lost_corrupt_ += lost.corrupt;
    lost_sequence_gap_ += lost.sequence_gap;
    static RateLimitedLog limiter(10, absl::Minutes(1));
    if (uint64_t suppressed = 0; limiter.Allow(absl::Now(), &suppressed)) {
      std::string ranges;
      for (const v1::DroppedRange& r : batch.dropped()) {
        absl::StrAppend(&ranges, ranges.empty() ? "" : ", ", r.reason(), " ",
                        r.first_sequence() == 0
                            ? absl::StrCat(r.batches(), " unnumbered")
                            : absl::StrCat(r.first_sequence(), "..", r.last_sequence()));
      }
      spdlog::warn(
          "agent '{}': {} telemetry batch(es) lost before batch {} (last stored {}): {} dropped "
          "by the agent, {} corrupt on its disk, {} missing with no report{}{} ({} in all for "
          "this agent; {} similar messages not logged)",
          agent_id, total, batch.sequence(), agent->info.last_sequence(), lost.agent_dropped,
          lost.corrupt, lost.sequence_gap, ranges.empty() ? "" : "; reported: ", ranges,
          agent->info.lost_batches(), suppressed);
    }
  }
  agent->info.set_last_sequence(batch.sequence());
  agent->dirty = true;
  const int64_t window_ms = histogram_keep_ms_.load(std::memory_order_relaxed);
  uint64_t samples = 0, non_finite = 0, out_of_order = 0;
  auto lookup = [&dictionary](uint32_t id) -> SeriesState* {
    return id < dictionary.size() ? dictionary[id] : nullptr;
  };
  for (const v1::Snapshot& snapshot : batch.snapshots()) {
    const int64_t ms = snapshot.time_unix_ms();
    const int n = std::min(snapshot.series_ids_size(), snapshot.values_size());
    for (int i = 0; i < n; ++i) {
      SeriesState* s = lookup(snapshot.series_ids(i));
      if (s == nullptr) {
        continue;
      }
      const double value = snapshot.values(i);
      if (!std::isfinite(value)) {
        ++non_finite;
      } else if (!s->AddValue(ms, value)) {
        ++out_of_order;
      } else {
        ++samples;
      }
    }
    for (const v1::HistogramPoint& point : snapshot.histograms()) {
      SeriesState* s = lookup(point.series_id());
      if (s == nullptr) {
        continue;
      }
      // One scratch histogram per thread: its buckets' storage is kept from point to point
      // instead of allocated for each (five points a second per agent).
      static thread_local LogHistogram h;
      if (!h.FromProto(point.histogram())) {
        continue;  // ValidateBatch refuses these; kept safe for direct callers
      }
      if (!s->AddHistogram(ms, h, window_ms)) {
        ++out_of_order;
        continue;
      }
      // Counted exactly: what the window holds now, views included, against what was counted.
      const size_t now_bytes = s->bytes();
      agent->bytes = agent->bytes + now_bytes - std::min<size_t>(s->accounted_bytes,
                                                                 agent->bytes + now_bytes);
      s->accounted_bytes = static_cast<uint32_t>(now_bytes);
      ++samples;
    }
  }
  samples_ += samples;
  if (samples > 0) {
    RefreshHeadline(*agent);
  }
  if (non_finite + out_of_order > 0) {
    dropped_non_finite_ += non_finite;
    dropped_out_of_order_ += out_of_order;
    static RateLimitedLog limiter(5, absl::Minutes(1));
    if (uint64_t suppressed = 0; limiter.Allow(absl::Now(), &suppressed)) {
      spdlog::warn(
          "agent '{}': dropped {} NaN or infinite and {} out-of-order sample(s) of batch {} "
          "({} similar messages not logged)",
          agent_id, non_finite, out_of_order, batch.sequence(), suppressed);
    }
  }
  return true;
}

FleetState::LostCounts CountLostBatches(const v1::TelemetryBatch& batch, uint64_t last_sequence) {
  FleetState::LostCounts lost;
  const uint64_t seq = batch.sequence();
  if (seq == 0) {
    return lost;
  }
  // Reported numbered ranges, clipped to the hole (last_sequence, seq), merged so that
  // overlapping reports count once.
  std::vector<std::pair<uint64_t, uint64_t>> covered;  // [first, last], with its reason's slot
  std::vector<bool> corrupt;
  for (const v1::DroppedRange& r : batch.dropped()) {
    const bool is_corrupt = r.reason() == "corrupt";
    if (r.first_sequence() == 0) {
      (is_corrupt ? lost.corrupt : lost.agent_dropped) += r.batches();
      continue;
    }
    const uint64_t lo = std::max(r.first_sequence(), last_sequence + 1);
    const uint64_t hi = std::min(r.last_sequence(), seq - 1);
    if (lo <= hi) {
      covered.emplace_back(lo, hi);
      corrupt.push_back(is_corrupt);
    }
  }
  std::vector<size_t> order(covered.size());
  for (size_t i = 0; i < order.size(); ++i) {
    order[i] = i;
  }
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return covered[a].first < covered[b].first; });
  uint64_t next = 0;  // first sequence not yet counted
  uint64_t reported = 0;
  for (size_t i : order) {
    const uint64_t lo = std::max(covered[i].first, next);
    const uint64_t hi = covered[i].second;
    if (lo > hi) {
      continue;
    }
    (corrupt[i] ? lost.corrupt : lost.agent_dropped) += hi - lo + 1;
    reported += hi - lo + 1;
    next = hi + 1;
  }
  if (last_sequence != 0 && seq > last_sequence + 1) {
    lost.sequence_gap = (seq - last_sequence - 1) - reported;
  }
  return lost;
}

FleetState::LostCounts FleetState::lost() const {
  return LostCounts{.agent_dropped = lost_agent_dropped_.load(),
                    .corrupt = lost_corrupt_.load(),
                    .sequence_gap = lost_sequence_gap_.load()};
}

uint64_t FleetState::LastSequence(const std::string& agent_id) const {
  Agent* agent = Find(agent_id);
  if (agent == nullptr) {
    return 0;
  }
  absl::MutexLock lock(&agent->mu);
  return agent->info.last_sequence();
}

std::vector<std::string> FleetState::GoneSince(absl::Time cutoff) const {
  const int64_t cutoff_ms = absl::ToUnixMillis(cutoff);
  std::vector<std::string> gone;
  absl::ReaderMutexLock lock(&mu_);
  for (const auto& [id, agent] : agents_) {
    absl::MutexLock agent_lock(&agent->mu);
    if (agent->session == 0 && agent->last_message_ms < cutoff_ms &&
        (!agent->series.empty() || !agent->diagnostics.empty())) {
      gone.push_back(id);
    }
  }
  return gone;
}

bool FleetState::Evict(const std::string& agent_id, absl::Time cutoff) {
  Agent* agent = Find(agent_id);
  if (agent == nullptr) {
    return false;
  }
  absl::MutexLock lock(&agent->mu);
  if (agent->session != 0 || agent->last_message_ms >= absl::ToUnixMillis(cutoff)) {
    return false;
  }
  const bool had = !agent->series.empty() || !agent->diagnostics.empty();
  agent->headline.clear();
  RefreshHeadline(*agent);  // nothing to show now
  agent->series.clear();
  agent->diagnostics.clear();
  agent->bytes = 0;
  return had;
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

std::vector<std::string> FleetState::DeclaredRates(const std::string& agent_id) const {
  std::vector<std::string> names;
  Agent* agent = Find(agent_id);
  if (agent == nullptr) {
    return names;
  }
  absl::MutexLock lock(&agent->mu);
  for (const v1::MetricDeclaration& d : agent->declared) {
    if (d.kind() == v1::MetricDeclaration::GAUGE && d.per_second_rate()) {
      names.push_back(d.name());
    }
  }
  return names;
}

void FleetState::SetDiagnostics(const std::string& agent_id, const v1::Diagnostics& diagnostics) {
  Agent* agent = Find(agent_id);
  if (agent == nullptr) {
    return;
  }
  absl::MutexLock lock(&agent->mu);
  for (const v1::DiagnosticTable& table : diagnostics.tables()) {
    // Tables are kept by name, latest wins; a bounded set of names, so repeated answers with
    // ever new names cannot grow the controller.
    if (agent->diagnostics.size() >= options_.limits.max_diagnostic_tables &&
        !agent->diagnostics.contains(table.name())) {
      continue;
    }
    agent->diagnostics[table.name()] = table;
  }
}

void FleetState::RefreshHeadline(Agent& agent) {
  double cpu = -1, memory = -1, disk = -1;
  for (const auto& [headline, s] : agent.headline) {
    if (s->count() == 0) {
      continue;
    }
    switch (headline) {
      case Headline::kCpu:
        cpu = s->latest();
        break;
      case Headline::kMemory:
        memory = s->latest();
        break;
      case Headline::kDisk:
        disk = std::max(disk, s->latest());
        break;
    }
  }
  agent.live_cpu = cpu;
  agent.live_memory = memory;
  agent.live_disk = disk;
}

void FleetState::FillLive(const Agent& agent, v1::AgentInfo& info) const {
  info.set_cpu_usage_ratio(agent.live_cpu);
  info.set_memory_used_ratio(agent.live_memory);
  info.set_disk_used_ratio(agent.live_disk);
  if (options_.acknowledge_when_stored) {
    info.set_last_sequence(agent.stored_sequence);
  }
}

std::optional<v1::AgentInfo> FleetState::Info(const std::string& agent_id) const {
  const Agent* agent = Find(agent_id);
  if (agent == nullptr) {
    return std::nullopt;
  }
  absl::MutexLock lock(&agent->mu);
  v1::AgentInfo info = agent->info;
  FillLive(*agent, info);
  return info;
}

std::vector<v1::AgentInfo> FleetState::ListAgents() const {
  google::protobuf::RepeatedPtrField<v1::AgentInfo> infos;
  AppendAgents(&infos);
  return {std::make_move_iterator(infos.begin()), std::make_move_iterator(infos.end())};
}

v1::AgentInfo FleetState::LiveFields(const Agent& agent) const {
  v1::AgentInfo live;
  live.set_state(agent.info.state());
  live.set_last_seen_unix_ms(agent.info.last_seen_unix_ms());
  live.set_last_sequence(agent.info.last_sequence());
  live.set_lost_batches(agent.info.lost_batches());
  FillLive(agent, live);
  return live;
}

void FleetState::SerializeFixedFields(Agent& agent) {
  // A copy without what LiveFields writes: a field added to AgentInfo later is fixed (and
  // listed) unless it is cleared here too.
  v1::AgentInfo fixed = agent.info;
  fixed.clear_state();
  fixed.clear_last_seen_unix_ms();
  fixed.clear_last_sequence();
  fixed.clear_lost_batches();
  fixed.clear_cpu_usage_ratio();
  fixed.clear_memory_used_ratio();
  fixed.clear_disk_used_ratio();
  agent.listed_fixed.clear();
  fixed.AppendToString(&agent.listed_fixed);
}

void FleetState::AppendListing(std::string* out) const {
  // ListAgentsResponse is `repeated AgentInfo agents = 1`: per agent, the field's tag, the
  // row's length and its bytes. A message's fields may come in any order on the wire (parsers
  // merge them), so the live fields follow the fixed ones.
  constexpr char kAgentsTag = (1 << 3) | 2;  // field 1, length-delimited
  std::string live_bytes;
  absl::ReaderMutexLock lock(&mu_);
  out->reserve(out->size() + agents_.size() * 256);
  for (const auto& [id, agent] : agents_) {
    absl::MutexLock agent_lock(&agent->mu);
    live_bytes.clear();
    LiveFields(*agent).AppendToString(&live_bytes);
    out->push_back(kAgentsTag);
    AppendVarint(out, agent->listed_fixed.size() + live_bytes.size());
    out->append(agent->listed_fixed);
    out->append(live_bytes);
  }
}

void FleetState::AppendAgents(google::protobuf::RepeatedPtrField<v1::AgentInfo>* out) const {
  absl::ReaderMutexLock lock(&mu_);
  out->Reserve(out->size() + static_cast<int>(agents_.size()));
  for (const auto& [id, agent] : agents_) {
    absl::MutexLock agent_lock(&agent->mu);
    v1::AgentInfo* info = out->Add();
    *info = agent->info;
    FillLive(*agent, *info);
  }
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
    if (absl::StartsWith(s->name(), name_prefix) && s->count() > 0) {
      sorted.push_back(s.get());
    }
  }
  std::sort(sorted.begin(), sorted.end(), [](const SeriesState* a, const SeriesState* b) {
    return std::tie(a->name(), a->labels()) < std::tie(b->name(), b->labels());
  });
  for (const SeriesState* s : sorted) {
    v1::MetricValue* m = response.add_metrics();
    m->set_name(s->name());
    for (const auto& [k, v] : s->labels()) {
      (*m->mutable_labels())[k] = v;
    }
    m->set_time_unix_ms(s->latest_ms());
    m->set_value(s->latest());
    m->set_is_histogram(s->is_histogram());
    m->set_window_ms(s->latest_ms() - s->first_ms());
    m->set_window_count(s->count());
    if (const HistogramWindow* window = s->histograms(); window != nullptr) {
      // The last histogram_window of the options (a minute), however long rules make the
      // series keep its intervals (KeepHistogramsFor).
      const int64_t view_ms = absl::ToInt64Milliseconds(options_.histogram_window);
      LogHistogram merged;
      window->MergeAfter(window->back_ms() - view_ms, &merged);
      m->set_p50(merged.Quantile(0.50));
      m->set_p95(merged.Quantile(0.95));
      m->set_p99(merged.Quantile(0.99));
      m->set_window_count(merged.count());
      m->set_window_ms(std::min(window->back_ms() - window->front_ms(), view_ms));
    }
  }
  for (const auto& [name, table] : agent->diagnostics) {
    *response.add_diagnostics() = table;
  }
  for (const v1::MetricDeclaration& d : agent->declared) {
    if (absl::StartsWith(d.name(), name_prefix)) {
      *response.add_declared() = d;
    }
  }
  return response;
}

std::vector<FleetState::Declared> FleetState::ConnectedDeclarations() const {
  std::map<std::pair<std::string, int>, Declared> by_name;
  absl::ReaderMutexLock lock(&mu_);
  for (const auto& [id, agent] : agents_) {
    absl::MutexLock agent_lock(&agent->mu);
    if (agent->session == 0) {
      continue;
    }
    for (const v1::MetricDeclaration& d : agent->declared) {
      Declared& entry = by_name[{d.name(), d.kind()}];
      if (entry.agents++ == 0) {
        entry.declaration = d;
      }
    }
  }
  std::vector<Declared> out;
  out.reserve(by_name.size());
  for (auto& [key, entry] : by_name) {
    out.push_back(std::move(entry));
  }
  return out;
}

void FleetState::KeepHistogramsFor(absl::Duration window) {
  histogram_keep_ms_.store(absl::ToInt64Milliseconds(window), std::memory_order_relaxed);
}

absl::Duration FleetState::histogram_window() const {
  return absl::Milliseconds(histogram_keep_ms_.load(std::memory_order_relaxed));
}

std::vector<FleetState::ExposedAgent> FleetState::ExposeConnected() const {
  // Agents are never removed from the map (Evict frees their series only), so the pointers
  // stay valid once the map's lock is released.
  std::vector<std::pair<std::string, const Agent*>> listed;
  {
    absl::ReaderMutexLock lock(&mu_);
    listed.reserve(agents_.size());
    for (const auto& [id, agent] : agents_) {
      listed.emplace_back(id, agent.get());
    }
  }
  std::vector<ExposedAgent> out;
  out.reserve(listed.size());
  for (const auto& [id, agent] : listed) {
    ExposedAgent exposed;
    {
      absl::MutexLock lock(&agent->mu);
      if (agent->session == 0) {
        continue;
      }
      exposed.agent_id = id;
      for (const auto& [k, v] : agent->info.labels()) {
        exposed.labels.emplace(k, v);
      }
      // A series the agent stopped sending (a disk unmounted, a process gone) leaves the page
      // once its newest point is kExposeStaleAfter older than the agent's newest, as a target's
      // series leave Prometheus; telemetry time, so a late agent is not emptied.
      int64_t newest_ms = 0;
      for (const auto& [key, s] : agent->series) {
        newest_ms = std::max(newest_ms, s->latest_ms());
      }
      const int64_t stale_before_ms = newest_ms - absl::ToInt64Milliseconds(kExposeStaleAfter);
      exposed.series.reserve(agent->series.size());
      for (const auto& [key, s] : agent->series) {
        if (s->count() == 0 || s->latest_ms() < stale_before_ms) {
          continue;
        }
        ExposedAgent::Series& copy = exposed.series.emplace_back();
        copy.key = s->shared_key();
        if (const HistogramWindow* window = s->histograms(); window != nullptr) {
          copy.histogram = static_cast<int>(exposed.histograms.size());
          exposed.histograms.push_back(window->totals());
        } else {
          copy.value = s->latest();
        }
      }
    }
    std::sort(exposed.series.begin(), exposed.series.end(),
              [](const ExposedAgent::Series& a, const ExposedAgent::Series& b) {
                return std::tie(a.key->name, a.key->labels) < std::tie(b.key->name, b.key->labels);
              });
    out.push_back(std::move(exposed));
  }
  return out;
}

std::vector<v1::AgentInfo> FleetState::TakeDirty(uint64_t flush_number, uint32_t spread) {
  std::vector<v1::AgentInfo> out;
  absl::ReaderMutexLock lock(&mu_);
  for (const auto& [id, agent] : agents_) {
    absl::MutexLock agent_lock(&agent->mu);
    if (!agent->dirty) {
      continue;
    }
    if (!agent->row_changed && spread > 1 && agent->flush_turn % spread != flush_number % spread) {
      continue;
    }
    agent->dirty = false;
    agent->row_changed = false;
    out.push_back(agent->info);
  }
  return out;
}

std::vector<std::pair<std::string, uint64_t>> FleetState::MarkStored(
    const std::vector<v1::AgentInfo>& rows) {
  std::vector<std::pair<std::string, uint64_t>> acks;
  for (const v1::AgentInfo& row : rows) {
    Agent* agent = Find(row.agent_id());
    if (agent == nullptr) {
      continue;
    }
    absl::MutexLock lock(&agent->mu);
    if (row.last_sequence() > agent->stored_sequence) {
      agent->stored_sequence = row.last_sequence();
      acks.emplace_back(row.agent_id(), row.last_sequence());
    }
  }
  return acks;
}

void FleetState::MarkDirty(const std::vector<v1::AgentInfo>& rows) {
  for (const v1::AgentInfo& row : rows) {
    if (Agent* agent = Find(row.agent_id()); agent != nullptr) {
      absl::MutexLock lock(&agent->mu);
      agent->dirty = true;
      agent->row_changed = true;  // retried at the next flush, not at the agent's next turn
    }
  }
}

size_t FleetState::connected_count() const {
  size_t n = 0;
  absl::ReaderMutexLock lock(&mu_);
  for (const auto& [id, agent] : agents_) {
    absl::MutexLock agent_lock(&agent->mu);
    n += agent->session != 0 ? 1 : 0;
  }
  return n;
}

size_t FleetState::known_count() const {
  absl::ReaderMutexLock lock(&mu_);
  return agents_.size();
}

uint64_t FleetState::samples_ingested() const { return samples_.load(); }

FleetState::DropCounts FleetState::dropped() const {
  return DropCounts{.non_finite = dropped_non_finite_.load(),
                    .out_of_order = dropped_out_of_order_.load()};
}

size_t FleetState::AgentBytesForTest(const std::string& agent_id) const {
  Agent* agent = Find(agent_id);
  if (agent == nullptr) {
    return 0;
  }
  absl::MutexLock lock(&agent->mu);
  return agent->bytes;
}

}  // namespace vigil::controller
