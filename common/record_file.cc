#include "common/record_file.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "common/crc32.h"

namespace vigil {
namespace {

// A header line longer than this is not ours.
constexpr size_t kMaxHeaderBytes = 256;
// Skipped regions logged one by one before a summary takes over.
constexpr size_t kMaxSkipLines = 10;

std::string Errno(int error) { return std::strerror(error); }

void PutU32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) {
    out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  }
}

uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) {
    v = (v << 8) | static_cast<unsigned char>(p[i]);
  }
  return v;
}


absl::StatusOr<std::string> ReadWholeFile(int fd, const std::string& path, uint64_t max_bytes) {
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot stat ", path, ": ", Errno(errno)));
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    return absl::FailedPreconditionError(absl::StrCat(
        path, ": ", st.st_size, " bytes, more than the ", max_bytes, " this file may hold"));
  }
  std::string data(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = pread(fd, data.data() + done, data.size() - done, static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return absl::UnavailableError(absl::StrCat("cannot read ", path, ": ", Errno(errno)));
    }
    if (n == 0) {
      break;  // shrank under us: read what is there
    }
    done += static_cast<size_t>(n);
  }
  data.resize(done);
  return data;
}

}  // namespace

bool WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    const ssize_t n = write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

absl::Status SyncFolderOf(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  const std::string dir = parent.empty() ? std::string(".") : parent.string();
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || fsync(fd) != 0) {
    const int error = errno;
    if (fd >= 0) {
      close(fd);
    }
    return absl::UnavailableError(absl::StrCat("cannot sync the folder ", dir, ": ", std::strerror(error)));
  }
  close(fd);
  return absl::OkStatus();
}

absl::Status WriteFileAtomically(const std::string& path, absl::string_view content) {
  const std::string temp = absl::StrCat(path, ".tmp");
  const int fd = open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("cannot create ", temp, ": ", std::strerror(errno)));
  }
  const bool ok = WriteAll(fd, content) && fsync(fd) == 0;
  const int error = errno;
  close(fd);
  if (!ok || rename(temp.c_str(), path.c_str()) != 0) {
    const int why = ok ? errno : error;
    unlink(temp.c_str());
    return absl::UnavailableError(absl::StrCat("cannot write ", path, ": ", std::strerror(why)));
  }
  return SyncFolderOf(path);
}

std::string EncodeRecord(absl::string_view payload) {
  std::string out;
  out.reserve(kRecordFrameBytes + payload.size());
  PutU32(out, static_cast<uint32_t>(payload.size()));
  PutU32(out, Crc32(payload));
  out.append(payload.data(), payload.size());
  return out;
}

std::string RecordFileHeader(const RecordFileOptions& options) {
  return absl::StrCat(options.magic, " v", options.version, "\n");
}

absl::StatusOr<RecordScan> ScanRecords(absl::string_view data, const RecordFileOptions& options,
                                       absl::string_view name) {
  RecordScan scan;
  const size_t newline = data.substr(0, kMaxHeaderBytes).find('\n');
  if (newline == absl::string_view::npos) {
    return absl::DataLossError(
        absl::StrCat(name, ": offset 0: no header line (expected \"", options.magic, " vN\")"));
  }
  const absl::string_view header = data.substr(0, newline);
  const std::string prefix = absl::StrCat(options.magic, " v");
  uint32_t version = 0;
  if (header.substr(0, prefix.size()) != prefix ||
      !absl::SimpleAtoi(header.substr(prefix.size()), &version) || version == 0) {
    return absl::DataLossError(absl::StrCat(name, ": offset 0: header \"", header.substr(0, 80),
                                            "\" is not \"", options.magic, " vN\""));
  }
  if (version > options.version) {
    return absl::FailedPreconditionError(absl::StrCat(name, ": format version ", version,
                                                      " is newer than this program reads (",
                                                      options.version, ")"));
  }
  scan.version = version;

  size_t pos = newline + 1;
  bool in_bad = false;
  size_t bad_start = 0;
  std::string bad_reason;
  while (pos + kRecordFrameBytes <= data.size()) {
    const uint32_t length = GetU32(data.data() + pos);
    const uint32_t crc = GetU32(data.data() + pos + 4);
    std::string reason;
    if (length == 0 || length > options.max_record_bytes) {
      reason = absl::StrCat("impossible length ", length);
    } else if (length > data.size() - pos - kRecordFrameBytes) {
      reason = absl::StrCat("length ", length, " runs past the end of the file");
    } else if (Crc32(data.substr(pos + kRecordFrameBytes, length)) != crc) {
      reason = "bad checksum";
    }
    if (!reason.empty()) {
      if (!in_bad) {
        in_bad = true;
        bad_start = pos;
        bad_reason = std::move(reason);
      }
      ++pos;  // resynchronize: the next good frame may start at any byte
      continue;
    }
    if (in_bad) {
      scan.skipped.push_back({bad_start, pos - bad_start, bad_reason});
      scan.skipped_before.push_back(scan.records.size());
      scan.skipped_bytes += pos - bad_start;
      in_bad = false;
    }
    scan.offsets.push_back(pos);
    scan.records.emplace_back(data.substr(pos + kRecordFrameBytes, length));
    pos += kRecordFrameBytes + length;
  }
  const size_t tail_start = in_bad ? bad_start : pos;
  scan.torn_bytes = data.size() - tail_start;
  scan.valid_bytes = tail_start;
  return scan;
}

absl::StatusOr<std::unique_ptr<RecordFile>> RecordFile::Open(const std::string& path,
                                                             const RecordFileOptions& options,
                                                             RecordScan* scan) {
  *scan = RecordScan{};
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("cannot open ", path, ": ", Errno(errno)));
  }
  auto fail = [fd](absl::Status status) {
    close(fd);
    return status;
  };
  absl::StatusOr<std::string> data = ReadWholeFile(fd, path, options.max_file_bytes);
  if (!data.ok()) {
    return fail(data.status());
  }
  if (data->empty()) {
    // New (or created by a crash before its header reached the disk): write the header.
    const std::string header = RecordFileHeader(options);
    if (!WriteAll(fd, header) || fsync(fd) != 0) {
      return fail(absl::UnavailableError(
          absl::StrCat("cannot write the header of ", path, ": ", Errno(errno))));
    }
    if (absl::Status synced = SyncFolderOf(path); !synced.ok()) {
      return fail(synced);
    }
    scan->version = options.version;
    scan->valid_bytes = header.size();
    return std::unique_ptr<RecordFile>(new RecordFile(path, options, fd, header.size()));
  }
  absl::StatusOr<RecordScan> scanned = ScanRecords(*data, options, path);
  if (!scanned.ok()) {
    return fail(scanned.status());
  }
  *scan = *std::move(scanned);
  for (size_t i = 0; i < scan->skipped.size() && i < kMaxSkipLines; ++i) {
    const SkippedRegion& region = scan->skipped[i];
    spdlog::warn("{}: offset {}: skipped {} corrupt byte(s) ({}); reading on from the next record",
                 path, region.offset, region.bytes, region.reason);
  }
  if (scan->skipped.size() > kMaxSkipLines) {
    spdlog::warn("{}: {} more corrupt region(s) skipped, {} byte(s) in all", path,
                 scan->skipped.size() - kMaxSkipLines, scan->skipped_bytes);
  }
  if (scan->torn_bytes > 0) {
    spdlog::warn("{}: offset {}: cutting off a torn tail of {} byte(s) (an append cut short)",
                 path, scan->valid_bytes, scan->torn_bytes);
    if (ftruncate(fd, static_cast<off_t>(scan->valid_bytes)) != 0 || fsync(fd) != 0) {
      return fail(absl::UnavailableError(
          absl::StrCat("cannot truncate the torn tail of ", path, ": ", Errno(errno))));
    }
  }
  return std::unique_ptr<RecordFile>(new RecordFile(path, options, fd, scan->valid_bytes));
}

RecordFile::~RecordFile() {
  if (fd_ >= 0) {
    close(fd_);
  }
}

absl::Status RecordFile::Append(absl::string_view payload) {
  if (payload.empty() || payload.size() > options_.max_record_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("cannot append a record of ", payload.size(),
                                                   " bytes to ", path_, " (1..",
                                                   options_.max_record_bytes, " allowed)"));
  }
  if (fd_ < 0) {
    return absl::FailedPreconditionError(absl::StrCat(path_, " is not open (an earlier failure)"));
  }
  const std::string frame = EncodeRecord(payload);
  if (!WriteAll(fd_, frame)) {
    const int error = errno;
    // Take the partial frame back, so that the next append does not follow garbage.
    if (ftruncate(fd_, static_cast<off_t>(size_)) != 0) {
      return absl::DataLossError(absl::StrCat("cannot append to ", path_, ": ", Errno(error),
                                              "; a partial record may remain at offset ", size_));
    }
    return absl::UnavailableError(absl::StrCat("cannot append to ", path_, ": ", Errno(error)));
  }
  size_ += frame.size();
  unsynced_ = true;
  if (options_.sync == RecordSync::kEveryAppend) {
    return Sync();
  }
  return absl::OkStatus();
}

absl::Status RecordFile::Sync() {
  if (!unsynced_) {
    return absl::OkStatus();
  }
  if (fd_ < 0 || fdatasync(fd_) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot sync ", path_, ": ", Errno(errno)));
  }
  unsynced_ = false;
  return absl::OkStatus();
}

absl::Status RecordFile::Rewrite(const std::vector<std::string>& payloads) {
  std::string content = RecordFileHeader(options_);
  for (const std::string& payload : payloads) {
    if (payload.empty() || payload.size() > options_.max_record_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("cannot write a record of ", payload.size(),
                                                     " bytes to ", path_));
    }
    content += EncodeRecord(payload);
  }
  RETURN_IF_ERROR(WriteFileAtomically(path_, content));
  // The old descriptor points at the replaced file: appends go to the new one from here.
  const int fresh = open(path_.c_str(), O_RDWR | O_APPEND | O_CLOEXEC);
  if (fd_ >= 0) {
    close(fd_);
  }
  fd_ = fresh;
  if (fresh < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot reopen ", path_, " after rewriting it: ", Errno(errno)));
  }
  size_ = content.size();
  unsynced_ = false;
  return absl::OkStatus();
}

}  // namespace vigil
