// Series storage: the compact gauge ring, interned keys, and histogram windows whose running
// merges must equal a merge of the window recomputed from scratch.
#include "controller/ingest/series_state.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <deque>
#include <string>
#include <limits>
#include <random>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
namespace vigil::controller {
namespace {

// The window as it was kept before: whole histograms in a deque, merged newest first while
// after the cutoff. The reference the compact window is held to. `slot_ms` > 0 merges an
// interval into the newest one when both fall in the same slot (aligned to the epoch), which
// then carries the later time.
class ReferenceWindow {
 public:
  void Add(int64_t ms, const LogHistogram& h, int64_t keep_ms, int64_t slot_ms = 0) {
    while (!histograms_.empty() && histograms_.front().first <= ms - keep_ms) {
      histograms_.pop_front();
    }
    if (slot_ms > 0 && !histograms_.empty() &&
        histograms_.back().first / slot_ms == ms / slot_ms) {
      histograms_.back().first = ms;
      histograms_.back().second.Merge(h);
      return;
    }
    histograms_.emplace_back(ms, h);
  }
  LogHistogram MergeAfter(int64_t cutoff) const {
    LogHistogram merged;
    for (auto it = histograms_.rbegin(); it != histograms_.rend() && it->first > cutoff; ++it) {
      merged.Merge(it->second);
    }
    return merged;
  }
  size_t size() const { return histograms_.size(); }

 private:
  std::deque<std::pair<int64_t, LogHistogram>> histograms_;
};

void ExpectSame(const LogHistogram& actual, const LogHistogram& expected, const std::string& where) {
  ASSERT_EQ(actual.count(), expected.count()) << where;
  ASSERT_EQ(actual.zero_count(), expected.zero_count()) << where;
  for (double q : {0.0, 0.01, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0}) {
    ASSERT_EQ(actual.Quantile(q), expected.Quantile(q)) << where << " q=" << q;
  }
}

void ExpectSame(const CompactHistogram& actual, const LogHistogram& expected,
                const std::string& where) {
  ASSERT_EQ(actual.count(), expected.count()) << where;
  ASSERT_EQ(actual.zero_count(), expected.zero_count()) << where;
  for (double q : {0.0, 0.01, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0}) {
    ASSERT_EQ(actual.Quantile(q), expected.Quantile(q)) << where << " q=" << q;
  }
  LogHistogram copied;
  actual.AddTo(&copied);
  ExpectSame(copied, expected, where + " (AddTo)");
}

LogHistogram RandomHistogram(std::mt19937_64& rng) {
  LogHistogram h;
  std::lognormal_distribution<double> latency(std::log(0.08), 1.0);
  std::uniform_int_distribution<int> n(0, 200);
  const int observations = n(rng);
  for (int i = 0; i < observations; ++i) {
    h.Add(latency(rng));
  }
  if (rng() % 7 == 0) {
    h.Add(0, 3);  // the zero bucket
  }
  if (rng() % 13 == 0) {
    h.Add(1e300);  // the top of the schema
    h.Add(2e-6);   // near the bottom
  }
  if (rng() % 17 == 0) {
    h.Add(1.5, uint64_t{1} << 38);  // counts of many bytes
  }
  return h;
}

TEST(CompactHistogramTest, CountsAsLogHistogramInTheNarrowestWidthThatHoldsThem) {
  CompactHistogram compact;
  LogHistogram reference;
  EXPECT_EQ(compact.width(), 2u);
  auto add = [&](int index, uint64_t n) {
    compact.AddToBucket(index, n);
    reference.AddToBucket(index, n);
  };
  auto remove = [&](int index, uint64_t n) {
    compact.RemoveFromBucket(index, n);
    reference.RemoveFromBucket(index, n);
  };
  for (int i = 0; i < 100; ++i) {
    add(i, 100 + static_cast<uint64_t>(i));
  }
  compact.AddToZero(7);
  reference.AddToZero(7);
  ExpectSame(compact, reference, "small counts");
  EXPECT_EQ(compact.width(), 2u);
  EXPECT_LE(compact.bucket_bytes(), 2u * 128);  // 100 counts, a vector's doubling

  add(50, 70'000);  // past 16 bits
  EXPECT_EQ(compact.width(), 4u);
  ExpectSame(compact, reference, "one count past 16 bits");
  add(200, uint64_t{1} << 33);  // past 32 bits, at a new end
  EXPECT_EQ(compact.width(), 8u);
  ExpectSame(compact, reference, "one count past 32 bits");

  // Taken back, the big counts leave; a trim that rebuilds the buckets narrows them again.
  remove(200, uint64_t{1} << 33);
  remove(50, 70'000);
  remove(-5, 3);      // outside the range: nothing
  remove(10, 1'000);  // more than the bucket holds: it empties, never wraps
  reference.Trim();
  compact.Trim();
  EXPECT_EQ(compact.width(), 2u);
  ExpectSame(compact, reference, "after the big counts left");
  EXPECT_EQ(compact.bucket_bytes(), 2u * 100);

  add(LogHistogram::kMaxIndex + 1, 5);  // outside the schema: ignored, as LogHistogram does
  ExpectSame(compact, reference, "outside the schema");
}

TEST(CompactHistogramTest, GrowthBoundCoversRangeGrowthAndWidening) {
  std::mt19937_64 rng(9);
  CompactHistogram compact;
  for (int step = 0; step < 2'000; ++step) {
    const int lo = static_cast<int>(rng() % 400) - 200;
    const int hi = lo + static_cast<int>(rng() % 40);
    // Mostly small counts, sometimes ones that widen the buckets.
    const uint64_t n = rng() % 50 == 0 ? (uint64_t{1} << (16 + rng() % 24)) : rng() % 30;
    const size_t before = compact.bucket_bytes();
    const size_t bound = compact.GrowthBound(lo, hi, n * static_cast<uint64_t>(hi - lo + 1));
    for (int i = lo; i <= hi; ++i) {
      compact.AddToBucket(i, n);
    }
    ASSERT_LE(compact.bucket_bytes(), before + bound) << "step " << step;
    if (rng() % 3 == 0) {
      compact.Trim();
    }
  }
}

TEST(HistogramWindowTest, RunningMergesEqualRecomputationOnRandomData) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    std::mt19937_64 rng(seed);
    HistogramWindow window;
    ReferenceWindow reference;
    const int64_t keep_ms = 60'000;
    // More window lengths than views are kept, so the recomputing fallback is used too. With
    // odd seeds the shortest window is a second (slots too short to merge intervals a second
    // apart); with even ones 30 s (slots of 2.5 s: most intervals join the one before).
    const std::vector<int64_t> windows =
        seed % 2 == 1 ? std::vector<int64_t>{1'000, 5'000, 10'000, 30'000, 60'000, 300'000}
                      : std::vector<int64_t>{30'000, 60'000, 90'000, 120'000, 300'000};
    int64_t ms = 1'700'000'000'000;
    for (int step = 0; step < 400; ++step) {
      // Mostly one interval a second; sometimes several at the same time, or a long gap.
      const uint64_t r = rng() % 20;
      ms += r == 0 ? 0 : r == 1 ? 70'000 : r == 2 ? 15'000 : 1'000;
      const LogHistogram h = RandomHistogram(rng);
      reference.Add(ms, h, keep_ms, window.slot_ms());
      window.Add(ms, h, keep_ms);
      ASSERT_EQ(window.size(), reference.size());
      for (int probe = 0; probe < 3; ++probe) {
        const int64_t w = windows[rng() % windows.size()];
        // The evaluation clock: a little after the newest interval, sometimes before it (agent
        // clocks run ahead) and sometimes well after (a late evaluation).
        const int64_t now = ms + static_cast<int64_t>(rng() % 3000) - 1000 +
                            (rng() % 10 == 0 ? static_cast<int64_t>(rng() % 40'000) : 0);
        const std::string where = absl::StrCat("seed ", seed, " step ", step, " window ", w);
        const LogHistogram expected = reference.MergeAfter(now - w);
        ExpectSame(window.Windowed(w, now - w), expected, where);
        LogHistogram recomputed;
        window.MergeAfter(now - w, &recomputed);
        ExpectSame(recomputed, expected, where + " (MergeAfter)");
      }
    }
  }
}

TEST(HistogramWindowTest, ACutoffMovedBackTakesIntervalsBackIn) {
  HistogramWindow window;
  LogHistogram fast, slow;
  fast.Add(0.05, 100);
  slow.Add(3.0, 100);
  window.Add(1'000, slow, 60'000);
  window.Add(2'000, fast, 60'000);
  EXPECT_EQ(window.Windowed(1'000, 1'500).count(), 100u);  // only the fast one
  EXPECT_EQ(window.Windowed(1'000, 500).count(), 200u);    // the clock was set back
  EXPECT_EQ(window.Windowed(1'000, 2'000).count(), 0u);
}

TEST(HistogramWindowTest, DroppedIntervalsLeaveTheViewsAndMemoryStaysBounded) {
  HistogramWindow window;
  std::mt19937_64 rng(3);
  size_t peak = 0;
  for (int64_t s = 1; s <= 2'000; ++s) {
    window.Add(s * 1'000, RandomHistogram(rng), 60'000);
    window.Windowed(120'000, s * 1'000 - 120'000);  // longer than what is kept
    if (s > 200) {
      peak = std::max(peak, window.bytes());
    }
  }
  // The 2 min view makes slots of 10 s: the last minute's six and the one just begun.
  EXPECT_EQ(window.slot_ms(), 10'000);
  EXPECT_EQ(window.size(), 7u);
  LogHistogram all;
  window.MergeAfter(std::numeric_limits<int64_t>::min(), &all);
  EXPECT_EQ(window.Windowed(120'000, 2'000'000 - 120'000).count(), all.count());
  // The buffers are compacted as the window moves: steady, not growing with the series' age.
  size_t late_peak = 0;
  for (int64_t s = 2'001; s <= 4'000; ++s) {
    window.Add(s * 1'000, RandomHistogram(rng), 60'000);
    late_peak = std::max(late_peak, window.bytes());
  }
  EXPECT_LE(late_peak, peak * 3 / 2);
}

TEST(HistogramWindowTest, SlotsOfATwelfthOfTheShortestWindowKeepAMinuteInTwelveEncodings) {
  std::mt19937_64 rng(11);
  HistogramWindow slotted;    // read through a one-minute view: slots of 5 s
  HistogramWindow unslotted;  // never read through a view: an encoding per interval
  EXPECT_EQ(slotted.slot_ms(), 0);
  std::vector<LogHistogram> added(601);  // by second
  for (int64_t s = 1; s <= 600; ++s) {
    added[s] = RandomHistogram(rng);
    slotted.Add(s * 1'000, added[s], 60'000);
    unslotted.Add(s * 1'000, added[s], 60'000);
    slotted.Windowed(60'000, s * 1'000 - 60'000);
  }
  auto merged = [&added](int64_t from_s, int64_t to_s) {
    LogHistogram m;
    for (int64_t s = from_s; s <= to_s; ++s) {
      m.Merge(added[s]);
    }
    return m;
  };
  EXPECT_EQ(slotted.slot_ms(), 5'000);
  EXPECT_EQ(unslotted.size(), 60u);
  // 541..600 s are in the slots [540, 545) .. [595, 600) and [600, 605).
  EXPECT_EQ(slotted.size(), 13u);
  EXPECT_LT(slotted.usage().encoded, unslotted.usage().encoded * 3 / 4);
  EXPECT_LT(slotted.usage().index, unslotted.usage().index / 4);
  // At 600 s the minute's view still holds all of the slot [540, 545), 540 s included: a
  // window reads up to one slot more than its length, never less.
  ExpectSame(slotted.Windowed(60'000, 540'000), merged(540, 600), "slotted view at 600 s");
  LogHistogram minute;
  unslotted.MergeAfter(540'000, &minute);
  ExpectSame(minute, merged(541, 600), "unslotted window at 600 s");
  // Once 544 s is at the cutoff the whole slot leaves.
  slotted.Add(604'000, added[1], 60'000);
  ExpectSame(slotted.Windowed(60'000, 544'000), [&] {
    LogHistogram m = merged(545, 600);
    m.Merge(added[1]);
    return m;
  }(), "slotted view at 604 s");
}

TEST(HistogramWindowTest, GrowthBoundCoversWhatAnAddTakes) {
  HistogramWindow window;
  std::mt19937_64 rng(5);
  for (int64_t s = 1; s <= 300; ++s) {
    const LogHistogram h = RandomHistogram(rng);
    v1::Histogram wire;
    h.ToProto(&wire);
    const size_t before = window.bytes();
    const size_t bound = window.GrowthBound(wire);
    window.Add(s * 1'000, h, 60'000);
    EXPECT_LE(window.bytes(), before + bound) << "interval " << s;
    window.Windowed(10'000, s * 1'000 - 10'000);
  }
}

TEST(SeriesStateTest, AGaugeKeepsItsLatestPointInOrderAndCountsPoints) {
  SeriesState s(MakeSeriesKey("host_load1"));
  EXPECT_EQ(s.count(), 0u);
  EXPECT_EQ(s.latest_ms(), 0);
  EXPECT_EQ(s.first_ms(), 0);
  for (int i = 1; i <= 40; ++i) {
    ASSERT_TRUE(s.AddValue(i * 1'000, i));
  }
  EXPECT_EQ(s.count(), 40u);
  EXPECT_EQ(s.latest(), 40);
  EXPECT_EQ(s.latest_ms(), 40'000);
  EXPECT_EQ(s.first_ms(), 1'000);
  EXPECT_FALSE(s.AddValue(39'999, 1)) << "older than the newest point";
  EXPECT_EQ(s.latest(), 40);
  EXPECT_EQ(s.count(), 40u);
  EXPECT_TRUE(s.AddValue(40'000, 41)) << "the same time is in order";
  EXPECT_EQ(s.latest(), 41);
  EXPECT_FALSE(s.is_histogram());
}

TEST(SeriesStateTest, PointsFarApartKeepTheirExactTimes) {
  SeriesState s(MakeSeriesKey("host_load1"));
  const int64_t day = 86'400'000;
  ASSERT_TRUE(s.AddValue(1'000, 1));
  ASSERT_TRUE(s.AddValue(40 * day, 3));  // past int32 milliseconds from the first point
  EXPECT_EQ(s.latest_ms(), 40 * day);
  EXPECT_EQ(s.first_ms(), 1'000);
  EXPECT_FALSE(s.AddValue(40 * day - 1, 5));
  EXPECT_EQ(s.count(), 2u);
}

TEST(SeriesStateTest, HistogramIntervalsJoinTheWindowInOrder) {
  SeriesState s(MakeSeriesKey("nginx_request_duration_seconds"));
  LogHistogram h;
  h.Add(0.1, 10);
  ASSERT_TRUE(s.AddHistogram(1'000, h, 60'000));
  ASSERT_TRUE(s.is_histogram());
  EXPECT_EQ(s.latest(), 10);
  EXPECT_FALSE(s.AddHistogram(500, h, 60'000)) << "out of order";
  EXPECT_EQ(s.histograms()->size(), 1u);
}

TEST(SeriesStateTest, AGaugeCostsAFewDozenBytes) {
  SeriesState s(MakeSeriesKey("host_disk_used_ratio", {{"mount", "/var/lib/postgresql"}}));
  for (int i = 0; i < 100; ++i) {
    s.AddValue(i * 1'000, 0.5);
  }
  EXPECT_LE(s.bytes(), 64u) << "its key is shared; the series keeps the latest point only";
}

TEST(SeriesKeyTableTest, AgentsShareOneKeyPerNameAndLabels) {
  SeriesKeyTable table;
  v1::SeriesDefinition a;
  a.set_name("host_disk_used_ratio");
  (*a.mutable_labels())["mount"] = "/";
  (*a.mutable_labels())["device"] = "sda1";
  v1::SeriesDefinition b;
  b.set_name("host_disk_used_ratio");
  (*b.mutable_labels())["device"] = "sda1";
  (*b.mutable_labels())["mount"] = "/";
  auto ka = table.Intern(a);
  auto kb = table.Intern(b);
  EXPECT_EQ(ka.get(), kb.get());
  EXPECT_EQ(ka->name, "host_disk_used_ratio");
  EXPECT_EQ(ka->labels.at("mount"), "/");
  // Separators cannot be forged: {ab: c} and {a: bc} stay apart.
  v1::SeriesDefinition c, d;
  c.set_name("x");
  (*c.mutable_labels())["ab"] = "c";
  d.set_name("x");
  (*d.mutable_labels())["a"] = "bc";
  auto kc = table.Intern(c);
  auto kd = table.Intern(d);
  EXPECT_NE(kc.get(), kd.get());
  EXPECT_EQ(table.size(), 3u);
  kc.reset();
  EXPECT_EQ(table.size(), 2u) << "a key nobody holds is gone";
  // Keys of many gone agents are swept as the table grows.
  for (int i = 0; i < 5'000; ++i) {
    v1::SeriesDefinition e;
    e.set_name(absl::StrCat("m", i));
    table.Intern(e);  // dropped at once
  }
  EXPECT_EQ(table.size(), 2u);
  EXPECT_LT(table.EntriesForTest(), 1'100u) << "dead entries were never swept";
}

TEST(LogHistogramWindowOpsTest, SubtractUndoesMerge) {
  std::mt19937_64 rng(9);
  LogHistogram base = RandomHistogram(rng);
  const LogHistogram before = base;
  LogHistogram other = RandomHistogram(rng);
  other.Add(1e-9, 2);
  base.Merge(other);
  base.Subtract(other);
  ExpectSame(base, before, "merge then subtract");
  // Trimmed after the slow tail left, the merge keeps its quantiles and gives memory back.
  LogHistogram sliding;
  sliding.Add(0.05, 10);
  LogHistogram tail;
  tail.Add(1e6, 1);
  tail.Add(1e-5, 1);
  sliding.Merge(tail);
  const size_t wide = sliding.bucket_bytes();
  sliding.Subtract(tail);
  sliding.Trim();
  EXPECT_LT(sliding.bucket_bytes(), wide / 10);
  EXPECT_EQ(sliding.count(), 10u);
  EXPECT_EQ(sliding.Quantile(0.5), LogHistogram::BucketValue(LogHistogram::BucketIndex(0.05)));
  LogHistogram empty;
  empty.Subtract(other);  // taking back what was never there changes nothing
  EXPECT_EQ(empty.count(), 0u);
  empty.AddToBucket(LogHistogram::kMaxIndex + 1, 5);  // outside the schema: ignored
  EXPECT_EQ(empty.count(), 0u);
}

}  // namespace
}  // namespace vigil::controller
