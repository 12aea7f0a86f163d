#include "agent/telemetry_spool.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cstdio>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/series_dictionary.h"
#include "common/logging.h"

namespace vigil::agent {
namespace {

constexpr absl::string_view kSpoolMagic = "vigil-agent telemetry spool";
constexpr uint32_t kSpoolVersion = 1;
constexpr char kEntryRecord = 'E';
constexpr char kStateRecord = 'S';
constexpr size_t kEntryHeaderBytes = 1 + 8 + 8 + 8;
constexpr size_t kStateHeaderBytes = 1 + 8 + 8;
// One round larger than this is kept in memory only (never seen: a round is kilobytes).
constexpr uint32_t kMaxRecordBytes = 16 << 20;

void PutU64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) {
    out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  }
}

uint64_t GetU64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) {
    v = (v << 8) | static_cast<unsigned char>(p[i]);
  }
  return v;
}

std::string EntryRecord(const TelemetrySpool::Entry& entry) {
  std::string out;
  out.reserve(kEntryHeaderBytes + entry.batch.size());
  out.push_back(kEntryRecord);
  PutU64(out, entry.id);
  PutU64(out, entry.sequence);
  PutU64(out, static_cast<uint64_t>(entry.time_unix_ms));
  out += entry.batch;
  return out;
}

// Bytes the file may hold beyond the live entries before it is compacted.
uint64_t CompactionSlack(uint64_t max_bytes) {
  return std::clamp<uint64_t>(max_bytes / 8, 64 << 10, 8 << 20);
}

std::string RangeText(const v1::DroppedRange& r) {
  if (r.first_sequence() == 0) {
    return absl::StrCat(r.batches(), " unnumbered round(s)");
  }
  return absl::StrCat("sequences ", r.first_sequence(), "..", r.last_sequence(), " (",
                      r.batches(), " round(s))");
}

}  // namespace

std::string EncodeSelfContained(const std::vector<Collection>& collections) {
  SeriesDictionary dictionary;
  v1::TelemetryBatch batch;
  for (const Collection& collection : collections) {
    dictionary.Encode(collection, &batch);
  }
  return batch.SerializeAsString();
}

TelemetrySpool::TelemetrySpool(uint64_t max_bytes)
    : options_(TelemetrySpoolOptions{.dir = "", .max_bytes = max_bytes}) {}

TelemetrySpool::TelemetrySpool(TelemetrySpoolOptions options, std::unique_ptr<RecordFile> file)
    : options_(std::move(options)), file_(std::move(file)) {}

TelemetrySpool::~TelemetrySpool() {
  if (lock_fd_ >= 0) {
    close(lock_fd_);
  }
}

absl::StatusOr<std::unique_ptr<TelemetrySpool>> TelemetrySpool::Open(
    TelemetrySpoolOptions options) {
  if (options.dir.empty()) {
    return std::make_unique<TelemetrySpool>(options.max_bytes);
  }
  std::error_code ec;
  std::filesystem::create_directories(options.dir, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot create the spool folder ", options.dir, ": ", ec.message()));
  }
  // One agent per spool: two writing one file would garble it.
  const std::string lock_path = absl::StrCat(options.dir, "/LOCK");
  const int lock_fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0) {
    return absl::UnavailableError(absl::StrCat("cannot open ", lock_path, ": ", strerror(errno)));
  }
  if (flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    char holder[32] = {};
    const ssize_t n = pread(lock_fd, holder, sizeof(holder) - 1, 0);
    close(lock_fd);
    return absl::FailedPreconditionError(absl::StrCat(
        "the spool folder ", options.dir, " is in use by another agent (pid ",
        n > 0 ? absl::StripAsciiWhitespace(absl::string_view(holder, static_cast<size_t>(n)))
              : "unknown",
        ")"));
  }
  const std::string pid = absl::StrCat(getpid(), "\n");
  if (ftruncate(lock_fd, 0) != 0 || pwrite(lock_fd, pid.data(), pid.size(), 0) < 0) {
    spdlog::debug("cannot write the pid into {}", lock_path);
  }
  auto unlock = [lock_fd](absl::Status status) {
    close(lock_fd);
    return status;
  };
  const std::string path = absl::StrCat(options.dir, "/telemetry.spool");
  RecordFileOptions file_options;
  file_options.magic = std::string(kSpoolMagic);
  file_options.version = kSpoolVersion;
  file_options.max_record_bytes = kMaxRecordBytes;
  // A spool written under a larger bound is still read (and then cut down to this one).
  file_options.max_file_bytes = std::max<uint64_t>(2 * options.max_bytes + (16 << 20), 256 << 20);
  RecordScan scan;
  absl::StatusOr<std::unique_ptr<RecordFile>> file = RecordFile::Open(path, file_options, &scan);
  if (!file.ok() && (file.status().code() == absl::StatusCode::kDataLoss ||
                     file.status().code() == absl::StatusCode::kFailedPrecondition)) {
    // Not a spool this agent can read: keep it for a person, start empty.
    const std::string aside = absl::StrCat(path, ".bad-", absl::ToUnixSeconds(absl::Now()));
    spdlog::error("telemetry spool {}: {}; moved aside to {} and starting empty", path,
                  file.status().message(), aside);
    if (std::rename(path.c_str(), aside.c_str()) != 0) {
      return unlock(absl::UnavailableError(
          absl::StrCat("cannot move the unreadable spool ", path, " aside to ", aside)));
    }
    file = RecordFile::Open(path, file_options, &scan);
  }
  if (!file.ok()) {
    return unlock(file.status());
  }
  std::unique_ptr<TelemetrySpool> spool(new TelemetrySpool(std::move(options), std::move(*file)));
  spool->lock_fd_ = lock_fd;
  bool compact = spool->Replay(scan);
  spool->totals_.replayed = spool->entries_.size();
  spool->totals_.collected = spool->entries_.size();
  while (spool->entries_.size() > 1 && spool->bytes_ > spool->options_.max_bytes) {
    spool->DropOldest(kDropSpoolFull);
    compact = true;
  }
  if (compact) {
    spool->Compact();
  }
  if (!spool->entries_.empty()) {
    const Entry& first = spool->entries_.front();
    const Entry& last = spool->entries_.back();
    spdlog::info(
        "telemetry spool {}: {} round(s) ({} bytes) waiting from before the restart, sequences "
        "{}..{} (0: not numbered yet); they are sent first",
        path, spool->entries_.size(), spool->bytes_, first.sequence, last.sequence);
  }
  return spool;
}

bool TelemetrySpool::Replay(const RecordScan& scan) {
  // Marks the corrupt ranges this replay found, which a later state record must not replace.
  constexpr uint64_t kFoundInReplay = ~uint64_t{0};
  bool compact = !scan.skipped.empty() || scan.torn_bytes > 0;
  size_t hole = 0;
  size_t holes_pending = 0;  // corrupt regions since the last entry record
  const Entry* previous = nullptr;  // the last entry record read, dropped or not
  Entry previous_copy;
  auto report_holes = [&](const Entry* next) {
    if (holes_pending == 0) {
      return;
    }
    uint64_t first = 0;
    uint64_t last = 0;
    uint64_t batches = holes_pending;
    if (next != nullptr && next->sequence != 0) {
      last = next->sequence - 1;
      first = previous != nullptr && previous->sequence != 0
                  ? previous->sequence + 1
                  : (next->sequence > holes_pending ? next->sequence - holes_pending : 1);
      batches = last >= first ? last - first + 1 : 0;
    }
    if (batches > 0) {
      v1::DroppedRange range;
      const int64_t first_ms = previous != nullptr ? previous->time_unix_ms : 0;
      const int64_t last_ms = next != nullptr ? next->time_unix_ms : first_ms;
      Report report;
      report.carrier = kFoundInReplay;
      report.range.set_first_sequence(first);
      report.range.set_last_sequence(first == 0 ? 0 : last);
      report.range.set_batches(batches);
      report.range.set_reason(std::string(kDropCorrupt));
      report.range.set_first_time_unix_ms(first_ms);
      report.range.set_last_time_unix_ms(last_ms);
      if (reports_.size() < kMaxDropReports) {
        reports_.push_back(report);
      }
      totals_.dropped_corrupt += batches;
      spdlog::warn("telemetry spool {}: lost {} to corruption; the controller will be told",
                   file_->path(), RangeText(report.range));
    }
    holes_pending = 0;
  };
  for (size_t i = 0; i < scan.records.size(); ++i) {
    while (hole < scan.skipped.size() && scan.skipped_before[hole] == i) {
      ++holes_pending;
      ++hole;
    }
    const std::string& record = scan.records[i];
    if (!record.empty() && record[0] == kEntryRecord && record.size() > kEntryHeaderBytes) {
      Entry entry;
      entry.id = GetU64(record.data() + 1);
      entry.sequence = GetU64(record.data() + 9);
      entry.time_unix_ms = static_cast<int64_t>(GetU64(record.data() + 17));
      entry.batch = record.substr(kEntryHeaderBytes);
      report_holes(&entry);
      previous_copy = Entry{entry.id, entry.sequence, entry.time_unix_ms, ""};
      previous = &previous_copy;
      next_id_ = std::max(next_id_, entry.id + 1);
      if (entry.sequence != 0) {
        next_sequence_ = std::max(next_sequence_, entry.sequence + 1);
      }
      if (entry.id <= dropped_through_id_) {
        continue;
      }
      bytes_ += entry.bytes();
      entries_.push_back(std::move(entry));
    } else if (!record.empty() && record[0] == kStateRecord && record.size() >= kStateHeaderBytes) {
      v1::TelemetryBatch state;
      if (!state.ParseFromArray(record.data() + kStateHeaderBytes,
                                static_cast<int>(record.size() - kStateHeaderBytes))) {
        ++holes_pending;
        continue;
      }
      dropped_through_id_ = std::max(dropped_through_id_, GetU64(record.data() + 1));
      next_sequence_ = std::max(next_sequence_, GetU64(record.data() + 9));
      while (!entries_.empty() && entries_.front().id <= dropped_through_id_) {
        bytes_ -= entries_.front().bytes();
        entries_.pop_front();
      }
      // Reports found corrupt so far stay; the state's own list replaces the older state's.
      std::vector<Report> kept;
      for (Report& r : reports_) {
        if (r.carrier == kFoundInReplay) {
          kept.push_back(r);
        }
      }
      reports_ = std::move(kept);
      for (const v1::DroppedRange& range : state.dropped()) {
        if (reports_.size() < kMaxDropReports) {
          reports_.push_back(Report{range, 0});
        }
      }
    } else {
      ++holes_pending;  // a record this version does not know: as good as corrupt
      compact = true;
    }
  }
  report_holes(nullptr);
  for (Report& r : reports_) {
    r.carrier = 0;
  }
  return compact;
}

void TelemetrySpool::AddReport(absl::string_view reason, uint64_t sequence, uint64_t batches,
                               int64_t first_ms, int64_t last_ms) {
  for (auto it = reports_.rbegin(); it != reports_.rend(); ++it) {
    if (it->range.reason() != reason || it->carrier != 0) {
      continue;
    }
    const bool contiguous = sequence == 0 ? it->range.first_sequence() == 0
                                          : it->range.last_sequence() + 1 == sequence;
    if (contiguous || reports_.size() >= kMaxDropReports) {
      if (sequence != 0) {
        if (it->range.first_sequence() == 0) {
          it->range.set_first_sequence(sequence);
        }
        it->range.set_first_sequence(std::min(it->range.first_sequence(), sequence));
        it->range.set_last_sequence(std::max(it->range.last_sequence(), sequence));
      }
      it->range.set_batches(it->range.batches() + batches);
      it->range.set_first_time_unix_ms(std::min(it->range.first_time_unix_ms(), first_ms));
      it->range.set_last_time_unix_ms(std::max(it->range.last_time_unix_ms(), last_ms));
      return;
    }
    break;
  }
  Report report;
  report.range.set_first_sequence(sequence);
  report.range.set_last_sequence(sequence);
  report.range.set_batches(batches);
  report.range.set_reason(std::string(reason));
  report.range.set_first_time_unix_ms(first_ms);
  report.range.set_last_time_unix_ms(last_ms);
  if (reports_.size() >= kMaxDropReports) {
    // Full of reports of other kinds that were sent and await an Ack: fold into the newest.
    Report& newest = reports_.back();
    newest.range.set_batches(newest.range.batches() + batches);
    return;
  }
  reports_.push_back(std::move(report));
}

void TelemetrySpool::DropOldest(absl::string_view reason) {
  Entry& entry = entries_.front();
  if (reason == kDropSpoolFull && !drop_episode_) {
    spdlog::warn(
        "telemetry spool{}{} is full ({} bytes, bound {}): dropping the oldest rounds, from "
        "sequence {} (0: not numbered yet); the controller will be told",
        options_.agent_id.empty() ? "" : " of agent ", options_.agent_id, bytes_,
        options_.max_bytes, entry.sequence);
    drop_episode_ = true;
  }
  AddReport(reason, entry.sequence, 1, entry.time_unix_ms, entry.time_unix_ms);
  ++(reason == kDropExpired ? totals_.dropped_expired : totals_.dropped_full);
  dropped_through_id_ = std::max(dropped_through_id_, entry.id);
  bytes_ -= entry.bytes();
  entries_.pop_front();
}

std::string TelemetrySpool::StateRecord() const {
  std::string out;
  out.push_back(kStateRecord);
  PutU64(out, dropped_through_id_);
  PutU64(out, next_sequence_);
  v1::TelemetryBatch state;
  for (const Report& r : reports_) {
    *state.add_dropped() = r.range;
  }
  out += state.SerializeAsString();
  return out;
}

void TelemetrySpool::Persist(const std::string& record) {
  if (file_ == nullptr) {
    return;
  }
  const absl::Status written = file_->Append(record);
  if (!written.ok()) {
    if (!write_failing_) {
      spdlog::error("telemetry spool: {}; rounds are kept in memory only until writes succeed",
                    written.message());
      write_failing_ = true;
    }
    return;
  }
  if (write_failing_) {
    spdlog::info("telemetry spool {}: writes succeed again", file_->path());
    write_failing_ = false;
  }
}

void TelemetrySpool::Compact() {
  if (file_ == nullptr) {
    return;
  }
  std::vector<std::string> records;
  records.reserve(entries_.size() + 1);
  records.push_back(StateRecord());
  for (const Entry& entry : entries_) {
    if (entry.batch.size() + kEntryHeaderBytes <= kMaxRecordBytes) {
      records.push_back(EntryRecord(entry));
    }
  }
  const absl::Status written = file_->Rewrite(records);
  if (!written.ok()) {
    if (!write_failing_) {
      spdlog::error("telemetry spool: {}; rounds are kept in memory only until writes succeed",
                    written.message());
      write_failing_ = true;
    }
    return;
  }
  write_failing_ = false;
}

void TelemetrySpool::MaybeCompact() {
  if (file_ != nullptr &&
      file_->size_bytes() > bytes_ + CompactionSlack(options_.max_bytes) + 4096) {
    Compact();
  }
}

const TelemetrySpool::Entry& TelemetrySpool::Add(const std::vector<Collection>& collections) {
  Entry entry;
  entry.id = next_id_++;
  entry.sequence = numbered_ ? next_sequence_++ : 0;
  entry.time_unix_ms = collections.empty() ? absl::ToUnixMillis(absl::Now())
                                           : absl::ToUnixMillis(collections.front().time);
  entry.batch = EncodeSelfContained(collections);
  bool dropped = false;
  while (!entries_.empty() && bytes_ + entry.bytes() > options_.max_bytes) {
    DropOldest(kDropSpoolFull);
    dropped = true;
  }
  ++totals_.collected;
  if (dropped) {
    Persist(StateRecord());
  }
  if (entry.batch.size() + kEntryHeaderBytes <= kMaxRecordBytes) {
    Persist(EntryRecord(entry));
  }
  bytes_ += entry.bytes();
  entries_.push_back(std::move(entry));
  MaybeCompact();
  return entries_.back();
}

void TelemetrySpool::StartStream(uint64_t controller_last_sequence, absl::Time now) {
  for (Report& r : reports_) {
    r.carrier = 0;  // a new stream: every unacknowledged report goes again
  }
  AckThrough(controller_last_sequence);
  const int64_t cutoff = absl::ToUnixMillis(now - options_.max_age);
  bool expired = false;
  while (!entries_.empty() && entries_.front().time_unix_ms < cutoff) {
    DropOldest(kDropExpired);
    expired = true;
  }
  if (expired) {
    spdlog::warn("telemetry spool: dropped rounds older than {} ({} in all); the controller "
                 "will be told",
                 absl::FormatDuration(options_.max_age), totals_.dropped_expired);
    Persist(StateRecord());
  }
  next_sequence_ = std::max(next_sequence_, controller_last_sequence + 1);
  if (numbered_) {
    return;
  }
  // This process has not been welcomed before: continue after what the controller holds from
  // any earlier incarnation of this agent, and after the numbers this spool used.
  bool renumbered = false;
  for (Entry& entry : entries_) {
    if (entry.sequence == 0) {
      entry.sequence = next_sequence_++;
      renumbered = true;
    }
  }
  numbered_ = true;
  if (renumbered) {
    // The numbers are on disk before any of them goes on the wire.
    Compact();
  }
}

void TelemetrySpool::AckThrough(uint64_t sequence) {
  bool acked = false;
  while (!entries_.empty() && entries_.front().sequence != 0 &&
         entries_.front().sequence <= sequence) {
    bytes_ -= entries_.front().bytes();
    entries_.pop_front();
    acked = true;
  }
  const size_t before = reports_.size();
  reports_.erase(std::remove_if(reports_.begin(), reports_.end(),
                                [&](const Report& r) {
                                  return r.carrier != 0 && r.carrier <= sequence;
                                }),
                 reports_.end());
  if (reports_.size() != before) {
    Persist(StateRecord());  // so a restart does not report them twice
  }
  if (acked) {
    if (drop_episode_) {
      spdlog::info("telemetry spool: the controller acknowledges again; {} round(s) dropped "
                   "for lack of room and {} to corruption in all",
                   totals_.dropped_full, totals_.dropped_corrupt);
    }
    drop_episode_ = false;
    MaybeCompact();
  }
}

bool TelemetrySpool::Refuse(uint64_t sequence) {
  if (sequence == 0) {
    return false;
  }
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (it->sequence == sequence) {
      bytes_ -= it->bytes();
      entries_.erase(it);
      ++totals_.refused;
      for (Report& r : reports_) {
        if (r.carrier == sequence) {
          r.carrier = 0;  // its carrier never arrived: the report goes on the next batch
        }
      }
      return true;
    }
  }
  return false;
}

void TelemetrySpool::AttachReports(const Entry& entry, v1::TelemetryBatch* batch) {
  batch->set_sequence(entry.sequence);
  for (Report& r : reports_) {
    if (r.carrier == 0) {
      *batch->add_dropped() = r.range;
      r.carrier = entry.sequence;
    }
  }
}

std::vector<v1::DroppedRange> TelemetrySpool::PendingReportsForTest() const {
  std::vector<v1::DroppedRange> out;
  for (const Report& r : reports_) {
    out.push_back(r.range);
  }
  return out;
}

}  // namespace vigil::agent
