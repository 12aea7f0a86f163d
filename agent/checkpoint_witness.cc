#include "agent/checkpoint_witness.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "common/record_file.h"

namespace vigil::agent {
namespace {

constexpr uint32_t kFormatVersion = 1;

RecordFileOptions FileOptions() {
  RecordFileOptions out;
  out.magic = std::string(kCheckpointFileMagic);
  out.version = kFormatVersion;
  out.max_record_bytes = kMaxCheckpointFileBytes;
  out.max_file_bytes = kMaxCheckpointFileBytes;
  return out;
}

bool IsLowerHex(absl::string_view text) {
  for (const char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

// The fields this agent knows, and nothing else: unknown fields from the wire or the file would
// otherwise be kept, written and reported back.
v1::AuditCheckpoint KnownFields(const v1::AuditCheckpoint& in) {
  v1::AuditCheckpoint out;
  out.set_seq(in.seq());
  out.set_hash(in.hash());
  out.set_time_unix_ms(in.time_unix_ms());
  out.set_signature(in.signature());
  out.set_key_id(in.key_id());
  return out;
}

std::string Named(uint64_t seq, absl::string_view hash) {
  return absl::StrCat("(seq ", seq, ", hash ", hash, ")");
}

// The file's bytes, at most kMaxCheckpointFileBytes; NotFound when there is no file.
absl::StatusOr<std::string> ReadBounded(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    if (error == ENOENT) {
      return absl::NotFoundError(absl::StrCat(path, ": no such file"));
    }
    return absl::UnavailableError(absl::StrCat("cannot open ", path, ": ", std::strerror(error)));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return absl::FailedPreconditionError(absl::StrCat(path, " is not a regular file"));
  }
  // One byte beyond the bound tells a file that grew past it since fstat.
  std::string data(kMaxCheckpointFileBytes + 1, '\0');
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = read(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      const int error = errno;
      close(fd);
      return absl::UnavailableError(absl::StrCat("cannot read ", path, ": ", std::strerror(error)));
    }
    if (n == 0) {
      break;
    }
    done += static_cast<size_t>(n);
  }
  close(fd);
  if (done > kMaxCheckpointFileBytes) {
    return absl::DataLossError(absl::StrCat(path, ": more than the ", kMaxCheckpointFileBytes,
                                            " bytes a checkpoint file may hold"));
  }
  data.resize(done);
  return data;
}

}  // namespace

absl::Status CheckCheckpointFields(const v1::AuditCheckpoint& checkpoint) {
  if (checkpoint.seq() == 0) {
    return absl::InvalidArgumentError("field 'seq': 0 (a checkpoint covers event 1 or later)");
  }
  if (checkpoint.hash().size() != kCheckpointHashChars) {
    return absl::InvalidArgumentError(absl::StrCat("field 'hash': ", checkpoint.hash().size(),
                                                   " characters, want ", kCheckpointHashChars,
                                                   " lowercase hex digits"));
  }
  if (!IsLowerHex(checkpoint.hash())) {
    return absl::InvalidArgumentError("field 'hash': not lowercase hex digits");
  }
  if (checkpoint.signature().size() > kMaxCheckpointSignatureBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("field 'signature': ", checkpoint.signature().size(), " bytes, more than ",
                     kMaxCheckpointSignatureBytes));
  }
  if (checkpoint.key_id().size() > kMaxCheckpointKeyIdChars) {
    return absl::InvalidArgumentError(absl::StrCat("field 'key_id': ", checkpoint.key_id().size(),
                                                   " characters, more than ",
                                                   kMaxCheckpointKeyIdChars));
  }
  return absl::OkStatus();
}

std::string EncodeCheckpointFile(const v1::AuditCheckpoint& checkpoint) {
  return absl::StrCat(RecordFileHeader(FileOptions()),
                      EncodeRecord(KnownFields(checkpoint).SerializeAsString()));
}

absl::StatusOr<v1::AuditCheckpoint> DecodeCheckpointFile(absl::string_view data,
                                                         absl::string_view name) {
  if (data.size() > kMaxCheckpointFileBytes) {
    return absl::DataLossError(absl::StrCat(name, ": ", data.size(), " bytes, more than the ",
                                            kMaxCheckpointFileBytes,
                                            " a checkpoint file may hold"));
  }
  absl::StatusOr<RecordScan> scan = ScanRecords(data, FileOptions(), name);
  if (!scan.ok()) {
    return scan.status();
  }
  if (scan->records.size() != 1 || !scan->skipped.empty() || scan->torn_bytes != 0) {
    return absl::DataLossError(absl::StrCat(
        name, ": ", scan->records.size(), " intact record(s) and ",
        scan->skipped_bytes + scan->torn_bytes, " damaged byte(s), not one checkpoint"));
  }
  v1::AuditCheckpoint checkpoint;
  if (!checkpoint.ParseFromString(scan->records[0])) {
    return absl::DataLossError(absl::StrCat(name, ": the record is not an AuditCheckpoint"));
  }
  if (absl::Status s = CheckCheckpointFields(checkpoint); !s.ok()) {
    return absl::DataLossError(absl::StrCat(name, ": ", s.message()));
  }
  return KnownFields(checkpoint);
}

std::unique_ptr<CheckpointWitness> CheckpointWitness::Open(CheckpointWitnessOptions options) {
  if (!options.write) {
    options.write = WriteFileAtomically;
  }
  if (options.clock == nullptr) {
    options.clock = RealClock::Get();
  }
  std::unique_ptr<CheckpointWitness> witness(new CheckpointWitness(std::move(options)));
  absl::MutexLock lock(&witness->mu_);
  witness->LoadLocked();
  return witness;
}

void CheckpointWitness::LoadLocked() {
  const std::string& path = options_.path;
  if (path.empty()) {
    return;
  }
  absl::StatusOr<std::string> data = ReadBounded(path);
  if (!data.ok() && absl::IsNotFound(data.status())) {
    spdlog::debug("audit witness: no checkpoint yet at {}", path);
    return;
  }
  absl::StatusOr<v1::AuditCheckpoint> checkpoint =
      data.ok() ? DecodeCheckpointFile(*data, path) : data.status();
  if (!checkpoint.ok()) {
    stats_.damaged_at_start = true;
    spdlog::warn(
        "audit witness: the checkpoint file {} is unreadable or damaged ({}); no checkpoint is "
        "held until the controller sends one, which then replaces the file",
        path, checkpoint.status().message());
    return;
  }
  spdlog::info("audit witness: holding checkpoint {} from {}",
               Named(checkpoint->seq(), checkpoint->hash()), path);
  held_ = std::move(*checkpoint);
}

CheckpointOffer CheckpointWitness::Offer(const v1::AuditCheckpoint& checkpoint) {
  if (absl::Status s = CheckCheckpointFields(checkpoint); !s.ok()) {
    {
      absl::MutexLock lock(&mu_);
      ++stats_.invalid;
    }
    uint64_t suppressed = 0;
    if (invalid_log_.Allow(options_.clock->Now(), &suppressed)) {
      spdlog::warn("audit witness: ignored a checkpoint from the controller: {}{}", s.message(),
                   suppressed > 0 ? absl::StrCat(" (", suppressed, " more not logged)") : "");
    }
    return CheckpointOffer::kInvalid;
  }
  absl::MutexLock lock(&mu_);
  if (held_.has_value()) {
    const v1::AuditCheckpoint& held = *held_;
    const std::string offered = Named(checkpoint.seq(), checkpoint.hash());
    if (checkpoint.seq() < held.seq()) {
      ++stats_.older;
      const std::string key = absl::StrCat(offered, Named(held.seq(), held.hash()));
      if (key != warned_older_) {
        warned_older_ = key;
        spdlog::warn(
            "audit witness: the controller sent checkpoint {}, older than the one held {}; the "
            "held one is kept (is the controller's database an older copy?)",
            offered, Named(held.seq(), held.hash()));
      }
      return CheckpointOffer::kOlder;
    }
    if (checkpoint.seq() == held.seq()) {
      if (checkpoint.hash() != held.hash()) {
        ++stats_.forks;
        const std::string key = absl::StrCat(offered, Named(held.seq(), held.hash()));
        if (key != warned_fork_) {
          warned_fork_ = key;
          spdlog::warn(
              "audit witness: the controller sent checkpoint {}, but the one held for that "
              "sequence is {}: the audit chain forked; the held one is kept",
              offered, Named(held.seq(), held.hash()));
        }
        return CheckpointOffer::kFork;
      }
      if (stats_.unsaved) {
        SaveLocked();  // the controller sends it again on every stream: another chance
      }
      return CheckpointOffer::kAlreadyHeld;
    }
  }
  held_ = KnownFields(checkpoint);
  ++stats_.taken;
  spdlog::debug("audit witness: holding checkpoint {}", Named(checkpoint.seq(), checkpoint.hash()));
  SaveLocked();
  return CheckpointOffer::kTaken;
}

void CheckpointWitness::SaveLocked() {
  if (options_.path.empty() || !held_.has_value()) {
    return;
  }
  const std::filesystem::path parent = std::filesystem::path(options_.path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);  // a failure shows in the write
  }
  const absl::Status written = options_.write(options_.path, EncodeCheckpointFile(*held_));
  if (written.ok()) {
    if (stats_.unsaved) {
      spdlog::info("audit witness: checkpoint (seq {}) is on disk again at {}", held_->seq(),
                   options_.path);
    }
    stats_.unsaved = false;
    return;
  }
  ++stats_.write_errors;
  stats_.unsaved = true;
  uint64_t suppressed = 0;
  if (write_log_.Allow(options_.clock->Now(), &suppressed)) {
    spdlog::error(
        "audit witness: cannot keep checkpoint (seq {}) on disk: {}; the file keeps the previous "
        "one, the agent reports this one from memory and writes it when the controller sends it "
        "again{}",
        held_->seq(), written.message(),
        suppressed > 0 ? absl::StrCat(" (", suppressed, " more failures not logged)") : "");
  }
}

std::optional<v1::AuditCheckpoint> CheckpointWitness::Held() const {
  absl::MutexLock lock(&mu_);
  return held_;
}

CheckpointWitnessStats CheckpointWitness::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

std::string CheckpointWitness::StatusLine() const {
  absl::MutexLock lock(&mu_);
  return absl::StrCat("audit witness: held_seq=", held_.has_value() ? held_->seq() : 0,
                      " taken=", stats_.taken, " older=", stats_.older, " forks=", stats_.forks,
                      " invalid=", stats_.invalid, " write_errors=", stats_.write_errors,
                      " unsaved=", stats_.unsaved ? "yes" : "no");
}

}  // namespace vigil::agent
