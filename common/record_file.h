// An append-only file of checksummed records, for state that must survive a crash (the agent's
// telemetry spool, its command-result journal). The format:
//
//   MAGIC vVERSION\n                          one header line, e.g. "vigil-agent spool v1"
//   [u32 length][u32 CRC-32 of payload][payload]   repeated; little-endian; length >= 1
//
// Reading never trusts the disk: a length beyond the caller's cap or the end of the file is
// refused, a record whose CRC does not match is skipped, and the reader resynchronizes on the
// next frame that verifies, counting what it skipped and saying where (file, byte offset). Bytes
// after the last good record that never verify are a torn tail (a crash mid-append): Open cuts
// them off with a warning. Rewrite replaces the whole file atomically (temporary file, fsync,
// rename, fsync of the folder).
//
// ScanRecords is pure and thread-safe. A RecordFile is not thread-safe: one thread owns it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace vigil {

// Writes all of `data` to `fd`, through short writes and EINTR; false with errno set on failure.
bool WriteAll(int fd, absl::string_view data);
// fsyncs the folder holding `path`, so a file created or renamed there survives a crash.
absl::Status SyncFolderOf(const std::string& path);
// Replaces `path` with `content` atomically: a temporary file (0600), synced, renamed over it,
// and the folder synced. On error `path` is as it was.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view content);

// When appends reach the disk.
enum class RecordSync {
  kEveryAppend,  // Append returns after fsync: the record survives a crash of the machine
  kManual,       // the caller calls Sync() when its batch is complete
};

struct RecordFileOptions {
  // The header line is "<magic> v<version>". Files of versions 1..version are read (the
  // version found is reported); a different magic or a newer version is refused.
  std::string magic;
  uint32_t version = 1;
  // The largest payload accepted, written or read: a length field above it is corruption.
  uint32_t max_record_bytes = 4 << 20;
  // A file larger than this is refused rather than read into memory.
  uint64_t max_file_bytes = uint64_t{1} << 30;
  RecordSync sync = RecordSync::kEveryAppend;
};

// Bytes of the frame around a payload.
inline constexpr size_t kRecordFrameBytes = 8;

// A run of bytes that did not verify and was skipped, with the next good record after it.
struct SkippedRegion {
  uint64_t offset = 0;  // byte offset in the file where the bad bytes start
  uint64_t bytes = 0;
  std::string reason;   // "bad checksum", "impossible length 4294967295", ...
};

struct RecordScan {
  uint32_t version = 0;              // from the header
  std::vector<std::string> records;  // the payloads that verified, in file order
  std::vector<uint64_t> offsets;     // offsets[i]: where records[i]'s frame starts
  // Each region is followed by a good record: records[skipped_before[k]] is the first after
  // skipped[k], so a caller can tell which of its records lie on either side of a hole.
  std::vector<SkippedRegion> skipped;
  std::vector<size_t> skipped_before;
  uint64_t skipped_bytes = 0;
  // Bytes after the last good record that never verified (a torn append); valid_bytes is the
  // length of the file without them.
  uint64_t torn_bytes = 0;
  uint64_t valid_bytes = 0;
};

// The frame for `payload` (header not included).
std::string EncodeRecord(absl::string_view payload);

// The header line for `options`, newline included.
std::string RecordFileHeader(const RecordFileOptions& options);

// Reads a whole file's contents. Errors (a missing or foreign header, a newer version) name
// `name`; corrupt records are not errors but are reported in the result.
absl::StatusOr<RecordScan> ScanRecords(absl::string_view data, const RecordFileOptions& options,
                                       absl::string_view name);

class RecordFile {
 public:
  // Opens `path`, creating it (with its header) when missing; its folder must exist. Fills
  // `scan` with what the file held: skipped corrupt regions are logged with file and offset and
  // a torn tail is truncated with a warning. Errors name the file: unreadable, too large, a
  // foreign header or a newer version.
  static absl::StatusOr<std::unique_ptr<RecordFile>> Open(const std::string& path,
                                                          const RecordFileOptions& options,
                                                          RecordScan* scan);
  ~RecordFile();
  RecordFile(const RecordFile&) = delete;
  RecordFile& operator=(const RecordFile&) = delete;

  // Appends one record (1..max_record_bytes long); with RecordSync::kEveryAppend it is on disk
  // when this returns OK. A failed append leaves the file as it was (a partial frame is cut
  // back off), or reports that it could not.
  absl::Status Append(absl::string_view payload);
  // Syncs appends made since the last sync.
  absl::Status Sync();
  // Replaces the file with `payloads` (the header of this version first), atomically: after a
  // crash the file holds either the old records or the new ones.
  absl::Status Rewrite(const std::vector<std::string>& payloads);

  const std::string& path() const { return path_; }
  // Bytes in the file, header included.
  uint64_t size_bytes() const { return size_; }

 private:
  RecordFile(std::string path, RecordFileOptions options, int fd, uint64_t size)
      : path_(std::move(path)), options_(std::move(options)), fd_(fd), size_(size) {}

  const std::string path_;
  const RecordFileOptions options_;
  int fd_;
  uint64_t size_;
  bool unsynced_ = false;
};

}  // namespace vigil
