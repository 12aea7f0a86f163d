// What the controller keeps per series, kept small: 10,000 agents x 50 series live in memory.
// A series' identity (name and labels) is interned and shared by every agent that has it; the
// gauge window is a ring of 32-bit time offsets with only the latest value (nothing reads older
// values); a histogram's intervals are stored varint-encoded in one buffer, and windowed merges
// are kept running (each interval is added once and taken back once), so a quantile over a
// window costs the same whatever the window's length.
// Not thread-safe: a SeriesState is guarded by its agent's mutex (FleetState), and the rule
// engine reads it on the ingest thread, the only writer. SeriesKeyTable is thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/histogram.h"
#include "controller/ingest/cumulative_histogram.h"
#include "vigil/v1/telemetry.pb.h"

namespace vigil::controller {

using Labels = std::map<std::string, std::string>;

// A series' identity. Immutable; shared by every agent that has the same name and labels.
struct SeriesKey {
  std::string name;
  Labels labels;
  // Length-prefixed name and sorted labels: no choice of names and labels makes two keys equal
  // ({ab: c} and {a: bc} once did, when the separator was lost).
  std::string encoded;
};
// The encoded form of a series' name and labels (see SeriesKey::encoded).
std::string EncodeSeriesKey(absl::string_view name, const Labels& labels);
// A key of its own, not interned (tests, benchmarks).
std::shared_ptr<const SeriesKey> MakeSeriesKey(std::string name, Labels labels = {});

// Interns series keys: one copy of each name and label set, however many agents use it. A key
// lives while a series holds it; entries of dead keys are swept as the table grows.
class SeriesKeyTable {
 public:
  std::shared_ptr<const SeriesKey> Intern(const v1::SeriesDefinition& def);
  // Live keys (for benchmarks and tests).
  size_t size() const;
  // Entries, dead ones included until swept.
  size_t EntriesForTest() const;

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::weak_ptr<const SeriesKey>> keys_ ABSL_GUARDED_BY(mu_);
  size_t sweep_at_ ABSL_GUARDED_BY(mu_) = 1024;
};

// A running merge's buckets, each count in the narrowest unsigned width that holds the largest
// (16, 32 or 64 bits): a minute of a series at 100 requests a second needs 16, a quarter of what
// LogHistogram's 64-bit buckets take. A count that would not fit widens them all; they narrow
// again when Trim() rebuilds them. Keeps counts, not the sum; quantiles as LogHistogram's.
class CompactHistogram {
 public:
  void AddToBucket(int index, uint64_t n);
  void AddToZero(uint64_t n);
  // Takes back observations an earlier add put there; a count never goes below zero.
  void RemoveFromBucket(int index, uint64_t n);
  void RemoveFromZero(uint64_t n);
  // Adds every bucket of `h` (its sum is not kept).
  void Add(const LogHistogram& h);

  uint64_t count() const { return count_; }
  uint64_t zero_count() const { return zero_count_; }
  bool empty() const { return count_ == 0; }
  // The q-quantile exactly as LogHistogram::Quantile answers it for the same buckets.
  double Quantile(double q) const;
  // Adds every bucket into `out` (its sum is left alone).
  void AddTo(LogHistogram* out) const;
  // Drops empty buckets at both ends and spare capacity once they exceed a quarter of the
  // occupied range (as LogHistogram::Trim), in the narrowest width the counts left allow.
  void Trim();

  size_t bucket_bytes() const;
  // Bytes per count: 2, 4 or 8.
  size_t width() const;
  // An upper bound of what bucket_bytes() may grow by when buckets lo..hi take `added`
  // observations in all (growth of the range, widening, a vector's doubling).
  size_t GrowthBound(int lo, int hi, uint64_t added) const;

 private:
  friend class HistogramWindow;
  template <typename Count>
  using Buckets = std::vector<Count>;
  // Adds n to bucket `index` in `counts` (the current width); false, with only the range grown,
  // when the count would not fit it.
  template <typename Count>
  bool AddIn(Buckets<Count>& counts, int index, uint64_t n);
  template <typename Count>
  void RemoveIn(Buckets<Count>& counts, int index, uint64_t n);
  // Adds (sign > 0) or takes back the buckets of one of HistogramWindow's encoded intervals
  // [p, end), its zero count read already: one dispatch on the width per interval, not per bucket.
  void ApplyEncoded(int sign, const uint8_t* p, const uint8_t* end);
  void Widen(uint64_t largest);

  int offset_ = 0;  // bucket index of the first count
  std::variant<Buckets<uint16_t>, Buckets<uint32_t>, Buckets<uint64_t>> counts_;
  uint64_t zero_count_ = 0;
  uint64_t count_ = 0;
};

// The per-interval histograms of one series within its window, oldest first, and running merges
// of their newest part ("views"), one per window length asked for.
class HistogramWindow {
 public:
  // Appends the interval measured at `ms` (callers keep times non-decreasing), then drops the
  // intervals at or before ms - keep_ms. Views that held a dropped interval let go of it.
  // The interval also joins totals(), which nothing drops.
  void Add(int64_t ms, const LogHistogram& h, int64_t keep_ms);

  // Every interval ever added, in the fleet endpoint's fixed buckets (cumulative counters for
  // Prometheus; 232 bytes, inside this object).
  const CumulativeHistogram& totals() const { return totals_; }

  size_t size() const { return intervals_.size() - dead_intervals_; }
  bool empty() const { return size() == 0; }
  int64_t front_ms() const;  // 0 when empty
  int64_t back_ms() const;   // 0 when empty

  // The merge of the intervals measured after `cutoff_ms`, recomputed from the stored intervals:
  // O(window). For reads (vigil metrics) and as the reference the running views are tested on.
  void MergeAfter(int64_t cutoff_ms, LogHistogram* out) const;
  // The same merge, kept running in a view for `window_ms` (the caller's window length, one view
  // each): moving the cutoff adds the intervals that entered and takes back those that left, so
  // the cost is the number of intervals that changed, not the window's length. The reference
  // stays valid until the next non-const call.
  const CompactHistogram& Windowed(int64_t window_ms, int64_t cutoff_ms);

  // Heap bytes held: the encoded intervals, their index and the views' buckets.
  size_t bytes() const;
  // bytes() by part, for the budget: live encodings, their index, views, and the rest (dropped
  // intervals not compacted yet, spare capacity, the object itself excluded).
  struct Usage {
    size_t encoded = 0, index = 0, views = 0, slack = 0;
  };
  Usage usage() const;
  // An upper bound of what Add(h) may add to bytes() (encoding plus views' growth); the interval
  // is assumed valid (LogHistogram::CheckProto).
  size_t GrowthBound(const v1::Histogram& h) const;

  // Views beyond this many window lengths are not kept: Windowed() then recomputes.
  static constexpr size_t kMaxViews = 4;
  // Intervals are kept merged by slots of this fraction of the shortest window a view reads
  // (aligned to the epoch; no merging before a view asks, or when a slot is shorter than the
  // intervals): a window then holds about this many encodings however often the agent collects,
  // and reads up to one slot more than its length (its oldest slot leaves when all of it is at
  // or before the cutoff).
  static constexpr int64_t kSlotsPerWindow = 12;
  // The slot length in ms; 0 while nothing is merged.
  int64_t slot_ms() const;

 private:
  struct Interval {
    int32_t ms_offset;  // from base_ms_
    uint32_t end;       // end of its encoding in bytes_ (it starts where the previous one ends)
  };
  struct View {
    int64_t window_ms = 0;
    uint64_t first = 0;  // sequence numbers: [first, end) are merged
    uint64_t end = 0;
    CompactHistogram merged;
  };
  uint64_t first_seq() const { return sequence_base_ + dead_intervals_; }
  // True when an interval measured at `ms` joins the newest one (the same slot).
  bool JoinsBack(int64_t ms) const;
  uint64_t end_seq() const { return sequence_base_ + intervals_.size(); }
  int64_t ms_of(uint64_t seq) const;
  // The first interval measured after `cutoff_ms` (end_seq() when none is).
  uint64_t FirstAfter(int64_t cutoff_ms) const;
  // Adds (sign > 0) or takes back (sign < 0) interval `seq` into `h` (a LogHistogram or a
  // CompactHistogram).
  template <typename Histogram>
  void Apply(uint64_t seq, int sign, Histogram& h) const;
  void DropFront();
  // Drops the dropped intervals' bytes, leaving room for `incoming_bytes` more.
  void Compact(size_t incoming_bytes);

  int64_t base_ms_ = 0;
  uint64_t sequence_base_ = 0;     // sequence number of intervals_[0]
  size_t dead_intervals_ = 0;      // dropped from the front, not yet compacted away
  std::vector<Interval> intervals_;
  std::vector<uint8_t> bytes_;
  uint32_t dead_bytes_ = 0;        // encoding of the dropped intervals
  std::vector<View> views_;
  CumulativeHistogram totals_;
};

// One series of one agent.
class SeriesState {
 public:
  explicit SeriesState(std::shared_ptr<const SeriesKey> key) : key_(std::move(key)) {}

  const SeriesKey& key() const { return *key_; }
  // The interned key itself, for snapshots that outlive the agent's lock.
  const std::shared_ptr<const SeriesKey>& shared_key() const { return key_; }
  const std::string& name() const { return key_->name; }
  const Labels& labels() const { return key_->labels; }

  // Takes a point as the latest; false (nothing changed) when `ms` is older than the latest
  // point, so the series stays in time order.
  bool AddValue(int64_t ms, double value);
  // A histogram interval: its observation count becomes the series' point, and the interval
  // joins the window (intervals at or before ms - keep_ms drop out). False (nothing changed)
  // when `ms` is older than the latest point.
  bool AddHistogram(int64_t ms, const LogHistogram& h, int64_t keep_ms);

  double latest() const { return count_ == 0 ? 0 : latest_; }
  int64_t latest_ms() const { return count_ == 0 ? 0 : latest_ms_; }
  // Time of the first point taken; 0 when empty.
  int64_t first_ms() const { return count_ == 0 ? 0 : first_ms_; }
  // Points taken since the first (saturating). Rules read only the latest value; vigil metrics
  // shows this count and the span since the first.
  uint32_t count() const { return count_; }
  bool is_histogram() const { return histograms_ != nullptr; }
  // Null for a gauge.
  HistogramWindow* histograms() { return histograms_.get(); }
  const HistogramWindow* histograms() const { return histograms_.get(); }

  // Bytes this series costs beyond its shared key: itself and what its histograms hold.
  size_t bytes() const;

  // A slot number the rule engine gives the series to find its own state without hashing
  // (0: none yet). Only the rule engine reads or writes it, on the ingest thread.
  uint32_t rule_slot = 0;
  // bytes() as last counted in the agent's budget (FleetState's bookkeeping).
  uint32_t accounted_bytes = 0;

 private:
  std::shared_ptr<const SeriesKey> key_;
  std::unique_ptr<HistogramWindow> histograms_;
  int64_t first_ms_ = 0;
  int64_t latest_ms_ = 0;
  double latest_ = 0;
  uint32_t count_ = 0;
};

}  // namespace vigil::controller
