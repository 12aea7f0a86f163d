#include "controller/ingest/series_state.h"

#include <algorithm>
#include <limits>
#include <type_traits>

#include "absl/strings/str_cat.h"

namespace vigil::controller {
namespace {

void PutVarint(std::vector<uint8_t>& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<uint8_t>(v));
}

// Reads a varint written by PutVarint; stops at `end` (our own bytes, so never short).
uint64_t GetVarint(const uint8_t*& p, const uint8_t* end) {
  uint64_t v = 0;
  for (int shift = 0; p < end && shift < 64; shift += 7) {
    const uint8_t byte = *p++;
    v |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) {
      break;
    }
  }
  return v;
}

size_t VarintSize(uint64_t v) {
  size_t n = 1;
  for (; v >= 0x80; v >>= 7) {
    ++n;
  }
  return n;
}

// An interval's encoding: the zero bucket's count (a varint), then per occupied bucket its
// distance from the previous one (the first: from kMinIndex) and its count. A distance of 1..8
// with a count of 1..15 (most buckets of one collection interval) takes one byte,
// 0ddd cccc; anything else is kLongForm followed by two varints.
constexpr uint8_t kLongForm = 0x80;

// Writes the occupied buckets of an encoding, in increasing index order.
class EntryWriter {
 public:
  explicit EntryWriter(std::vector<uint8_t>& out) : out_(out) {}
  // Inlined into the encoding loops, the long form kept out of line: most entries are short.
  [[gnu::always_inline]] void Put(int index, uint64_t count) {
    const int gap = index - previous_;
    previous_ = index;
    if (gap >= 1 && gap <= 8 && count <= 15) [[likely]] {
      out_.push_back(static_cast<uint8_t>((gap - 1) << 4 | static_cast<int>(count)));
      return;
    }
    PutLong(gap, count);
  }

 private:
  [[gnu::noinline]] void PutLong(int gap, uint64_t count) {
    out_.push_back(kLongForm);
    PutVarint(out_, static_cast<uint64_t>(gap));
    PutVarint(out_, count);
  }

  std::vector<uint8_t>& out_;
  int previous_ = LogHistogram::kMinIndex;
};

// Reads the occupied buckets of an encoding [p, end) whose zero count was read already.
class EntryReader {
 public:
  EntryReader(const uint8_t* p, const uint8_t* end) : p_(p), end_(end) {}
  // False at the end (or at an index past the schema, never written so; kept safe).
  bool Next(int* index, uint64_t* count) {
    if (p_ >= end_) {
      return false;
    }
    const uint8_t tag = *p_++;
    if (tag == kLongForm) {
      index_ += static_cast<int64_t>(GetVarint(p_, end_));
      *count = GetVarint(p_, end_);
    } else {
      index_ += (tag >> 4) + 1;
      *count = tag & 0x0f;
    }
    if (index_ > LogHistogram::kMaxIndex) {
      p_ = end_;
      return false;
    }
    *index = static_cast<int>(index_);
    return true;
  }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
  int64_t index_ = LogHistogram::kMinIndex;
};

void Encode(const LogHistogram& h, std::vector<uint8_t>& out) {
  PutVarint(out, h.zero_count());
  EntryWriter writer(out);
  const std::vector<uint64_t>& counts = h.counts();
  for (size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] != 0) {
      writer.Put(h.offset() + static_cast<int>(i), counts[i]);
    }
  }
}

// Encodes the sum of the encoding [p, end) and h, exactly as Encode() would encode the sum:
// one pass over both, in the number of occupied buckets (no histogram decoded in between).
void EncodeSum(const uint8_t* p, const uint8_t* end, const LogHistogram& h,
               std::vector<uint8_t>& out) {
  PutVarint(out, GetVarint(p, end) + h.zero_count());
  EntryWriter writer(out);
  EntryReader reader(p, end);
  int old_index = 0;
  uint64_t old_count = 0;
  bool has_old = reader.Next(&old_index, &old_count);
  const std::vector<uint64_t>& counts = h.counts();
  for (size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] == 0) {
      continue;
    }
    const int index = h.offset() + static_cast<int>(i);
    for (; has_old && old_index < index; has_old = reader.Next(&old_index, &old_count)) {
      writer.Put(old_index, old_count);
    }
    uint64_t count = counts[i];
    if (has_old && old_index == index) {
      count += old_count;
      has_old = reader.Next(&old_index, &old_count);
    }
    writer.Put(index, count);
  }
  for (; has_old; has_old = reader.Next(&old_index, &old_count)) {
    writer.Put(old_index, old_count);
  }
}

// ms - base as an int32 offset, saturated (rebasing keeps the values that matter in range).
int32_t Offset(int64_t ms, int64_t base) {
  int64_t d = 0;
  if (__builtin_sub_overflow(ms, base, &d)) {
    return ms < base ? std::numeric_limits<int32_t>::min() : std::numeric_limits<int32_t>::max();
  }
  return static_cast<int32_t>(std::clamp<int64_t>(d, std::numeric_limits<int32_t>::min(),
                                                  std::numeric_limits<int32_t>::max()));
}

bool FitsOffset(int64_t ms, int64_t base) {
  int64_t d = 0;
  return !__builtin_sub_overflow(ms, base, &d) && d >= std::numeric_limits<int32_t>::min() &&
         d <= std::numeric_limits<int32_t>::max();
}

}  // namespace

std::string EncodeSeriesKey(absl::string_view name, const Labels& labels) {
  std::string key;
  auto append = [&key](absl::string_view part) { absl::StrAppend(&key, part.size(), ":", part); };
  append(name);
  for (const auto& [k, v] : labels) {
    append(k);
    append(v);
  }
  return key;
}

std::shared_ptr<const SeriesKey> MakeSeriesKey(std::string name, Labels labels) {
  auto key = std::make_shared<SeriesKey>();
  key->encoded = EncodeSeriesKey(name, labels);
  key->name = std::move(name);
  key->labels = std::move(labels);
  return key;
}

std::shared_ptr<const SeriesKey> SeriesKeyTable::Intern(const v1::SeriesDefinition& def) {
  Labels labels(def.labels().begin(), def.labels().end());
  std::string encoded = EncodeSeriesKey(def.name(), labels);
  absl::MutexLock lock(&mu_);
  std::weak_ptr<const SeriesKey>& slot = keys_[encoded];
  if (std::shared_ptr<const SeriesKey> key = slot.lock()) {
    return key;
  }
  auto key = std::make_shared<SeriesKey>();
  key->name = def.name();
  key->labels = std::move(labels);
  key->encoded = std::move(encoded);
  slot = key;
  if (keys_.size() >= sweep_at_) {
    // Keys of evicted agents: swept when the table has doubled since the last sweep, so the
    // sweep's cost is spread over the keys added.
    absl::erase_if(keys_, [](const auto& entry) { return entry.second.expired(); });
    sweep_at_ = std::max<size_t>(1024, keys_.size() * 2);
  }
  return key;
}

size_t SeriesKeyTable::size() const {
  absl::MutexLock lock(&mu_);
  size_t n = 0;
  for (const auto& [encoded, key] : keys_) {
    n += key.expired() ? 0 : 1;
  }
  return n;
}

size_t SeriesKeyTable::EntriesForTest() const {
  absl::MutexLock lock(&mu_);
  return keys_.size();
}

// ---- CompactHistogram ----

namespace {

template <typename Count>
constexpr uint64_t MaxOf() {
  return std::numeric_limits<Count>::max();
}

// The buckets [begin, end) of `from` in a vector of Count (every count fits).
template <typename Count, typename From>
std::vector<Count> CopyAs(const std::vector<From>& from, size_t begin, size_t end) {
  std::vector<Count> out;
  out.reserve(end - begin);
  for (size_t i = begin; i < end; ++i) {
    out.push_back(static_cast<Count>(from[i]));
  }
  return out;
}

}  // namespace

void CompactHistogram::Widen(uint64_t largest) {
  std::visit(
      [&](auto& counts) {
        using Count = typename std::decay_t<decltype(counts)>::value_type;
        if (largest <= MaxOf<Count>()) {
          return;
        }
        if (largest <= MaxOf<uint32_t>()) {
          counts_ = CopyAs<uint32_t>(counts, 0, counts.size());
        } else {
          counts_ = CopyAs<uint64_t>(counts, 0, counts.size());
        }
      },
      counts_);
}

template <typename Count>
inline bool CompactHistogram::AddIn(Buckets<Count>& counts, int index, uint64_t n) {
  if (n == 0 || index < LogHistogram::kMinIndex || index > LogHistogram::kMaxIndex) {
    return true;
  }
  buckets::GrowTo(counts, offset_, index);
  Count& c = counts[static_cast<size_t>(index - offset_)];
  if (n > MaxOf<Count>() - c) {
    return false;
  }
  c = static_cast<Count>(c + n);
  count_ += n;
  return true;
}

template <typename Count>
void CompactHistogram::RemoveIn(Buckets<Count>& counts, int index, uint64_t n) {
  if (counts.empty() || index < offset_ || index >= offset_ + static_cast<int>(counts.size())) {
    return;
  }
  Count& c = counts[static_cast<size_t>(index - offset_)];
  const uint64_t taken = std::min<uint64_t>(n, c);
  c = static_cast<Count>(c - taken);
  count_ -= std::min(taken, count_);
}

void CompactHistogram::AddToBucket(int index, uint64_t n) {
  if (std::visit([&](auto& counts) { return AddIn(counts, index, n); }, counts_)) {
    return;
  }
  // The count would not fit this width: widen to one that holds it (n and the counts are bounded
  // far below 2^64: LogHistogram::kMaxCount), then add.
  const uint64_t current = std::visit(
      [&](const auto& counts) -> uint64_t { return counts[static_cast<size_t>(index - offset_)]; },
      counts_);
  Widen(current + n);
  std::visit([&](auto& counts) { AddIn(counts, index, n); }, counts_);
}

void CompactHistogram::Add(const LogHistogram& h) {
  AddToZero(h.zero_count());
  const std::vector<uint64_t>& added = h.counts();
  if (added.empty()) {
    return;
  }
  const int first = h.offset();
  const int last = first + static_cast<int>(added.size()) - 1;
  // One dispatch on the width for all of h, and the range grown once; a count that does not fit
  // widens the buckets and the rest goes on in the new width.
  size_t i = 0;
  while (i < added.size()) {
    const bool overflow = std::visit(
        [&](auto& counts) {
          using Count = typename std::decay_t<decltype(counts)>::value_type;
          buckets::GrowTo(counts, offset_, first);
          buckets::GrowTo(counts, offset_, last);
          Count* to = counts.data() + (first - offset_);
          for (; i < added.size(); ++i) {
            if (added[i] > MaxOf<Count>() - to[i]) {
              return true;
            }
            to[i] = static_cast<Count>(to[i] + added[i]);
            count_ += added[i];
          }
          return false;
        },
        counts_);
    if (overflow) {
      AddToBucket(first + static_cast<int>(i), added[i]);
      ++i;
    }
  }
}

void CompactHistogram::AddToZero(uint64_t n) {
  zero_count_ += n;
  count_ += n;
}

void CompactHistogram::RemoveFromBucket(int index, uint64_t n) {
  std::visit([&](auto& counts) { RemoveIn(counts, index, n); }, counts_);
}

void CompactHistogram::ApplyEncoded(int sign, const uint8_t* p, const uint8_t* end) {
  EntryReader reader(p, end);
  int index = 0;
  uint64_t n = 0;
  bool stopped_at_overflow = true;
  while (stopped_at_overflow) {
    stopped_at_overflow = std::visit(
        [&](auto& counts) {
          while (reader.Next(&index, &n)) {
            if (sign < 0) {
              RemoveIn(counts, index, n);
            } else if (!AddIn(counts, index, n)) {
              return true;
            }
          }
          return false;
        },
        counts_);
    if (stopped_at_overflow) {
      AddToBucket(index, n);  // widens; the rest goes on in the new width
    }
  }
}

void CompactHistogram::RemoveFromZero(uint64_t n) {
  n = std::min(n, zero_count_);
  zero_count_ -= n;
  count_ -= std::min(n, count_);
}

double CompactHistogram::Quantile(double q) const {
  return std::visit(
      [&](const auto& counts) {
        return QuantileOfBuckets(counts.data(), counts.size(), offset_, zero_count_, count_, q);
      },
      counts_);
}

void CompactHistogram::AddTo(LogHistogram* out) const {
  if (zero_count_ > 0) {
    out->AddToZero(zero_count_);
  }
  std::visit([&](const auto& counts) { out->AddToBuckets(offset_, counts.data(), counts.size()); },
             counts_);
}

void CompactHistogram::Trim() {
  std::visit(
      [&](auto& counts) {
        const auto [begin, end] = buckets::Occupied(counts);
        const size_t used = end - begin;
        if (!buckets::TrimPays(counts.capacity(), used)) {
          return;
        }
        uint64_t largest = 0;
        for (size_t i = begin; i < end; ++i) {
          largest = std::max<uint64_t>(largest, counts[i]);
        }
        const int offset = used == 0 ? 0 : offset_ + static_cast<int>(begin);
        // Assigning counts_ destroys `counts`: nothing reads it after.
        if (largest <= MaxOf<uint16_t>()) {
          counts_ = CopyAs<uint16_t>(counts, begin, end);
        } else if (largest <= MaxOf<uint32_t>()) {
          counts_ = CopyAs<uint32_t>(counts, begin, end);
        } else {
          counts_ = CopyAs<uint64_t>(counts, begin, end);
        }
        offset_ = offset;
      },
      counts_);
}

size_t CompactHistogram::width() const {
  return std::visit(
      [](const auto& counts) {
        return sizeof(typename std::decay_t<decltype(counts)>::value_type);
      },
      counts_);
}

size_t CompactHistogram::bucket_bytes() const {
  return std::visit([](const auto& counts) { return counts.capacity() * sizeof(counts[0]); },
                    counts_);
}

size_t CompactHistogram::GrowthBound(int lo, int hi, uint64_t added) const {
  return std::visit(
      [&](const auto& counts) -> size_t {
        using Count = typename std::decay_t<decltype(counts)>::value_type;
        int64_t extra = int64_t{hi} - lo + 1;
        if (!counts.empty()) {
          const int64_t last = offset_ + static_cast<int64_t>(counts.size()) - 1;
          extra = std::max<int64_t>(0, offset_ - int64_t{lo}) + std::max<int64_t>(0, hi - last);
        }
        // No bucket holds more than count_, so none can overflow below this.
        const bool may_widen = count_ + added > MaxOf<Count>();
        if (extra <= 0 && !may_widen) {
          return 0;
        }
        // Bytes after the add: at most the range grown by `extra` in 64 bits when it may widen,
        // in a buffer up to twice its size (a vector's growth).
        const size_t width = may_widen ? sizeof(uint64_t) : sizeof(Count);
        return 2 * (counts.size() + static_cast<size_t>(extra)) * width;
      },
      counts_);
}

// ---- HistogramWindow ----

int64_t HistogramWindow::ms_of(uint64_t seq) const {
  return base_ms_ + intervals_[static_cast<size_t>(seq - sequence_base_)].ms_offset;
}

int64_t HistogramWindow::front_ms() const { return empty() ? 0 : ms_of(first_seq()); }

int64_t HistogramWindow::back_ms() const { return empty() ? 0 : ms_of(end_seq() - 1); }

template <typename Histogram>
void HistogramWindow::Apply(uint64_t seq, int sign, Histogram& h) const {
  const size_t i = static_cast<size_t>(seq - sequence_base_);
  const uint8_t* p = bytes_.data() + (i == 0 ? 0 : intervals_[i - 1].end);
  const uint8_t* end = bytes_.data() + intervals_[i].end;
  const uint64_t zero = GetVarint(p, end);
  if (zero > 0) {
    sign > 0 ? h.AddToZero(zero) : h.RemoveFromZero(zero);
  }
  if constexpr (std::is_same_v<Histogram, CompactHistogram>) {
    h.ApplyEncoded(sign, p, end);
  } else {
    EntryReader reader(p, end);
    int index = 0;
    uint64_t n = 0;
    while (reader.Next(&index, &n)) {
      sign > 0 ? h.AddToBucket(index, n) : h.RemoveFromBucket(index, n);
    }
  }
}

void HistogramWindow::Add(int64_t ms, const LogHistogram& h, int64_t keep_ms) {
  totals_.Add(h);
  // Out with the old first, so the window's span, not its age, decides the offsets' range.
  int64_t cutoff = 0;
  if (__builtin_sub_overflow(ms, keep_ms, &cutoff)) {
    cutoff = std::numeric_limits<int64_t>::min();
  }
  while (!empty() && ms_of(first_seq()) <= cutoff) {
    DropFront();
  }
  if (empty()) {
    base_ms_ = ms;
  } else if (!FitsOffset(ms, base_ms_)) {
    // Rebase onto the newest interval; older ones saturate (only a window longer than 24 days
    // would notice).
    const int64_t old_base = base_ms_;
    base_ms_ = ms;
    for (size_t i = dead_intervals_; i < intervals_.size(); ++i) {
      intervals_[i].ms_offset = Offset(old_base + intervals_[i].ms_offset, base_ms_);
    }
  }
  static thread_local std::vector<uint8_t> encoded;
  encoded.clear();
  if (JoinsBack(ms)) {
    // The newest interval is encoded again in its place, merged with h: its sequence number
    // stays, so the views that hold it take h in directly and the others find the merge when
    // they move on.
    const uint64_t back = end_seq() - 1;
    const size_t i = static_cast<size_t>(back - sequence_base_);
    const size_t start = i == 0 ? 0 : intervals_[i - 1].end;
    EncodeSum(bytes_.data() + start, bytes_.data() + intervals_[i].end, h, encoded);
    for (View& v : views_) {
      if (v.first <= back && back < v.end) {
        v.merged.Add(h);
      }
    }
    bytes_.resize(start);
    intervals_.pop_back();
  } else {
    Encode(h, encoded);
  }
  // Compact only when a buffer is full: the slack left by the last compaction (a seventh) is used
  // up before the next, and a buffer never doubles (a window filling up grows by sevenths too).
  if (bytes_.size() + encoded.size() > bytes_.capacity() ||
      intervals_.size() == intervals_.capacity()) {
    Compact(encoded.size());
  }
  bytes_.insert(bytes_.end(), encoded.begin(), encoded.end());
  intervals_.push_back(
      Interval{.ms_offset = Offset(ms, base_ms_), .end = static_cast<uint32_t>(bytes_.size())});
}

int64_t HistogramWindow::slot_ms() const {
  int64_t shortest = 0;
  for (const View& v : views_) {
    if (v.window_ms > 0 && (shortest == 0 || v.window_ms < shortest)) {
      shortest = v.window_ms;
    }
  }
  return shortest / kSlotsPerWindow;
}

bool HistogramWindow::JoinsBack(int64_t ms) const {
  const int64_t slot = slot_ms();
  if (slot <= 0 || empty()) {
    return false;
  }
  const int64_t back = back_ms();
  // Floor division: the same slot whatever the sign of the times.
  auto slot_of = [slot](int64_t t) { return t / slot - (t % slot < 0 ? 1 : 0); };
  return slot_of(ms) == slot_of(back);
}

HistogramWindow::Usage HistogramWindow::usage() const {
  Usage u;
  u.encoded = bytes_.size() - dead_bytes_;
  u.index = size() * sizeof(Interval);
  u.slack = bytes() - sizeof(HistogramWindow) - u.encoded - u.index;
  for (const View& v : views_) {
    u.views += v.merged.bucket_bytes();
  }
  u.slack -= u.views;
  return u;
}

void HistogramWindow::DropFront() {
  const uint64_t seq = first_seq();
  for (View& v : views_) {
    if (v.end <= seq) {
      v.first = v.end = seq + 1;  // it never took this one in
    } else if (v.first == seq) {
      Apply(seq, -1, v.merged);
      v.first = seq + 1;
    }
  }
  dead_bytes_ = intervals_[dead_intervals_].end;
  ++dead_intervals_;
}

void HistogramWindow::Compact(size_t incoming_bytes) {
  // Fresh buffers sized for the live part plus a seventh: they fill up as the window moves (as
  // many intervals leave as arrive) and are compacted again when full, so they hold about 8/7
  // of what is live. Each byte is moved about seven times over its life: cheap beside decoding.
  const size_t live = size();
  std::vector<Interval> intervals;
  intervals.reserve(live + 1 + (live + 1) / 7 + 1);
  for (size_t i = dead_intervals_; i < intervals_.size(); ++i) {
    intervals.push_back(Interval{.ms_offset = intervals_[i].ms_offset,
                                 .end = intervals_[i].end - dead_bytes_});
  }
  const size_t live_bytes = bytes_.size() - dead_bytes_;
  std::vector<uint8_t> bytes;
  const size_t wanted = live_bytes + incoming_bytes;
  bytes.reserve(wanted + wanted / 7 + 16);
  bytes.insert(bytes.end(), bytes_.begin() + dead_bytes_, bytes_.end());
  sequence_base_ += dead_intervals_;
  dead_intervals_ = 0;
  dead_bytes_ = 0;
  intervals_ = std::move(intervals);
  bytes_ = std::move(bytes);
}

uint64_t HistogramWindow::FirstAfter(int64_t cutoff_ms) const {
  uint64_t first = end_seq();
  while (first > first_seq() && ms_of(first - 1) > cutoff_ms) {
    --first;
  }
  return first;
}

void HistogramWindow::MergeAfter(int64_t cutoff_ms, LogHistogram* out) const {
  for (uint64_t seq = FirstAfter(cutoff_ms); seq < end_seq(); ++seq) {
    Apply(seq, +1, *out);
  }
}

const CompactHistogram& HistogramWindow::Windowed(int64_t window_ms, int64_t cutoff_ms) {
  View* view = nullptr;
  for (View& v : views_) {
    if (v.window_ms == window_ms) {
      view = &v;
    }
  }
  if (view == nullptr) {
    if (views_.size() >= kMaxViews) {
      static thread_local CompactHistogram scratch;
      scratch = CompactHistogram();
      for (uint64_t seq = FirstAfter(cutoff_ms); seq < end_seq(); ++seq) {
        Apply(seq, +1, scratch);
      }
      return scratch;
    }
    view = &views_.emplace_back();
    view->window_ms = window_ms;
    view->first = view->end = end_seq();
  }
  View& v = *view;
  // What arrived since, then what left (the suffix after the cutoff is what counts: times never
  // go back), then what came back when the cutoff moved back (a clock set back).
  for (; v.end < end_seq(); ++v.end) {
    Apply(v.end, +1, v.merged);
  }
  for (; v.first < v.end && ms_of(v.first) <= cutoff_ms; ++v.first) {
    Apply(v.first, -1, v.merged);
  }
  while (v.first > first_seq() && ms_of(v.first - 1) > cutoff_ms) {
    --v.first;
    Apply(v.first, +1, v.merged);
  }
  if (v.merged.empty() && v.merged.bucket_bytes() > 0) {
    v.merged = CompactHistogram();  // an idle series gives its buckets back
  } else {
    v.merged.Trim();  // buckets the window slid away from
  }
  return v.merged;
}

size_t HistogramWindow::bytes() const {
  size_t n = sizeof(HistogramWindow) + intervals_.capacity() * sizeof(Interval) +
             bytes_.capacity() + views_.capacity() * sizeof(View);
  for (const View& v : views_) {
    n += v.merged.bucket_bytes();
  }
  return n;
}

size_t HistogramWindow::GrowthBound(const v1::Histogram& h) const {
  // The encoding's exact size, as Encode() writes it. When the interval may join the newest one,
  // a bound of what the merge adds: each of h's buckets a new entry or a bigger count, in the
  // long form with a count of up to ten bytes (gaps only shrink when entries come between).
  const bool may_join = slot_ms() > 0 && !empty();
  size_t encoded = may_join ? 10 : VarintSize(h.zero_count());
  int64_t previous = LogHistogram::kMinIndex;
  uint64_t added = 0;  // observations in the buckets, for the views
  for (int i = 0; i < h.counts_size(); ++i) {
    const uint64_t count = h.counts(i);
    if (count == 0) {
      continue;
    }
    added += count;
    const int64_t index = int64_t{h.offset()} + i;
    const int64_t gap = index - previous;
    if (may_join) {
      encoded += 1 + VarintSize(static_cast<uint64_t>(gap)) + 10;
    } else {
      encoded += gap >= 1 && gap <= 8 && count <= 15
                     ? 1
                     : 1 + VarintSize(static_cast<uint64_t>(gap)) + VarintSize(count);
    }
    previous = index;
  }
  // Add() compacts when either buffer is full, and a compaction sizes both anew (from what is
  // live now: an upper bound of what is live once the expired intervals are dropped).
  size_t bound = 0;
  if (bytes_.size() + encoded > bytes_.capacity() || intervals_.size() == intervals_.capacity()) {
    const size_t live = size();
    const size_t wanted = bytes_.size() - dead_bytes_ + encoded;
    const size_t bytes_capacity = wanted + wanted / 7 + 16;
    const size_t intervals_capacity = live + 1 + (live + 1) / 7 + 1;
    bound = (bytes_capacity > bytes_.capacity() ? bytes_capacity - bytes_.capacity() : 0) +
            (intervals_capacity > intervals_.capacity()
                 ? (intervals_capacity - intervals_.capacity()) * sizeof(Interval)
                 : 0);
  }
  if (h.counts_size() > 0) {
    const int lo = h.offset();
    const int hi = lo + h.counts_size() - 1;
    for (const View& v : views_) {
      bound += v.merged.GrowthBound(lo, hi, added);
    }
  }
  return bound;
}

// ---- SeriesState ----

bool SeriesState::AddValue(int64_t ms, double value) {
  if (count_ == 0) {
    first_ms_ = ms;
  } else if (ms < latest_ms_) {
    return false;
  }
  latest_ms_ = ms;
  latest_ = value;
  if (count_ < std::numeric_limits<uint32_t>::max()) {
    ++count_;
  }
  return true;
}

bool SeriesState::AddHistogram(int64_t ms, const LogHistogram& h, int64_t keep_ms) {
  if (!AddValue(ms, static_cast<double>(h.count()))) {
    return false;
  }
  if (histograms_ == nullptr) {
    histograms_ = std::make_unique<HistogramWindow>();
  }
  histograms_->Add(ms, h, keep_ms);
  return true;
}

size_t SeriesState::bytes() const {
  return sizeof(SeriesState) + (histograms_ == nullptr ? 0 : histograms_->bytes());
}

}  // namespace vigil::controller
