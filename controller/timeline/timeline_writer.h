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
// themselves once space returns.
//
// Stop finishes what is queued until its deadline; units still queued then are never run and
// their `done` gets UNAVAILABLE (nothing of them is written or applied), as does a unit
// submitted after the writer stopped. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
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
    // Units of work per group commit. Large, because a commit costs one fsync (10 ms on a busy
    // disk) whatever its size: an alert storm's fifty thousand joins take a dozen commits.
    size_t max_batch = 4096;
    // How long Stop goes on writing what is queued before refusing the rest.
    absl::Duration stop_deadline = absl::Seconds(5);
    // When the batch's commit failed and units are retried alone: after this many failures in
    // a row the store refuses everything, and the units not yet tried get its error untried.
    int max_failed_retries = 8;
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
  // Writes what is queued until options.stop_deadline (or `deadline`) has passed, then refuses
  // the rest (UNAVAILABLE) and returns. Later submissions are refused at once.
  void Stop();
  void Stop(absl::Duration deadline);

  void Submit(Work work, Done done = nullptr);
  // Blocks until everything submitted before the call has been handled (or refused).
  void Flush();

  // Adds writes to every batch just before it is committed, in the same transaction (the
  // notification outbox: a notification exists exactly when its event does). Runs on the writer
  // thread and must not block. Before Start.
  using BatchHook = std::function<void(storage::WriteBatch& batch)>;
  void SetBatchHook(BatchHook hook) { AddBatchHook(std::move(hook)); }
  // Several hooks run in the order added. `after`, when given, runs on the writer thread once
  // the commit of the writes `before` added is known: true when they are stored.
  void AddBatchHook(BatchHook before, std::function<void(bool committed)> after = nullptr) {
    batch_hooks_.push_back({std::move(before), std::move(after)});
  }

  int AddListener(Listener listener);
  void RemoveListener(int id);

  // Runs `work` now, on the calling thread, in a transaction of its own, and commits it. Only
  // before Start (loading state at start-up) or on the writer thread.
  absl::Status RunNow(const Work& work);

  // While a hold is set, every unit that would write is refused with `reason` and changes
  // nothing (the audit trail's rollback hold: controller/audit/auditor.h); std::nullopt lifts it.
  // Units that write nothing still run. Any thread.
  void SetHold(std::optional<absl::Status> reason);
  std::optional<absl::Status> hold() const;

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
  // Past the stop deadline: the remaining units are refused, not run.
  bool PastDeadline() const;
  static absl::Status Refusal();
  // Tells each unit it was refused (one at a time: a `done` never runs beside another's).
  void Refuse(std::deque<Unit>& units) ABSL_LOCKS_EXCLUDED(mu_);
  // Commits `txn`; on success runs its effects and tells the listeners.
  absl::Status CommitAndApply(Transaction& txn, size_t units);
  void NoteFailure(const absl::Status& status);

  storage::Store* const store_;
  const Clock* const clock_;
  const Options options_;
  RateLimitedLog failure_log_{5, absl::Minutes(1)};
  struct Hooks {
    BatchHook before;
    std::function<void(bool committed)> after;
  };
  std::vector<Hooks> batch_hooks_;  // set before Start
  absl::Time last_maintain_ = absl::InfinitePast();  // writer thread

  absl::Mutex refuse_mu_;
  mutable absl::Mutex mu_;
  std::deque<Unit> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;  // the loop has ended: Submit refuses
  std::atomic<int64_t> stop_by_ns_{INT64_MAX};   // real time; INT64_MAX until Stop
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  std::map<int, Listener> listeners_ ABSL_GUARDED_BY(mu_);
  int next_listener_ ABSL_GUARDED_BY(mu_) = 1;
  Stats stats_ ABSL_GUARDED_BY(mu_);
  bool failing_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<absl::Status> hold_ ABSL_GUARDED_BY(mu_);
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
