// The store's own append rate beside SQLite's batched ceiling, measured in the same run on the
// same disk: timeline events committed through SqliteStore::Commit in batches of the timeline
// writer's size (a real database file in a temporary folder, WAL, synchronous=FULL), and plain
// INSERTs of ~200-byte rows into a bare table with the same pragmas and page size in batches of
// 1,000 (and of the writer's size, for a like-for-like figure).
//   build/bench/store_append_bench [--events=N] [--seconds=S] [--batch=N] [--only=store|ceiling]
// Prints events/s (or rows/s), the time per commit and the CPU per row for each run (for the
// store, the committing thread's: the batches are built on another thread).
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "controller/timeline/timeline_writer.h"
#include "storage/sqlite/sqlite_store.h"

namespace vigil {
namespace {

struct Settings {
  size_t batch = controller::TimelineWriter::Options().max_batch;
  size_t max_events = 2'000'000;
  double seconds = 4;  // per run
  std::string only;    // "store" or "ceiling": that side alone (profiling)
  // Rounds of (ceiling, store) taken in turn; the summary gives the medians. One run on a shared
  // machine moves by 10 % or more from minute to minute.
  int rounds = 1;
};

struct Result {
  size_t rows = 0;
  size_t commits = 0;
  double seconds = 0;
  double cpu_seconds = 0;  // user + system time over the run: the process's, or the committer's
  uint64_t checkpoints = 0;   // the store's checkpoint passes
  uint64_t writer_waits = 0;  // commits that waited for one (the log at its longest)
};

double Seconds(const rusage& usage) {
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

double CpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return Seconds(usage);
}

// The calling thread's user + system time: the committing thread's share of the store's run.
double ThreadCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_THREAD, &usage);
  return Seconds(usage);
}

void Print(const char* what, size_t batch, const Result& r) {
  std::printf("%-56s batch %5zu %9.0f /s %7.2f ms/commit %5.2f us CPU/row (%zu in %.2f s)\n", what,
              batch, r.rows / r.seconds, r.seconds * 1000 / static_cast<double>(r.commits),
              r.cpu_seconds * 1e6 / static_cast<double>(r.rows), r.rows, r.seconds);
  if (r.checkpoints > 0) {
    std::printf("%-56s %llu checkpoint passes, %llu of %zu commits waited for one\n", "",
                static_cast<unsigned long long>(r.checkpoints),
                static_cast<unsigned long long>(r.writer_waits), r.commits);
  }
}

std::string TempFolder() {
  std::string pattern = (std::filesystem::temp_directory_path() / "vigil-store-bench-XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) {
    std::perror("mkdtemp");
    std::exit(1);
  }
  return pattern;
}

// An event as the incident manager writes one in a storm: ~200 bytes of text plus JSON details.
v1::TimelineEvent StormEvent(size_t i) {
  v1::TimelineEvent e;
  e.set_incident_id("INC-0001");
  e.set_time_unix_ms(1'700'000'000'000 + static_cast<int64_t>(i));
  e.set_kind("alert_fired");
  const std::string host = absl::StrCat("api-", i % 1000);
  e.set_actor(host);
  e.set_summary(absl::StrCat("DiskSpaceWarning on ", host,
                             ": host_disk_used_ratio > 0.8 (value 0.93) (joined: "
                             "DiskSpaceWarning is already firing on api-0)"));
  e.set_details_json(absl::StrCat(R"({"id":"al-)", i, R"(","rule":"DiskSpaceWarning","agent_id":")",
                                  host, R"(","state":"FIRING","value":0.93})"));
  return e;
}

v1::Alert StormAlert(size_t i) {
  v1::Alert a;
  a.set_id(absl::StrCat("al-", i));
  a.set_rule("DiskSpaceWarning");
  a.set_severity(v1::SEV3);
  a.set_state(v1::FIRING);
  a.set_agent_id(absl::StrCat("api-", i % 1000));
  (*a.mutable_labels())["mount"] = absl::StrCat("/mnt/disk", i % 50);
  (*a.mutable_labels())["role"] = "api";
  a.set_value(0.93);
  a.set_expr("host_disk_used_ratio > 0.8");
  a.set_incident_id("INC-0001");
  a.set_source("rules");
  return a;
}

// Builds the batches on a thread of its own, two ahead of the committer, so the store's rate is
// what Store::Commit takes, not the cost of making up its input. (In the controller the units of
// work build their events on the timeline writer's thread before its commit;
// alert_storm_bench measures that whole path.)
class BatchProducer {
 public:
  BatchProducer(size_t batch_size, bool alerts, const v1::Incident& incident)
      : batch_size_(batch_size),
        alerts_(alerts),
        incident_(incident),
        thread_([this] { Loop(); }) {}
  ~BatchProducer() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    thread_.join();
  }

  storage::WriteBatch Next() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](std::deque<storage::WriteBatch>* ready) { return !ready->empty(); }, &ready_));
    storage::WriteBatch batch = std::move(ready_.front());
    ready_.pop_front();
    return batch;
  }

 private:
  void Loop() {
    for (size_t first = 0;; first += batch_size_) {
      storage::WriteBatch batch;
      for (size_t i = 0; i < batch_size_; ++i) {
        if (alerts_) {
          batch.Save(StormAlert(first + i));
        }
        // As the writer seals a batch: the incident rides on its last event.
        batch.Append(StormEvent(first + i), i + 1 == batch_size_ ? &incident_ : nullptr);
      }
      absl::MutexLock lock(&mu_);
      auto room = [this]()
                      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || ready_.size() < 2; };
      mu_.Await(absl::Condition(&room));
      if (stopping_) {
        return;
      }
      ready_.push_back(std::move(batch));
    }
  }

  const size_t batch_size_;
  const bool alerts_;
  const v1::Incident& incident_;
  absl::Mutex mu_;
  std::deque<storage::WriteBatch> ready_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: starts once the rest is built
};

// Events through Store::Commit as the timeline writer hands a batch over (one incident's events,
// the incident saved once, with the last); with `alerts`, each event also saves its alert (the
// shape of a storm's join).
Result StoreRun(const Settings& settings, bool alerts) {
  const std::string folder = TempFolder();
  auto store = storage::OpenSqliteStore(folder + "/vigil.db");
  if (!store.ok()) {
    std::fprintf(stderr, "%s\n", std::string(store.status().message()).c_str());
    std::exit(1);
  }
  v1::Incident incident;
  incident.set_id("INC-0001");
  incident.set_title("Disk space warning (api-0)");
  incident.set_state(v1::OPEN);
  incident.set_severity(v1::SEV3);
  for (int h = 0; h < 20; ++h) {
    incident.add_agents(absl::StrCat("api-", h));
  }
  Result r;
  {
    BatchProducer producer(settings.batch, alerts, incident);
    const absl::Time start = absl::Now();
    const double cpu_start = ThreadCpuSeconds();
    while (r.rows < settings.max_events && absl::Now() - start < absl::Seconds(settings.seconds)) {
      storage::WriteBatch batch = producer.Next();
      absl::StatusOr<std::vector<v1::TimelineEvent>> stored = (*store)->Commit(std::move(batch));
      if (!stored.ok() || stored->size() != settings.batch) {
        std::fprintf(stderr, "commit failed: %s\n", std::string(stored.status().message()).c_str());
        std::exit(1);
      }
      r.rows += settings.batch;
      ++r.commits;
    }
    r.seconds = absl::ToDoubleSeconds(absl::Now() - start);
    r.cpu_seconds = ThreadCpuSeconds() - cpu_start;
  }
  const storage::StoreLogHealth log = (*store)->LogHealth();
  r.checkpoints = log.checkpoints;
  r.writer_waits = log.writer_waits;
  store->reset();
  std::filesystem::remove_all(folder);
  return r;
}

// What building the batches costs alone (no store): the producer thread's work per row, beside
// the committing thread's.
Result BuildOnlyRun(const Settings& settings) {
  Result r;
  const double cpu_start = CpuSeconds();
  const absl::Time start = absl::Now();
  while (r.rows < 200'000) {
    storage::WriteBatch batch;
    for (size_t i = 0; i < settings.batch; ++i) {
      batch.Append(StormEvent(r.rows + i));
    }
    r.rows += settings.batch;
    ++r.commits;
  }
  r.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  r.cpu_seconds = CpuSeconds() - cpu_start;
  return r;
}

void Exec(sqlite3* db, const char* sql) {
  char* error = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &error) != SQLITE_OK) {
    std::fprintf(stderr, "%s: %s\n", sql, error);
    std::exit(1);
  }
}

// SQLite's ceiling on this disk: one prepared INSERT of ~200-byte rows into a bare table, one
// transaction per batch, the store's pragmas.
Result CeilingRun(const Settings& settings, size_t batch) {
  const std::string folder = TempFolder();
  sqlite3* db = nullptr;
  if (sqlite3_open((folder + "/bare.db").c_str(), &db) != SQLITE_OK) {
    std::fprintf(stderr, "cannot open the bare database\n");
    std::exit(1);
  }
  // The store's own page size (a new database's), so the ceiling is like for like.
  Exec(db,
       "PRAGMA page_size=16384; PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
       "PRAGMA journal_size_limit=4194304;");
  Exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, body TEXT NOT NULL)");
  sqlite3_stmt* insert = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO t(id, body) VALUES(?1, ?2)", -1, &insert, nullptr);
  const std::string body(200, 'x');
  Result r;
  const double cpu_start = CpuSeconds();
  const absl::Time start = absl::Now();
  while (r.rows < settings.max_events && absl::Now() - start < absl::Seconds(settings.seconds)) {
    Exec(db, "BEGIN IMMEDIATE");
    for (size_t i = 0; i < batch; ++i) {
      sqlite3_bind_int64(insert, 1, static_cast<int64_t>(r.rows + i + 1));
      sqlite3_bind_text(insert, 2, body.data(), static_cast<int>(body.size()), SQLITE_STATIC);
      if (sqlite3_step(insert) != SQLITE_DONE) {
        std::fprintf(stderr, "insert: %s\n", sqlite3_errmsg(db));
        std::exit(1);
      }
      sqlite3_reset(insert);
    }
    Exec(db, "COMMIT");
    r.rows += batch;
    ++r.commits;
  }
  r.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  r.cpu_seconds = CpuSeconds() - cpu_start;
  sqlite3_finalize(insert);
  sqlite3_close(db);
  std::filesystem::remove_all(folder);
  return r;
}

// The middle value (the mean of the two middle ones for an even count); `values` is not empty.
double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

bool Flag(absl::string_view arg, absl::string_view name, absl::string_view* value) {
  if (!absl::ConsumePrefix(&arg, name) || !absl::ConsumePrefix(&arg, "=")) {
    return false;
  }
  *value = arg;
  return true;
}

int Main(int argc, char** argv) {
  Settings settings;
  for (int i = 1; i < argc; ++i) {
    absl::string_view value;
    bool ok = false;
    if (Flag(argv[i], "--events", &value)) {
      ok = absl::SimpleAtoi(value, &settings.max_events);
    } else if (Flag(argv[i], "--seconds", &value)) {
      ok = absl::SimpleAtod(value, &settings.seconds);
    } else if (Flag(argv[i], "--only", &value)) {
      settings.only = std::string(value);
      ok = value == "store" || value == "ceiling";
    } else if (Flag(argv[i], "--batch", &value)) {
      ok = absl::SimpleAtoi(value, &settings.batch) && settings.batch > 0;
    } else if (Flag(argv[i], "--rounds", &value)) {
      ok =
          absl::SimpleAtoi(value, &settings.rounds) && settings.rounds > 0 && settings.rounds < 100;
    }
    if (!ok) {
      std::fprintf(stderr,
                   "usage: %s [--events=N] [--seconds=S] [--batch=N] [--rounds=N] "
                   "[--only=store|ceiling]\n",
                   argv[0]);
      return 2;
    }
  }
  // As in the controller, where the store opens before anything else uses SQLite: for the
  // ceiling's runs too.
  if (!storage::TurnOffSqliteMemoryStatistics()) {
    std::fprintf(stderr, "cannot turn SQLite's memory statistics off\n");
    return 1;
  }
  std::printf("SQLite %s, WAL, synchronous=FULL, temporary folder under %s\n", sqlite3_libversion(),
              std::filesystem::temp_directory_path().c_str());
  if (settings.only == "store") {
    Print("store: timeline events of one incident", settings.batch, StoreRun(settings, false));
    return 0;
  }
  if (settings.only == "ceiling") {
    Print("SQLite ceiling: bare INSERTs of 200-byte rows", settings.batch,
          CeilingRun(settings, settings.batch));
    return 0;
  }
  // Interleaved, so a disk that slows down mid-run weighs on both sides alike.
  std::vector<double> ceiling_rates;
  std::vector<double> store_rates;
  for (int round = 1; round <= settings.rounds; ++round) {
    const Result ceiling = CeilingRun(settings, 1000);
    const Result store = StoreRun(settings, false);
    if (settings.rounds > 1) {
      std::printf("round %d:\n", round);
    }
    Print("SQLite ceiling: bare INSERTs of 200-byte rows", 1000, ceiling);
    Print("store: timeline events of one incident", settings.batch, store);
    std::fflush(stdout);
    ceiling_rates.push_back(ceiling.rows / ceiling.seconds);
    store_rates.push_back(store.rows / store.seconds);
  }
  const Result ceiling_same = CeilingRun(settings, settings.batch);
  const Result storm = StoreRun(settings, true);
  Print("SQLite ceiling: bare INSERTs of 200-byte rows", settings.batch, ceiling_same);
  Print("store: timeline events + their alerts (a storm's joins)", settings.batch, storm);
  const Result build = BuildOnlyRun(settings);
  std::printf("(building the batches, on a thread of their own, costs %.2f us CPU/row)\n",
              build.cpu_seconds * 1e6 / static_cast<double>(build.rows));
  const double store_median = Median(store_rates);
  const double ceiling_median = Median(ceiling_rates);
  if (settings.rounds == 1) {
    std::printf("store append rate: %.0f events/s (%.0f%% of the 1,000-row ceiling, %.0f rows/s)\n",
                store_median, 100 * store_median / ceiling_median, ceiling_median);
  } else {
    std::printf(
        "store append rate: %.0f events/s, the median of %d rounds (%.0f-%.0f); %.0f%% of the "
        "1,000-row ceiling's median, %.0f rows/s (%.0f-%.0f)\n",
        store_median, settings.rounds, *std::min_element(store_rates.begin(), store_rates.end()),
        *std::max_element(store_rates.begin(), store_rates.end()),
        100 * store_median / ceiling_median, ceiling_median,
        *std::min_element(ceiling_rates.begin(), ceiling_rates.end()),
        *std::max_element(ceiling_rates.begin(), ceiling_rates.end()));
  }
  return 0;
}

}  // namespace
}  // namespace vigil

int main(int argc, char** argv) { return vigil::Main(argc, argv); }
