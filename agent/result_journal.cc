#include "agent/result_journal.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"

namespace vigil::agent {
namespace {

constexpr uint32_t kFormatVersion = 1;
constexpr uint32_t kMaxRecordBytes = 256 << 10;
// Fields cut to these before a result is journaled, so one result always fits a record.
constexpr size_t kMaxOutputTailBytes = 64 << 10;
constexpr size_t kMaxReasonBytes = 16 << 10;
constexpr size_t kMaxCommandIdBytes = 1 << 10;
// Sequences per acknowledgement record.
constexpr size_t kAcksPerRecord = 1000;
// Compaction waits until the file holds this much more than twice the pending results.
constexpr uint64_t kCompactionSlackBytes = 64 << 10;

constexpr char kResultTag = 'R';
constexpr char kAckTag = 'A';
constexpr char kNextTag = 'N';

RecordFileOptions FileOptions(const ResultJournalOptions& options) {
  RecordFileOptions out;
  out.magic = std::string(kResultJournalMagic);
  out.version = kFormatVersion;
  out.max_record_bytes = kMaxRecordBytes;
  // Generous, so a journal written under a larger bound still opens (and is then cut to fit).
  out.max_file_bytes = std::max<uint64_t>(4 * options.max_bytes, uint64_t{64} << 20);
  out.sync = RecordSync::kManual;
  return out;
}

void KeepTail(std::string* text, size_t max) {
  if (text->size() > max) {
    text->erase(0, text->size() - max);
  }
}

std::string ResultRecord(v1::CommandResult& result) {
  KeepTail(result.mutable_output_tail(), kMaxOutputTailBytes);
  if (result.reason().size() > kMaxReasonBytes) {
    result.mutable_reason()->resize(kMaxReasonBytes);
  }
  if (result.command_id().size() > kMaxCommandIdBytes) {
    result.mutable_command_id()->resize(kMaxCommandIdBytes);
  }
  return absl::StrCat(absl::string_view(&kResultTag, 1), result.SerializeAsString());
}

uint64_t Cost(const std::string& record) { return record.size() + kRecordFrameBytes; }

}  // namespace

absl::StatusOr<std::unique_ptr<ResultJournal>> ResultJournal::Open(ResultJournalOptions options) {
  std::unique_ptr<ResultJournal> journal(new ResultJournal(std::move(options)));
  const std::string& path = journal->options_.path;
  if (path.empty()) {
    return journal;
  }
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec) {
      return absl::PermissionDeniedError(absl::StrCat("cannot create the folder ", parent.string(),
                                                      " for the result journal: ", ec.message()));
    }
  }
  RecordScan scan;
  absl::StatusOr<std::unique_ptr<RecordFile>> file =
      RecordFile::Open(path, FileOptions(journal->options_), &scan);
  if (!file.ok()) {
    return absl::Status(file.status().code(),
                        absl::StrCat("the result journal: ", file.status().message()));
  }
  absl::MutexLock lock(&journal->mu_);
  journal->file_ = std::move(*file);
  journal->corrupt_records_ = scan.skipped.size();
  uint64_t next = 1;
  for (size_t i = 0; i < scan.records.size(); ++i) {
    const std::string& record = scan.records[i];
    const absl::string_view body = absl::string_view(record).substr(1);
    bool readable = true;
    switch (record[0]) {
      case kResultTag: {
        v1::CommandResult result;
        if (!result.ParseFromArray(body.data(), static_cast<int>(body.size())) ||
            result.sequence() == 0) {
          readable = false;
          break;
        }
        const uint64_t sequence = result.sequence();
        journal->EraseLocked(sequence);
        std::string kept = ResultRecord(result);
        journal->pending_bytes_ += Cost(kept);
        journal->pending_[sequence] = std::move(kept);
        next = std::max(next, sequence + 1);
        break;
      }
      case kAckTag:
        for (absl::string_view token : absl::StrSplit(body, ' ', absl::SkipEmpty())) {
          uint64_t sequence = 0;
          if (!absl::SimpleAtoi(token, &sequence)) {
            readable = false;
            continue;
          }
          journal->EraseLocked(sequence);
          next = std::max(next, sequence + 1);
        }
        break;
      case kNextTag: {
        uint64_t value = 0;
        if (!absl::SimpleAtoi(body, &value)) {
          readable = false;
          break;
        }
        next = std::max(next, value);
        break;
      }
      default:
        readable = false;
    }
    if (!readable) {
      ++journal->corrupt_records_;
      spdlog::warn("{}: offset {}: skipped a record this agent cannot read (tag 0x{:02x}, {} bytes)",
                   path, scan.offsets[i], static_cast<unsigned char>(record[0]), record.size());
    }
  }
  journal->next_sequence_ = next;
  if (journal->corrupt_records_ > 0) {
    spdlog::error(
        "{}: {} corrupt record(s) skipped ({} byte(s)); a result held in one is lost, an "
        "acknowledgement held in one only makes its result be sent again",
        path, journal->corrupt_records_, scan.skipped_bytes);
  }
  // Cut to the bound (it may have been lowered since the file was written).
  while (!journal->pending_.empty() &&
         journal->pending_bytes_ > journal->options_.max_bytes) {
    const uint64_t oldest = journal->pending_.begin()->first;
    spdlog::error("{}: over its bound of {} bytes: dropped unacknowledged result {}", path,
                  journal->options_.max_bytes, oldest);
    journal->EraseLocked(oldest);
    ++journal->dropped_;
  }
  if (!journal->pending_.empty()) {
    spdlog::info("{}: {} unacknowledged command result(s) to resend (sequences {}..{})", path,
                 journal->pending_.size(), journal->pending_.begin()->first,
                 journal->pending_.rbegin()->first);
  }
  if (!scan.records.empty() || !scan.skipped.empty()) {
    journal->CompactLocked();  // only the pending results and the next sequence are carried on
  }
  return journal;
}

void ResultJournal::EraseLocked(uint64_t sequence) {
  auto it = pending_.find(sequence);
  if (it == pending_.end()) {
    return;
  }
  pending_bytes_ -= Cost(it->second);
  pending_.erase(it);
}

void ResultJournal::CompactLocked() {
  if (file_ == nullptr) {
    return;
  }
  std::vector<std::string> records;
  records.reserve(pending_.size() + 1);
  records.push_back(absl::StrCat(absl::string_view(&kNextTag, 1), next_sequence_));
  for (const auto& [sequence, record] : pending_) {
    records.push_back(record);
  }
  if (absl::Status s = file_->Rewrite(records); !s.ok()) {
    ++write_errors_;
    rewrite_due_ = true;
    spdlog::error("cannot compact the result journal: {} (retried at the next change)",
                  s.message());
    return;
  }
  rewrite_due_ = false;
}

void ResultJournal::CompactIfWastefulLocked() {
  if (file_ != nullptr &&
      (rewrite_due_ || file_->size_bytes() > 2 * pending_bytes_ + kCompactionSlackBytes)) {
    CompactLocked();
  }
}

absl::Status ResultJournal::Record(v1::CommandResult& result) {
  absl::MutexLock lock(&mu_);
  result.set_sequence(next_sequence_++);
  std::string record = ResultRecord(result);
  const uint64_t cost = Cost(record);
  // Never silently: every result pushed out is named in the log and counted.
  std::vector<uint64_t> dropped;
  while (!pending_.empty() && pending_bytes_ + cost > options_.max_bytes) {
    const uint64_t oldest = pending_.begin()->first;
    v1::CommandResult old;
    old.ParseFromArray(pending_.begin()->second.data() + 1,
                       static_cast<int>(pending_.begin()->second.size() - 1));
    ++dropped_;
    spdlog::error(
        "result journal {} is full ({} of {} bytes): dropped the unacknowledged result {} "
        "(command {}, {}) to make room; {} dropped so far",
        options_.path.empty() ? "(in memory)" : options_.path, pending_bytes_, options_.max_bytes,
        oldest, absl::CHexEscape(old.command_id().substr(0, 64)),
        v1::CommandResult::Phase_Name(old.phase()), dropped_);
    EraseLocked(oldest);
    dropped.push_back(oldest);
  }
  pending_bytes_ += cost;
  pending_[result.sequence()] = record;
  if (file_ == nullptr) {
    return absl::OkStatus();
  }
  if (rewrite_due_) {
    // An earlier write failed: the rewrite carries the next sequence and this result too.
    CompactLocked();
    if (!rewrite_due_) {
      return absl::OkStatus();
    }
    return absl::UnavailableError(
        absl::StrCat("cannot write the result journal ", options_.path,
                     " (see the compaction error); result ", result.sequence(),
                     " is kept in memory only"));
  }
  absl::Status s = absl::OkStatus();
  if (!dropped.empty()) {
    s = file_->Append(absl::StrCat(absl::string_view(&kAckTag, 1), absl::StrJoin(dropped, " ")));
  }
  if (s.ok()) {
    s = file_->Append(record);
  }
  if (s.ok()) {
    s = file_->Sync();
  }
  if (!s.ok()) {
    ++write_errors_;
    rewrite_due_ = true;  // so that a later change rewrites the file, and the sequence, whole
    spdlog::error("result {} (command {}) is kept in memory only: {}", result.sequence(),
                  absl::CHexEscape(result.command_id().substr(0, 64)), s.message());
    return absl::UnavailableError(absl::StrCat("the result journal: ", s.message()));
  }
  return absl::OkStatus();
}

void ResultJournal::Acknowledge(absl::Span<const uint64_t> sequences) {
  absl::MutexLock lock(&mu_);
  std::vector<uint64_t> removed;
  for (uint64_t sequence : sequences) {
    if (pending_.contains(sequence)) {
      EraseLocked(sequence);
      removed.push_back(sequence);
    }
  }
  if (removed.empty() || file_ == nullptr) {
    return;
  }
  if (!rewrite_due_) {
    // Not synced: an acknowledgement lost in a crash only makes its result be sent again.
    for (size_t i = 0; i < removed.size(); i += kAcksPerRecord) {
      const size_t end = std::min(removed.size(), i + kAcksPerRecord);
      const std::vector<uint64_t> chunk(removed.begin() + i, removed.begin() + end);
      if (absl::Status s =
              file_->Append(absl::StrCat(absl::string_view(&kAckTag, 1), absl::StrJoin(chunk, " ")));
          !s.ok()) {
        ++write_errors_;
        rewrite_due_ = true;
        spdlog::error("cannot note acknowledged results in the journal: {}", s.message());
        break;
      }
    }
  }
  CompactIfWastefulLocked();
}

std::vector<v1::CommandResult> ResultJournal::PendingAfter(uint64_t after, size_t limit) const {
  absl::MutexLock lock(&mu_);
  std::vector<v1::CommandResult> out;
  for (auto it = pending_.upper_bound(after); it != pending_.end() && out.size() < limit; ++it) {
    v1::CommandResult result;
    if (result.ParseFromArray(it->second.data() + 1, static_cast<int>(it->second.size() - 1))) {
      out.push_back(std::move(result));
    }
  }
  return out;
}

std::optional<int64_t> ResultJournal::FirstSeen(const std::string& command_id) const {
  absl::MutexLock lock(&mu_);
  std::optional<int64_t> first;
  for (const auto& [sequence, record] : pending_) {
    v1::CommandResult result;
    if (result.ParseFromArray(record.data() + 1, static_cast<int>(record.size() - 1)) &&
        result.command_id() == command_id &&
        (!first.has_value() || result.time_unix_ms() < *first)) {
      first = result.time_unix_ms();
    }
  }
  return first;
}

ResultJournalStats ResultJournal::stats() const {
  absl::MutexLock lock(&mu_);
  return ResultJournalStats{.pending = pending_.size(),
                            .pending_bytes = pending_bytes_,
                            .next_sequence = next_sequence_,
                            .corrupt_records = corrupt_records_,
                            .dropped = dropped_,
                            .write_errors = write_errors_};
}

}  // namespace vigil::agent
