#include "agent/state_migration.h"

#include <spdlog/spdlog.h>
#include <stdio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace vigil::agent {
namespace {

namespace fs = std::filesystem;

bool Exists(const std::string& path) {
  std::error_code ec;
  return fs::symlink_status(path, ec).type() != fs::file_type::not_found && !ec;
}

}  // namespace

absl::Status MoveLegacyAgentState(const std::string& legacy_dir, const AgentConfig& config) {
  const std::string old_journal = absl::StrCat(legacy_dir, "/", config.id, ".journal");
  if (!Exists(old_journal)) {
    return absl::OkStatus();
  }
  if (Exists(config.journal_path)) {
    spdlog::warn("the command journal {} is in use; an older one at {} is left alone (remove it "
                 "once you know it is not needed)",
                 config.journal_path, old_journal);
    return absl::OkStatus();
  }
  // Sources and destinations, the journal last: while it is still in the old place, the next
  // start takes up an interrupted move where it stopped.
  std::vector<std::pair<std::string, std::string>> moves;
  if (config.spool_dir == DefaultSpoolDir(config.journal_path, config.id)) {
    moves.emplace_back(DefaultSpoolDir(old_journal, config.id), config.spool_dir);
  }
  if (config.result_journal_path.empty()) {
    AgentConfig old_places;
    old_places.journal_path = old_journal;
    moves.emplace_back(ResultJournalPath(old_places), ResultJournalPath(config));
  }
  const std::string prefix = absl::StrCat(config.id, ".journal.");
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(legacy_dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (absl::StartsWith(name, prefix)) {
      moves.emplace_back(entry.path().string(),
                         absl::StrCat(config.journal_path, name.substr(prefix.size() - 1)));
    }
  }
  if (ec) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot list ", legacy_dir, " to move the agent's state out of it: ", ec.message()));
  }
  moves.emplace_back(old_journal, config.journal_path);

  // Everything is checked before anything moves.
  std::vector<std::pair<std::string, std::string>> todo;
  for (auto& [from, to] : moves) {
    if (!Exists(from)) {
      continue;
    }
    if (Exists(to)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot move the agent's state from ", from, " to ", to, ": ", to,
          " exists already. Keep one of them (move or remove the other by hand) and start again"));
    }
    todo.emplace_back(std::move(from), std::move(to));
  }
  for (const auto& [from, to] : todo) {
    const fs::path parent = fs::path(to).parent_path();
    if (!parent.empty()) {
      fs::create_directories(parent, ec);
      if (ec) {
        return absl::FailedPreconditionError(absl::StrCat("cannot move the agent's state from ",
                                                          from, " to ", to, ": cannot create ",
                                                          parent.string(), ": ", ec.message()));
      }
    }
    if (rename(from.c_str(), to.c_str()) != 0) {
      const int error = errno;
      if (error == EXDEV) {
        return absl::FailedPreconditionError(absl::StrCat(
            "cannot move the agent's state from ", from, " to ", to,
            ": they are on different filesystems, and it is moved only by renaming. Move ",
            legacy_dir, "/", config.id, ".* by hand (agent stopped), or name the old places in "
            "the config (journal: ", old_journal, ")"));
      }
      return absl::FailedPreconditionError(absl::StrCat("cannot move the agent's state from ",
                                                        from, " to ", to, ": ",
                                                        std::strerror(error)));
    }
    spdlog::info("moved {} to {} (the agent's state now lives in {})", from, to,
                 parent.empty() ? "." : parent.string());
  }
  // Gone once empty; anything else there stays.
  if (rmdir(legacy_dir.c_str()) == 0) {
    spdlog::info("removed the empty folder {}", legacy_dir);
  }
  return absl::OkStatus();
}

}  // namespace vigil::agent
