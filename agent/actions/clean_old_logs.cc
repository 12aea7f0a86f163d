#include "agent/actions/clean_old_logs.h"

#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "agent/actions/action_util.h"
#include "common/action_schema.h"
#include "common/status.h"
#include "common/yaml_util.h"
#include "spdlog/spdlog.h"

namespace vigil::agent {
namespace {

constexpr char kCleanOldLogs[] = "clean_old_logs";
constexpr char kDefaultPattern[] = "*.log.*";
// How deep `recursive: yes` descends below the requested folder.
constexpr int kMaxDepth = 16;

absl::StatusOr<std::string> RealPath(const std::string& path) {
  char* real = realpath(path.c_str(), nullptr);
  if (real == nullptr) {
    return absl::NotFoundError(absl::StrCat(path, ": ", std::strerror(errno)));
  }
  std::string out(real);
  free(real);
  return out;
}

bool Inside(absl::string_view path, absl::string_view dir) {
  return path == dir || dir == "/" ||
         (absl::StartsWith(path, dir) && path.size() > dir.size() && path[dir.size()] == '/');
}

// One entry of `dirs`: a directory, and for a folder such as backups, the only patterns allowed
// in it and its own minimum age.
struct AllowedDir {
  std::string dir;
  std::vector<std::string> patterns;  // empty: any file name glob
  absl::Duration min_age;
};

class CleanOldLogs final : public Action {
 public:
  explicit CleanOldLogs(std::vector<AllowedDir> dirs) : dirs_(std::move(dirs)) {}

  absl::string_view name() const override { return kCleanOldLogs; }

  absl::Status Check(const ActionParams& params) const override {
    RETURN_IF_ERROR(CheckActionParams(kCleanOldLogs, params));
    if (auto it = params.find("pattern");
        it != params.end() && absl::StrContains(it->second, "/")) {
      return absl::InvalidArgumentError(absl::StrCat(kCleanOldLogs, ": pattern '", it->second,
                                                     "' must be a file name glob (no '/')"));
    }
    ASSIGN_OR_RETURN(absl::Duration older_than, ParseDurationText(params.at("older_than")));
    ASSIGN_OR_RETURN(std::string real, CheckDir(params.at("dir")));
    const AllowedDir& allowed = *Entry(real);
    if (older_than < allowed.min_age) {
      return absl::PermissionDeniedError(
          absl::StrCat(kCleanOldLogs, ": older_than ", params.at("older_than"),
                       " is below the limit ", absl::FormatDuration(allowed.min_age), " (min_age",
                       dirs_.size() > 1 ? " of " : "", dirs_.size() > 1 ? allowed.dir : "", ")"));
    }
    const std::string pattern = Pattern(params, allowed);
    if (!allowed.patterns.empty() && std::find(allowed.patterns.begin(), allowed.patterns.end(),
                                               pattern) == allowed.patterns.end()) {
      return absl::PermissionDeniedError(
          absl::StrCat(kCleanOldLogs, ": pattern '", pattern, "' is not allowed in ", allowed.dir,
                       " (patterns: ", absl::StrJoin(allowed.patterns, ", "), ")"));
    }
    return absl::OkStatus();
  }

  ActionResult Run(const ActionParams& params, absl::Duration timeout) override {
    if (absl::Status s = Check(params); !s.ok()) {
      return Failure(std::string(s.message()));
    }
    StepRunner steps(kCleanOldLogs, nullptr, timeout);
    const absl::Duration older_than = *ParseDurationText(params.at("older_than"));
    absl::StatusOr<std::string> dir = CheckDir(params.at("dir"));
    if (!dir.ok()) {
      return Failure(std::string(dir.status().message()));
    }
    const std::string pattern = Pattern(params, *Entry(*dir));
    const int fd = open(dir->c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      return Failure(
          absl::StrCat(kCleanOldLogs, ": cannot open ", *dir, ": ", std::strerror(errno)));
    }
    // The directory really opened, wherever a symlink swapped in since the check points.
    absl::StatusOr<std::string> opened = RealPath(absl::StrCat("/proc/self/fd/", fd));
    if (!opened.ok() || !Allowed(*opened)) {
      close(fd);
      return Failure(
          absl::StrCat(kCleanOldLogs, ": ", *dir, " changed while being opened: refused"));
    }
    struct stat top;
    if (fstat(fd, &top) != 0) {
      close(fd);
      return Failure(
          absl::StrCat(kCleanOldLogs, ": cannot stat ", *dir, ": ", std::strerror(errno)));
    }
    Sweep sweep;
    sweep.pattern = pattern;
    sweep.cutoff = absl::Now() - older_than;
    sweep.recursive = IsRecursive(params);
    sweep.device = top.st_dev;
    sweep.steps = &steps;
    // SweepDir closes the descriptor it is given.
    if (absl::Status listed = SweepDir(fd, "", 0, sweep); !listed.ok()) {
      return Failure(absl::StrCat(kCleanOldLogs, ": ", *dir, ": ", listed.message()));
    }
    const int removed = sweep.removed;
    const uint64_t bytes = sweep.bytes;
    steps.Note(absl::StrCat("removed ", removed, " files, ", bytes, " bytes, from ", *dir,
                            sweep.recursive ? " and its subfolders" : "", " (pattern '", pattern,
                            "', older than ", params.at("older_than"), ")"));
    if (sweep.skipped_deep > 0) {
      steps.Note(absl::StrCat("skipped ", sweep.skipped_deep, " folders deeper than ",
                              kMaxDepth, " levels"));
    }
    spdlog::info("{}: removed {} files, {} bytes, from {}", kCleanOldLogs, removed, bytes, *dir);
    if (sweep.timed_out) {
      steps.Fail(absl::StrCat(TimedOutAfter(timeout), " after removing ", removed, " files"),
                 kExitKilled);
    } else if (sweep.failed > 0) {
      steps.Fail(
          absl::StrCat("could not remove ", sweep.failed, " files (", sweep.first_error, ")"));
    }
    return steps.Finish();
  }

 private:
  // One run's walk: what it matches and what it has done so far.
  struct Sweep {
    std::string pattern;
    absl::Time cutoff;
    bool recursive = false;
    dev_t device = 0;  // subfolders on other filesystems (mounts) are not entered
    StepRunner* steps = nullptr;
    int removed = 0;
    int failed = 0;
    int skipped_deep = 0;
    uint64_t bytes = 0;
    std::string first_error;
    bool timed_out = false;
  };

  static bool IsRecursive(const ActionParams& params) {
    auto it = params.find("recursive");
    return it != params.end() && it->second == "yes";
  }

  // Removes the matching old regular files of the folder open on `fd` (`rel` below the
  // requested one), and with `recursive`, of its subfolders: each opened relative to its parent
  // without following symlinks, so nothing outside the requested folder is ever reached, and
  // only on the same filesystem, `find -xdev` style. Closes `fd`.
  static absl::Status SweepDir(int fd, const std::string& rel, int depth, Sweep& sweep) {
    DIR* listing = fdopendir(fd);
    if (listing == nullptr) {
      const int error = errno;
      close(fd);
      return absl::InternalError(absl::StrCat("cannot list ", rel.empty() ? "it" : rel, ": ",
                                              std::strerror(error)));
    }
    std::vector<std::string> subfolders;
    while (const dirent* entry = readdir(listing)) {
      const std::string name = entry->d_name;
      if (name == "." || name == "..") {
        continue;
      }
      if (sweep.steps->remaining() <= absl::ZeroDuration()) {
        sweep.timed_out = true;
        break;
      }
      struct stat st;
      if (fstatat(fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        continue;
      }
      if (S_ISDIR(st.st_mode)) {
        if (sweep.recursive && st.st_dev == sweep.device) {
          subfolders.push_back(name);
        }
        continue;
      }
      if (!S_ISREG(st.st_mode) || fnmatch(sweep.pattern.c_str(), name.c_str(), FNM_PERIOD) != 0 ||
          absl::TimeFromTimespec(st.st_mtim) >= sweep.cutoff) {
        continue;
      }
      const std::string shown = rel.empty() ? name : absl::StrCat(rel, "/", name);
      if (unlinkat(fd, name.c_str(), 0) != 0) {
        if (sweep.failed++ == 0) {
          sweep.first_error = absl::StrCat(shown, ": ", std::strerror(errno));
        }
        continue;
      }
      ++sweep.removed;
      sweep.bytes += st.st_size;
      sweep.steps->Note(absl::StrCat("removed ", shown, " (", st.st_size, " bytes)"));
    }
    // Subfolders after the listing is closed: one open listing per level at most.
    for (const std::string& name : subfolders) {
      if (sweep.timed_out) {
        break;
      }
      if (depth + 1 > kMaxDepth) {
        ++sweep.skipped_deep;
        continue;
      }
      const int child = openat(dirfd(listing), name.c_str(),
                               O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (child < 0) {
        continue;  // gone or swapped for a symlink since it was listed: not ours to follow
      }
      struct stat st;
      if (fstat(child, &st) != 0 || st.st_dev != sweep.device) {
        close(child);
        continue;
      }
      const std::string shown = rel.empty() ? name : absl::StrCat(rel, "/", name);
      if (absl::Status s = SweepDir(child, shown, depth + 1, sweep); !s.ok()) {
        if (sweep.failed++ == 0) {
          sweep.first_error = std::string(s.message());
        }
      }
    }
    closedir(listing);
    return absl::OkStatus();
  }

  // The parameter, else the entry's first pattern, else rotated logs.
  static std::string Pattern(const ActionParams& params, const AllowedDir& allowed) {
    auto it = params.find("pattern");
    if (it != params.end()) {
      return it->second;
    }
    return allowed.patterns.empty() ? kDefaultPattern : allowed.patterns.front();
  }

  // The innermost allowed entry holding `real_dir`, or nullptr.
  const AllowedDir* Entry(absl::string_view real_dir) const {
    const AllowedDir* best = nullptr;
    size_t best_length = 0;
    for (const AllowedDir& allowed : dirs_) {
      absl::StatusOr<std::string> real_allowed = RealPath(allowed.dir);
      if (real_allowed.ok() && Inside(real_dir, *real_allowed) &&
          (best == nullptr || real_allowed->size() > best_length)) {
        best = &allowed;
        best_length = real_allowed->size();
      }
    }
    return best;
  }

  bool Allowed(absl::string_view real_dir) const { return Entry(real_dir) != nullptr; }

  // The real path of `dir` when it is an existing directory inside an allowed one.
  absl::StatusOr<std::string> CheckDir(const std::string& dir) const {
    const std::string allowed = absl::StrJoin(
        dirs_, ", ", [](std::string* out, const AllowedDir& a) { out->append(a.dir); });
    if (!absl::StartsWith(dir, "/")) {
      return absl::InvalidArgumentError(
          absl::StrCat(kCleanOldLogs, ": dir '", dir, "' must be an absolute path"));
    }
    absl::StatusOr<std::string> real = RealPath(dir);
    if (!real.ok()) {
      return absl::NotFoundError(absl::StrCat(
          kCleanOldLogs, ": dir '", dir, "' cannot be resolved (", real.status().message(), ")"));
    }
    if (!Allowed(*real)) {
      return absl::PermissionDeniedError(
          absl::StrCat(kCleanOldLogs, ": dir '", dir, "' is not inside an allowed directory",
                       *real == dir ? "" : absl::StrCat(" (it resolves to ", *real, ")"),
                       " (allowed: ", allowed, ")"));
    }
    struct stat st;
    if (stat(real->c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return absl::InvalidArgumentError(
          absl::StrCat(kCleanOldLogs, ": dir '", dir, "' is not a directory"));
    }
    return real;
  }

  std::vector<AllowedDir> dirs_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Action>> NewCleanOldLogsAction(const YAML::Node& options,
                                                              const ActionContext& context,
                                                              absl::string_view file) {
  ActionOptions o(options, file, kCleanOldLogs);
  RETURN_IF_ERROR(o.CheckKeys({"dirs", "min_age"}));
  ASSIGN_OR_RETURN(absl::Duration min_age, o.Duration("min_age", absl::Hours(1)));
  const YAML::Node listed = options.IsMap() ? options["dirs"] : YAML::Node();
  if (!listed.IsDefined() || listed.IsNull()) {
    return o.Error("dirs", "is required (a non-empty list)");
  }
  if (!listed.IsSequence()) {
    return o.Error("dirs", "must be a list of directories or {dir, patterns, min_age}");
  }
  if (listed.size() == 0) {
    return o.Error("dirs", "must not be empty");
  }
  std::vector<AllowedDir> dirs;
  for (const YAML::Node& entry : listed) {
    auto error = [&](const YAML::Node& at, absl::string_view what) {
      return absl::InvalidArgumentError(
          absl::StrCat(YamlWhere(file, at), ": actions.", kCleanOldLogs, ".dirs: ", what));
    };
    AllowedDir allowed{"", {}, min_age};
    if (entry.IsScalar()) {
      allowed.dir = entry.Scalar();
    } else if (entry.IsMap()) {
      // A folder with its own patterns and age, e.g. backups: {dir, patterns: ["*.sql.gz"]}.
      RETURN_IF_ERROR(YamlCheckKeys(entry, file, absl::StrCat("actions.", kCleanOldLogs, ".dirs"),
                                    {"dir", "patterns", "min_age"}));
      ActionOptions e(entry, file, absl::StrCat(kCleanOldLogs, ".dirs"));
      ASSIGN_OR_RETURN(allowed.dir, e.String("dir", ""));
      if (allowed.dir.empty()) {
        return error(entry, "an entry needs 'dir'");
      }
      ASSIGN_OR_RETURN(allowed.patterns, e.List("patterns", /*required=*/false));
      for (const std::string& pattern : allowed.patterns) {
        if (absl::StrContains(pattern, "/")) {
          return error(entry["patterns"],
                       absl::StrCat("pattern '", pattern, "' must be a file name glob (no '/')"));
        }
      }
      ASSIGN_OR_RETURN(allowed.min_age, e.Duration("min_age", min_age));
    } else {
      return error(entry, "an entry must be a directory or {dir, patterns, min_age}");
    }
    if (!absl::StartsWith(allowed.dir, "/")) {
      return error(entry, absl::StrCat("'", allowed.dir, "' must be an absolute path"));
    }
    if (allowed.dir == "/") {
      return error(entry, "'/' is not a log directory");
    }
    dirs.push_back(std::move(allowed));
  }
  return std::make_unique<CleanOldLogs>(std::move(dirs));
}

}  // namespace vigil::agent
