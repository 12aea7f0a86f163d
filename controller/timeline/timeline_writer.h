// The timeline writer: the one thread that changes incidents, alerts, proposals and the audit
// timeline, for incident handling and remediation alike.
//
// Callers Submit units of work. The writer drains what is queued (up to a batch), runs each unit
// in order against one Transaction, and commits all their writes in one store transaction (group
// commit: one fsync for a burst of a thousand alerts). Only after the commit succeeded does it run
// their effects, tell the listeners about the stored events and call each unit's `done` with OK.
// If the commit fails, every unit's in-memory changes are taken back and the units are run again
// one by one, each in its own transaction, so one bad unit cannot sink the others; a unit that
// still fails gets the store's error in `done` and has changed nothing.
//
// While the store fails (a full disk, say) the writer asks it to give space back (Store::Maintain)
// at most once a second, counts the failures and logs them at a bounded rate; writes resume by
// themselves once space returns. Thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/histogram.h"
#include "common/logging.h"
#include "controller/timeline/transaction.h"
#include "storage/store.h"

namespace vigil::controller {

class TimelineWriter {
 public:
  struct Options {
    size_t max_batch = 256;  // units of work per group commit
  };
  // Runs on the writer thread. An error means the unit decided not to change anything (a
  // refused request): its writes and changes are taken back, the others in the batch go on.
  using Work = std::function<absl::Status(Transaction&)>;
  // Runs on the writer thread once the unit's fate is known: OK only after its writes committed.
  using Done = std::function<void(absl::Status)>;
  // Called on the writer thread with every stored event, in seq order; must not block.
  using Listener = std::function<void(const v1::TimelineEvent& event)>;

  struct Stats {
    uint64_t commits = 0;         // store transactions that succeeded
    uint64_t units = 0;           // units of work committed
    uint64_t events = 0;          // timeline events committed
    uint64_t failed_commits = 0;  // store transactions that failed
    std::map<std::string, uint64_t> failures_by_cause;  // resource_exhausted, unavailable, ...
    LogHistogram commit_seconds;  // time in Store::Commit per successful commit
    size_t queued = 0;
  };

  TimelineWriter(storage::Store* store, const Clock* clock, Options options);
  TimelineWriter(storage::Store* store, const Clock* clock)
      : TimelineWriter(store, clock, Options()) {}
  ~TimelineWriter();

  void Start();
  void Stop();  // finishes what is queued first

  void Submit(Work work, Done done = nullptr);
  // Blocks until everything submitted before the call has been handled.
  void Flush();

  int AddListener(Listener listener);
  void RemoveListener(int id);

  // Runs `work` now, on the calling thread, in a transaction of its own, and commits it. Only
  // before Start (loading state at start-up) or on the writer thread.
  absl::Status RunNow(const Work& work);

  Stats stats() const;
  // True while the last commit failed (the store is refusing writes).
  bool failing() const;
  storage::Store* store() const { return store_; }

 private:
  struct Unit {
    Work work;
    Done done;
  };
  void Loop();
  // Commits `txn`; on success runs its effects and tells the listeners.
  absl::Status CommitAndApply(Transaction& txn, size_t units);
  void NoteFailure(const absl::Status& status);

  storage::Store* const store_;
  const Clock* const clock_;
  const Options options_;
  RateLimitedLog failure_log_{5, absl::Minutes(1)};
  absl::Time last_maintain_ = absl::InfinitePast();  // writer thread

  mutable absl::Mutex mu_;
  std::deque<Unit> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  std::map<int, Listener> listeners_ ABSL_GUARDED_BY(mu_);
  int next_listener_ ABSL_GUARDED_BY(mu_) = 1;
  Stats stats_ ABSL_GUARDED_BY(mu_);
  bool failing_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// Submits a unit that computes a value: `done` gets it once the unit's writes are stored, or the
// unit's own error, or the store's.
template <typename T>
void SubmitForResult(TimelineWriter& writer,
                     std::function<absl::StatusOr<T>(Transaction&)> work,
                     std::function<void(absl::StatusOr<T>)> done) {
  auto result = std::make_shared<absl::StatusOr<T>>(absl::UnknownError("not run"));
  writer.Submit(
      [work = std::move(work), result](Transaction& txn) {
        *result = work(txn);
        return result->status();
      },
      [result, done = std::move(done)](const absl::Status& status) {
        done(status.ok() ? std::move(*result) : absl::StatusOr<T>(status));
      });
}

// The label of a store error on /metrics: "resource_exhausted", "unavailable", ...
std::string FailureCause(const absl::Status& status);

}  // namespace vigil::controller
