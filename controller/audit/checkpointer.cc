#include "controller/audit/checkpointer.h"

#include <fcntl.h>
#include <google/protobuf/util/json_util.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace vigil::controller {

Checkpointer::Checkpointer(storage::Store* store, const Clock* clock,
                           std::unique_ptr<audit::CheckpointSigner> signer, Options options,
                           TimelineWriter* writer)
    : store_(store),
      clock_(clock),
      signer_(std::move(signer)),
      options_(std::move(options)),
      writer_(writer) {
  if (writer_ != nullptr) {
    writer_->AddBatchHook([this](storage::WriteBatch& batch) { AttachTo(batch); },
                          [this](bool committed) { AfterCommit(committed); });
  }
}

Checkpointer::~Checkpointer() { Stop(); }

absl::Status Checkpointer::Start() {
  storage::ChainSnapshot snapshot;
  // Events after the newest checkpoint are not needed: only the checkpoints are.
  absl::Status read =
      store_->ReadChain(UINT64_MAX, 0, &snapshot, [](const v1::TimelineEvent&) { return false; });
  if (!read.ok()) {
    return absl::Status(read.code(), absl::StrCat("audit checkpoints: ", read.message()));
  }
  // A head left unsigned (a crash before the shutdown checkpoint) is signed at the first tick.
  absl::StatusOr<std::pair<uint64_t, std::string>> head = store_->ChainHead();
  if (!head.ok()) {
    return absl::Status(head.status().code(),
                        absl::StrCat("audit checkpoints: ", head.status().message()));
  }
  {
    absl::MutexLock lock(&mu_);
    if (!snapshot.checkpoints.empty()) {
      latest_ = snapshot.checkpoints.back();
      covered_seq_ = latest_->seq();
    }
    head_seq_ = head->first;
    head_hash_ = head->second;
  }
  thread_ = std::thread([this] { Loop(); });
  return absl::OkStatus();
}

void Checkpointer::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ || !thread_.joinable()) {
      return;
    }
    stopping_ = true;
  }
  thread_.join();
  // The last events of this run are covered before the process ends.
  absl::StatusOr<v1::AuditCheckpoint> last = CheckpointNow();
  if (!last.ok() && last.status().code() != absl::StatusCode::kNotFound) {
    spdlog::error("no audit checkpoint at shutdown: {}", last.status().message());
  }
}

void Checkpointer::OnEvent(const v1::TimelineEvent& event) {
  absl::MutexLock lock(&mu_);
  head_seq_ = event.seq();
  head_hash_ = event.hash();
}

std::optional<v1::AuditCheckpoint> Checkpointer::latest() const {
  absl::MutexLock lock(&mu_);
  return latest_;
}

Checkpointer::Stats Checkpointer::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

absl::StatusOr<v1::AuditCheckpoint> Checkpointer::CheckpointNow() {
  absl::MutexLock sign(&sign_mu_);
  auto failed = [this](const absl::Status& s) {
    absl::MutexLock lock(&mu_);
    ++stats_.failures;
    return s;
  };
  absl::StatusOr<std::pair<uint64_t, std::string>> head = store_->ChainHead();
  if (!head.ok()) {
    return failed(head.status());
  }
  if (head->first == 0) {
    return absl::NotFoundError("the timeline is empty: nothing to sign");
  }
  {
    absl::MutexLock lock(&mu_);
    if (latest_.has_value() && latest_->seq() == head->first && latest_->hash() == head->second) {
      return *latest_;
    }
  }
  absl::StatusOr<v1::AuditCheckpoint> checkpoint =
      signer_->Sign(head->first, head->second, absl::ToUnixMillis(clock_->Now()));
  if (!checkpoint.ok()) {
    return failed(checkpoint.status());
  }
  if (absl::Status stored = store_->AddCheckpoint(*checkpoint); !stored.ok()) {
    return failed(stored);
  }
  Stored(*checkpoint);
  return checkpoint;
}

void Checkpointer::Stored(const v1::AuditCheckpoint& checkpoint) {
  {
    absl::MutexLock lock(&mu_);
    if (latest_.has_value() && latest_->seq() > checkpoint.seq()) {
      return;  // a newer one won
    }
    latest_ = checkpoint;
    covered_seq_ = std::max(covered_seq_, checkpoint.seq());
    ++stats_.signed_checkpoints;
  }
  AppendToLog(checkpoint);
  if (publish_) {
    publish_(checkpoint);
  }
}

void Checkpointer::Periodic() {
  if (writer_ == nullptr) {
    absl::StatusOr<v1::AuditCheckpoint> signed_checkpoint = CheckpointNow();
    if (!signed_checkpoint.ok() &&
        signed_checkpoint.status().code() != absl::StatusCode::kNotFound) {
      if (uint64_t suppressed = 0; failure_log_.Allow(absl::Now(), &suppressed)) {
        spdlog::error("cannot sign an audit checkpoint: {} (retried; {} similar not logged)",
                      signed_checkpoint.status().message(), suppressed);
      }
      absl::MutexLock lock(&mu_);
      covered_seq_ = std::max(covered_seq_, head_seq_);  // not at once again: a full disk spins
    }
    return;
  }
  uint64_t seq = 0;
  std::string hash;
  {
    absl::MutexLock lock(&mu_);
    if (pending_.has_value() || head_seq_ == 0) {
      return;
    }
    if (latest_.has_value() && latest_->seq() >= head_seq_) {
      return;
    }
    seq = head_seq_;
    hash = head_hash_;
  }
  absl::StatusOr<v1::AuditCheckpoint> checkpoint =
      signer_->Sign(seq, hash, absl::ToUnixMillis(clock_->Now()));
  {
    absl::MutexLock lock(&mu_);
    // Covered from here on whether or not it lands: a refused one is not re-signed at once.
    covered_seq_ = std::max(covered_seq_, seq);
    if (!checkpoint.ok()) {
      ++stats_.failures;
      return;
    }
    pending_ = *std::move(checkpoint);
  }
  // The next batch takes it (AttachTo); an idle timeline gets one of its own. Outside mu_: the
  // writer calls OnEvent with its own lock held.
  writer_->Submit([](Transaction&) { return absl::OkStatus(); });
}

void Checkpointer::AttachTo(storage::WriteBatch& batch) {
  absl::MutexLock lock(&mu_);
  if (pending_.has_value() && !attached_) {
    batch.Add(*pending_);
    attached_ = true;
  }
}

void Checkpointer::AfterCommit(bool committed) {
  std::optional<v1::AuditCheckpoint> stored;
  {
    absl::MutexLock lock(&mu_);
    if (!attached_) {
      return;
    }
    attached_ = false;
    // Not attached again when the batch failed: its units are retried alone, and a checkpoint
    // the store refuses must not sink them. The next occasion signs anew.
    if (committed) {
      stored = std::move(pending_);
    } else {
      ++stats_.failures;
    }
    pending_.reset();
  }
  if (stored.has_value()) {
    Stored(*stored);
  }
}

void Checkpointer::Loop() {
  // Never a busy loop, whatever the settings say.
  const absl::Duration every = std::max(options_.every, absl::Milliseconds(100));
  absl::Time next = absl::Now() + every;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto due = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ ||
               (!pending_.has_value() && head_seq_ >= covered_seq_ + options_.every_events);
      };
      mu_.AwaitWithDeadline(absl::Condition(&due), next);
      if (stopping_) {
        return;
      }
    }
    next = absl::Now() + every;
    Periodic();
  }
}

std::string CheckpointLogLine(const v1::AuditCheckpoint& checkpoint) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string line;
  // A checkpoint's fields are ASCII; an empty line says the conversion failed all the same.
  if (!google::protobuf::util::MessageToJsonString(checkpoint, &line, options).ok()) {
    return "";
  }
  line.push_back('\n');
  return line;
}

absl::StatusOr<v1::AuditCheckpoint> ParseCheckpointLogLine(absl::string_view line) {
  v1::AuditCheckpoint checkpoint;
  const auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(line.data(), line.size()), &checkpoint);
  if (!status.ok()) {
    return absl::InvalidArgumentError(std::string(status.message()));
  }
  return checkpoint;
}

void Checkpointer::AppendToLog(const v1::AuditCheckpoint& checkpoint) {
  if (options_.log_path.empty()) {
    return;
  }
  const std::string line = CheckpointLogLine(checkpoint);
  errno = EINVAL;  // what a line that could not be made reports
  const int fd = line.empty() ? -1
                              : open(options_.log_path.c_str(),
                                     O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  bool ok = fd >= 0;
  if (ok) {
    ok = write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) && fsync(fd) == 0;
  }
  const std::string why = std::strerror(errno);
  if (fd >= 0) {
    close(fd);
  }
  if (!ok) {
    {
      absl::MutexLock lock(&mu_);
      ++stats_.log_failures;
    }
    if (uint64_t suppressed = 0; failure_log_.Allow(absl::Now(), &suppressed)) {
      spdlog::error("cannot append audit checkpoint {} to {}: {} ({} similar not logged)",
                    checkpoint.seq(), options_.log_path, why, suppressed);
    }
  }
}

absl::StatusOr<v1::AuditCheckpoint> LastLoggedCheckpoint(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return absl::NotFoundError(absl::StrCat(path, " does not exist"));
    }
    return absl::PermissionDeniedError(
        absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  }
  struct stat st;
  std::string tail;
  if (fstat(fd, &st) == 0) {
    constexpr off_t kTail = 64 << 10;
    const off_t from = st.st_size > kTail ? st.st_size - kTail : 0;
    tail.resize(static_cast<size_t>(st.st_size - from));
    const ssize_t n = pread(fd, tail.data(), tail.size(), from);
    tail.resize(n > 0 ? static_cast<size_t>(n) : 0);
  }
  close(fd);
  std::vector<absl::string_view> lines = absl::StrSplit(tail, '\n', absl::SkipWhitespace());
  // The last line that parses: a torn last write (a crash mid-append) is skipped, not trusted.
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
    absl::StatusOr<v1::AuditCheckpoint> checkpoint = ParseCheckpointLogLine(*it);
    if (checkpoint.ok()) {
      return checkpoint;
    }
  }
  return absl::NotFoundError(absl::StrCat(path, " holds no checkpoint"));
}

}  // namespace vigil::controller
