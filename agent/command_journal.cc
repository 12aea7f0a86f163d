#include "agent/command_journal.h"

#include <dirent.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/record_file.h"

namespace vigil::agent {
namespace {

constexpr absl::string_view kHeaderPrefix = "vigil-agent command journal";
// A journal larger than this is not one this agent wrote (about a million commands).
constexpr size_t kMaxJournalBytes = 64 << 20;

std::string Errno(int error) { return std::strerror(error); }



// Files that show the journal existed: its marker, or any PATH.* left beside it.
std::string EvidenceOfJournal(const std::string& path) {
  const std::filesystem::path p(path);
  const std::string prefix = p.filename().string() + ".";
  std::error_code ec;
  const std::filesystem::path dir = p.has_parent_path() ? p.parent_path() : ".";
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (absl::StartsWith(name, prefix)) {
      return entry.path().string();
    }
  }
  return "";
}

absl::StatusOr<std::string> ReadJournalFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot read the command journal ", path, ": ", Errno(errno)));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return absl::FailedPreconditionError(
        absl::StrCat("the command journal ", path, " is not a regular file"));
  }
  if (static_cast<size_t>(st.st_size) > kMaxJournalBytes) {
    close(fd);
    return absl::FailedPreconditionError(absl::StrCat("the command journal ", path, " has ",
                                                      st.st_size,
                                                      " bytes, more than any journal "
                                                      "this agent writes"));
  }
  std::string text;
  char buffer[65536];
  while (true) {
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      const int error = errno;
      close(fd);
      return absl::DataLossError(
          absl::StrCat("cannot read the command journal ", path, ": ", Errno(error)));
    }
    if (n == 0 || text.size() + static_cast<size_t>(n) > kMaxJournalBytes) {
      break;
    }
    text.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  return text;
}

std::string Printable(absl::string_view text) {
  std::string out;
  for (char c : text.substr(0, 80)) {
    out += absl::ascii_isprint(static_cast<unsigned char>(c)) ? c : '?';
  }
  return out;
}

}  // namespace

bool IsValidCommandId(absl::string_view id) {
  if (id.empty() || id.size() > kMaxCommandIdBytes) {
    return false;
  }
  for (char c : id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.' &&
        c != ':') {
      return false;
    }
  }
  return true;
}

std::string JournalEntryLine(uint64_t seq, absl::string_view id) {
  const std::string body = absl::StrCat(seq, " ", id);
  return absl::StrCat(body, " ", absl::Hex(Crc32(body), absl::kZeroPad8), "\n");
}

absl::StatusOr<JournalContents> ParseCommandJournal(absl::string_view text,
                                                    absl::string_view name) {
  JournalContents out;
  auto error = [&](size_t line, size_t offset, absl::string_view what) {
    return absl::DataLossError(absl::StrCat(name, ":", line, " (byte ", offset, "): ", what));
  };
  if (text.empty()) {
    return error(1, 0, "the journal is empty: it was truncated (a journal always has a header)");
  }
  const bool v2 = absl::StartsWith(text, kHeaderPrefix);
  if (!v2 && absl::StartsWith(kHeaderPrefix, text.substr(0, kHeaderPrefix.size()))) {
    return error(1, 0, "the header is cut short: the journal was truncated");
  }
  out.legacy = !v2;
  size_t offset = 0;
  size_t line_number = 0;
  uint64_t expected_seq = 1;
  while (offset < text.size()) {
    ++line_number;
    const size_t eol = text.find('\n', offset);
    const bool complete = eol != absl::string_view::npos;
    const absl::string_view line =
        text.substr(offset, complete ? eol - offset : absl::string_view::npos);
    const size_t line_offset = offset;
    offset = complete ? eol + 1 : text.size();

    if (v2 && line_number == 1) {
      if (!complete) {
        return error(1, 0, "the header is cut short: the journal was truncated");
      }
      if (line != kJournalHeader) {
        return error(1, 0,
                     absl::StrCat("unknown journal version '", Printable(line),
                                  "' (this agent reads '", kJournalHeader, "')"));
      }
      continue;
    }
    // Whether the line is a well-formed entry, and its id.
    std::string id;
    std::string problem;
    if (out.legacy) {
      if (!IsValidCommandId(line)) {
        problem = absl::StrCat("'", Printable(line), "' is not a command id");
      } else {
        id = std::string(line);
      }
    } else {
      const std::vector<absl::string_view> fields = absl::StrSplit(line, ' ');
      uint64_t seq = 0;
      uint32_t crc = 0;
      if (fields.size() != 3 || !absl::SimpleAtoi(fields[0], &seq) ||
          !IsValidCommandId(fields[1]) || fields[2].size() != 8 ||
          !absl::SimpleHexAtoi(fields[2], &crc)) {
        problem = absl::StrCat("garbled entry '", Printable(line), "' (want: SEQ ID CRC32)");
      } else if (crc != Crc32(line.substr(0, line.size() - 9))) {
        problem =
            absl::StrCat("garbled entry '", Printable(line), "': the checksum does not match");
      } else if (seq != expected_seq) {
        problem = absl::StrCat("entry ", seq, " where entry ", expected_seq,
                               " was due: entries are missing or out of order");
      } else {
        id = std::string(fields[1]);
      }
    }
    if (!complete && !problem.empty() && line_number > 1) {
      // A crash in the middle of an append: that command never ran (the entry is written and
      // synced before it runs), so its half line is dropped. Only after a complete line: a file
      // that is one unterminated line of noise is not a journal.
      out.torn_tail = true;
      out.torn_text = Printable(line);
      out.valid_bytes = line_offset;
      return out;
    }
    if (!problem.empty()) {
      return error(line_number, line_offset, problem);
    }
    out.ids.push_back(std::move(id));
    ++expected_seq;
  }
  out.valid_bytes = text.size();
  return out;
}

absl::StatusOr<std::unique_ptr<CommandJournal>> CommandJournal::Open(const std::string& path,
                                                                     bool init) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec) {
      return absl::PermissionDeniedError(absl::StrCat("cannot create the folder ", parent.string(),
                                                      " for the command journal: ", ec.message()));
    }
  }
  const std::string marker = MarkerPath(path);
  auto write_marker = [&]() -> absl::Status {
    if (access(marker.c_str(), F_OK) == 0) {
      return absl::OkStatus();
    }
    return WriteFileAtomically(
        marker, absl::StrCat("the command journal ", path, " was created at ",
                             absl::FormatTime(absl::RFC3339_sec, absl::Now(), absl::UTCTimeZone()),
                             "; while this file exists, the agent refuses to start without it\n"));
  };

  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) {
      return absl::PermissionDeniedError(
          absl::StrCat("cannot read the command journal ", path, ": ", Errno(errno)));
    }
    const std::string evidence = EvidenceOfJournal(path);
    if (!evidence.empty() && !init) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the command journal ", path, " is missing, but ", evidence,
          " shows this agent kept one: without it, commands it already ran could run again. "
          "Restore the journal, or start once with --init-journal to begin a new one"));
    }
    if (evidence.empty()) {
      spdlog::info("creating the command journal {} (first start)", path);
    } else {
      spdlog::warn("--init-journal: starting a new command journal {} ({} shows an earlier one)",
                   path, evidence);
    }
    if (absl::Status s = WriteFileAtomically(path, absl::StrCat(kJournalHeader, "\n")); !s.ok()) {
      return absl::UnavailableError(absl::StrCat("the command journal: ", s.message()));
    }
    if (absl::Status s = write_marker(); !s.ok()) {
      return s;
    }
    return std::unique_ptr<CommandJournal>(new CommandJournal(path, {}, 1));
  }

  absl::StatusOr<std::string> text = ReadJournalFile(path);
  if (!text.ok()) {
    return text.status();
  }
  if (text->empty() && init) {
    spdlog::warn("--init-journal: the command journal {} was empty; starting it anew", path);
    text = absl::StrCat(kJournalHeader, "\n");
    if (absl::Status s = WriteFileAtomically(path, *text); !s.ok()) {
      return s;
    }
  }
  absl::StatusOr<JournalContents> contents = ParseCommandJournal(*text, path);
  if (!contents.ok()) {
    return absl::DataLossError(absl::StrCat(
        "the command journal is damaged, so commands it listed could run again: ",
        contents.status().message(),
        ". Repair or restore it; only if no command it held can still be replayed, move it "
        "aside and start once with --init-journal"));
  }
  if (contents->torn_tail) {
    spdlog::warn(
        "{}: dropped a half-written last entry '{}' (a crash during an append; that "
        "command was not run)",
        path, contents->torn_text);
  }
  const uint64_t next_seq = contents->ids.size() + 1;
  if (contents->legacy || contents->torn_tail) {
    std::string rewritten = absl::StrCat(kJournalHeader, "\n");
    uint64_t seq = 1;
    for (const std::string& id : contents->ids) {
      rewritten += JournalEntryLine(seq++, id);
    }
    if (absl::Status s = WriteFileAtomically(path, rewritten); !s.ok()) {
      return absl::UnavailableError(absl::StrCat("the command journal: ", s.message()));
    }
    if (contents->legacy) {
      spdlog::info("{}: upgraded the command journal to v2 ({} entries)", path,
                   contents->ids.size());
    }
  }
  if (absl::Status s = write_marker(); !s.ok()) {
    return s;
  }
  return std::unique_ptr<CommandJournal>(new CommandJournal(
      path, std::set<std::string>(contents->ids.begin(), contents->ids.end()), next_seq));
}

absl::Status CommandJournal::Append(const std::string& id) {
  if (!IsValidCommandId(id)) {
    return absl::InvalidArgumentError(
        absl::StrCat("command id '", Printable(id), "' cannot be journaled"));
  }
  const int fd = open(path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot open the command journal ", path_, ": ", Errno(errno)));
  }
  struct stat before {};
  const bool sized = fstat(fd, &before) == 0;
  const std::string line = JournalEntryLine(next_seq_, id);
  const bool ok = sized && WriteAll(fd, line) && fsync(fd) == 0;
  const int error = errno;
  if (!ok && sized) {
    // Take a partial line back, so the next append does not continue it. If even that fails, the
    // journal fails closed at the next start (a garbled line), and the log says why now.
    if (ftruncate(fd, before.st_size) != 0) {
      spdlog::error(
          "cannot take back a partial entry of the command journal {}: {}; the agent "
          "will refuse to start on it until it is repaired",
          path_, Errno(errno));
    }
  }
  close(fd);
  if (!ok) {
    return absl::UnavailableError(
        absl::StrCat("cannot write the command journal ", path_, ": ", Errno(error)));
  }
  ids_.insert(id);
  ++next_seq_;
  return absl::OkStatus();
}

}  // namespace vigil::agent
