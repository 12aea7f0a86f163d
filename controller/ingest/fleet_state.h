// The controller's in-memory picture of the fleet: every agent it knows (connected or not), its
// labels, and per series the latest value and a short rolling window (histograms are kept per
// slot of a few intervals and merged on demand, so fleet-wide percentiles are exact to the
// bucket).
// Thread-safe: the ingest thread writes, API threads read; one mutex per agent plus one for the
// map.
//
// Memory budget per series (x86-64; bench/series_memory_bench, 10,000 agents x 45 gauges + 5
// histograms, default rules; series storage is in series_state.h):
//   gauge, 152 bytes: SeriesState 64 (interned key pointer 16, histogram window pointer 8, first
//     and latest time and latest value 24, point count, rule slot and budget bookkeeping 12) + its
//     slot in the agent's index ~24 + the stream's dictionary entry 8 + the rule engine's slot 56
//     (RuleEngine::kSlotBytes). Name and labels are interned: one copy
//     for every agent that has the series (they cost the first agent that brings them).
//   a series a rate() rule reads, also its rate windows in the rule engine: about 420 bytes per
//     distinct range whatever the range and the sample rate (RuleEngine::rate_usage; with the
//     default rules, nginx_requests_per_second only: under 9 bytes per series on average).
//   histogram, the same plus its window: the intervals merged by slots of a twelfth of the
//     shortest rule window reading it (5 s for a minute; HistogramWindow::slot_ms), about one
//     byte per occupied bucket of a slot (1.7 KB for a minute at 100 requests a second, 4.5 KB
//     as 60 separate intervals before a rule reads it) and 8 bytes of index each (104), one
//     running merge per rule window, 2 bytes per bucket of the range it covers while no count
//     passes 65,535 (CompactHistogram: 0.45 KB; 4 or 8 bytes beyond), up to a seventh of slack
//     (0.3 KB), and the counters since start for the fleet endpoint (CumulativeHistogram, 232
//     bytes, inside the object's 336): about 3.0 KB in all with 100 requests a second, 1 KB or
//     so with a few.
// AgentBytesForTest() and the budget Apply checks count all of this (the window exactly, from
// HistogramWindow::bytes()); the agent's own row (AgentInfo, labels, mutex) is not counted.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/histogram.h"
#include "controller/ingest/series_state.h"
#include "controller/ingest/telemetry_validator.h"
#include "vigil/v1/agent_service.pb.h"
#include "vigil/v1/control_service.pb.h"

namespace vigil::controller {

// How many registry flushes an agent's telemetry progress alone waits between two stores, and so
// between two acknowledgements (FleetState::TakeDirty's spread): 1 up to 2,000 connected agents,
// one more for each 2,000 more, at most 5. Each acknowledgement is a write on the agent's own
// connection and each stored row an UPSERT: at 10,000 agents, 10,000 of each a second become
// 2,000. The agents keep what is not yet acknowledged a few seconds longer in their spools; if
// the controller dies in between they send it again, and a batch already applied is ignored.
uint32_t RegistryFlushSpread(size_t connected_agents);

class FleetState {
 public:
  struct Options {
    // How long each histogram series keeps its intervals, at the start (see KeepHistogramsFor).
    absl::Duration histogram_window = absl::Seconds(60);
    // Series one agent may hold across all its streams; beyond, its stream is refused.
    size_t max_series_per_agent = 10'000;
    IngestLimits limits{};  // {}: designated initializers may leave it out without a warning
    // Telemetry is acknowledged only once the registry row naming its sequence is stored
    // (MarkStored), so a controller killed in between asks the agent for it again instead of
    // having forgotten it. Welcome and ListAgents then say the stored sequence.
    bool acknowledge_when_stored = false;
  };
  // Telemetry batches the controller will never have, by reason (for /metrics): reported by
  // the agent as dropped (spool full, too old) or corrupt, or missing from the sequence with no
  // report covering them.
  struct LostCounts {
    uint64_t agent_dropped = 0;
    uint64_t corrupt = 0;
    uint64_t sequence_gap = 0;
  };
  // Samples dropped without refusing the batch, by reason (for /metrics).
  struct DropCounts {
    uint64_t non_finite = 0;    // NaN or an infinity
    uint64_t out_of_order = 0;  // older than the series' newest point
  };
  explicit FleetState(Options options)
      : options_(options),
        histogram_keep_ms_(absl::ToInt64Milliseconds(options.histogram_window)) {}
  FleetState() : FleetState(Options{}) {}

  // Loads the registry kept in the store: every agent starts disconnected.
  void Restore(const std::vector<v1::AgentInfo>& agents);

  // An agent said Hello on stream `session`. Refuses (AlreadyExists) an id that another stream
  // holds, naming where that one comes from. Returns the highest sequence already stored.
  absl::StatusOr<uint64_t> Connect(const v1::Hello& hello, const std::string& peer,
                                   uint64_t session, absl::Time now);
  // The stream `session` ended (a newer session of the same agent is left alone).
  void Disconnect(const std::string& agent_id, uint64_t session, absl::Time now);
  void Touch(const std::string& agent_id, absl::Time now);

  // Applies a batch that passed ValidateBatch; `dictionary` is the stream's series-id table.
  // Returns false when the batch was a duplicate (sequence already stored) and was skipped.
  // ResourceExhausted, with nothing changed, when the batch would take the agent past its
  // series cap or memory budget. NaN, infinities and out-of-order points are dropped and counted.
  absl::StatusOr<bool> Apply(const std::string& agent_id, const v1::TelemetryBatch& batch,
                             std::vector<SeriesState*>& dictionary, absl::Time now);
  // Lost batches counted by Apply since the start (AgentInfo.lost_batches holds each agent's).
  LostCounts lost() const;
  // Highest sequence stored for the agent; 0 for an unknown one.
  uint64_t LastSequence(const std::string& agent_id) const;
  void SetDiagnostics(const std::string& agent_id, const v1::Diagnostics& diagnostics);

  // One agent's row with the live columns filled in, as ListAgents gives it; nullopt for an
  // agent never seen. Costs nothing in the size of the fleet (a Hello calls it).
  std::optional<v1::AgentInfo> Info(const std::string& agent_id) const;
  // Every agent's row, sorted by id, with the live columns filled in, as messages: what the
  // ListAgents RPC answers (it is served by AppendListing), for callers that want the rows.
  std::vector<v1::AgentInfo> ListAgents() const;
  // The same, appended to `out` (agent_listing_bench's baseline: how the RPC was served before).
  void AppendAgents(google::protobuf::RepeatedPtrField<v1::AgentInfo>* out) const;
  // The same as a serialized v1::ListAgentsResponse, appended to `out` (the RPC's answer): each
  // row's fields that only a Hello changes are kept serialized (Connect, Restore) and copied as
  // bytes, the live ones written after them, so listing 10,000 agents copies no message and no
  // string.
  void AppendListing(std::string* out) const;
  // NotFound for an unknown agent. A gauge's window_count and window_ms are its points since the
  // controller first had the series and their span; a histogram's, the observations over the
  // controller's histogram window and that window's span.
  absl::StatusOr<v1::GetMetricsResponse> GetMetrics(const std::string& agent_id,
                                                    absl::string_view name_prefix) const;
  // Agents disconnected since before `cutoff` that still hold series: their ids. Frees nothing.
  std::vector<std::string> GoneSince(absl::Time cutoff) const;
  // Frees the series and diagnostics of `agent_id` if it is still disconnected since before
  // `cutoff`; the registry row stays. True when something was freed. Must not race Apply for the
  // same agent (call both from the ingest thread): streams hold pointers into the series.
  bool Evict(const std::string& agent_id, absl::Time cutoff);

  // Registry rows to store now (for the store writer): every row changed beyond its sequence
  // (connected, disconnected, a failed store to retry), and rows whose only change is telemetry
  // progress when it is their turn, one flush in `spread` by a turn fixed when the agent is
  // first seen, so each flush takes an even share of a streaming fleet. spread <= 1: all.
  std::vector<v1::AgentInfo> TakeDirty(uint64_t flush_number = 0, uint32_t spread = 1);
  // The rows TakeDirty gave are stored: returns (agent, sequence) pairs now safe to acknowledge.
  std::vector<std::pair<std::string, uint64_t>> MarkStored(const std::vector<v1::AgentInfo>& rows);
  // Storing them failed: they are dirty again, to be tried with the next flush.
  void MarkDirty(const std::vector<v1::AgentInfo>& rows);

  // Every declaration (Hello.metrics) of the connected agents, sorted by name, one per name and
  // kind (the first agent's unit and help), with `agents` counting who declares each.
  struct Declared {
    v1::MetricDeclaration declaration;
    size_t agents = 0;
  };
  std::vector<Declared> ConnectedDeclarations() const;

  // What the fleet endpoint shows of one connected agent, copied under the agent's lock.
  // Histogram series keep their intervals for `window` from the next batch on: the longest
  // window a loaded rule reads (a rule reload may lengthen or shorten it). Thread-safe.
  void KeepHistogramsFor(absl::Duration window);
  absl::Duration histogram_window() const;

  // Prometheus' own lookback: a series silent this long (in the agent's telemetry time) is gone.
  static constexpr absl::Duration kExposeStaleAfter = absl::Minutes(5);
  struct ExposedAgent {
    struct Series {
      std::shared_ptr<const SeriesKey> key;
      double value = 0;    // a gauge's latest value
      int histogram = -1;  // index into `histograms`; -1 for a gauge
    };
    std::string agent_id;
    Labels labels;
    std::vector<Series> series;  // sorted by name, then labels
    std::vector<CumulativeHistogram> histograms;
  };
  // Every connected agent with its series that hold a point no more than kExposeStaleAfter older
  // than the agent's newest point, sorted by agent id. The map's mutex
  // is held only while the agents are listed and each agent's only while its own series are
  // copied (no sorting, no formatting), so ingest for the rest of the fleet carries on while a
  // page of the whole fleet is built.
  std::vector<ExposedAgent> ExposeConnected() const;

  // The scraped metrics the agent's last Hello declared as per-second rates (counters), which
  // rate() rules may read; empty for an agent never seen.
  std::vector<std::string> DeclaredRates(const std::string& agent_id) const;

  // The actions an agent said it offers (its Hello); nullopt for an agent never seen.
  std::optional<std::vector<std::string>> AgentActions(const std::string& agent_id) const;

  size_t connected_count() const;
  // Agents in the registry, connected or not.
  size_t known_count() const;
  bool acknowledge_when_stored() const { return options_.acknowledge_when_stored; }
  uint64_t samples_ingested() const;
  DropCounts dropped() const;
  // Estimated bytes the agent's series hold (0 for an unknown agent).
  size_t AgentBytesForTest(const std::string& agent_id) const;

 private:
  enum class Headline : uint8_t { kCpu, kMemory, kDisk };
  struct Agent {
    mutable absl::Mutex mu;
    v1::AgentInfo info ABSL_GUARDED_BY(mu);
    uint64_t session ABSL_GUARDED_BY(mu) = 0;  // 0: not connected
    int64_t last_message_ms ABSL_GUARDED_BY(mu) = 0;
    // By interned key: one pointer per series, no string of its own.
    absl::flat_hash_map<const SeriesKey*, std::unique_ptr<SeriesState>> series ABSL_GUARDED_BY(mu);
    // The series AgentInfo's live figures come from (CPU, memory, disks), found when they are
    // added: listing the fleet reads these, not every series of every agent.
    std::vector<std::pair<Headline, const SeriesState*>> headline ABSL_GUARDED_BY(mu);
    // Their latest values (-1: none), refreshed by Apply while those series are in the cache:
    // a listing of 10,000 agents then reads three numbers a row, not a dozen series (hosts
    // with many disks) scattered over the heap.
    double live_cpu ABSL_GUARDED_BY(mu) = -1;
    double live_memory ABSL_GUARDED_BY(mu) = -1;
    double live_disk ABSL_GUARDED_BY(mu) = -1;
    // `info` serialized without the fields that change while the agent streams (LiveFields).
    std::string listed_fixed ABSL_GUARDED_BY(mu);
    std::map<std::string, v1::DiagnosticTable> diagnostics ABSL_GUARDED_BY(mu);
    // Its last Hello's scraped metrics (validated: bounded, unique names).
    std::vector<v1::MetricDeclaration> declared ABSL_GUARDED_BY(mu);
    size_t bytes ABSL_GUARDED_BY(mu) = 0;  // estimate of what `series` holds, for the budget
    bool dirty ABSL_GUARDED_BY(mu) = false;
    // Changed beyond its sequence: stored with the next flush, whatever the spread.
    bool row_changed ABSL_GUARDED_BY(mu) = false;
    uint32_t flush_turn = 0;  // set once when added; see TakeDirty
    uint64_t stored_sequence ABSL_GUARDED_BY(mu) = 0;  // in the stored registry row
  };
  Agent* Find(const std::string& agent_id) const;
  Agent& FindOrAdd(const std::string& agent_id);
  // The fields of `agent.info` that change while it streams, with the live columns filled in.
  v1::AgentInfo LiveFields(const Agent& agent) const ABSL_SHARED_LOCKS_REQUIRED(agent.mu);
  static void SerializeFixedFields(Agent& agent) ABSL_EXCLUSIVE_LOCKS_REQUIRED(agent.mu);
  static void RefreshHeadline(Agent& agent) ABSL_EXCLUSIVE_LOCKS_REQUIRED(agent.mu);
  // The columns that change while the agent streams: CPU, memory and disk, and, when
  // acknowledging stored telemetry, the stored sequence.
  void FillLive(const Agent& agent, v1::AgentInfo& info) const
      ABSL_SHARED_LOCKS_REQUIRED(agent.mu);

  const Options options_;
  SeriesKeyTable keys_;  // names and labels, shared by every agent that has them
  // Only FindOrAdd changes the map (agents are never removed): everything else takes it shared,
  // so a listing's walk (about 2 ms at 10,000 agents) never holds up the ingest thread's Find.
  // Each agent's own state is behind its own `mu`, taken after this one.
  mutable absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<Agent>> agents_ ABSL_GUARDED_BY(mu_);  // listed in order
  // The same agents by id for Find (every batch asks): one hash, not a walk of a tree of 10,000
  // nodes. Keys view agents_' keys, which stay where they are (map nodes never move).
  absl::flat_hash_map<absl::string_view, Agent*> by_id_ ABSL_GUARDED_BY(mu_);
  uint32_t agents_added_ ABSL_GUARDED_BY(mu_) = 0;  // hands out flush turns
  std::atomic<int64_t> histogram_keep_ms_;
  std::atomic<uint64_t> samples_{0};
  std::atomic<uint64_t> dropped_non_finite_{0};
  std::atomic<uint64_t> dropped_out_of_order_{0};
  std::atomic<uint64_t> lost_agent_dropped_{0};
  std::atomic<uint64_t> lost_corrupt_{0};
  std::atomic<uint64_t> lost_sequence_gap_{0};
};

// What a batch says about batches lost before it, given the highest sequence stored before it.
// Numbered ranges count only the part in (last_sequence, batch.sequence) (a batch the controller
// has is not lost, whatever the agent thinks); unnumbered ones count their `batches`. The rest of
// a jump past last_sequence + 1 is a gap nobody reported. Nothing is a gap for an agent with no
// stored sequence (last_sequence 0): a new controller, or a new agent. Pure.
FleetState::LostCounts CountLostBatches(const v1::TelemetryBatch& batch, uint64_t last_sequence);

}  // namespace vigil::controller
