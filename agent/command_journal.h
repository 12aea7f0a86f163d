// The agent's journal of command ids it has run, written before a command runs so that no crash,
// restart or replay runs one twice. It fails closed: a journal that is missing where there is
// evidence it existed, or that is cut short or garbled, stops the agent with the file and line,
// since accepting it would let a captured command run again.
//
// Format (v2), one entry a line, each with a sequence number and a CRC-32 of "SEQ ID":
//   vigil-agent command journal v2
//   1 cmd-3f2a9c0d11e2b7a4 5d2c61f0
// The journal of earlier versions (plain ids, one a line) is read and rewritten as v2. Beside
// the journal, PATH.created marks that it was made; with the marker (or any other PATH.* file)
// present a missing journal is an error unless the operator asks for a fresh one.
//
// ParseCommandJournal is pure. A CommandJournal is not thread-safe: one thread owns it (the
// command executor's worker).
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/crc32.h"

namespace vigil::agent {

inline constexpr absl::string_view kJournalHeader = "vigil-agent command journal v2";
// Command ids are this long at most and made of [A-Za-z0-9._:-], so a line holds exactly one.
inline constexpr size_t kMaxCommandIdBytes = 128;

// Whether `id` may be a command id (and so a journal entry).
bool IsValidCommandId(absl::string_view id);

// CRC-32 (IEEE, as zlib) of `data`; lives in common/ for every checksummed file.
using ::vigil::Crc32;

// The v2 line for entry `seq`, newline included.
std::string JournalEntryLine(uint64_t seq, absl::string_view id);

struct JournalContents {
  std::vector<std::string> ids;
  bool legacy = false;     // the plain-id format of earlier versions
  bool torn_tail = false;  // the last line had no newline and did not verify: dropped
  std::string torn_text;   // what was dropped, for the warning
  size_t valid_bytes = 0;  // the length of the text up to the torn tail
};

// Parses a journal's text. Errors name `name`, the line and the byte offset, and say what is
// wrong (an empty text, a cut header, an unknown version, a bad checksum, a missing entry).
absl::StatusOr<JournalContents> ParseCommandJournal(absl::string_view text, absl::string_view name);

class CommandJournal {
 public:
  // Opens or creates the journal at `path` (creating its folder). A missing journal is created
  // when there is no evidence it existed (a first install) or when `init` is set; otherwise it
  // is an error saying why. A torn last line is dropped with a warning; an earlier-version
  // journal is upgraded in place. Every other defect is an error naming the file and line.
  static absl::StatusOr<std::unique_ptr<CommandJournal>> Open(const std::string& path, bool init);

  // PATH.created: written when the journal is made.
  static std::string MarkerPath(const std::string& path) { return path + ".created"; }

  bool Contains(const std::string& id) const { return ids_.contains(id); }
  size_t size() const { return ids_.size(); }

  // Appends `id` and syncs it to disk; only then may the command run. Errors name the file.
  absl::Status Append(const std::string& id);

 private:
  CommandJournal(std::string path, std::set<std::string> ids, uint64_t next_seq)
      : path_(std::move(path)), ids_(std::move(ids)), next_seq_(next_seq) {}

  const std::string path_;
  std::set<std::string> ids_;
  uint64_t next_seq_;
};

}  // namespace vigil::agent
